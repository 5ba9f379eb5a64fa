/* The log rate limiter is shared by threads (every vCPU that hits the same
 * bad access): concurrent callers must get exactly `burst` lines per window
 * between them, with no data race (the TSan stage runs this). */
#include <pthread.h>
#include <stdlib.h>

#include "unit.h"
#include "vmm/log.h"

#define THREADS 8
#define CALLS 100000
/* A window opens when callers race for it; many fresh limiters, each raced
 * by all threads released at once, make that moment happen often enough that
 * a limiter which lets an extra line through there fails here every run. */
#define ROUNDS 50000
#define ROUND_CALLS 40

struct hammer {
    struct log_ratelimit *rl;
    int calls;
    unsigned allowed;
};

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < h->calls; i++)
        h->allowed += (unsigned)log_ratelimit_ok(h->rl, 10);
    return NULL;
}

static unsigned race(struct log_ratelimit *rl, int calls)
{
    struct hammer h[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        h[i] = (struct hammer){.rl = rl, .calls = calls};
        if (pthread_create(&t[i], NULL, hammer, &h[i]) != 0)
            return ~0u;
    }
    unsigned allowed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        allowed += h[i].allowed;
    }
    return allowed;
}

TEST(concurrent_callers_share_one_burst)
{
    struct log_ratelimit rl = {0};
    /* The whole run takes far less than the 5 s window. */
    CHECK_EQ(race(&rl, CALLS), 10);
    CHECK_EQ(log_ratelimit_suppressed(&rl), THREADS * CALLS - 10);
}

struct racing {
    struct log_ratelimit *rl;
    unsigned *allowed;
    pthread_barrier_t start;
};

static void *race_each_round(void *arg)
{
    struct racing *g = arg;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_barrier_wait(&g->start);
        for (int i = 0; i < ROUND_CALLS; i++)
            if (log_ratelimit_ok(&g->rl[r], 10))
                __atomic_fetch_add(&g->allowed[r], 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

TEST(callers_racing_to_open_the_window_get_one_burst)
{
    struct racing g = {
        .rl = calloc(ROUNDS, sizeof(*g.rl)),
        .allowed = calloc(ROUNDS, sizeof(*g.allowed)),
    };
    CHECK(g.rl && g.allowed);
    CHECK_EQ(pthread_barrier_init(&g.start, NULL, THREADS), 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, race_each_round, &g), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&g.start);
    unsigned rounds_wrong = 0, worst = 10;
    for (int r = 0; r < ROUNDS; r++) {
        if (g.allowed[r] != 10)
            rounds_wrong++;
        if (g.allowed[r] > worst)
            worst = g.allowed[r];
    }
    free(g.rl);
    free(g.allowed);
    CHECK_EQ(rounds_wrong, 0);
    CHECK_EQ(worst, 10);
}
