#include "vmm/ctl/ctl.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/ctl/http_client.h"
#include "vmm/size_parse.h"

static const char ctl_usage[] =
    "usage: minivmm ctl --api-sock PATH [--json] COMMAND\n"
    "\n"
    "  status                      the VM and its virtio-mem devices\n"
    "  resize ID SIZE [--wait S]   set a virtio-mem device's requested size (K/M/G/T);\n"
    "                              with --wait, until the guest has plugged it (exit 3\n"
    "                              if S seconds pass first)\n"
    "  events [--since N]          follow the VM's events until it exits (with\n"
    "                              --since, first those after event N; 0: all kept)\n"
    "  shutdown | reboot           stop the VM / reset it\n";

struct buffer {
    char *data;
    size_t len;
};

struct ctl {
    const char *sock;
    bool json;
};

/* How long the API may take: to answer at all, and to answer an ordinary
 * request whole (a ?wait request gets its wait on top). An event stream
 * has no end deadline: it may be quiet for hours and ends with the VMM. */
#define CTL_HEAD_TIMEOUT_MS (120 * 1000)
#define CTL_TOTAL_TIMEOUT_MS (120 * 1000)

static int collect(struct buffer *b, const char *ptr, size_t add)
{
    char *p = realloc(b->data, b->len + add + 1);
    if (!p)
        return -1;
    memcpy(p + b->len, ptr, add);
    b->len += add;
    p[b->len] = '\0';
    b->data = p;
    return 0;
}

/* One request; *status gets the HTTP status, *out the response (caller
 * frees) unless a sink takes it. extra_ms: beyond the usual deadline; < 0
 * for a stream without an end deadline. Returns 0, or -1 with the
 * transport problem printed. */
static int request(struct ctl *c, const char *method, const char *path, const char *body,
                   long *status, char **out, httpc_sink_fn sink, void *sink_arg, int extra_ms)
{
    struct httpc_request req = {
        .method = method,
        .target = path,
        .content_type = body ? "application/json" : NULL,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .head_timeout_ms = CTL_HEAD_TIMEOUT_MS + (extra_ms > 0 ? extra_ms : 0),
        .total_timeout_ms = extra_ms < 0 ? 0 : CTL_TOTAL_TIMEOUT_MS + extra_ms,
        .sink = sink,
        .sink_arg = sink_arg,
    };
    struct httpc_response resp;
    int rc = httpc_request(c->sock, &req, &resp);
    if (rc != HTTPC_OK) {
        fprintf(stderr, "minivmm ctl: %s %s on %s: %s\n", method, path, c->sock,
                httpc_strerror(rc));
        return -1;
    }
    *status = resp.status;
    if (out)
        *out = resp.body ? resp.body : strdup("");
    else
        free(resp.body);
    return 0;
}

/* Prints the API's {"error": ...} for a failed call. */
static int api_error(const char *what, long status, const char *body)
{
    json_t *j = json_loads(body, 0, NULL);
    const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
    fprintf(stderr, "minivmm ctl: %s: %s (HTTP %ld)\n", what, msg ? msg : body, status);
    json_decref(j);
    return 1;
}

static const char *fmt_size(json_t *obj, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return "?";
    return size_format((uint64_t)json_integer_value(v), buf, (unsigned)len);
}

static void print_device(json_t *d)
{
    char a[32], b[32], c[32], e[32];
    printf("  %-12s node %-2lld plugged %-8s of requested %-8s region %-8s host %s, driver %s\n",
           json_string_value(json_object_get(d, "id")),
           (long long)json_integer_value(json_object_get(d, "node")),
           fmt_size(d, "plugged_size", a, sizeof(a)), fmt_size(d, "requested_size", b, sizeof(b)),
           fmt_size(d, "region_size", c, sizeof(c)),
           fmt_size(d, "host_backed_bytes", e, sizeof(e)),
           json_string_value(json_object_get(d, "driver_state")));
}

