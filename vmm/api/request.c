/* Decoding a checked request (api/request.h). api_http_check has refused
 * malformed targets already: every '%' is followed by two hex digits and
 * none encodes a NUL, so decoding cannot fail or cut a string short. */
#include "vmm/api/request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A NUL-terminated, decoded copy of p[0..len). */
static char *decode(const char *p, size_t len, bool plus_is_space)
{
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (p[i] == '%' && i + 2 < len &&
            (hi = api_http_hex_digit((unsigned char)p[i + 1])) >= 0 &&
            (lo = api_http_hex_digit((unsigned char)p[i + 2])) >= 0) {
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else if (plus_is_space && p[i] == '+') {
            *o++ = ' ';
        } else {
            *o++ = p[i];
        }
    }
    *o = '\0';
    return out;
}

static int parse_query(const char *q, size_t len, struct api_http_request *out)
{
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(q + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - q) : len;
        const char *part = q + i;
        size_t plen = end - i;
        i = end + (amp ? 1 : 0);
        const char *eq = memchr(part, '=', plen);
        size_t klen = eq ? (size_t)(eq - part) : plen;
        if (klen == 0 || out->n_query == API_MAX_QUERY) {
            out->bad_query = true;
            continue;
        }
        struct api_query_param *qp = &out->query[out->n_query];
        qp->key = decode(part, klen, true);
        qp->value = eq ? decode(eq + 1, plen - klen - 1, true) : NULL;
        out->n_query++;
        if (!qp->key || (eq && !qp->value))
            return -ENOMEM;
    }
    return 0;
}

int api_request_parse(const char *buf, const struct api_http_check *chk,
                      struct api_http_request *out)
{
    memset(out, 0, sizeof(*out));
    out->http11 = chk->http11;
    out->body = buf + chk->body.off;
    out->body_len = chk->body.len;
    out->method = strndup(buf + chk->method.off, chk->method.len);
    if (!out->method)
        return -ENOMEM;
    out->head = !strcmp(out->method, "HEAD");
    if (chk->has_content_type) {
        out->content_type = strndup(buf + chk->content_type.off, chk->content_type.len);
        if (!out->content_type)
            return -ENOMEM;
    }
    const char *t = buf + chk->target.off;
    size_t tlen = chk->target.len;
    const char *qmark = memchr(t, '?', tlen);
    size_t plen = qmark ? (size_t)(qmark - t) : tlen;
    out->path = decode(t, plen, false);
    if (!out->path)
        return -ENOMEM;
    if (qmark)
        return parse_query(qmark + 1, tlen - plen - 1, out);
    return 0;
}

void api_request_free(struct api_http_request *r)
{
    free(r->method);
    free(r->path);
    free(r->content_type);
    for (unsigned i = 0; i < r->n_query; i++) {
        free(r->query[i].key);
        free(r->query[i].value);
    }
    memset(r, 0, sizeof(*r));
}

const char *api_request_query(const struct api_http_request *r, const char *key, bool *present)
{
    for (unsigned i = 0; i < r->n_query; i++) {
        if (!strcmp(r->query[i].key, key)) {
            *present = true;
            return r->query[i].value;
        }
    }
    *present = false;
    return NULL;
}
