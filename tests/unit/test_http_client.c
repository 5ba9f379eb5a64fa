/* vmm/ctl/http_client.c against a scripted fake server on a socketpair (and
 * once on a temporary Unix socket): the answers the API server gives, and
 * the broken ones a confused peer could. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"
#include "vmm/ctl/http_client.h"

struct fake {
    int fd;
    const char *parts[8];       /* written in turn, delay_ms apart */
    size_t part_len[8];         /* 0: strlen */
    int delay_ms;
    bool hold;                  /* then wait for the client to close, not close */
    char request[4096];         /* what the client sent */
    size_t request_len;
    pthread_t thread;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads the request: its head and the body its Content-Length announces. */
static void read_request(struct fake *f)
{
    for (;;) {
        char *end = memmem(f->request, f->request_len, "\r\n\r\n", 4);
        if (end) {
            size_t want = (size_t)(end + 4 - f->request);
            const char *cl = strstr(f->request, "Content-Length: ");
            if (cl && cl < end)
                want += strtoul(cl + 16, NULL, 10);
            if (f->request_len >= want)
                return;
        }
        if (f->request_len >= sizeof(f->request) - 1)
            return;
        ssize_t n = recv(f->fd, f->request + f->request_len,
                         sizeof(f->request) - 1 - f->request_len, 0);
        if (n <= 0)
            return;
        f->request_len += (size_t)n;
        f->request[f->request_len] = '\0';
    }
}

static void *serve(void *arg)
{
    struct fake *f = arg;
    read_request(f);
    for (int i = 0; i < 8 && f->parts[i]; i++) {
        if (i && f->delay_ms)
            sleep_ms(f->delay_ms);
        size_t len = f->part_len[i] ? f->part_len[i] : strlen(f->parts[i]);
        const char *p = f->parts[i];
        while (len) {
            ssize_t n = send(f->fd, p, len, MSG_NOSIGNAL);
            if (n <= 0)
                goto out;       /* the client gave up */
            p += n;
            len -= (size_t)n;
        }
    }
    if (f->hold) {
        /* Until the client closes its end. */
        char c;
        while (recv(f->fd, &c, 1, 0) > 0) {
        }
    }
out:
    close(f->fd);
    return NULL;
}

/* f->fd is a listening socket: serves its first connection. */
static void *accept_and_serve(void *arg)
{
    struct fake *f = arg;
    int l = f->fd;
    f->fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (f->fd < 0)
        return NULL;
    return serve(f);
}

/* Runs req against the fake (f's script) on a socketpair. */
static int run(struct fake *f, const struct httpc_request *req, struct httpc_response *resp)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    f->fd = sv[1];
    pthread_create(&f->thread, NULL, serve, f);
    int rc = httpc_exchange(sv[0], req, resp);
    close(sv[0]);
    pthread_join(f->thread, NULL);
    return rc;
}

static const struct httpc_request get_vm = {
    .method = "GET", .target = "/vm", .head_timeout_ms = 5000, .total_timeout_ms = 5000};

TEST(content_length_answer_and_the_request_sent)
{
    struct fake f = {.parts = {"HTTP/1.1 202 Accepted\r\nDate: x\r\nConnection: close\r\n"
                               "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n"
                               "{\"a\":\"b\"}\n\ntrailing junk after the body"}};
    struct httpc_request req = {.method = "PATCH",
                                .target = "/virtio-mem/node0?wait=1",
                                .content_type = "application/json",
                                .body = "{\"requested_size\":1}",
                                .body_len = 20,
                                .head_timeout_ms = 5000};
    struct httpc_response r;
    CHECK_EQ(run(&f, &req, &r), HTTPC_OK);
    CHECK_EQ(r.status, 202);
    CHECK_EQ(r.body_len, 13);
    CHECK(r.body && !strcmp(r.body, "{\"a\":\"b\"}\n\ntr"));
    CHECK(!strcmp(f.request, "PATCH /virtio-mem/node0?wait=1 HTTP/1.1\r\nHost: localhost\r\n"
                             "Accept: */*\r\nContent-Type: application/json\r\n"
                             "Content-Length: 20\r\n\r\n{\"requested_size\":1}"));
    free(r.body);
}

TEST(empty_body_and_bare_lf_lines)
{
    struct fake f = {.parts = {"HTTP/1.0 204\nX: y\n\n"}};
    struct httpc_response r;
    CHECK_EQ(run(&f, &get_vm, &r), HTTPC_OK);
    CHECK_EQ(r.status, 204);
    CHECK(r.body && r.body_len == 0 && r.body[0] == '\0');
    CHECK(!strcmp(f.request, "GET /vm HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"));
    free(r.body);
}

TEST(close_delimited_body_in_pieces)
{
    struct fake f = {.parts = {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfir", "st ",
                               "second"},
                     .delay_ms = 20};
    struct httpc_response r;
    CHECK_EQ(run(&f, &get_vm, &r), HTTPC_OK);
    CHECK_EQ(r.status, 200);
    CHECK(r.body && !strcmp(r.body, "first second"));
    free(r.body);
}

