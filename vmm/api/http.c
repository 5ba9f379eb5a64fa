/* RFC 9110/9112 request checks (see api/http.h). Stricter than the RFCs
 * require in a few places, always towards refusing: lines end in CRLF (no
 * bare LF, which RFC 9112 2.2 only allows), no empty lines before the
 * request line, and no Transfer-Encoding at all (a 411: bodies come with
 * Content-Length). */
#include "vmm/api/http.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

__attribute__((format(printf, 3, 4)))
static void refuse(struct api_http_check *out, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->msg, sizeof(out->msg), fmt, ap);
    va_end(ap);
    out->verdict = API_HTTP_REFUSE;
    out->status = status;
}

/* RFC 9110 5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int api_http_hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A field value byte (RFC 9110 5.5): VCHAR, obs-text, SP, HTAB. NUL, CR, LF
 * and the other controls are refused, as RFC 9110 5.5 says they MUST be. */
static bool is_value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The end of the line starting at p (the offset of its '\n'), or -1 when the
 * line is not complete within buf[0..n). */
static long find_lf(const char *buf, size_t p, size_t n)
{
    const char *lf = memchr(buf + p, '\n', n - p);
    return lf ? (long)(lf - buf) : -1;
}

/* A line buf[p..lf) must end in CR and hold no other CR. */
static bool crlf_line(const char *buf, size_t p, size_t lf)
{
    if (lf == p || buf[lf - 1] != '\r')
        return false;
    return memchr(buf + p, '\r', lf - 1 - p) == NULL;
}

static bool request_line(const char *buf, size_t end, bool *http11, struct api_http_check *out)
{
    out->method.off = 0;
    size_t i = 0;
    while (i < end && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == 0 || i >= end || buf[i] != ' ') {
        refuse(out, 400, "malformed request line: expected METHOD SP TARGET SP HTTP/1.x");
        return false;
    }
    out->method.len = i;
    size_t t = ++i;
    while (i < end && buf[i] != ' ') {
        unsigned char c = (unsigned char)buf[i];
        if (c <= 0x20 || c >= 0x7f) {
            refuse(out, 400, "the request target has a byte 0x%02x that is not visible ASCII", c);
            return false;
        }
        if (c == '%') {
            if (i + 2 >= end || api_http_hex_digit((unsigned char)buf[i + 1]) < 0 ||
                api_http_hex_digit((unsigned char)buf[i + 2]) < 0) {
                refuse(out, 400, "the request target has a '%%' not followed by two hex digits");
                return false;
            }
            /* Decoded, %00 would be a NUL that cuts the path or value the
             * handlers see: /virtio-mem/node0%00x is not node0. */
            if (buf[i + 1] == '0' && buf[i + 2] == '0') {
                refuse(out, 400, "the request target has an encoded NUL (%%00)");
                return false;
            }
        }
        i++;
    }
    if (i == t || i >= end) {
        refuse(out, 400, "malformed request line: expected METHOD SP TARGET SP HTTP/1.x");
        return false;
    }
    out->target.off = t;
    out->target.len = i - t;
    const char *v = buf + i + 1;
    size_t vlen = end - i - 1;
    if (vlen == 8 && !memcmp(v, "HTTP/1.1", 8)) {
        *http11 = true;
        return true;
    }
    if (vlen == 8 && !memcmp(v, "HTTP/1.0", 8)) {
        *http11 = false;
        return true;
    }
    if (vlen == 8 && !memcmp(v, "HTTP/", 5) && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
        v[7] >= '0' && v[7] <= '9')
        refuse(out, 400, "HTTP version %.8s is not supported (HTTP/1.1 and HTTP/1.0 are)", v);
    else
        refuse(out, 400, "malformed request line: expected METHOD SP TARGET SP HTTP/1.x");
    return false;
}

struct head_fields {
    unsigned host, content_length, transfer_encoding;
    unsigned long long length;
    bool length_ok, expect_continue;
};

static bool name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && !strncasecmp(name, want, len);
}

/* One field line buf[p..end) (CRLF excluded). */
static bool field_line(const char *buf, size_t p, size_t end, struct head_fields *h,
                       struct api_http_check *out)
{
    if (buf[p] == ' ' || buf[p] == '\t') {
        refuse(out, 400, "a header line starts with whitespace (obsolete line folding)");
        return false;
    }
    size_t i = p;
    while (i < end && is_tchar((unsigned char)buf[i]))
        i++;
    if (i < end && (buf[i] == ' ' || buf[i] == '\t') && i > p) {
        refuse(out, 400, "whitespace between the header name '%.*s' and its colon", (int)(i - p),
               buf + p);
        return false;
    }
    if (i == p || i >= end || buf[i] != ':') {
        refuse(out, 400, "malformed header line: expected NAME: VALUE");
        return false;
    }
    const char *name = buf + p;
    size_t nlen = i - p;
    size_t v = i + 1, vend = end;
    for (size_t k = v; k < end; k++) {
        if (!is_value_byte((unsigned char)buf[k])) {
            refuse(out, 400, "header '%.*s' has a control character 0x%02x in its value",
                   (int)(nlen > 64 ? 64 : nlen), name, (unsigned char)buf[k]);
            return false;
        }
    }
    while (v < vend && (buf[v] == ' ' || buf[v] == '\t'))
        v++;
    while (vend > v && (buf[vend - 1] == ' ' || buf[vend - 1] == '\t'))
        vend--;
    const char *value = buf + v;
    size_t vlen = vend - v;

