/* The server's lifecycle and its connection threads. The front door
 * (api/front.c) accepts each connection and waits until its whole request
 * is in the socket and well-formed; then a thread of its own reads it,
 * routes it (api/routes.c), answers and closes: one request per connection,
 * so ?wait and /events simply block in theirs. */
#include "vmm/api/server.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vmm/api/front.h"
#include "vmm/api/internal.h"
#include "vmm/api/reply.h"
#include "vmm/log.h"
#include "vmm/sandbox/seccomp.h"
#include "vmm/vm_control.h"

/* How long stopping waits for requests in progress to finish. */
#define API_DRAIN_MS 2000
/* A connection thread's stack, and the inaccessible page below it. Each
 * thread has its own mapping, unmapped when it is joined: glibc would keep
 * the stacks of ended threads for reuse, each with the pages its thread
 * touched still resident (about 12 KiB; ~1.4 MiB after a burst of 200
 * clients, measured). */
#define API_CONN_STACK (1024 * 1024)
#define API_CONN_GUARD 4096

bool api_client_gone(const struct api_conn *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
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

/* A blocking socket whose sends give up after the server's timeout: a
 * client that stops reading cannot hold its thread for longer. */
static int prepare_socket(struct api_server *s, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        return -errno;
    struct timeval tv = {.tv_sec = s->timeout_s};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
        return -errno;
    return 0;
}

/* Reads the request the front door checked (its bytes are all in the
 * socket already), routes it and answers. */
static void serve(struct api_server *s, int fd, size_t length)
{
    int rc = prepare_socket(s, fd);
    if (rc) {
        log_debug("api: preparing a client socket: %s", strerror(-rc));
        return;
    }
    char *buf = malloc(length + 1);
    if (!buf) {
        api_reply_write(fd, false, 500, "application/json", NULL,
                        "{\"error\":\"out of memory\"}\n", 26);
        return;
    }
    ssize_t n;
    do
        n = recv(fd, buf, length, MSG_WAITALL);
    while (n < 0 && errno == EINTR);
    struct api_http_check chk;
    if (n == (ssize_t)length)
        api_http_check(buf, length, &chk);
    if (n != (ssize_t)length || chk.verdict != API_HTTP_COMPLETE || chk.length != length) {
        /* The front door saw these very bytes whole: only a client that
         * left can get here. */
        log_debug("api: a checked request could not be read again (%zd of %zu bytes)", n,
                  length);
        free(buf);
        return;
    }
    struct api_conn c = {.s = s, .fd = fd};
    struct api_request r;
    memset(&r, 0, sizeof(r));
    if (api_request_parse(buf, &chk, &c.req) == 0) {
        r.body = c.req.body;
        r.len = c.req.body_len;
        api_route_serve(s, &c, &r);
    } else {
        api_reply_write(fd, c.req.head, 500, "application/json", NULL,
                        "{\"error\":\"out of memory\"}\n", 26);
    }
    api_request_free(&c.req);
    free(buf);
    /* The answer has gone out (or the client left after asking): now the
     * VMM may begin to stop without cutting it. */
    if (r.action[0] && vmc_action(s->vm, r.action) != 0)
        log_warn("api: action '%s' refused by the VM", r.action);
}

static void *conn_main(void *arg)
{
    struct api_conn_slot *slot = arg;
    struct api_server *s = slot->s;
    pthread_setname_np(pthread_self(), "api-conn");
    serve(s, slot->fd, slot->length);

    pthread_mutex_lock(&s->conns_lock);
    if (close(slot->fd) != 0)
        log_debug("api: closing a connection: %s", strerror(errno));
    slot->fd = -1;
    slot->done = true;
    bool last = atomic_fetch_sub(&s->in_flight, 1) == 1;
    pthread_mutex_unlock(&s->conns_lock);
    /* The last connection of a burst gives the allocator's free memory
     * back: free chunks of each thread's requests stay resident otherwise
     * (docs/api.md). */
    if (last)
        malloc_trim(0);
    /* The front door joins this thread and unmaps its stack. */
    uint64_t one = 1;
    if (write(s->reap_fd, &one, sizeof(one)) != sizeof(one))
        log_debug("api: waking the front door to reap: %s", strerror(errno));
    return NULL;
}

static void join_slot(struct api_conn_slot *slot)
{
    int rc = pthread_join(slot->thread, NULL);
    if (rc)
        log_warn("api: joining a connection thread: %s", strerror(rc));
    if (munmap(slot->stack, API_CONN_STACK + API_CONN_GUARD) != 0)
        log_warn("api: unmapping a connection thread's stack: %s", strerror(errno));
    slot->stack = NULL;
    slot->busy = slot->done = false;
}

/* Joins finished threads (conns_lock held). */
static void reap(struct api_server *s)
{
    for (unsigned i = 0; i < API_MAX_CONNECTIONS; i++) {
        struct api_conn_slot *slot = &s->conns[i];
        if (slot->busy && slot->done)
            join_slot(slot);
    }
}

void api_conns_reap(struct api_server *s)
{
    uint64_t n;
    if (read(s->reap_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_debug("api: reading the reap eventfd: %s", strerror(errno));
    pthread_mutex_lock(&s->conns_lock);
    reap(s);
    pthread_mutex_unlock(&s->conns_lock);
}

/* A thread on a stack of its own (API_CONN_STACK). */
static int start_thread(struct api_conn_slot *slot)
{
    void *m = mmap(NULL, API_CONN_STACK + API_CONN_GUARD, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return errno;
    pthread_attr_t attr;
    int rc = mprotect(m, API_CONN_GUARD, PROT_NONE) != 0 ? errno : 0;
    if (rc == 0)
        rc = pthread_attr_init(&attr);
    if (rc == 0) {
        rc = pthread_attr_setstack(&attr, (char *)m + API_CONN_GUARD, API_CONN_STACK);
        if (rc == 0)
            rc = pthread_create(&slot->thread, &attr, conn_main, slot);
        pthread_attr_destroy(&attr);
    }
    if (rc) {
        munmap(m, API_CONN_STACK + API_CONN_GUARD);
        return rc;
    }
    slot->stack = m;
    return 0;
}

unsigned api_conns_busy(struct api_server *s)
{
    return (unsigned)atomic_load(&s->in_flight);
}

void api_conn_start(struct api_server *s, int fd, size_t length)
{
    pthread_mutex_lock(&s->conns_lock);
    reap(s);
    struct api_conn_slot *slot = NULL;
    for (unsigned i = 0; i < API_MAX_CONNECTIONS && !slot; i++) {
        if (!s->conns[i].busy)
            slot = &s->conns[i];
    }
    int rc = EAGAIN;
    if (slot) {
        slot->s = s;
        slot->fd = fd;
        slot->length = length;
        slot->done = false;
        atomic_fetch_add(&s->in_flight, 1);
        rc = start_thread(slot);
        if (rc == 0) {
            slot->busy = true;
        } else {
            slot->fd = -1;
            atomic_fetch_sub(&s->in_flight, 1);
        }
    }
    pthread_mutex_unlock(&s->conns_lock);
    if (rc == 0)
        return;
    log_warn("api: no thread for a connection: %s", strerror(rc));
    static const char busy[] = "{\"error\":\"the API could not start a thread for this "
                               "request; try again\"}\n";
    api_reply_write(fd, false, 503, "application/json", NULL, busy, sizeof(busy) - 1);
    if (close(fd) != 0)
        log_debug("api: close(%d): %s", fd, strerror(errno));
}

/* MINIVMM_API_TIMEOUT_S (undocumented in --help: for tests) shortens the
 * request deadline and the send timeout. */
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

struct starter {
    struct api_server *s;
    int rc;
};

/* Runs in a short-lived thread: takes the API role's seccomp filter, then
 * starts the front door, whose thread and the connection threads it starts
 * inherit that filter. */
static void *start_front_thread(void *arg)
{
    struct starter *st = arg;
    pthread_setname_np(pthread_self(), "api");
    st->rc = -EPERM;
    if (seccomp_enter(SECCOMP_ROLE_API, "api") < 0)
        return NULL;
    char err[256];
    st->rc = api_front_start(st->s, &st->s->front, err, sizeof(err));
    if (st->rc)
        log_error("%s", err);
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
    atomic_init(&s->long_reqs, 0);
    pthread_mutex_init(&s->conns_lock, NULL);
    for (unsigned i = 0; i < API_MAX_CONNECTIONS; i++)
        s->conns[i].fd = -1;
    s->reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->reap_fd < 0) {
        log_error("--api-sock %s: eventfd: %s", path, strerror(errno));
        pthread_mutex_destroy(&s->conns_lock);
        free(s);
        return -EIO;
    }

    char err[256];
    int rc = api_socket_open(&s->sock, path, err, sizeof(err));
    if (rc) {
        log_error("%s", err);
        close(s->reap_fd);
        pthread_mutex_destroy(&s->conns_lock);
        free(s);
        return rc;
    }

    /* Threads inherit the seccomp filter of the thread that creates them:
     * the front door is started from one that has taken the API role's. */
    struct starter st = {.s = s, .rc = -EIO};
    pthread_t starter;
    rc = pthread_create(&starter, NULL, start_front_thread, &st);
    if (rc == 0)
        pthread_join(starter, NULL);
    else
        log_error("--api-sock %s: starting the server thread: %s", path, strerror(rc));
    if (rc || st.rc) {
        log_error("--api-sock %s: could not start the API server", path);
        api_socket_unlink(&s->sock);
        close(s->sock.fd);
        close(s->reap_fd);
        pthread_mutex_destroy(&s->conns_lock);
        free(s);
        return -EIO;
    }
    log_debug("api: serving on %s (request deadline %u s)", path, s->timeout_s);
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
    /* Requests that are answering (the last events of a stream, a ?wait cut
     * short) may finish, for a bounded time; blocked ones see `stopping`
     * within API_POLL_MS. */
    for (int i = 0; i < API_DRAIN_MS / 10 && atomic_load(&s->in_flight) > 0; i++) {
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    /* A thread still sending to a client that does not read fails at once. */
    pthread_mutex_lock(&s->conns_lock);
    for (unsigned i = 0; i < API_MAX_CONNECTIONS; i++) {
        if (s->conns[i].fd >= 0 && shutdown(s->conns[i].fd, SHUT_RDWR) != 0)
            log_debug("api: shutting a connection down: %s", strerror(errno));
    }
    pthread_mutex_unlock(&s->conns_lock);
    for (unsigned i = 0; i < API_MAX_CONNECTIONS; i++) {
        if (s->conns[i].busy)
            join_slot(&s->conns[i]);
    }
    close(s->reap_fd);
    pthread_mutex_destroy(&s->conns_lock);
    api_socket_unlink(&s->sock);
    if (close(s->sock.fd) != 0)
        log_debug("api: closing the listening socket: %s", strerror(errno));
    free(s);
}
