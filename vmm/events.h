/* The VM's event stream: a bounded log of one-line JSON events with sequence
 * numbers. Producers (devices, the VM lifecycle, the API) publish from any
 * thread; each reader (an HTTP /events client) keeps its own cursor and
 * waits for what comes after it. A slow reader that falls more than
 * EVENTS_KEPT behind is told how many it missed instead of blocking anyone. */
#ifndef MINIVMM_EVENTS_H
#define MINIVMM_EVENTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVENTS_KEPT 256
#define EVENT_MAX_LEN 512

struct event_bus {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char (*ring)[EVENT_MAX_LEN];    /* EVENTS_KEPT entries, each NUL-terminated JSON */
    uint64_t next_seq;              /* seq of the next event; events are 1, 2, ... */
    bool closed;                    /* the VMM is exiting: readers end */
};

int event_bus_init(struct event_bus *bus);

/* Publishes {"seq":N,"time":"<RFC 3339 UTC>","event":"<type>"<,fields>}.
 * fields_fmt is the rest of the object's members as JSON text, e.g.
 * "\"id\":\"%s\",\"requested_size\":%llu" (caller escapes strings), or NULL. */
__attribute__((format(printf, 3, 4)))
void event_publish(struct event_bus *bus, const char *type, const char *fields_fmt, ...);

/* Next event after *cursor (0 = from the oldest kept), copied to buf with a
 * trailing '\n'. Returns 1 and advances *cursor; 0 on timeout; -EPIPE once
 * closed and drained. If events were lost to the ring's bound, the copy is
 * a synthetic {"event":"events_lost","count":N} line first. */
int event_bus_next(struct event_bus *bus, uint64_t *cursor, char *buf, size_t len,
                   int timeout_ms);

/* Sequence number of the newest event (0 if none): a reader that only wants
 * the future starts with *cursor = event_bus_last(bus). */
uint64_t event_bus_last(struct event_bus *bus);

/* Copies in to out as the inside of a JSON string (quotes, backslashes and
 * control characters escaped), truncated to fit len. */
void event_json_escape(const char *in, char *out, size_t len);

void event_bus_close(struct event_bus *bus);
void event_bus_destroy(struct event_bus *bus);

#endif