static int cmd_status(struct ctl *c)
{
    long st1, st2;
    char *vm = NULL, *devs = NULL;
    if (request(c, "GET", "/vm", NULL, &st1, &vm, NULL, NULL, 0) ||
        request(c, "GET", "/virtio-mem", NULL, &st2, &devs, NULL, NULL, 0)) {
        free(vm);
        return 1;
    }
    int rc = 0;
    if (st1 != 200)
        rc = api_error("GET /vm", st1, vm);
    else if (st2 != 200)
        rc = api_error("GET /virtio-mem", st2, devs);
    else if (c->json) {
        printf("{\"vm\":%s,\"virtio_mem\":%s}\n", vm, devs);
    } else {
        json_t *v = json_loads(vm, 0, NULL), *d = json_loads(devs, 0, NULL);
        char m[32];
        printf("VM %s: %lld vCPUs, %s boot memory, up %.1f s, %lld reboots (minivmm %s)\n",
               json_string_value(json_object_get(v, "state")),
               (long long)json_integer_value(json_object_get(v, "vcpus")),
               fmt_size(v, "boot_memory", m, sizeof(m)),
               json_number_value(json_object_get(v, "uptime_s")),
               (long long)json_integer_value(json_object_get(v, "reboots")),
               json_string_value(json_object_get(v, "version")));
        json_t *arr = json_object_get(d, "devices");
        size_t i;
        json_t *dev;
        printf("virtio-mem devices: %zu\n", json_array_size(arr));
        json_array_foreach(arr, i, dev)
            print_device(dev);
        json_decref(v);
        json_decref(d);
    }
    free(vm);
    free(devs);
    return rc;
}

static int cmd_resize(struct ctl *c, const char *id, const char *size, const char *wait)
{
    uint64_t bytes;
    const char *why;
    if (size_parse(size, &bytes, &why) != 0) {
        fprintf(stderr, "minivmm ctl: resize: size '%s': %s\n", size, why);
        return 2;
    }
    int wait_ms = 0;
    if (wait) {
        char *end;
        double w = strtod(wait, &end);
        if (*end || end == wait || !(w > 0 && w <= 3600)) {
            fprintf(stderr, "minivmm ctl: resize: --wait '%s': seconds, more than 0, up to 3600\n",
                    wait);
            return 2;
        }
        wait_ms = (int)(w * 1000) + 1;
    }
    char path[256], body[64];
    char *esc = httpc_escape(id);
    snprintf(path, sizeof(path), "/virtio-mem/%s%s%s", esc ? esc : id, wait ? "?wait=" : "",
             wait ? wait : "");
    free(esc);
    snprintf(body, sizeof(body), "{\"requested_size\":%llu}", (unsigned long long)bytes);
    long st;
    char *out = NULL;
    if (request(c, "PATCH", path, body, &st, &out, NULL, NULL, wait_ms))
        return 1;
    int rc = 0;
    if (st != 200 && st != 202) {
        rc = api_error("resize", st, out);
    } else {
        json_t *d = json_loads(out, 0, NULL);
        bool timed_out = json_is_true(json_object_get(d, "timed_out"));
        if (c->json) {
            printf("%s\n", out);
        } else {
            char a[32], b[32];
            printf("%s: requested %s, plugged %s%s\n", id, fmt_size(d, "requested_size", a, 32),
                   fmt_size(d, "plugged_size", b, 32),
                   !wait ? " (the guest follows)" : timed_out ? " (timed out waiting)" : "");
        }
        if (timed_out)
            rc = CTL_EXIT_TIMEOUT;
        json_decref(d);
    }
    free(out);
    return rc;
}

#define EVENT_LINE_LIMIT (64 * 1024)

struct event_printer {
    bool json;
    struct buffer line;
};

static void print_event(struct event_printer *p, const char *line)
{
    if (p->json) {
        printf("%s\n", line);
    } else {
        json_t *e = json_loads(line, 0, NULL);
        if (!e) {
            printf("%s\n", line);
            return;
        }
        printf("%s %s", json_string_value(json_object_get(e, "time")),
               json_string_value(json_object_get(e, "event")));
        const char *key;
        json_t *v;
        json_object_foreach(e, key, v) {
            if (!strcmp(key, "time") || !strcmp(key, "event") || !strcmp(key, "seq"))
                continue;
            char *txt = json_dumps(v, JSON_ENCODE_ANY);
            printf(" %s=%s", key, txt ? txt : "?");
            free(txt);
        }
        printf("\n");
        json_decref(e);
    }
    fflush(stdout);
}

static int event_chunk(void *opaque, const char *ptr, size_t got)
{
    struct event_printer *p = opaque;
    if (collect(&p->line, ptr, got) != 0)
        return -1;
    char *nl;
    while (p->line.data && (nl = memchr(p->line.data, '\n', p->line.len))) {
        *nl = '\0';
        print_event(p, p->line.data);
        size_t rest = p->line.len - (size_t)(nl + 1 - p->line.data);
        memmove(p->line.data, nl + 1, rest);
        p->line.len = rest;
        p->line.data[rest] = '\0';
    }
    /* The VMM's events are one short line each (EVENT_MAX_LEN): a line that
     * never ends is not its stream, and must not grow without bound. */
    if (p->line.len > EVENT_LINE_LIMIT) {
        fprintf(stderr, "minivmm ctl: an event line longer than %d KiB: not minivmm's event "
                        "stream\n", EVENT_LINE_LIMIT / 1024);
        return -1;
    }
    return 0;
}

