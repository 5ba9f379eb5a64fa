/* Shared by the API server's files: the server, one request's state, and the
 * entry points between connection handling (api/server.c), routing
 * (api/routes.c) and the event stream (api/events.c). */
#ifndef MINIVMM_API_INTERNAL_H
#define MINIVMM_API_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "vmm/api/http.h"
#include "vmm/api/request.h"
#include "vmm/api/socket.h"
#include "vmm/config.h"

#define API_MAX_BODY API_HTTP_MAX_BODY
/* Connections at once, those the front door waits on and those being
 * served (api/front.c). */
#define API_MAX_CONNECTIONS 256
/* ?wait requests and /events streams at once (429 beyond): the other slots
 * stay for requests that answer at once, so the operator gets in. */
#define API_MAX_LONG 224
/* The idle timeout, and the total time a connection has to send its whole
 * request (headers and body) from being accepted. */
#define API_DEFAULT_TIMEOUT_S 30
/* How often blocked requests (?wait, /events) look at the world: the
 * server stopping, the client gone. */
#define API_POLL_MS 50

struct vm;
struct api_route;
struct api_method;
struct api_front;

/* A connection's place while it is served (api/server.c); guarded by
 * s->conns_lock. */
struct api_conn_slot {
    struct api_server *s;
    int fd;                     /* -1: free (or its thread is finishing: done) */
    bool busy;                  /* a thread was started and is not yet joined */
    bool done;                  /* that thread has finished: join it */
    pthread_t thread;
    void *stack;                /* the thread's own stack (mmap), unmapped when joined */
    size_t length;              /* the request's bytes, head and body */
};

/* A connection being served, on its thread's stack: its thread reads the
 * checked request, answers and closes. */
struct api_conn {
    struct api_server *s;
    int fd;
    struct api_http_request req;
};

struct api_server {
    struct vm *vm;
    struct api_socket sock;
    struct api_front *front;    /* accepts and checks requests (api/front.c) */
    unsigned timeout_s;         /* the deadline for a whole request; the send timeout */
    atomic_bool stopping;       /* long requests end when set */
    atomic_int in_flight;       /* connections being served */
    atomic_int long_reqs;       /* ?wait requests and /events streams running */
    int reap_fd;                /* eventfd: a connection thread finished (api/front.c reaps) */
    pthread_mutex_t conns_lock; /* the slots */
    struct api_conn_slot conns[API_MAX_CONNECTIONS];
};

/* One request's routing and its action (api/routes.c). */
struct api_request {
    const struct api_method *method;
    char id[64];                /* {id} of /virtio-mem/{id} (its start if too long) */
    bool id_too_long;           /* then it is no device's: never cut to one that is */
    bool answered;              /* a response was queued */
    unsigned err_status;        /* an error found from the headers, sent once */
    const char *err_allow;      /* the body is in (so the client is not cut */
    char err_msg[320];          /* off mid-send and keep-alive survives) */
    const char *body;
    size_t len;
    char action[16];            /* PUT /vm/actions: run once the reply is out */
};

/* What routing needs to know of a request. */
struct api_route_in {
    const char *url;            /* the path, without the query */
    const char *method;
    const char *content_type;   /* NULL: no Content-Type header */
    bool bad_value;             /* a header or query parameter has an empty name or a NUL */
    /* Calls fn with each query parameter name, in order, until fn returns false. */
    void (*query_keys)(void *ctx, bool (*fn)(void *arg, const char *key), void *arg);
    void *query_ctx;
};

/* The routing decision, a pure function of in: sets r->method and r->id, or
 * notes in r the error the headers decide (400 for a bad header, 404, 405,
 * 400 for the query, 415). */
void api_route_decide(const struct api_route_in *in, struct api_request *r);

/* Routes c's request and answers it (the handler, or the error routing
 * found). 0, or -1 when the connection is to be closed without an answer. */
int api_route_serve(struct api_server *s, struct api_conn *c, struct api_request *r);

/* GET /events. */
int api_events_get(struct api_server *s, struct api_conn *c);

/* Whether the client has hung up (or shut its side): a request waiting
 * for the world ends then instead of holding its thread and slot. */
bool api_client_gone(const struct api_conn *c);

/* A ?wait or /events begins: false (answer 429) when API_MAX_LONG run
 * already. Each true is matched by one api_long_end. */
bool api_long_begin(struct api_server *s);
void api_long_end(struct api_server *s);

/* Serves a connection whose whole request (length bytes, checked) waits in
 * its socket, on a thread of its own (api/server.c). Takes fd: it is
 * answered with a 503 and closed if no thread can be started. */
void api_conn_start(struct api_server *s, int fd, size_t length);

/* Connections being served (for the front door's limit). */
unsigned api_conns_busy(struct api_server *s);

/* Joins the connection threads that have finished and unmaps their stacks
 * (the front door, when s->reap_fd says one finished). */
void api_conns_reap(struct api_server *s);

#endif
