/* The log rate limiter is shared by threads (every vCPU that hits the same
 * bad access): concurrent callers must get exactly `burst` lines per window
 * between them, with no data race (the TSan stage runs this). */
#include <pthread.h>

#include "unit.h"
#include "vmm/log.h"

#define THREADS 4
#define CALLS 100000

struct hammer {
    struct log_ratelimit *rl;
    unsigned allowed;
};

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < CALLS; i++)
        h->allowed += (unsigned)log_ratelimit_ok(h->rl, 10);
    return NULL;
}

TEST(concurrent_callers_share_one_burst)
{
    struct log_ratelimit rl = {0};
    struct hammer h[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        h[i] = (struct hammer){.rl = &rl};
        CHECK_EQ(pthread_create(&t[i], NULL, hammer, &h[i]), 0);
    }
    unsigned allowed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        allowed += h[i].allowed;
    }
    /* The whole run takes far less than the 5 s window. */
    CHECK_EQ(allowed, 10);
    CHECK_EQ(rl.suppressed, THREADS * CALLS - 10);
}
