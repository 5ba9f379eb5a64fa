#include "vmm/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdatomic.h>

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

int log_ratelimit_ok(struct log_ratelimit *rl, unsigned burst)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    /* Shared by threads (several vCPUs hitting the same bad access): all
     * atomic, no lock on the exit path. The thread that moves the window on
     * reports what the last one suppressed. */
    int64_t start = __atomic_load_n(&rl->window_start_ns, __ATOMIC_RELAXED);
    if (now - start > 5000000000LL &&
        __atomic_compare_exchange_n(&rl->window_start_ns, &start, now, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
        unsigned suppressed = __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&rl->printed, 0, __ATOMIC_RELAXED);
        if (suppressed)
            log_warn("(%u similar messages suppressed)", suppressed);
    }
    if (__atomic_fetch_add(&rl->printed, 1, __ATOMIC_RELAXED) < burst)
        return 1;
    __atomic_fetch_add(&rl->suppressed, 1, __ATOMIC_RELAXED);
    return 0;
}
