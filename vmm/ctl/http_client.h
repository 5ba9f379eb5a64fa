/* A small HTTP/1.1 client over a Unix socket, for `minivmm ctl`: one request
 * per connection (the API answers with "Connection: close"), bodies framed by
 * Content-Length, chunked transfer coding or the connection's close. Bounded:
 * the response head is at most HTTPC_MAX_HEAD bytes, a collected body at most
 * max_body; every wait is a poll() against a deadline. */
#ifndef MINIVMM_CTL_HTTP_CLIENT_H
#define MINIVMM_CTL_HTTP_CLIENT_H

#include <stddef.h>

#define HTTPC_MAX_HEAD (64 * 1024)          /* status line and header lines */
#define HTTPC_DEFAULT_MAX_BODY (64u << 20)  /* a collected (not streamed) body */

enum httpc_error {
    HTTPC_OK = 0,
    HTTPC_E_PATH,           /* the socket path does not fit a sockaddr_un */
    HTTPC_E_CONNECT,
    HTTPC_E_SEND,
    HTTPC_E_RECV,
    HTTPC_E_TIMEOUT,
    HTTPC_E_NOTHING,        /* closed before a single byte of answer */
    HTTPC_E_HEAD_CUT,       /* closed in the middle of the head */
    HTTPC_E_STATUS,         /* malformed status line */
    HTTPC_E_HEADER,         /* malformed header line */
    HTTPC_E_LENGTH,         /* bad or conflicting Content-Length */
    HTTPC_E_HEAD_TOO_BIG,
    HTTPC_E_CHUNK,          /* malformed chunked transfer coding */
    HTTPC_E_PARTIAL,        /* closed before the body's end */
    HTTPC_E_BODY_TOO_BIG,
    HTTPC_E_NOMEM,
    HTTPC_E_SINK,           /* the body sink refused data */
};

/* Receives the (de-chunked) body as it arrives; returns 0, or -1 to stop
 * (the request then fails with HTTPC_E_SINK). */
typedef int (*httpc_sink_fn)(void *opaque, const char *data, size_t len);

struct httpc_request {
    const char *method;
    const char *target;         /* origin-form, sent as given: "/vm?x=1" */
    const char *content_type;   /* with body only */
    const char *body;           /* NULL: no body */
    size_t body_len;
    /* Milliseconds, <= 0 for none: until the whole head has arrived
     * (connecting and sending included), and until the body's end. */
    int head_timeout_ms;
    int total_timeout_ms;
    httpc_sink_fn sink;         /* NULL: the body is collected in the response */
    void *sink_arg;
    size_t max_body;            /* collected body; 0: HTTPC_DEFAULT_MAX_BODY */
};

struct httpc_response {
    int status;
    char *body;                 /* NUL-terminated (collected bodies only); free() it */
    size_t body_len;
};

/* Connects to the Unix socket at path and runs req. Returns HTTPC_OK with
 * *resp filled (the caller frees resp->body), or an error with resp->body
 * NULL. */
int httpc_request(const char *path, const struct httpc_request *req,
                  struct httpc_response *resp);

/* The same on an already connected stream socket (closed by neither). */
int httpc_exchange(int fd, const struct httpc_request *req, struct httpc_response *resp);

const char *httpc_strerror(int err);

/* Percent-encodes every byte except RFC 3986's unreserved characters;
 * returns a malloc'd string or NULL. */
char *httpc_escape(const char *s);

#endif
