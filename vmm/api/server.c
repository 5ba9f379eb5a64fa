/* Socket and libmicrohttpd lifecycle, and the per-request plumbing: the
 * request context, body collection, and completion (where accepted actions
 * take effect). Connections reach libmicrohttpd through the front door
 * (api/front.c), which has already checked each whole request. Routing is
 * in api/routes.c. */
#include "vmm/api/server.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm/api/front.h"
#include "vmm/api/internal.h"
#include "vmm/api/json.h"
#include "vmm/log.h"
#include "vmm/sandbox/seccomp.h"
#include "vmm/vm_control.h"

/* libmicrohttpd's memory pool per connection. Above 32 KiB it is mmap()ed
 * and unmapped at close; at or below it comes from malloc, and after a burst
 * of clients the freed pools stayed in the allocator's arenas (~7 MiB for
 * 200 clients). The front door bounds a request head to 8 KiB, which fits. */
#define API_CONNECTION_MEMORY (48 * 1024)
/* How long stopping waits for requests in progress to finish. */
#define API_DRAIN_MS 2000

__attribute__((format(printf, 2, 0)))
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* Mostly clients misbehaving: not the operator's problem. */
    log_debug("api: %s", msg);
}

bool api_client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    int n = poll(&p, 1, 0);
    if (n < 0) {
        log_debug("api: poll on a client socket: %s", strerror(errno));
        return false;
    }
    return n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

bool api_long_begin(struct api_server *s)
{
    if (atomic_fetch_add(&s->long_reqs, 1) >= API_MAX_LONG) {
        atomic_fetch_sub(&s->long_reqs, 1);
        return false;
    }
    return true;
}

void api_long_end(struct api_server *s)
{
    atomic_fetch_sub(&s->long_reqs, 1);
}

void api_connection_timeout(struct MHD_Connection *c, unsigned seconds)
{
    /* Going back from 0 to a timeout restarts the idle clock in MHD, so a
     * long ?wait is not closed the moment it answers. */
    if (MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, seconds) != MHD_YES)
        log_debug("api: could not set a connection timeout of %u s", seconds);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    struct api_server *s = cls;
    struct api_request *r = *con_cls;

    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        *con_cls = r;
        atomic_fetch_add(&s->in_flight, 1);
        api_route_begin(s, c, url, method, r);
        return MHD_YES;
    }
    if (r->answered) {          /* MHD drops the rest of the body itself */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        /* The front door refused longer bodies; this is only a backstop. */
        if (r->len + n > API_MAX_BODY)
            return MHD_NO;
        char *grown = realloc(r->body, r->len + n + 1);
        if (!grown)
            return MHD_NO;
        memcpy(grown + r->len, upload_data, n);
        r->body = grown;
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    r->answered = true;
    return api_route_finish(s, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    struct api_server *s = cls;
    struct api_request *r = *con_cls;
    if (!r)
        return;
    /* The 202 has gone out (or the client left after asking): now the VMM
     * may begin to stop without cutting the answer. */
    if (r->action[0] && vmc_action(s->vm, r->action) != 0)
        log_warn("api: action '%s' refused by the VM", r->action);
    free(r->body);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->in_flight, 1);
}

/* Counts the connections libmicrohttpd holds, for the front door's limit:
 * api/front.c counts one up before handing it on, this counts it down. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)c;
    (void)socket_context;
    struct api_server *s = cls;
    /* The last connection of a burst gives the allocator's free memory
     * back: each connection thread allocated from one of glibc's arenas,
     * and free chunks there stay resident (measured: +1 MiB after 200
     * clients without this, docs/api.md). */
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED && atomic_fetch_sub(&s->mhd_conns, 1) == 1)
        malloc_trim(0);
}

/* MINIVMM_API_TIMEOUT_S (undocumented in --help: for tests) shortens the
 * idle timeout and the request deadline. */
