/* GET /events: the event bus as an endless application/x-ndjson response.
 * The content reader runs on the connection's own thread, so it may block;
 * it waits in short steps to notice the bus closing, the server stopping
 * and the client hanging up. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/api/internal.h"
#include "vmm/api/json.h"
#include "vmm/events.h"
#include "vmm/vm_control.h"

struct events_stream {
    struct api_server *s;
    struct event_bus *bus;
    uint64_t cursor;
    struct MHD_Connection *c;   /* to see the client hang up */
    char line[EVENT_MAX_LEN + 1];
    size_t off, len;            /* the part of line not yet handed to MHD */
};

/* The response's end: the stream's slot among the long requests is free. */
static void free_stream(void *cls)
{
    struct events_stream *st = cls;
    api_long_end(st->s);
    free(st);
}

static ssize_t read_events(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct events_stream *st = cls;
    for (;;) {
        if (st->off < st->len) {
            size_t n = st->len - st->off;
            if (n > max)
                n = max;
            memcpy(buf, st->line + st->off, n);
            st->off += n;
            return (ssize_t)n;
        }
        /* The bus first: at exit it is closed before the server stops, so
         * its last events (the "shutdown") still go out. */
        int rc = event_bus_next(st->bus, &st->cursor, st->line, sizeof(st->line),
                                API_POLL_MS * 4);
        if (rc == 1) {
            st->off = 0;
            st->len = strlen(st->line);
            continue;
        }
        if (rc < 0 || atomic_load(&st->s->stopping))    /* the VMM is exiting */
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (api_client_gone(st->c))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

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

enum MHD_Result api_events_get(struct api_server *s, struct MHD_Connection *c)
{
    struct event_bus *bus = vmc_events(s->vm);
    uint64_t last = event_bus_last(bus), cursor = last;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "since", 5, NULL, NULL) ==
        MHD_YES) {
        const char *since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
        if (parse_since(since, &cursor) != 0)
            return api_send_error(c, MHD_HTTP_BAD_REQUEST, NULL,
                                  "since '%.40s': expected an event sequence number",
                                  since ? since : "");
        if (cursor > last)      /* from the future: just what comes next */
            cursor = last;
    }

    if (!api_long_begin(s))
        return api_send_error(c, MHD_HTTP_TOO_MANY_REQUESTS, NULL,
                              "too many event streams and waiting requests (%d); try again "
                              "later", API_MAX_LONG);
    struct events_stream *st = calloc(1, sizeof(*st));
    if (!st) {
        api_long_end(s);
        return api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "out of memory");
    }
    st->s = s;
    st->bus = bus;
    st->cursor = cursor;
    st->c = c;

    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, sizeof(st->line), read_events, st,
                                          free_stream);
    if (!resp) {
        free_stream(st);
        return api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "out of memory");
    }
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson") ==
            MHD_YES &&
        api_add_connection_close(resp) == MHD_YES &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES) {
        /* A stream may be quiet for hours: no idle timeout for it. */
        api_connection_timeout(c, 0);
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    }
    MHD_destroy_response(resp);
    return ret;
}
