/* The HTTP/1.1 client of `minivmm ctl` (ctl/http_client.h). What the API
 * server sends (api/json.c, api/events.c, api/front.c): one answer per
 * connection with "Connection: close"; JSON answers with Content-Length;
 * GET /events to an HTTP/1.1 request as "Transfer-Encoding: chunked", ended
 * by the last chunk when the VMM exits, or by the connection's close when
 * the server gives up on it; the front door may send "100 Continue" first.
 * All of that is read here, and anything else a confused or hostile peer
 * sends ends in an error, never a hang past the deadlines or an unbounded
 * allocation. The error texts of the common transport failures are those
 * libcurl gave before this client replaced it, so that `minivmm ctl`'s
 * messages did not change. */
#include "vmm/ctl/http_client.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/clock.h"

#define HTTPC_MAX_LINE 4096     /* a chunk-size line or trailer line */

struct conn {
    int fd;
    uint64_t head_deadline, total_deadline;   /* CLOCK_MONOTONIC ms; 0: none */
    bool in_head;
    char *buf;                  /* HTTPC_MAX_HEAD bytes */
    size_t off, len;            /* unread: buf[off..len) */
};

struct head {
    int status;
    bool chunked, close_delimited, has_length;
    uint64_t length;
};

const char *httpc_strerror(int err)
{
    switch (err) {
    case HTTPC_OK:
        return "No error";
    case HTTPC_E_PATH:
        return "Unix socket path too long";
    case HTTPC_E_CONNECT:
        return "Couldn't connect to server";
    case HTTPC_E_SEND:
        return "Failed sending data to the peer";
    case HTTPC_E_RECV:
        return "Failure when receiving data from the peer";
    case HTTPC_E_TIMEOUT:
        return "Timeout was reached";
    case HTTPC_E_NOTHING:
        return "Server returned nothing (no headers, no data)";
    case HTTPC_E_HEAD_CUT:
        return "Server closed the connection in the middle of the response header";
    case HTTPC_E_STATUS:
        return "Weird server reply: malformed status line";
    case HTTPC_E_HEADER:
        return "Weird server reply: malformed header line";
    case HTTPC_E_LENGTH:
        return "Weird server reply: invalid or conflicting Content-Length";
    case HTTPC_E_HEAD_TOO_BIG:
        return "Response header too large (more than 64 KiB)";
    case HTTPC_E_CHUNK:
        return "Weird server reply: malformed chunked encoding";
    case HTTPC_E_PARTIAL:
        return "Transferred a partial file";
    case HTTPC_E_BODY_TOO_BIG:
        return "Response body too large";
    case HTTPC_E_NOMEM:
        return "Out of memory";
    case HTTPC_E_SINK:
        return "Failed writing received data to disk/application";
    }
    return "Unknown error";
}

char *httpc_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *p = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = '\0';
    return out;
}

static uint64_t deadline_after(int ms)
{
    return ms > 0 ? clock_mono_ms() + (uint64_t)ms : 0;
}

/* Waits for events on the socket until the nearer deadline: 0 when ready,
 * else HTTPC_E_TIMEOUT (or HTTPC_E_RECV for a failed poll). */
static int wait_for(struct conn *c, short events)
{
    for (;;) {
        uint64_t dl = c->total_deadline;
        if (c->in_head && c->head_deadline && (!dl || c->head_deadline < dl))
            dl = c->head_deadline;
        int timeout = -1;
        if (dl) {
            uint64_t now = clock_mono_ms();
            if (now >= dl)
                return HTTPC_E_TIMEOUT;
            timeout = dl - now > INT32_MAX ? INT32_MAX : (int)(dl - now);
        }
        struct pollfd p = {.fd = c->fd, .events = events};
        int n = poll(&p, 1, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return HTTPC_E_RECV;
        if (n > 0)
            return 0;
    }
}

/* Sends it all; a peer that stops reading (it answered early and closed)
 * ends the sending quietly: *gone is set and the answer is read anyway. */
static int send_all(struct conn *c, const char *p, size_t len, bool *gone)
{
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_for(c, POLLOUT);
            if (rc)
                return rc;
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            *gone = true;
            return 0;
        }
        return HTTPC_E_SEND;
    }
    return 0;
}

