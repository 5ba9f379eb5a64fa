/* The front door (api/front.h). Every connection first sends its whole
 * request (head and body, read with MSG_PEEK so its connection thread later
 * reads the same bytes) within a total deadline, so a client sending a
 * header byte a second cannot keep a slot or a thread; api_http_check()
 * decides; only whole, well-formed requests get a thread (api/server.c).
 * Every answer carries "Connection: close" (api/reply.c), so each
 * connection holds one request and every request passes through here.
 *
 * Slots: at most API_MAX_CONNECTIONS connections, waiting here or handed on.
 * A new connection that finds them all taken evicts the connection that has
 * waited longest for its request (a 408): an operator's request, sent at
 * once, always gets in, however many clients dribble. Long requests (?wait,
 * /events) are capped below the total (API_MAX_LONG), so the slots handed on
 * are never all blocked. */
#include "vmm/api/front.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/api/http.h"
#include "vmm/api/internal.h"
#include "vmm/api/json.h"
#include "vmm/api/reply.h"
#include "vmm/clock.h"
#include "vmm/log.h"

/* After a refusal the rest of the request is read and dropped, so the
 * client is not cut off mid-send and reads its answer; at most this much,
 * for at most API_LINGER_MS. */
#define API_MAX_DISCARD (1024 * 1024)
#define API_LINGER_MS 2000
#define API_EPOLL_LISTEN ((uint32_t)API_MAX_CONNECTIONS)
#define API_EPOLL_WAKE ((uint32_t)API_MAX_CONNECTIONS + 1)
#define API_EPOLL_REAP ((uint32_t)API_MAX_CONNECTIONS + 2)

struct api_pending {
    int fd;                     /* -1: a free slot */
    bool draining;              /* refused: answered, dropping what still comes */
    bool continued;             /* a 100 Continue went out */
    uint64_t seq;               /* acceptance order: eviction takes the oldest */
    uint64_t deadline_ms;       /* CLOCK_MONOTONIC */
    size_t drained;
};

struct api_front {
    struct api_server *s;
    int epfd, wakefd;
    pthread_t thread;
    uint64_t next_seq;
    uint64_t accept_resume_ms;  /* accepting paused (out of descriptors) until then */
    unsigned npending;
    struct api_pending conns[API_MAX_CONNECTIONS];
    char buf[API_HTTP_MAX_WIRE]; /* what a client sent, peeked; this thread's only */
};

/* A JSON error answer on a socket not yet handed to a connection thread;
 * non-blocking: a client whose socket buffer is full gets less, and is
 * being closed anyway. */
static void send_error(int fd, unsigned status, const char *msg)
{
    api_write_error(fd, false, status, NULL, msg);
}

/* Whether the client has sent anything not yet read: a connection that
 * never did is closed without an answer, like an idle one, since its client
 * may be about to send and would retry on a new connection. */