static int cmd_events(struct ctl *c, const char *since)
{
    struct event_printer p = {.json = c->json};
    char path[64] = "/events";
    if (since) {
        /* Checked here so that a typo is a usage error, not an HTTP 400. */
        char *end;
        errno = 0;
        unsigned long long n = strtoull(since, &end, 10);
        if (!*since || *end || since[0] == '-' || errno) {
            fprintf(stderr, "minivmm ctl: --since '%s': not a whole number\n", since);
            return 2;
        }
        snprintf(path, sizeof(path), "/events?since=%llu", n);
    }
    long st;
    int rc = request(c, "GET", path, NULL, &st, NULL, event_chunk, &p, -1);
    free(p.line.data);
    if (rc)
        return 1;
    if (st != 200) {
        fprintf(stderr, "minivmm ctl: events: HTTP %ld\n", st);
        return 1;
    }
    return 0;
}

static int cmd_action(struct ctl *c, const char *action)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"action\":\"%s\"}", action);
    long st;
    char *out = NULL;
    if (request(c, "PUT", "/vm/actions", body, &st, &out, NULL, NULL, 0))
        return 1;
    int rc = 0;
    if (st != 200 && st != 202)
        rc = api_error(action, st, out);
    else if (c->json)
        printf("%s\n", out);
    else
        printf("%s requested\n", action);
    free(out);
    return rc;
}

int ctl_main(int argc, char **argv)
{
    struct ctl c = {0};
    const char *words[4] = {0};
    const char *wait = NULL, *since = NULL;
    int n_words = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(ctl_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            c.json = true;
        } else if (!strcmp(a, "--api-sock") || !strcmp(a, "--wait") || !strcmp(a, "--since")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "minivmm ctl: %s: missing value\n", a);
                return 2;
            }
            if (!strcmp(a, "--wait"))
                wait = argv[++i];
            else if (!strcmp(a, "--since"))
                since = argv[++i];
            else
                c.sock = argv[++i];
        } else if (!strncmp(a, "--api-sock=", 11)) {
            c.sock = a + 11;
        } else if (!strncmp(a, "--wait=", 7)) {
            wait = a + 7;
        } else if (!strncmp(a, "--since=", 8)) {
            since = a + 8;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "minivmm ctl: unknown option '%s' (see minivmm ctl --help)\n", a);
            return 2;
        } else if (n_words < 4) {
            words[n_words++] = a;
        } else {
            fprintf(stderr, "minivmm ctl: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!c.sock) {
        fprintf(stderr, "minivmm ctl: --api-sock: required (see minivmm ctl --help)\n");
        return 2;
    }
    if (!n_words) {
        fprintf(stderr, "minivmm ctl: a command is required (see minivmm ctl --help)\n");
        return 2;
    }
    const char *cmd = words[0];
    int want = !strcmp(cmd, "resize") ? 3 : 1;
    bool known = !strcmp(cmd, "status") || !strcmp(cmd, "resize") || !strcmp(cmd, "events") ||
                 !strcmp(cmd, "shutdown") || !strcmp(cmd, "reboot");
    if (!known) {
        fprintf(stderr, "minivmm ctl: unknown command '%s' (see minivmm ctl --help)\n", cmd);
        return 2;
    }
    if (n_words != want) {
        fprintf(stderr, "minivmm ctl: %s: expected %s\n", cmd,
                want == 3 ? "ID SIZE" : "no arguments");
        return 2;
    }
    if (wait && strcmp(cmd, "resize") != 0) {
        fprintf(stderr, "minivmm ctl: --wait applies to resize only\n");
        return 2;
    }
    if (since && strcmp(cmd, "events") != 0) {
        fprintf(stderr, "minivmm ctl: --since applies to events only\n");
        return 2;
    }

    int rc;
    if (!strcmp(cmd, "status"))
        rc = cmd_status(&c);
    else if (!strcmp(cmd, "resize"))
        rc = cmd_resize(&c, words[1], words[2], wait);
    else if (!strcmp(cmd, "events"))
        rc = cmd_events(&c, since);
    else
        rc = cmd_action(&c, cmd);
    return rc;
}