/* Reads more into buf[len..): > 0 bytes, 0 at the peer's end, or -error.
 * The caller makes room first. */
static long fill(struct conn *c)
{
    if (c->len >= HTTPC_MAX_HEAD)
        return -HTTPC_E_HEAD_TOO_BIG;
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, HTTPC_MAX_HEAD - c->len, MSG_DONTWAIT);
        if (n >= 0) {
            c->len += (size_t)n;
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -HTTPC_E_RECV;
        int rc = wait_for(c, POLLIN);
        if (rc)
            return -rc;
    }
}

/* Moves the unread bytes to the buffer's start. */
static void compact(struct conn *c)
{
    if (c->off) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
}

/* The next line in buf[off..): its start and length without CRLF/LF, or
 * false when none is complete yet. */
static bool next_line(struct conn *c, size_t from, const char **line, size_t *llen,
                      size_t *next)
{
    const char *lf = memchr(c->buf + from, '\n', c->len - from);
    if (!lf)
        return false;
    size_t end = (size_t)(lf - c->buf);
    *line = c->buf + from;
    *llen = end - from;
    if (*llen && (*line)[*llen - 1] == '\r')
        (*llen)--;
    *next = end + 1;
    return true;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* "HTTP/1.x SP 3DIGIT [SP reason]" */
static bool parse_status(const char *l, size_t n, int *status)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' || l[8] != ' ')
        return false;
    for (int i = 9; i < 12; i++) {
        if (l[i] < '0' || l[i] > '9')
            return false;
    }
    if (n > 12 && l[12] != ' ')
        return false;
    *status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (*status < 100)
        return false;
    for (size_t i = 12; i < n; i++) {
        unsigned char ch = (unsigned char)l[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

static bool name_is(const char *name, size_t nlen, const char *want)
{
    return nlen == strlen(want) && !strncasecmp(name, want, nlen);
}

/* Whether the last coding of a Transfer-Encoding value is "chunked". */
static bool last_coding_chunked(const char *v, size_t n)
{
    while (n && is_space(v[n - 1]))
        n--;
    size_t start = n;
    while (start && v[start - 1] != ',')
        start--;
    while (start < n && is_space(v[start]))
        start++;
    return n - start == 7 && !strncasecmp(v + start, "chunked", 7);
}

static int parse_header(const char *l, size_t n, struct head *h)
{
    const char *colon = memchr(l, ':', n);
    if (!colon || colon == l)
        return HTTPC_E_HEADER;
    for (const char *p = l; p < colon; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f)      /* no obs-fold, no space before the colon */
            return HTTPC_E_HEADER;
    }
    size_t nlen = (size_t)(colon - l);
    const char *v = colon + 1;
    size_t vlen = n - nlen - 1;
    while (vlen && is_space(*v)) {
        v++;
        vlen--;
    }
    while (vlen && is_space(v[vlen - 1]))
        vlen--;
    for (size_t i = 0; i < vlen; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return HTTPC_E_HEADER;
    }
    if (name_is(l, nlen, "Content-Length")) {
        if (!vlen)
            return HTTPC_E_LENGTH;
        uint64_t x = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9' || x > (UINT64_MAX - 9) / 10)
                return HTTPC_E_LENGTH;
            x = x * 10 + (uint64_t)(v[i] - '0');
        }
        if (h->has_length && h->length != x)
            return HTTPC_E_LENGTH;
        h->has_length = true;
        h->length = x;
    } else if (name_is(l, nlen, "Transfer-Encoding")) {
        /* RFC 9112 6.3: chunked last, or the body runs to the close. */
        h->chunked = last_coding_chunked(v, vlen);
        h->close_delimited = !h->chunked;
    }
    return 0;
}

/* Reads heads until a final (non-1xx) one; the body's first bytes stay in
 * buf[off..len). */
static int read_head(struct conn *c, struct head *h)
{
    bool got_any = false;
    for (;;) {
        memset(h, 0, sizeof(*h));
        size_t pos = c->off;
        bool first = true;
        for (;;) {
            const char *line;
            size_t llen, next;
            if (!next_line(c, pos, &line, &llen, &next)) {
                if (c->len >= HTTPC_MAX_HEAD && c->off == 0)
                    return HTTPC_E_HEAD_TOO_BIG;
                if (first && c->len > c->off && pos == c->off) {
                    /* Not even a status line yet: refuse garbage early. */
                    size_t have = c->len - c->off;
                    size_t k = have < 7 ? have : 7;
                    if (memcmp(c->buf + c->off, "HTTP/1.", k) != 0)
                        return HTTPC_E_STATUS;
                }
                size_t consumed = pos - c->off;
                compact(c);
                pos = consumed;
                long n = fill(c);
                if (n < 0)
                    return (int)-n;
                if (n == 0)
                    return got_any || c->len ? HTTPC_E_HEAD_CUT : HTTPC_E_NOTHING;
                got_any = true;
                continue;
            }
            pos = next;
            if (first) {
                if (!parse_status(line, llen, &h->status))
                    return HTTPC_E_STATUS;
                first = false;
                continue;
            }
            if (llen == 0)
                break;
            int rc = parse_header(line, llen, h);
            if (rc)
                return rc;
        }
        c->off = pos;
        if (h->status >= 200)
            break;
        if (h->status == 101)       /* no upgrade was asked for */
            return HTTPC_E_STATUS;
        /* 100 Continue and the like: the final answer follows. */
    }
    if (h->chunked)
        h->has_length = false;
    else if (!h->has_length)
        h->close_delimited = true;
    return 0;
}

struct out {
    const struct httpc_request *req;
    struct httpc_response *resp;
    size_t cap, max;
};

static int deliver(struct out *o, const char *p, size_t n)
{
    if (!n)
        return 0;
    if (o->req->sink)
        return o->req->sink(o->req->sink_arg, p, n) == 0 ? 0 : HTTPC_E_SINK;
    struct httpc_response *r = o->resp;
    if (n > o->max - r->body_len)
        return HTTPC_E_BODY_TOO_BIG;
    if (r->body_len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return HTTPC_E_NOMEM;
        r->body = b;
        o->cap = cap;
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

/* Makes unread bytes available: > 0, 0 at the peer's end, or -error. */
static long more(struct conn *c)
{
    if (c->off < c->len)
        return (long)(c->len - c->off);
    c->off = c->len = 0;
    return fill(c);
}

/* Passes on exactly n body bytes. */
static int body_bytes(struct conn *c, struct out *o, uint64_t n)
{
    while (n) {
        long got = more(c);
        if (got < 0)
            return (int)-got;
        if (got == 0)
            return HTTPC_E_PARTIAL;
        size_t take = (uint64_t)got < n ? (size_t)got : (size_t)n;
        int rc = deliver(o, c->buf + c->off, take);
        if (rc)
            return rc;
        c->off += take;
        n -= take;
    }
    return 0;
}

/* One line of the chunked framing, without its CRLF. */
static int body_line(struct conn *c, const char **line, size_t *llen)
{
    for (;;) {
        size_t next;
        if (next_line(c, c->off, line, llen, &next)) {
            if (next - c->off > HTTPC_MAX_LINE)
                return HTTPC_E_CHUNK;
            c->off = next;
            return 0;
        }
        if (c->len - c->off > HTTPC_MAX_LINE)
            return HTTPC_E_CHUNK;
        compact(c);
        long n = fill(c);
        if (n < 0)
            return (int)-n;
        if (n == 0)
            return HTTPC_E_PARTIAL;
    }
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int body_chunked(struct conn *c, struct out *o)
{
    for (;;) {
        const char *line;
        size_t llen;
        int rc = body_line(c, &line, &llen);
        if (rc)
            return rc;
        uint64_t size = 0;
        size_t i = 0;
        for (; i < llen && hex_digit(line[i]) >= 0; i++) {
            if (size >> 60)
                return HTTPC_E_CHUNK;
            size = size * 16 + (uint64_t)hex_digit(line[i]);
        }
        if (i == 0)
            return HTTPC_E_CHUNK;
        while (i < llen && is_space(line[i]))
            i++;
        if (i < llen && line[i] != ';')     /* chunk extensions are ignored */
            return HTTPC_E_CHUNK;
        if (size == 0)
            break;
        rc = body_bytes(c, o, size);
        if (rc)
            return rc;
        rc = body_line(c, &line, &llen);
        if (rc)
            return rc;
        if (llen)
            return HTTPC_E_CHUNK;
    }
    /* The trailer section, dropped; bounded like a head. */
    size_t total = 0;
    for (;;) {
        const char *line;
        size_t llen;
        int rc = body_line(c, &line, &llen);
        if (rc)
            return rc;
        if (!llen)
            return 0;
        total += llen;
        if (total > HTTPC_MAX_HEAD)
            return HTTPC_E_HEAD_TOO_BIG;
    }
}

static int body_to_close(struct conn *c, struct out *o)
{
    for (;;) {
        long got = more(c);
        if (got < 0)
            return (int)-got;
        if (got == 0)
            return 0;
        int rc = deliver(o, c->buf + c->off, (size_t)got);
        if (rc)
            return rc;
        c->off += (size_t)got;
    }
}

static char *build_request(const struct httpc_request *req, size_t *len)
{
    const char *method = req->method ? req->method : "GET";
    size_t blen = req->body ? req->body_len : 0;
    size_t cap = strlen(method) + strlen(req->target) + 128 +
                 (req->content_type ? strlen(req->content_type) : 0) + blen;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    int n;
    if (req->body)
        n = snprintf(out, cap,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n"
                     "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                     method, req->target,
                     req->content_type ? req->content_type : "application/octet-stream", blen);
    else
        n = snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
                     method, req->target);
    if (n < 0 || (size_t)n + blen >= cap) {
        free(out);
        return NULL;
    }
    if (blen)
        memcpy(out + n, req->body, blen);
    *len = (size_t)n + blen;
    return out;
}

int httpc_exchange(int fd, const struct httpc_request *req, struct httpc_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    struct conn c = {
        .fd = fd,
        .head_deadline = deadline_after(req->head_timeout_ms),
        .total_deadline = deadline_after(req->total_timeout_ms),
        .in_head = true,
    };
    size_t wlen;
    char *wire = build_request(req, &wlen);
    c.buf = malloc(HTTPC_MAX_HEAD);
    if (!wire || !c.buf) {
        free(wire);
        free(c.buf);
        return HTTPC_E_NOMEM;
    }
    bool gone = false;
    int rc = send_all(&c, wire, wlen, &gone);
    free(wire);
    struct head h;
    if (!rc) {
        rc = read_head(&c, &h);
        if (gone && rc == HTTPC_E_NOTHING)
            rc = HTTPC_E_SEND;
    }
    if (!rc) {
        c.in_head = false;
        struct out o = {.req = req,
                        .resp = resp,
                        .max = req->max_body ? req->max_body : HTTPC_DEFAULT_MAX_BODY};
        bool no_body = h.status == 204 || h.status == 304 ||
                       (req->method && !strcmp(req->method, "HEAD"));
        if (no_body)
            rc = 0;
        else if (h.chunked)
            rc = body_chunked(&c, &o);
        else if (h.has_length)
            rc = body_bytes(&c, &o, h.length);
        else
            rc = body_to_close(&c, &o);
        if (!rc && !req->sink && !resp->body) {
            resp->body = calloc(1, 1);
            if (!resp->body)
                rc = HTTPC_E_NOMEM;
        }
        resp->status = h.status;
    }
    free(c.buf);
    if (rc) {
        free(resp->body);
        memset(resp, 0, sizeof(*resp));
    }
    return rc;
}

int httpc_request(const char *path, const struct httpc_request *req,
                  struct httpc_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t plen = strlen(path);
    if (plen == 0 || plen >= sizeof(addr.sun_path))
        return HTTPC_E_PATH;
    memcpy(addr.sun_path, path, plen + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return HTTPC_E_CONNECT;
    /* A blocking AF_UNIX connect waits while the listener's backlog is
     * full, for at most SO_SNDTIMEO (then EAGAIN). */
    if (req->head_timeout_ms > 0) {
        struct timeval tv = {.tv_sec = req->head_timeout_ms / 1000,
                             .tv_usec = (req->head_timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    int rc;
    do {
        rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        rc = errno == EAGAIN ? HTTPC_E_TIMEOUT : HTTPC_E_CONNECT;
        close(fd);
        return rc;
    }
    rc = httpc_exchange(fd, req, resp);
    close(fd);
    return rc;
}
