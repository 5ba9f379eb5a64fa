/* Diagnostics go to stderr, one line each, prefixed "minivmm: ", so they stay
 * apart from the guest console on stdout. */
#ifndef MINIVMM_LOG_H
#define MINIVMM_LOG_H

#include <stdint.h>
#include <time.h>

__attribute__((format(printf, 1, 2))) void log_error(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_warn(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_info(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_debug(const char *fmt, ...);
void log_set_verbose(int verbose);

/* Lets a guest-triggered message through at most `burst` times per 5 s, so a
 * hostile guest cannot flood the host's logs. Embed one per call site; it is
 * shared by every thread that reaches that site (all vCPUs). */
struct log_ratelimit {
    /* When the window opened (ms, CLOCK_MONOTONIC) and how many lines it let
     * through, in one word: a window opens and counts in a single
     * compare-and-swap, so racing threads cannot reopen it or lose a count. */
    uint64_t window;
    unsigned suppressed;
};
int log_ratelimit_ok(struct log_ratelimit *rl, unsigned burst);
/* Lines held back and not yet reported (the next window's first line reports them). */
unsigned log_ratelimit_suppressed(const struct log_ratelimit *rl);

#define log_warn_ratelimited(rl, ...)                                     \
    do {                                                                  \
        if (log_ratelimit_ok((rl), 10))                                   \
            log_warn(__VA_ARGS__);                                        \
    } while (0)

#endif
