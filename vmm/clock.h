/* Clock readings and deadlines, in the units their callers compare: one
 * place for the timespec arithmetic. */
#ifndef MINIVMM_CLOCK_H
#define MINIVMM_CLOCK_H

#include <stdint.h>
#include <time.h>

/* 0 if the clock cannot be read: only an unknown clock id fails, and the
 * ones used here (monotonic, realtime, this process's CPU time) exist on
 * every kernel minivmm runs on. */
static inline uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t clock_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static inline uint64_t clock_mono_ms(void)
{
    return clock_mono_ns() / 1000000ull;
}

static inline double clock_seconds(clockid_t clock)
{
    return (double)clock_ns(clock) / 1e9;
}

/* The moment ms milliseconds from now on clock, as the absolute timespec
 * pthread_cond_timedwait (CLOCK_REALTIME unless the condition says
 * otherwise) and pthread_timedjoin_np take. */
static inline struct timespec clock_deadline(clockid_t clock, long ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

#endif