static bool has_input(int fd)
{
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

static void drop(struct api_front *f, unsigned i)
{
    struct api_pending *p = &f->conns[i];
    if (epoll_ctl(f->epfd, EPOLL_CTL_DEL, p->fd, NULL) != 0)
        log_debug("api: epoll_ctl(DEL, %d): %s", p->fd, strerror(errno));
    p->fd = -1;
    f->npending--;
}

static void drop_and_close(struct api_front *f, unsigned i)
{
    int fd = f->conns[i].fd;
    drop(f, i);
    if (close(fd) != 0)
        log_debug("api: close(%d): %s", fd, strerror(errno));
}

/* Reads and drops what the client has sent; false when it has gone or sent
 * more than API_MAX_DISCARD in all. */
static bool discard_input(struct api_front *f, struct api_pending *p)
{
    for (;;) {
        ssize_t n = recv(p->fd, f->buf, sizeof(f->buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK;
        if (n == 0)
            return false;
        p->drained += (size_t)n;
        if (p->drained > API_MAX_DISCARD)
            return false;
    }
}

/* Answers status and lingers: the client may still be sending (a body we
 * refused by its Content-Length), and would not read the answer if it were
 * cut off mid-send. */
static void refuse(struct api_front *f, unsigned i, unsigned status, const char *msg)
{
    struct api_pending *p = &f->conns[i];
    log_debug("api: refused a request (%u): %s", status, msg);
    if (!discard_input(f, p)) {
        send_error(p->fd, status, msg);
        drop_and_close(f, i);
        return;
    }
    send_error(p->fd, status, msg);
    if (shutdown(p->fd, SHUT_WR) != 0) {
        drop_and_close(f, i);
        return;
    }
    p->draining = true;
    p->deadline_ms = clock_mono_ms() + API_LINGER_MS;
}

/* The request is whole and well-formed: a thread of its own serves it
 * (api/server.c). */
static void hand_on(struct api_front *f, unsigned i, size_t length)
{
    int fd = f->conns[i].fd;
    drop(f, i);
    api_conn_start(f->s, fd, length);
}

static void examine(struct api_front *f, unsigned i, bool peer_done)
{
    struct api_pending *p = &f->conns[i];
    if (p->draining) {
        if (!discard_input(f, p) || peer_done)
            drop_and_close(f, i);
        return;
    }
    ssize_t n = recv(p->fd, f->buf, sizeof(f->buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {               /* gone (or broken) before a whole request */
        drop_and_close(f, i);
        return;
    }
    struct api_http_check chk;
    api_http_check(f->buf, (size_t)n, &chk);
    switch (chk.verdict) {
    case API_HTTP_COMPLETE:
        hand_on(f, i, chk.length);
        return;
    case API_HTTP_REFUSE:
        refuse(f, i, chk.status, chk.msg);
        return;
    case API_HTTP_INCOMPLETE:
        if (peer_done) {
            refuse(f, i, 400, "the client ended its side before the request was complete");
            return;
        }
        if (chk.head_done && chk.expect_continue && !p->continued) {
            api_reply_continue(p->fd);
            p->continued = true;
        }
        return;
    }
}

static int oldest(const struct api_front *f, bool draining)
{
    int best = -1;
    for (unsigned i = 0; i < API_MAX_CONNECTIONS; i++) {
        const struct api_pending *p = &f->conns[i];
        if (p->fd >= 0 && p->draining == draining &&
            (best < 0 || p->seq < f->conns[best].seq))
            best = (int)i;
    }
    return best;
}

static void admit(struct api_front *f, int fd)
{
    unsigned busy = f->npending + api_conns_busy(f->s);
    if (busy >= API_MAX_CONNECTIONS) {
        /* Make room: first a connection already refused, then the one that
         * has waited longest for its request. */
        int victim = oldest(f, true);
        if (victim >= 0) {
            drop_and_close(f, (unsigned)victim);
        } else if ((victim = oldest(f, false)) >= 0) {
            if (has_input(f->conns[victim].fd))
                send_error(f->conns[victim].fd, 408,
                           "the request was not complete, and its connection was needed "
                           "for a newer client");
            drop_and_close(f, (unsigned)victim);
        } else {
            /* Every slot serves a request: short ones end within moments,
             * long ones never take them all (API_MAX_LONG). */
            send_error(fd, 429, "too many connections; try again");
            if (close(fd) != 0)
                log_debug("api: close(%d): %s", fd, strerror(errno));
            return;
        }
    }
    unsigned i = 0;
    while (f->conns[i].fd >= 0)
        i++;                    /* npending < API_MAX_CONNECTIONS: one is free */
    struct api_pending *p = &f->conns[i];
    memset(p, 0, sizeof(*p));
    p->fd = fd;
    p->seq = f->next_seq++;
    p->deadline_ms = clock_mono_ms() + (uint64_t)f->s->timeout_s * 1000;
    /* Edge-triggered: data peeked stays in the socket, so level-triggered
     * polling would report it again and again; an edge is new data. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u32 = i};
    if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        log_warn("api: epoll_ctl(ADD) for a new connection: %s", strerror(errno));
        p->fd = -1;
        close(fd);
        return;
    }
    f->npending++;
}

static void accept_all(struct api_front *f)
{
    for (;;) {
        int fd = accept4(f->s->sock.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            admit(f, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        /* Out of descriptors (or worse): the listening socket stays
         * readable, so stop watching it for a moment instead of spinning. */
        log_warn("api: accept: %s; not accepting for 100 ms", strerror(errno));
        struct epoll_event ev = {.events = 0, .data.u32 = API_EPOLL_LISTEN};
        if (epoll_ctl(f->epfd, EPOLL_CTL_MOD, f->s->sock.fd, &ev) != 0)
            log_warn("api: epoll_ctl(MOD) on the listening socket: %s", strerror(errno));
        f->accept_resume_ms = clock_mono_ms() + 100;
        return;
    }
}

/* Deadlines: a request not whole in time gets a 408; a refused connection
 * still sending is closed. Returns the epoll timeout until the next one. */
static int expire(struct api_front *f)
{
    uint64_t now = clock_mono_ms(), next = UINT64_MAX;
    if (f->accept_resume_ms) {
        if (f->accept_resume_ms <= now) {
            f->accept_resume_ms = 0;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = API_EPOLL_LISTEN};
            if (epoll_ctl(f->epfd, EPOLL_CTL_MOD, f->s->sock.fd, &ev) != 0)
                log_warn("api: epoll_ctl(MOD) on the listening socket: %s", strerror(errno));
        } else {
            next = f->accept_resume_ms;
        }
    }
    for (unsigned i = 0; i < API_MAX_CONNECTIONS; i++) {
        struct api_pending *p = &f->conns[i];
        if (p->fd < 0)
            continue;
        if (p->deadline_ms <= now) {
            if (!p->draining && has_input(p->fd)) {
                char msg[128];
                snprintf(msg, sizeof(msg), "the request was not complete within %u s",
                         f->s->timeout_s);
                send_error(p->fd, 408, msg);
            }
            drop_and_close(f, i);
        } else if (p->deadline_ms < next) {
            next = p->deadline_ms;
        }
    }
    return next == UINT64_MAX ? -1 : (int)(next - now);
}

static void *front_main(void *arg)
{
    struct api_front *f = arg;
    pthread_setname_np(pthread_self(), "api-front");
    for (;;) {
        int timeout = expire(f);
        struct epoll_event evs[32];
        int n = epoll_wait(f->epfd, evs, 32, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("api: epoll_wait: %s; the API stops accepting", strerror(errno));
            break;
        }
        for (int k = 0; k < n; k++) {
            uint32_t i = evs[k].data.u32;
            if (i == API_EPOLL_REAP) {
                api_conns_reap(f->s);
            } else if (i == API_EPOLL_WAKE) {
                if (atomic_load(&f->s->stopping))
                    goto out;
            } else if (i == API_EPOLL_LISTEN) {
                accept_all(f);
            } else if (f->conns[i].fd >= 0) {
                examine(f, i, evs[k].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
            }
        }
    }
out:
    for (unsigned i = 0; i < API_MAX_CONNECTIONS; i++) {
        if (f->conns[i].fd >= 0)
            drop_and_close(f, i);
    }
    return NULL;
}

int api_front_start(struct api_server *s, struct api_front **out, char *err, size_t errlen)
{
    *out = NULL;
    struct api_front *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "api: out of memory for the front door");
        return -ENOMEM;
    }
    f->s = s;
    for (unsigned i = 0; i < API_MAX_CONNECTIONS; i++)
        f->conns[i].fd = -1;
    int rc = 0;
    /* accept_all() takes connections until EAGAIN: a blocking listening
     * socket would hang the thread in accept4 instead. */
    int fl = fcntl(s->sock.fd, F_GETFL);
    if (fl < 0 || fcntl(s->sock.fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        rc = -errno;
        snprintf(err, errlen, "api: making the listening socket non-blocking: %s",
                 strerror(errno));
        free(f);
        return rc;
    }
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (f->epfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "api: epoll_create1: %s", strerror(errno));
        free(f);
        return rc;
    }
    f->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (f->wakefd < 0) {
        rc = -errno;
        snprintf(err, errlen, "api: eventfd: %s", strerror(errno));
        goto fail_ep;
    }
    struct epoll_event lev = {.events = EPOLLIN, .data.u32 = API_EPOLL_LISTEN};
    struct epoll_event wev = {.events = EPOLLIN, .data.u32 = API_EPOLL_WAKE};
    struct epoll_event rev = {.events = EPOLLIN, .data.u32 = API_EPOLL_REAP};
    if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, s->sock.fd, &lev) != 0 ||
        epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->wakefd, &wev) != 0 ||
        epoll_ctl(f->epfd, EPOLL_CTL_ADD, s->reap_fd, &rev) != 0) {
        rc = -errno;
        snprintf(err, errlen, "api: epoll_ctl(ADD): %s", strerror(errno));
        goto fail_wake;
    }
    rc = pthread_create(&f->thread, NULL, front_main, f);
    if (rc) {
        snprintf(err, errlen, "api: starting the front door thread: %s", strerror(rc));
        rc = -rc;
        goto fail_wake;
    }
    *out = f;
    return 0;

fail_wake:
    close(f->wakefd);
fail_ep:
    close(f->epfd);
    free(f);
    return rc;
}

void api_front_stop(struct api_front *f)
{
    if (!f)
        return;
    /* s->stopping is already set; the wake makes the thread look. */
    uint64_t one = 1;
    if (write(f->wakefd, &one, sizeof(one)) != sizeof(one))
        log_warn("api: waking the front door: %s", strerror(errno));
    int rc = pthread_join(f->thread, NULL);
    if (rc)
        log_warn("api: joining the front door: %s", strerror(rc));
    close(f->wakefd);
    close(f->epfd);
    free(f);
}
