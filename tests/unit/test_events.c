#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "unit.h"
#include "vmm/events.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(publish_and_read_in_order)
{
    struct event_bus bus;
    CHECK_EQ(event_bus_init(&bus), 0);
    CHECK_EQ(event_bus_last(&bus), 0);
    event_publish(&bus, "a", NULL);
    event_publish(&bus, "b", "\"id\":\"%s\",\"n\":%d", "x", 7);
    CHECK_EQ(event_bus_last(&bus), 2);

    char buf[EVENT_MAX_LEN + 1];
    uint64_t cursor = 0;
    CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 0), 1);
    CHECK_EQ(cursor, 1);
    CHECK_STR_CONTAINS(buf, "{\"seq\":1,\"time\":\"");
    CHECK_STR_CONTAINS(buf, "\"event\":\"a\"}\n");
    CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 0), 1);
    CHECK_STR_CONTAINS(buf, "\"event\":\"b\",\"id\":\"x\",\"n\":7}\n");
    CHECK_EQ(cursor, 2);
    CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 0), 0);
    event_bus_destroy(&bus);
    event_bus_destroy(&bus);    /* idempotent */
}

TEST(time_is_rfc3339_utc_with_milliseconds)
{
    struct event_bus bus;
    CHECK_EQ(event_bus_init(&bus), 0);
    event_publish(&bus, "t", NULL);
    char buf[EVENT_MAX_LEN + 1];
    uint64_t cursor = 0;
    CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 0), 1);
    const char *t = strstr(buf, "\"time\":\"");
    CHECK(t != NULL);
    if (t) {
        t += 8;
        /* YYYY-MM-DDTHH:MM:SS.mmmZ */
        const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ\"";
        for (size_t i = 0; shape[i]; i++) {
            if (shape[i] == 'd')
                CHECK(t[i] >= '0' && t[i] <= '9');
            else
                CHECK_EQ(t[i], shape[i]);
        }
    }
    event_bus_destroy(&bus);
}

TEST(slow_reader_is_told_how_many_it_lost)
{
    struct event_bus bus;
    CHECK_EQ(event_bus_init(&bus), 0);
    for (int i = 0; i < EVENTS_KEPT + 10; i++)
        event_publish(&bus, "e", "\"i\":%d", i);
    char buf[EVENT_MAX_LEN + 1];
    uint64_t cursor = 0;
    CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 0), 1);
    CHECK_STR_CONTAINS(buf, "{\"event\":\"events_lost\",\"count\":10}\n");
    CHECK_EQ(cursor, 10);
    CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 0), 1);
    CHECK_STR_CONTAINS(buf, "{\"seq\":11,");
    CHECK_STR_CONTAINS(buf, "\"i\":10}");
    int n = 1;
    while (event_bus_next(&bus, &cursor, buf, sizeof(buf), 0) == 1)
        n++;
    CHECK_EQ(n, EVENTS_KEPT);
    CHECK_EQ(cursor, EVENTS_KEPT + 10);
    event_bus_destroy(&bus);
}

TEST(overlong_event_stays_valid_json)
{
    struct event_bus bus;
    CHECK_EQ(event_bus_init(&bus), 0);
    char big[EVENT_MAX_LEN * 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    event_publish(&bus, "big", "\"s\":\"%s\"", big);
    char buf[EVENT_MAX_LEN + 1];
    uint64_t cursor = 0;
    CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 0), 1);
    CHECK_STR_CONTAINS(buf, "\"event\":\"big\",\"truncated\":true}\n");
    /* A short caller buffer is cut but still NUL-terminated with '\n'. */
    event_publish(&bus, "small", NULL);
    char tiny[8];
    CHECK_EQ(event_bus_next(&bus, &cursor, tiny, sizeof(tiny), 0), 1);
    CHECK_EQ(strlen(tiny), 7);
    CHECK_EQ(tiny[6], '\n');
    event_bus_destroy(&bus);
}

TEST(timeout_returns_zero_after_waiting)
{
    struct event_bus bus;
    CHECK_EQ(event_bus_init(&bus), 0);
    char buf[EVENT_MAX_LEN + 1];
    uint64_t cursor = event_bus_last(&bus);
    double t0 = now_s();
    CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 150), 0);
    double waited = now_s() - t0;
    CHECK(waited >= 0.14 && waited < 2.0);
    event_bus_destroy(&bus);
}

struct producer {
    struct event_bus *bus;
    int count;
    bool close_after;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    struct timespec ms = {0, 20 * 1000 * 1000};
    nanosleep(&ms, NULL);
    for (int i = 0; i < p->count; i++)
        event_publish(p->bus, "p", "\"i\":%d", i);
    if (p->close_after)
        event_bus_close(p->bus);
    return NULL;
}

TEST(waiting_reader_wakes_for_events_then_sees_close)
{
    struct event_bus bus;
    CHECK_EQ(event_bus_init(&bus), 0);
    event_publish(&bus, "old", NULL);
    uint64_t cursor = event_bus_last(&bus);     /* only new events */
    struct producer p = {&bus, 3, true};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, produce, &p), 0);
    char buf[EVENT_MAX_LEN + 1];
    int got = 0, rc;
    double t0 = now_s();
    while ((rc = event_bus_next(&bus, &cursor, buf, sizeof(buf), 5000)) == 1) {
        CHECK(strstr(buf, "\"event\":\"p\"") != NULL);
        got++;
    }
    CHECK_EQ(rc, -EPIPE);
    CHECK_EQ(got, 3);
    CHECK(now_s() - t0 < 4.0);  /* woken, not timed out */
    pthread_join(t, NULL);
    /* Closed: publishing is dropped, reading ends at once. */
    event_publish(&bus, "late", NULL);
    CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 1000), -EPIPE);
    event_bus_close(&bus);      /* idempotent */
    event_bus_destroy(&bus);
}

TEST(concurrent_producers_give_unique_dense_sequence)
{
    struct event_bus bus;
    CHECK_EQ(event_bus_init(&bus), 0);
    enum { THREADS = 4, EACH = 50 };
    struct producer p = {&bus, EACH, false};
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, produce, &p), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(event_bus_last(&bus), THREADS * EACH);
    char buf[EVENT_MAX_LEN + 1];
    uint64_t cursor = 0;
    for (unsigned long long want = 1; want <= THREADS * EACH; want++) {
        CHECK_EQ(event_bus_next(&bus, &cursor, buf, sizeof(buf), 0), 1);
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "{\"seq\":%llu,", want);
        CHECK(strncmp(buf, prefix, strlen(prefix)) == 0);
    }
    event_bus_destroy(&bus);
}
