/* GET /events: the event bus as an endless application/x-ndjson response.
 * The content reader runs on the connection's own thread, so it may block;
 * it waits in short steps to notice the bus closing, the server stopping
 * and the client hanging up. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/api_internal.h"
#include "vmm/api_json.h"
#include "vmm/events.h"
#include "vmm/vm_control.h"

struct events_stream {
    struct api_server *s;
    struct event_bus *bus;
    uint64_t cursor;
    int fd;                     /* the client's socket, to see it hang up */
    char line[EVENT_MAX_LEN + 1];
    size_t off, len;            /* the part of line not yet handed to MHD */
};

static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
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
        if (client_gone(st->fd))
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

    struct events_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "out of memory");
    st->s = s;
    st->bus = bus;
    st->cursor = cursor;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    st->fd = ci ? ci->connect_fd : -1;

    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, sizeof(st->line), read_events, st,
                                          free);
    if (!resp) {
        free(st);
        return api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "out of memory");
    }
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson") ==
            MHD_YES &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES) {
        /* A stream may be quiet for hours: no idle timeout for it. */
        api_connection_timeout(c, 0);
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    }
    MHD_destroy_response(resp);
    return ret;
}