static unsigned idle_timeout(void)
{
    const char *env = getenv("MINIVMM_API_TIMEOUT_S");
    if (!env || !*env)
        return API_DEFAULT_TIMEOUT_S;
    char *end;
    errno = 0;
    unsigned long v = strtoul(env, &end, 10);
    if (errno || *end || v == 0 || v > 3600) {
        log_warn("MINIVMM_API_TIMEOUT_S=%s: not 1..3600, using %d", env, API_DEFAULT_TIMEOUT_S);
        return API_DEFAULT_TIMEOUT_S;
    }
    return (unsigned)v;
}

/* Runs in a short-lived thread: takes the API role's seccomp filter, then
 * starts libmicrohttpd, whose threads inherit that filter. */
static void *start_daemon_thread(void *arg)
{
    struct api_server *s = arg;
    pthread_setname_np(pthread_self(), "api");
    if (seccomp_enter(SECCOMP_ROLE_API, "api") < 0)
        return NULL;
    /* A thread per connection lets ?wait and /events simply block; the
     * internal thread only takes the connections the front door hands on
     * (MHD_USE_ITC wakes it). poll() because the fds of a VM with many
     * devices may pass FD_SETSIZE. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,     /* first, to catch all */
        MHD_OPTION_CONNECTION_TIMEOUT, s->timeout_s,
        /* The front door keeps the real limit (API_MAX_CONNECTIONS with
         * the ones it waits on); libmicrohttpd counts a connection a little
         * longer than its close notice, so it gets room, never to refuse
         * one silently. */
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(2 * API_MAX_CONNECTIONS),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONNECTION_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        /* The front door checked more than this (api/http.c); kept so
         * libmicrohttpd never loosens what reaches the handlers. */
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1024 * 1024),
        MHD_OPTION_END);
    if (!s->mhd)
        return NULL;
    char err[256];
    if (api_front_start(s, &s->front, err, sizeof(err)) != 0) {
        log_error("%s", err);
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
    }
    return NULL;
}

int api_server_start(struct api_server **out, struct vm *vm, const char *path)
{
    *out = NULL;
    struct api_server *s = calloc(1, sizeof(*s));
    if (!s) {
        log_error("--api-sock %s: out of memory", path);
        return -ENOMEM;
    }
    s->vm = vm;
    s->timeout_s = idle_timeout();
    atomic_init(&s->stopping, false);
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->mhd_conns, 0);
    atomic_init(&s->long_reqs, 0);

    char err[256];
    int rc = api_socket_open(&s->sock, path, err, sizeof(err));
    if (rc) {
        log_error("%s", err);
        free(s);
        return rc;
    }

    /* MHD's threads are created inside MHD_start_daemon and inherit the
     * seccomp filter of the thread that calls it: call it from a thread that
     * has taken the API role's filter first. */
    pthread_t starter;
    rc = pthread_create(&starter, NULL, start_daemon_thread, s);
    if (rc == 0)
        pthread_join(starter, NULL);
    else
        log_error("--api-sock %s: starting the server thread: %s", path, strerror(rc));
    if (!s->mhd) {
        log_error("--api-sock %s: could not start the HTTP server (libmicrohttpd)", path);
        api_socket_unlink(&s->sock);
        close(s->sock.fd);
        free(s);
        return -EIO;
    }
    log_debug("api: serving on %s (idle timeout %u s)", path, s->timeout_s);
    *out = s;
    return 0;
}

void api_server_stop(struct api_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    /* No new connections; those still sending their request are closed. */
    api_front_stop(s->front);
    /* MHD_stop_daemon shuts every socket down at once: first let requests
     * that are answering (the last events of a stream, a ?wait cut short)
     * finish, for a bounded time. */
    for (int i = 0; i < API_DRAIN_MS / 10 && atomic_load(&s->in_flight) > 0; i++) {
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    /* Joins every connection thread (blocked requests see `stopping` within
     * API_POLL_MS). */
    MHD_stop_daemon(s->mhd);
    api_socket_unlink(&s->sock);
    if (close(s->sock.fd) != 0)
        log_debug("api: closing the listening socket: %s", strerror(errno));
    free(s);
}
