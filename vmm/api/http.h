/* The API's HTTP/1.1 request check: a pure function of the bytes a client
 * has sent so far. The front door (api/front.c) runs it on every request
 * until it is whole, and refuses what RFC 9112 says MUST be refused (two
 * Host headers, a space before a colon, NUL or bare CR in a value,
 * Content-Length with Transfer-Encoding); for a whole request it also says
 * where its parts lie, which api/request.c decodes. */
#ifndef MINIVMM_API_HTTP_H
#define MINIVMM_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define API_HTTP_MAX_BODY (64 * 1024)       /* 413 beyond */
#define API_HTTP_MAX_REQUEST_LINE 4096      /* 414 beyond */
#define API_HTTP_MAX_HEAD 8192              /* 431 beyond: request line and header lines */
/* The most a request takes: the front door peeks at the whole of it. */
#define API_HTTP_MAX_WIRE (API_HTTP_MAX_HEAD + API_HTTP_MAX_BODY)

enum api_http_verdict {
    API_HTTP_INCOMPLETE,        /* well-formed so far: wait for more */
    API_HTTP_COMPLETE,          /* a whole, well-formed request */
    API_HTTP_REFUSE,            /* status and msg say why */
};

struct api_http_check {
    enum api_http_verdict verdict;
    unsigned status;            /* REFUSE: 400, 411, 413, 414 or 431 */
    char msg[192];              /* REFUSE: the reason, for the JSON error */
    bool head_done;             /* the header section is complete and valid */
    bool expect_continue;       /* Expect: 100-continue was asked (with head_done) */
    size_t length;              /* COMPLETE: the request's bytes, head and body */
    /* COMPLETE: where the parts lie in the buffer (offsets, lengths). */
    struct api_http_span {
        size_t off, len;
    } method, target, content_type, body;
    bool has_content_type;      /* the first Content-Type header is content_type */
    bool http11;                /* HTTP/1.1 (else HTTP/1.0) */
};

/* The value of a hex digit, or -1. */
int api_http_hex_digit(unsigned char c);

/* Judges buf[0..n), the start of what the client sent (n <= API_HTTP_MAX_WIRE
 * is enough to decide). */
void api_http_check(const char *buf, size_t n, struct api_http_check *out);

#endif