    if (name_is(name, nlen, "Host")) {
        h->host++;
    } else if (name_is(name, nlen, "Content-Length")) {
        h->content_length++;
        h->length_ok = vlen > 0 && vlen <= 18;
        h->length = 0;
        for (size_t k = 0; h->length_ok && k < vlen; k++) {
            if (value[k] < '0' || value[k] > '9')
                h->length_ok = false;
            else
                h->length = h->length * 10 + (unsigned)(value[k] - '0');
        }
    } else if (name_is(name, nlen, "Content-Type")) {
        if (!out->has_content_type) {
            out->has_content_type = true;
            out->content_type.off = v;
            out->content_type.len = vlen;
        }
    } else if (name_is(name, nlen, "Transfer-Encoding")) {
        h->transfer_encoding++;
    } else if (name_is(name, nlen, "Expect")) {
        h->expect_continue = vlen == 12 && !strncasecmp(value, "100-continue", 12);
    }
    return true;
}

/* The header section's meaning (RFC 9112 3.2, 6.1, 6.3). */
static bool head_semantics(const struct head_fields *h, bool http11, struct api_http_check *out)
{
    if (http11 && h->host != 1) {
        refuse(out, 400, h->host ? "%u Host headers: an HTTP/1.1 request has exactly one"
                                 : "no Host header: an HTTP/1.1 request has exactly one",
               h->host);
        return false;
    }
    if (!http11 && h->host > 1) {
        refuse(out, 400, "%u Host headers: a request has at most one", h->host);
        return false;
    }
    if (h->transfer_encoding && h->content_length) {
        refuse(out, 400, "both Content-Length and Transfer-Encoding: the body's length is "
                         "ambiguous");
        return false;
    }
    if (h->transfer_encoding) {
        /* RFC 9112 6.3 lets a server refuse a body without Content-Length
         * (411). The front door judges a request whole in the socket, and
         * a chunked body's end and framing would need a decoder for no
         * client's benefit (every client knows its body's length). */
        refuse(out, 411, "Transfer-Encoding is not accepted: send the body with "
                         "Content-Length (at most %d bytes)", API_HTTP_MAX_BODY);
        return false;
    }
    if (h->content_length > 1) {
        refuse(out, 400, "%u Content-Length headers", h->content_length);
        return false;
    }
    if (h->content_length && !h->length_ok) {
        refuse(out, 400, "Content-Length is not a decimal number of bytes");
        return false;
    }
    if (h->content_length && h->length > API_HTTP_MAX_BODY) {
        refuse(out, 413, "the request body is larger than %d bytes", API_HTTP_MAX_BODY);
        return false;
    }
    return true;
}

void api_http_check(const char *buf, size_t n, struct api_http_check *out)
{
    memset(out, 0, sizeof(*out));
    out->verdict = API_HTTP_INCOMPLETE;

    size_t scan = n < API_HTTP_MAX_REQUEST_LINE + 2 ? n : API_HTTP_MAX_REQUEST_LINE + 2;
    long lf = find_lf(buf, 0, scan);
    if (lf < 0) {
        if (n > API_HTTP_MAX_REQUEST_LINE + 1)
            refuse(out, 414, "the request line is longer than %d bytes",
                   API_HTTP_MAX_REQUEST_LINE);
        else if (memchr(buf, '\0', n))  /* no line ever makes this valid */
            refuse(out, 400, "a NUL byte in the request line");
        return;
    }
    if (!crlf_line(buf, 0, (size_t)lf)) {
        refuse(out, 400, lf == 0 || (lf == 1 && buf[0] == '\r')
                             ? "an empty line where the request line belongs"
                             : "the request line does not end in CRLF or has a bare CR");
        return;
    }
    bool http11 = false;
    if (!request_line(buf, (size_t)lf - 1, &http11, out))
        return;

    struct head_fields h = {0};
    size_t p = (size_t)lf + 1;
    for (;;) {
        size_t limit = n < API_HTTP_MAX_HEAD + 1 ? n : API_HTTP_MAX_HEAD + 1;
        lf = p < limit ? find_lf(buf, p, limit) : -1;
        if (lf < 0) {
            if (n > API_HTTP_MAX_HEAD)
                refuse(out, 431, "the request line and headers are larger than %d bytes",
                       API_HTTP_MAX_HEAD);
            return;
        }
        if (!crlf_line(buf, p, (size_t)lf)) {
            refuse(out, 400, "a header line does not end in CRLF or has a bare CR");
            return;
        }
        if ((size_t)lf - 1 == p) {
            p = (size_t)lf + 1;
            break;
        }
        if (!field_line(buf, p, (size_t)lf - 1, &h, out))
            return;
        p = (size_t)lf + 1;
    }
    if (!head_semantics(&h, http11, out))
        return;
    out->head_done = true;
    out->expect_continue = h.expect_continue && http11;

    size_t want = p + (size_t)(h.content_length ? h.length : 0);
    if (n >= want) {
        out->verdict = API_HTTP_COMPLETE;
        out->length = want;
        out->http11 = http11;
        out->body.off = p;
        out->body.len = want - p;
    }
}
