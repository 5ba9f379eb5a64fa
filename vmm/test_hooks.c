#include "vmm/test_hooks.h"

#ifdef MINIVMM_TEST_HOOKS
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "vmm/clock.h"
#include "vmm/log.h"

/* A condition nobody signals: the wait is a futex sleep, which every
 * thread's seccomp filter allows (nanosleep is not in every role's). */
static void wait_ms(long ms)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    struct timespec until = clock_deadline(CLOCK_REALTIME, ms);
    pthread_mutex_lock(&m);
    while (pthread_cond_timedwait(&c, &m, &until) == 0)
        ;
    pthread_mutex_unlock(&m);
}

static long env_number(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : -1;
}

void test_hook_vcpu_returning(unsigned index)
{
    if (env_number("MINIVMM_TEST_STUCK_VCPU") != (long)index)
        return;
    log_warn("test hook: vCPU %u holds on for 60 s", index);
    wait_ms(60000);
}

void test_hook_before_reset_lock(void)
{
    long ms = env_number("MINIVMM_TEST_RESET_DELAY_MS");
    if (ms > 0)
        wait_ms(ms);
}

void test_hook_guard_populating(void)
{
    long ms = env_number("MINIVMM_TEST_GUARD_POPULATE_MS");
    if (ms > 0)
        wait_ms(ms);
}

int test_hook_api_wait_recheck_ms(int normal)
{
    long ms = env_number("MINIVMM_TEST_API_WAIT_RECHECK_MS");
    return ms > 0 && ms < 3600000 ? (int)ms : normal;
}
#endif
