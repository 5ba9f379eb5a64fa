/* The API's resources: the route table (paths, methods, query parameters,
 * whether a JSON body is expected) and the handlers. The order of checks is
 * 404, 405, 400 (query), 415, 413, then the handler's own 404/400. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "vmm/api/internal.h"
#include "vmm/api/json.h"
#include "vmm/api/parse.h"
#include "vmm/clock.h"
#include "vmm/events.h"
#include "vmm/test_hooks.h"
#include "vmm/vm_control.h"

typedef int (*api_handler)(struct api_server *s, struct api_conn *c, struct api_request *r);

struct api_method {
    const char *name;           /* NULL ends the list */
    api_handler handler;
    bool json_body;             /* needs Content-Type: application/json */
    const char *query;          /* the one query parameter allowed, or NULL */
};

struct api_route {
    const char *path;           /* exact, or the prefix before {id} */
    bool takes_id;
    const char *allow;          /* the Allow header of a 405 */
    struct api_method methods[3];
};

static int get_vm(struct api_server *s, struct api_conn *c,
                              struct api_request *r)
{
    (void)r;
    struct vmc_vm_info info;
    vmc_vm_info(s->vm, &info);
    return api_send_json(c, 200, api_json_vm(&info));
}

static int get_virtio_mem_list(struct api_server *s, struct api_conn *c,
                                           struct api_request *r)
{
    (void)r;
    json_t *list = json_array();
    unsigned n = vmc_virtio_mem_count(s->vm);
    for (unsigned i = 0; list && i < n; i++) {
        struct vmc_virtio_mem_info d;
        if (vmc_virtio_mem_at(s->vm, i, &d) != 0)
            continue;
        if (json_array_append_new(list, api_json_virtio_mem(&d)) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    return api_send_json(c, 200, list ? json_pack("{s:o}", "devices", list) : NULL);
}

static int no_such_device(struct api_conn *c, const struct api_request *r)
{
    return api_send_error(c, 404, NULL, "no virtio-mem device '%s%s'", r->id,
                          r->id_too_long ? "..." : "");
}

/* vmc_virtio_mem_get for the request's exact ID. */
static int device_get(struct api_server *s, const struct api_request *r,
                      struct vmc_virtio_mem_info *d)
{
    return r->id_too_long ? -ENOENT : vmc_virtio_mem_get(s->vm, r->id, d);
}

static int get_virtio_mem(struct api_server *s, struct api_conn *c,
                                      struct api_request *r)
{
    struct vmc_virtio_mem_info d;
    if (device_get(s, r, &d) != 0)
        return no_such_device(c, r);
    return api_send_json(c, 200, api_json_virtio_mem(&d));
}

/* Waits until the guest has plugged what was requested: the device is
 * looked at again on each event (every plug or unplug the device answers
 * publishes one), so the answer leaves as soon as the guest's last request
 * lands, and every API_POLL_MS for a client that hung up (else an abandoned
 * ?wait=3600 would hold its thread and slot for an hour). Returns 1
 * reached, 0 timed out, -ENOENT device gone, -EPIPE client gone. */
static int wait_plugged(struct api_server *s, struct api_conn *c, const char *id,
                        double seconds, struct vmc_virtio_mem_info *d)
{
    double deadline = clock_seconds(CLOCK_MONOTONIC) + seconds;
    struct event_bus *bus = vmc_events(s->vm);
    /* Taken before the first look, so an event after it is not missed. */
    uint64_t cursor = event_bus_last(bus);
    int recheck_ms = test_hook_api_wait_recheck_ms(API_POLL_MS);
    int result;
    for (;;) {
        if (vmc_virtio_mem_get(s->vm, id, d) != 0) {
            result = -ENOENT;
            break;
        }
        if (d->plugged_size == d->requested_size) {
            result = 1;
            break;
        }
        if (api_client_gone(c)) {
            result = -EPIPE;
            break;
        }
        double left = deadline - clock_seconds(CLOCK_MONOTONIC);
        if (left <= 0 || atomic_load(&s->stopping)) {
            result = 0;
            break;
        }
        double step = left < recheck_ms / 1000.0 ? left : recheck_ms / 1000.0;
        char line[EVENT_MAX_LEN + 1];
        if (event_bus_next(bus, &cursor, line, sizeof(line), (int)(step * 1000) + 1) < 0) {
            /* The bus is closed (the VMM is exiting): no more events. */
            struct timespec ts = {(time_t)step, (long)((step - (double)(time_t)step) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    return result;
}

static int patch_virtio_mem(struct api_server *s, struct api_conn *c,
                                        struct api_request *r)
{
    struct vmc_virtio_mem_info d;
    if (device_get(s, r, &d) != 0)
        return no_such_device(c, r);

    bool waiting;
    const char *wait = api_request_query(&c->req, "wait", &waiting);
    uint64_t requested;
    double wait_s;
    char err[256];
    int rc = api_parse_resize(r->body, r->len, waiting, wait, &requested, &wait_s, err,
                              sizeof(err));
    if (rc)
        return api_send_error(c, 400, NULL, "%s", err);

    /* Taken before the resize, so a 429 changes nothing. */
    if (waiting && !api_long_begin(s))
        return api_send_error(c, 429, NULL,
                              "too many event streams and waiting requests (%d); try again "
                              "later", API_MAX_LONG);
    rc = vmc_virtio_mem_resize(s->vm, r->id, requested, err, sizeof(err));
    if (rc && waiting)
        api_long_end(s);
    if (rc == -ENOENT)
        return no_such_device(c, r);
    if (rc == -EINVAL)
        return api_send_error(c, 400, NULL, "%s", err);
    if (rc)
        return api_send_error(c, 500, NULL, "%s", err);

    if (!waiting) {
        if (vmc_virtio_mem_get(s->vm, r->id, &d) != 0)
            return no_such_device(c, r);
        return api_send_json(c, 202, api_json_virtio_mem(&d));
    }
    rc = wait_plugged(s, c, r->id, wait_s, &d);
    api_long_end(s);
    if (rc == -EPIPE)
        return -1;              /* nobody to answer: close */
    if (rc < 0)
        return no_such_device(c, r);
    if (rc == 1)
        return api_send_json(c, 200, api_json_virtio_mem(&d));
    json_t *dev = api_json_virtio_mem(&d);
    if (dev && json_object_set_new(dev, "timed_out", json_true()) != 0) {
        json_decref(dev);
        dev = NULL;
    }
    return api_send_json(c, 202, dev);
}

static int put_actions(struct api_server *s, struct api_conn *c,
                                   struct api_request *r)
{
    (void)s;
    char action[sizeof(r->action)], err[256];
    if (api_parse_action(r->body, r->len, action, sizeof(action), err, sizeof(err)) != 0)
        return api_send_error(c, 400, NULL, "%s", err);
    /* Taken at completion (api/server.c), once this reply is sent. */
    snprintf(r->action, sizeof(r->action), "%s", action);
    return api_send_json(c, 202, json_pack("{s:s}", "action", action));
}

static int get_metrics(struct api_server *s, struct api_conn *c,
                                   struct api_request *r)
{
    (void)r;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return api_send_error(c, 500, NULL, "open_memstream: %s",
                              strerror(errno));
    vmc_metrics(s->vm, f);
    if (fclose(f) != 0) {
        free(text);
        return api_send_error(c, 500, NULL,
                              "could not format the metrics");
    }
    return api_send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static int get_events(struct api_server *s, struct api_conn *c,
                                  struct api_request *r)
{
    (void)r;
    return api_events_get(s, c);
}

/* Keep in step with docs/openapi.json (tests/api checks both ways). */
static const struct api_route routes[] = {
    {"/vm", false, "GET", {{"GET", get_vm, false, NULL}}},
    {"/vm/actions", false, "PUT", {{"PUT", put_actions, true, NULL}}},
    {"/virtio-mem", false, "GET", {{"GET", get_virtio_mem_list, false, NULL}}},
    {"/virtio-mem/", true, "GET, PATCH",
     {{"GET", get_virtio_mem, false, NULL}, {"PATCH", patch_virtio_mem, true, "wait"}}},
    {"/events", false, "GET", {{"GET", get_events, false, "since"}}},
    {"/metrics", false, "GET", {{"GET", get_metrics, false, NULL}}},
};

static const struct api_route *find_route(const char *url, struct api_request *r)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct api_route *rt = &routes[i];
        if (!rt->takes_id) {
            if (!strcmp(url, rt->path))
                return rt;
            continue;
        }
        size_t n = strlen(rt->path);
        const char *id = url + n;
        if (strncmp(url, rt->path, n) != 0 || !*id || strchr(id, '/'))
            continue;
        /* IDs are exact: one too long for r->id is no device's, and must
         * not be cut to one that is (the handlers' 404). */
        r->id_too_long = strlen(id) >= sizeof(r->id);
        snprintf(r->id, sizeof(r->id), "%s", id);
        return rt;
    }
    return NULL;
}

struct query_check {
    const char *allowed;
    char bad[64];
};

static bool check_query_key(void *cls, const char *key)
{
    struct query_check *q = cls;
    if (q->allowed && !strcmp(key, q->allowed))
        return true;
    snprintf(q->bad, sizeof(q->bad), "%s", key);
    return false;               /* stop at the first unknown one */
}

/* "application/json", any case, optionally with parameters ("; charset=utf-8"). */
static bool is_json(const char *content_type)
{
    static const char want[] = "application/json";
    if (!content_type)
        return false;
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    if (strncasecmp(content_type, want, sizeof(want) - 1) != 0)
        return false;
    const char *rest = content_type + sizeof(want) - 1;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    return *rest == '\0' || *rest == ';';
}

__attribute__((format(printf, 4, 5)))
static void note_error(struct api_request *r, unsigned status, const char *allow,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err_msg, sizeof(r->err_msg), fmt, ap);
    va_end(ap);
    r->err_status = status;
    r->err_allow = allow;
}

void api_route_decide(const struct api_route_in *in, struct api_request *r)
{
    if (in->bad_value) {
        note_error(r, 400, NULL,
                   "a header or query parameter has an empty name or a NUL character");
        return;
    }
    const char *url = in->url, *method = in->method;
    const struct api_route *rt = find_route(url, r);
    if (!rt) {
        note_error(r, 404, NULL, "no such resource: %.200s", url);
        return;
    }
    const struct api_method *m = NULL;
    for (const struct api_method *k = rt->methods; k->name; k++) {
        if (!strcmp(k->name, method))
            m = k;
    }
    if (!m) {
        note_error(r, 405, rt->allow,
                   "method %.32s not allowed on %.200s (allowed: %s)", method, url, rt->allow);
        return;
    }
    r->method = m;

    struct query_check q = {.allowed = m->query};
    in->query_keys(in->query_ctx, check_query_key, &q);
    if (q.bad[0]) {
        note_error(r, 400, NULL, "unknown query parameter '%s'", q.bad);
        return;
    }
    if (m->json_body && !is_json(in->content_type))
        note_error(r, 415, NULL,
                   "%s %s needs Content-Type: application/json", method, rt->path);
}

static void request_query_keys(void *ctx, bool (*fn)(void *arg, const char *key), void *arg)
{
    const struct api_http_request *req = ctx;
    for (unsigned i = 0; i < req->n_query; i++) {
        if (!fn(arg, req->query[i].key))
            return;
    }
}

int api_route_serve(struct api_server *s, struct api_conn *c, struct api_request *r)
{
    struct api_route_in in = {
        .url = c->req.path,
        .method = c->req.method,
        .content_type = c->req.content_type,
        .bad_value = c->req.bad_query,
        .query_keys = request_query_keys,
        .query_ctx = &c->req,
    };
    api_route_decide(&in, r);
    if (r->err_status)
        return api_send_error(c, r->err_status, r->err_allow, "%s", r->err_msg);
    return r->method->handler(s, c, r);
}