struct sunk {
    char data[256];
    size_t len;
    int calls, fail_after;
};

static int sink(void *opaque, const char *p, size_t n)
{
    struct sunk *s = opaque;
    if (s->fail_after && s->calls >= s->fail_after)
        return -1;
    s->calls++;
    if (s->len + n < sizeof(s->data)) {
        memcpy(s->data + s->len, p, n);
        s->len += n;
    }
    return 0;
}

/* What GET /events sends to an HTTP/1.1 client (libmicrohttpd with an
 * unknown size), split at awkward places. */
TEST(chunked_stream_to_a_sink)
{
    struct fake f = {.parts = {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: "
                               "application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
                               "7\r\n{\"a\":1", "}\r\n", "2;ext=1\r\n\n\r", "\r", "\n1", "A\r\n",
                               "0123456789abcdefghijklmnop\r\n0\r\nTrailer: x\r\n\r\n"},
                     .delay_ms = 10};
    struct sunk s = {0};
    struct httpc_request req = get_vm;
    req.sink = sink;
    req.sink_arg = &s;
    req.total_timeout_ms = 0;
    struct httpc_response r;
    CHECK_EQ(run(&f, &req, &r), HTTPC_OK);
    CHECK_EQ(r.status, 200);
    CHECK(r.body == NULL);
    s.data[s.len] = '\0';
    CHECK(!strcmp(s.data, "{\"a\":1}\n\r0123456789abcdefghijklmnop"));
}

TEST(chunked_collected)
{
    struct fake f = {.parts = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n"
                               "Content-Length: 99\r\n\r\n3\r\nabc\r\n0\r\n\r\n"}};
    struct httpc_response r;
    CHECK_EQ(run(&f, &get_vm, &r), HTTPC_OK);
    CHECK(r.body && !strcmp(r.body, "abc"));
    free(r.body);
}

TEST(interim_100_continue_is_skipped)
{
    struct fake f = {.parts = {"HTTP/1.1 100 Continue\r\n\r\n",
                               "HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno"}};
    struct httpc_response r;
    CHECK_EQ(run(&f, &get_vm, &r), HTTPC_OK);
    CHECK_EQ(r.status, 400);
    CHECK(r.body && !strcmp(r.body, "no"));
    free(r.body);
}

TEST(truncated_answers)
{
    struct httpc_response r;
    struct fake a = {.parts = {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"}};
    CHECK_EQ(run(&a, &get_vm, &r), HTTPC_E_PARTIAL);
    CHECK(r.body == NULL);
    /* The events stream when the server gives up on it: no last chunk. */
    struct fake b = {.parts = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "3\r\nabc\r\n"}};
    CHECK_EQ(run(&b, &get_vm, &r), HTTPC_E_PARTIAL);
    struct fake c = {.parts = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"}};
    CHECK_EQ(run(&c, &get_vm, &r), HTTPC_E_PARTIAL);
    struct fake d = {.parts = {"HTTP/1.1 200 OK\r\nContent-Le"}};
    CHECK_EQ(run(&d, &get_vm, &r), HTTPC_E_HEAD_CUT);
    struct fake e = {.parts = {NULL}};
    CHECK_EQ(run(&e, &get_vm, &r), HTTPC_E_NOTHING);
    CHECK_STR_CONTAINS(httpc_strerror(HTTPC_E_NOTHING), "Server returned nothing");
}

TEST(garbage_status_lines)
{
    static const char *const bad[] = {
        "SSH-2.0-OpenSSH_9.2\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/2 200\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n", "\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n",
        "HTTP/1.1 200 O\x01K\r\n\r\n", "HTTP/1.1 101 Switching\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fake f = {.parts = {bad[i]}, .hold = true};
        struct httpc_response r;
        int rc = run(&f, &get_vm, &r);
        if (rc != HTTPC_E_STATUS)
            fprintf(stderr, "status line %zu: %s\n", i, httpc_strerror(rc));
        CHECK_EQ(rc, HTTPC_E_STATUS);
    }
}

TEST(malformed_headers_and_framing)
{
    static const struct {
        const char *answer;
        int rc;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", HTTPC_E_HEADER},
        {"HTTP/1.1 200 OK\r\nName : v\r\n\r\n", HTTPC_E_HEADER},
        {"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", HTTPC_E_HEADER},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", HTTPC_E_LENGTH},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", HTTPC_E_LENGTH},
        {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", HTTPC_E_LENGTH},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", HTTPC_E_LENGTH},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", HTTPC_E_CHUNK},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", HTTPC_E_CHUNK},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
         HTTPC_E_CHUNK},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\n", HTTPC_E_CHUNK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake f = {.parts = {cases[i].answer}, .hold = true};
        struct httpc_response r;
        int rc = run(&f, &get_vm, &r);
        if (rc != cases[i].rc)
            fprintf(stderr, "case %zu: %s\n", i, httpc_strerror(rc));
        CHECK_EQ(rc, cases[i].rc);
    }
}

