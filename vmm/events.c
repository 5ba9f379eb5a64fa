#include "vmm/events.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/clock.h"

int event_bus_init(struct event_bus *bus)
{
    memset(bus, 0, sizeof(*bus));
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc)
        return -rc;
    /* Readers wait with deadlines; a wall-clock jump must not stretch them. */
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&bus->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc)
        return -rc;
    rc = pthread_mutex_init(&bus->lock, NULL);
    if (rc) {
        pthread_cond_destroy(&bus->cond);
        return -rc;
    }
    /* ring != NULL marks the bus as initialised, for event_bus_destroy. */
    bus->ring = calloc(EVENTS_KEPT, sizeof(*bus->ring));
    if (!bus->ring) {
        pthread_mutex_destroy(&bus->lock);
        pthread_cond_destroy(&bus->cond);
        return -ENOMEM;
    }
    bus->next_seq = 1;
    return 0;
}

/* "2024-05-01T12:34:56.789Z" */
static void rfc3339_now(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || !gmtime_r(&ts.tv_sec, &tm)) {
        snprintf(buf, len, "1970-01-01T00:00:00.000Z");
        return;
    }
    /* No strftime or locale: events are published from vCPU and device
     * threads, whose seccomp filters allow no file access. */
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(ts.tv_nsec / 1000000L) % 1000u);
}

void event_publish(struct event_bus *bus, const char *type, const char *fields_fmt, ...)
{
    /* The caller's part is formatted outside the lock: producers include the
     * device threads, which should not queue behind each other's printf. */
    char fields[EVENT_MAX_LEN] = "";
    bool fields_fit = true;
    if (fields_fmt) {
        va_list ap;
        va_start(ap, fields_fmt);
        int n = vsnprintf(fields, sizeof(fields), fields_fmt, ap);
        va_end(ap);
        fields_fit = n >= 0 && (size_t)n < sizeof(fields);
    }

    pthread_mutex_lock(&bus->lock);
    if (bus->closed || !bus->ring) {
        pthread_mutex_unlock(&bus->lock);
        return;
    }
    /* Sequence and time are taken together under the lock so the log is in
     * seq order with non-decreasing times (barring a clock step). */
    uint64_t seq = bus->next_seq++;
    char now[64];
    rfc3339_now(now, sizeof(now));
    char *slot = bus->ring[seq % EVENTS_KEPT];
    int n = snprintf(slot, EVENT_MAX_LEN, "{\"seq\":%llu,\"time\":\"%s\",\"event\":\"%s\"%s%s}",
                     (unsigned long long)seq, now, type, fields[0] ? "," : "", fields);
    if (n < 0 || n >= EVENT_MAX_LEN || !fields_fit) {
        /* Cut JSON would be invalid: keep what identifies the event. */
        snprintf(slot, EVENT_MAX_LEN,
                 "{\"seq\":%llu,\"time\":\"%s\",\"event\":\"%.64s\",\"truncated\":true}",
                 (unsigned long long)seq, now, type);
    }
    pthread_cond_broadcast(&bus->cond);
    pthread_mutex_unlock(&bus->lock);
}

/* Copies line plus '\n' into buf, cutting when buf is short (callers pass
 * EVENT_MAX_LEN + 1 or more to always get whole lines). */
static void copy_line(char *buf, size_t len, const char *line)
{
    if (len == 0)
        return;
    size_t n = strlen(line);
    if (n + 2 > len)
        n = len >= 2 ? len - 2 : 0;
    memcpy(buf, line, n);
    if (len >= 2)
        buf[n++] = '\n';
    buf[n] = '\0';
}

int event_bus_next(struct event_bus *bus, uint64_t *cursor, char *buf, size_t len,
                   int timeout_ms)
{
    struct timespec deadline;
    if (timeout_ms > 0)
        deadline = clock_deadline(CLOCK_MONOTONIC, timeout_ms);

    pthread_mutex_lock(&bus->lock);
    for (;;) {
        uint64_t last = bus->next_seq - 1;
        if (*cursor < last) {
            uint64_t want = *cursor + 1;
            uint64_t oldest = last > EVENTS_KEPT ? last - EVENTS_KEPT + 1 : 1;
            if (want < oldest) {
                char lost[96];
                snprintf(lost, sizeof(lost), "{\"event\":\"events_lost\",\"count\":%llu}",
                         (unsigned long long)(oldest - want));
                copy_line(buf, len, lost);
                *cursor = oldest - 1;
            } else {
                copy_line(buf, len, bus->ring[want % EVENTS_KEPT]);
                *cursor = want;
            }
            pthread_mutex_unlock(&bus->lock);
            return 1;
        }
        if (bus->closed) {
            pthread_mutex_unlock(&bus->lock);
            return -EPIPE;
        }
        if (timeout_ms <= 0)
            break;
        int rc = pthread_cond_timedwait(&bus->cond, &bus->lock, &deadline);
        if (rc == ETIMEDOUT) {
            timeout_ms = 0;     /* one last look, then report the timeout */
            continue;
        }
    }
    pthread_mutex_unlock(&bus->lock);
    return 0;
}

uint64_t event_bus_last(struct event_bus *bus)
{
    pthread_mutex_lock(&bus->lock);
    uint64_t last = bus->next_seq - 1;
    pthread_mutex_unlock(&bus->lock);
    return last;
}

void event_bus_close(struct event_bus *bus)
{
    if (!bus->ring)
        return;
    pthread_mutex_lock(&bus->lock);
    bus->closed = true;
    pthread_cond_broadcast(&bus->cond);
    pthread_mutex_unlock(&bus->lock);
}

void event_bus_destroy(struct event_bus *bus)
{
    if (!bus->ring)     /* never initialised, or destroyed already */
        return;
    pthread_mutex_destroy(&bus->lock);
    pthread_cond_destroy(&bus->cond);
    free(bus->ring);
    bus->ring = NULL;
}

void event_json_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    if (!len)
        return;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\')
            snprintf(esc, sizeof(esc), "\\%c", *p);
        else if (*p < 0x20)
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
        else
            snprintf(esc, sizeof(esc), "%c", *p);
        size_t n = strlen(esc);
        if (o + n >= len)
            break;
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o] = '\0';
}
