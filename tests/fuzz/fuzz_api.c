/* The API's request handling without a socket: the routing decision
 * (api_route_decide: path, method, query names, Content-Type -> a handler
 * or 400/404/405/415) and, for requests that reach PATCH /virtio-mem/{id}
 * or PUT /vm/actions, the parsing of ?wait and of the JSON body.
 *
 * Input, as text so seeds stay readable:
 *   METHOD \n PATH[?QUERY] \n CONTENT-TYPE (empty line: none) \n BODY
 * QUERY is split like a URL's: '&' between parameters, '=' before a value. */
#include <errno.h>
#include <math.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/api/internal.h"
#include "vmm/api/parse.h"

#define MAX_QUERY 16

struct query {
    unsigned n;
    char *key[MAX_QUERY];
    char *value[MAX_QUERY];     /* NULL: "?key" without '=' */
    bool bad;                   /* what api_route_begin's header check refuses */
};

/* Cuts the next '\n'-terminated line off *p as a NUL-terminated copy;
 * *nul says whether it held a NUL byte (which a C string would cut). */
static char *next_line(const uint8_t **p, size_t *n, bool *nul)
{
    const uint8_t *end = memchr(*p, '\n', *n);
    size_t len = end ? (size_t)(end - *p) : *n;
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, *p, len);
    s[len] = '\0';
    if (nul)
        *nul = strlen(s) != len;
    *p += end ? len + 1 : len;
    *n -= end ? len + 1 : len;
    return s;
}

static void split_query(char *q, struct query *out)
{
    for (char *part = q; part && out->n < MAX_QUERY;) {
        char *amp = strchr(part, '&');
        if (amp)
            *amp = '\0';
        char *eq = strchr(part, '=');
        if (eq)
            *eq = '\0';
        out->key[out->n] = part;
        out->value[out->n] = eq ? eq + 1 : NULL;
        out->bad |= !*part;
        out->n++;
        part = amp ? amp + 1 : NULL;
    }
}

static void each_key(void *ctx, bool (*fn)(void *arg, const char *key), void *arg)
{
    const struct query *q = ctx;
    for (unsigned i = 0; i < q->n; i++)
        if (!fn(arg, q->key[i]))
            return;
}

static void check_resize(const struct query *q, const char *body, size_t len)
{
    bool wait_given = false;
    const char *wait = NULL;
    for (unsigned i = 0; i < q->n; i++) {
        if (!strcmp(q->key[i], "wait") && !wait_given) {
            wait_given = true;
            wait = q->value[i];
        }
    }
    uint64_t requested;
    double wait_s = -1;
    char err[256] = "";
    int rc = api_parse_resize(body, len, wait_given, wait, &requested, &wait_s, err,
                              sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -EINVAL);
    if (rc)
        FUZZ_CHECK(err[0] && strnlen(err, sizeof(err)) < sizeof(err));
    else if (wait_given)
        FUZZ_CHECK(isfinite(wait_s) && wait_s > 0 && wait_s <= 3600);
    else
        FUZZ_CHECK(wait_s == 0);
}

static void check_action(const char *body, size_t len)
{
    char action[16] = "", err[256] = "";
    int rc = api_parse_action(body, len, action, sizeof(action), err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -EINVAL);
    if (rc)
        FUZZ_CHECK(err[0]);
    else
        FUZZ_CHECK(!strcmp(action, "shutdown") || !strcmp(action, "reboot"));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_mute_log();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t n = size;
    bool nul_method, nul_url, nul_type;
    char *method = next_line(&p, &n, &nul_method);
    char *url = next_line(&p, &n, &nul_url);
    char *type = next_line(&p, &n, &nul_type);

    /* MHD hands the handler the path and the parsed query apart. */
    struct query q = {.bad = nul_url || nul_type};
    char *qmark = strchr(url, '?');
    if (qmark) {
        *qmark = '\0';
        split_query(qmark + 1, &q);
    }
    struct api_route_in in = {
        .url = url,
        .method = method,
        .content_type = *type ? type : NULL,
        .bad_value = q.bad,
        .query_keys = each_key,
        .query_ctx = &q,
    };
    struct api_request r;
    memset(&r, 0, sizeof(r));
    api_route_decide(&in, &r);

    unsigned st = r.err_status;
    FUZZ_CHECK(st == 0 || st == 400 || st == 404 || st == 405 || st == 415);
    FUZZ_CHECK(strnlen(r.id, sizeof(r.id)) < sizeof(r.id));
    FUZZ_CHECK(strnlen(r.err_msg, sizeof(r.err_msg)) < sizeof(r.err_msg));
    FUZZ_CHECK((st == 405) == (r.err_allow != NULL));
    FUZZ_CHECK(st == 0 ? r.method != NULL : r.err_msg[0] != '\0');
    FUZZ_CHECK(st != 405 || r.method == NULL);

    /* The handlers parse only what routing let through. */
    if (st == 0 && !strcmp(method, "PATCH"))
        check_resize(&q, (const char *)p, n);
    if (st == 0 && !strcmp(method, "PUT"))
        check_action((const char *)p, n);

    free(method);
    free(url);
    free(type);
    return 0;
}
