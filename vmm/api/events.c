/* GET /events: the event bus as an endless application/x-ndjson response,
 * written by the connection's own thread, which waits in short steps to
 * notice the bus closing, the server stopping and the client hanging up. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/api/internal.h"
#include "vmm/api/json.h"
#include "vmm/api/reply.h"
#include "vmm/events.h"
#include "vmm/vm_control.h"

static int parse_since(const char *text, uint64_t *out)
{
    if (!text || *text < '0' || *text > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Sends events until the bus closes (the VMM exits), the server stops or
 * the client goes. */
static void stream(struct api_server *s, struct api_conn *c, uint64_t cursor, bool chunked)
{
    struct event_bus *bus = vmc_events(s->vm);
    char line[EVENT_MAX_LEN + 1];
    for (;;) {
        /* The bus first: at exit it is closed before the server stops, so
         * its last events (the "shutdown") still go out. */
        int rc = event_bus_next(bus, &cursor, line, sizeof(line), API_POLL_MS * 4);
        if (rc == 1) {
            if (api_reply_stream_piece(c->fd, chunked, line, strlen(line)) != 0)
                return;         /* the client is gone or stopped reading */
            continue;
        }
        if (rc < 0 || atomic_load(&s->stopping))
            break;
        if (api_client_gone(c))
            return;
    }
    api_reply_stream_end(c->fd, chunked);
}

int api_events_get(struct api_server *s, struct api_conn *c)
{
    struct event_bus *bus = vmc_events(s->vm);
    uint64_t last = event_bus_last(bus), cursor = last;
    bool given;
    const char *since = api_request_query(&c->req, "since", &given);
    if (given) {
        if (parse_since(since, &cursor) != 0)
            return api_send_error(c, 400, NULL,
                                  "since '%.40s': expected an event sequence number",
                                  since ? since : "");
        if (cursor > last)      /* from the future: just what comes next */
            cursor = last;
    }
    if (!api_long_begin(s))
        return api_send_error(c, 429, NULL,
                              "too many event streams and waiting requests (%d); try again "
                              "later", API_MAX_LONG);
    /* HTTP/1.0 has no chunks: its stream ends with the connection. */
    bool chunked = c->req.http11;
    int rc = api_reply_stream_begin(c->fd, chunked, 200, "application/x-ndjson");
    if (rc == 0)
        stream(s, c, cursor, chunked);
    api_long_end(s);
    return rc ? -1 : 0;
}
