#include "vmm/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdatomic.h>

#include "vmm/clock.h"

static atomic_int log_verbosity;

void log_set_verbose(int verbose)
{
    atomic_store(&log_verbosity, verbose);
}

/* The console may be in raw mode, where "\n" does not return the carriage:
 * always end with "\r\n" so messages stay readable on a raw terminal too. */
__attribute__((format(printf, 2, 0)))
static void log_line(const char *level, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    fprintf(stderr, "minivmm: %s%s\r\n", level, msg);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line("error: ", fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line("warning: ", fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line("", fmt, ap);
    va_end(ap);
}

void log_debug(const char *fmt, ...)
{
    if (!atomic_load(&log_verbosity))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_line("debug: ", fmt, ap);
    va_end(ap);
}

#define RATELIMIT_WINDOW_MS 5000
#define RATELIMIT_COUNT_BITS 24 /* the rest, 40 bits of ms, lasts 34 years of uptime */
#define RATELIMIT_COUNT_MASK ((UINT64_C(1) << RATELIMIT_COUNT_BITS) - 1)

int log_ratelimit_ok(struct log_ratelimit *rl, unsigned burst)
{
    if (burst == 0)
        return 0;
    if (burst > RATELIMIT_COUNT_MASK)
        burst = RATELIMIT_COUNT_MASK;
    uint64_t now_ms = clock_mono_ms();
    uint64_t seen = __atomic_load_n(&rl->window, __ATOMIC_RELAXED);
    bool opens;
    for (;;) {
        uint64_t opened_ms = seen >> RATELIMIT_COUNT_BITS;
        uint64_t printed = seen & RATELIMIT_COUNT_MASK;
        /* A thread that read the clock before another opened a newer
         * window (now_ms < opened_ms) counts in that newer window. */
        opens = now_ms >= opened_ms && now_ms - opened_ms >= RATELIMIT_WINDOW_MS;
        if (!opens && printed >= burst) {
            __atomic_fetch_add(&rl->suppressed, 1, __ATOMIC_RELAXED);
            return 0;
        }
        uint64_t next = opens ? now_ms << RATELIMIT_COUNT_BITS | 1 : seen + 1;
        if (__atomic_compare_exchange_n(&rl->window, &seen, next, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            break;
    }
    /* Only the thread whose swap opened the window reports what the last one
     * held back. A line suppressed in the old window after this exchange is
     * reported by the next window's opener, so none goes uncounted. */
    if (opens) {
        unsigned suppressed = __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_RELAXED);
        if (suppressed)
            log_warn("(%u similar messages suppressed)", suppressed);
    }
    return 1;
}

unsigned log_ratelimit_suppressed(const struct log_ratelimit *rl)
{
    return __atomic_load_n(&rl->suppressed, __ATOMIC_RELAXED);
}