TEST(huge_header_is_refused_not_buffered)
{
    size_t n = 200 * 1024;
    char *big = malloc(n);
    memset(big, 'a', n);
    memcpy(big, "HTTP/1.1 200 OK\r\nX-Big: ", 24);
    struct fake f = {.parts = {big}, .part_len = {n}, .hold = true};
    struct httpc_response r;
    CHECK_EQ(run(&f, &get_vm, &r), HTTPC_E_HEAD_TOO_BIG);
    CHECK_STR_CONTAINS(httpc_strerror(HTTPC_E_HEAD_TOO_BIG), "header too large");
    /* Many small header lines add up the same way. */
    size_t m = 0;
    m += (size_t)sprintf(big, "HTTP/1.1 200 OK\r\n");
    while (m < 100 * 1024)
        m += (size_t)sprintf(big + m, "X-H: 0123456789\r\n");
    struct fake g = {.parts = {big}, .part_len = {m}, .hold = true};
    CHECK_EQ(run(&g, &get_vm, &r), HTTPC_E_HEAD_TOO_BIG);
    free(big);
}

TEST(collected_body_is_bounded)
{
    struct fake f = {.parts = {"HTTP/1.1 200 OK\r\n\r\n0123456789abcdef"}};
    struct httpc_request req = get_vm;
    req.max_body = 10;
    struct httpc_response r;
    CHECK_EQ(run(&f, &req, &r), HTTPC_E_BODY_TOO_BIG);
    CHECK(r.body == NULL);
}

TEST(sink_refusal_stops_the_transfer)
{
    struct fake f = {.parts = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
                               "1\r\nb\r\n"},
                     .delay_ms = 10,
                     .hold = true};
    struct sunk s = {.fail_after = 1};
    struct httpc_request req = get_vm;
    req.sink = sink;
    req.sink_arg = &s;
    struct httpc_response r;
    CHECK_EQ(run(&f, &req, &r), HTTPC_E_SINK);
    CHECK_EQ(s.len, 1);
}

TEST(slow_server_times_out)
{
    /* Nothing at all, then half a head: the head deadline. */
    struct fake f = {.hold = true, .parts = {"HTTP/1.1 200 OK\r\n"}};
    struct httpc_request req = get_vm;
    req.head_timeout_ms = 300;
    req.total_timeout_ms = 0;
    struct httpc_response r;
    double t0 = now_s();
    CHECK_EQ(run(&f, &req, &r), HTTPC_E_TIMEOUT);
    double took = now_s() - t0;
    CHECK(took >= 0.25 && took < 3.0);
    CHECK_STR_CONTAINS(httpc_strerror(HTTPC_E_TIMEOUT), "Timeout was reached");

    /* A body that stops coming: the total deadline. */
    struct fake g = {.hold = true,
                     .parts = {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"}};
    req.head_timeout_ms = 5000;
    req.total_timeout_ms = 300;
    t0 = now_s();
    CHECK_EQ(run(&g, &req, &r), HTTPC_E_TIMEOUT);
    took = now_s() - t0;
    CHECK(took >= 0.25 && took < 3.0);

    /* A stream (no total deadline) may be quiet longer than the head's. */
    struct fake h = {.parts = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                               "1\r\nx\r\n0\r\n\r\n"},
                     .delay_ms = 400};
    req.head_timeout_ms = 200;
    req.total_timeout_ms = 0;
    CHECK_EQ(run(&h, &req, &r), HTTPC_OK);
    CHECK(r.body && !strcmp(r.body, "x"));
    free(r.body);
}

TEST(over_a_unix_socket_and_connect_errors)
{
    char dir[] = "/tmp/httpc-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char path[64];
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    struct httpc_response r;
    CHECK_EQ(httpc_request(path, &get_vm, &r), HTTPC_E_CONNECT);
    CHECK_STR_CONTAINS(httpc_strerror(HTTPC_E_CONNECT), "Couldn't connect");
    char longp[200];
    memset(longp, 'x', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    CHECK_EQ(httpc_request(longp, &get_vm, &r), HTTPC_E_PATH);

    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, path, strlen(path) + 1);
    CHECK_EQ(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_EQ(listen(l, 4), 0);
    struct fake f = {.parts = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
                     .fd = l};
    pthread_t acceptor;
    pthread_create(&acceptor, NULL, accept_and_serve, &f);
    CHECK_EQ(httpc_request(path, &get_vm, &r), HTTPC_OK);
    CHECK_EQ(r.status, 200);
    CHECK(r.body && !strcmp(r.body, "ok"));
    free(r.body);
    pthread_join(acceptor, NULL);
    close(l);
    unlink(path);
    rmdir(dir);
}

TEST(escape_keeps_only_unreserved)
{
    char *e = httpc_escape("node0-a_b.c~ /?%#\xff");
    CHECK(e && !strcmp(e, "node0-a_b.c~%20%2F%3F%25%23%FF"));
    free(e);
}
