/* A whole, checked request (api/http.h) taken apart for routing: the
 * method, the path and the query parameters percent-decoded, the
 * Content-Type and the body. A pure function of the bytes, so the routing
 * sees exactly what the front door judged. */
#ifndef MINIVMM_API_REQUEST_H
#define MINIVMM_API_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/api/http.h"

/* At most this many query parameters; more is a 400 like any unknown one
 * (no route takes more than one). */
#define API_MAX_QUERY 16

struct api_query_param {
    char *key;
    char *value;                /* NULL: "?key" without '=' */
};

struct api_http_request {
    char *method;
    char *path;                 /* the target before '?', decoded */
    char *content_type;         /* NULL: no Content-Type header */
    const char *body;           /* into the caller's buffer */
    size_t body_len;
    bool http11;
    bool head;                  /* HEAD: the answer carries no body */
    /* A query parameter with an empty name, or more than API_MAX_QUERY. */
    bool bad_query;
    unsigned n_query;
    struct api_query_param query[API_MAX_QUERY];
};

/* Takes apart buf, which chk judged API_HTTP_COMPLETE. Query keys and
 * values turn '+' into a space and %XX into its byte, as HTML forms encode
 * them; the path decodes %XX only. Returns 0 or -ENOMEM; free with
 * api_request_free either way. */
int api_request_parse(const char *buf, const struct api_http_check *chk,
                      struct api_http_request *out);

void api_request_free(struct api_http_request *r);

/* The first query parameter named key: *present says whether there is one;
 * the value is NULL when it has no '='. */
const char *api_request_query(const struct api_http_request *r, const char *key, bool *present);

#endif
