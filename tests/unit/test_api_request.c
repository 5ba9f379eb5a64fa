/* A checked request taken apart (vmm/api/request.c) and the answers' bytes
 * (vmm/api/reply.c), without a socket but a socketpair. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"
#include "vmm/api/reply.h"
#include "vmm/api/request.h"

#define CHECK_STR_EQ(a, b) CHECK((a) != NULL && !strcmp((a), (b)))

/* Parses text, which must be a whole, well-formed request. */
static void parse(const char *text, struct api_http_request *r)
{
    struct api_http_check chk;
    api_http_check(text, strlen(text), &chk);
    CHECK_EQ(chk.verdict, API_HTTP_COMPLETE);
    CHECK_EQ(api_request_parse(text, &chk, r), 0);
}

TEST(method_path_content_type_and_body)
{
    struct api_http_request r;
    const char *text = "PATCH /virtio-mem/node0 HTTP/1.1\r\nHost: x\r\n"
                       "Content-Type: application/json; charset=utf-8\r\n"
                       "content-type: text/plain\r\nContent-Length: 4\r\n\r\n{}\r\n";
    parse(text, &r);
    CHECK_STR_EQ(r.method, "PATCH");
    CHECK_STR_EQ(r.path, "/virtio-mem/node0");
    CHECK_STR_EQ(r.content_type, "application/json; charset=utf-8");    /* the first */
    CHECK_EQ(r.body_len, 4);
    CHECK(!memcmp(r.body, "{}\r\n", 4));
    CHECK(r.http11 && !r.head && !r.bad_query);
    CHECK_EQ(r.n_query, 0);
    api_request_free(&r);
}

TEST(no_content_type_http10_and_head)
{
    struct api_http_request r;
    parse("HEAD /vm HTTP/1.0\r\n\r\n", &r);
    CHECK(r.content_type == NULL);
    CHECK(!r.http11 && r.head);
    CHECK_EQ(r.body_len, 0);
    api_request_free(&r);
}

TEST(path_decodes_percent_but_not_plus)
{
    struct api_http_request r;
    parse("GET /virtio-mem/a%2Fb+c%41 HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    CHECK_STR_EQ(r.path, "/virtio-mem/a/b+cA");
    api_request_free(&r);
}

TEST(query_keys_and_values_decode_plus_and_percent)
{
    struct api_http_request r;
    parse("GET /events?since=1+2&w%61it&x=%3D&since=9 HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    CHECK_STR_EQ(r.path, "/events");
    CHECK_EQ(r.n_query, 4);
    bool present;
    CHECK_STR_EQ(api_request_query(&r, "since", &present), "1 2");     /* the first */
    CHECK(present);
    CHECK(api_request_query(&r, "wait", &present) == NULL);             /* no '=' */
    CHECK(present);
    CHECK_STR_EQ(api_request_query(&r, "x", &present), "=");
    CHECK(api_request_query(&r, "nope", &present) == NULL);
    CHECK(!present);
    CHECK(!r.bad_query);
    api_request_free(&r);
}

TEST(empty_query_and_trailing_ampersand_are_no_parameters)
{
    struct api_http_request r;
    parse("GET /vm? HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    CHECK_EQ(r.n_query, 0);
    CHECK(!r.bad_query);
    api_request_free(&r);
    parse("GET /vm?a=1& HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    CHECK_EQ(r.n_query, 1);
    CHECK(!r.bad_query);
    api_request_free(&r);
}

TEST(nameless_or_too_many_query_parameters_are_bad)
{
    static const char *const bad[] = {"/vm?=1", "/vm?&a", "/vm?a&&b", "/vm?=",
        "/vm?a&b&c&d&e&f&g&h&i&j&k&l&m&n&o&p&q"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", bad[i]);
        struct api_http_request r;
        parse(text, &r);
        CHECK(r.bad_query);
        api_request_free(&r);
    }
}

/* What api_reply_write puts on a socket. */
static size_t written(char *out, size_t size, bool head_only, const char *allow)
{
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    CHECK_EQ(api_reply_write(sv[0], head_only, 405, "application/json", allow, "{}\n", 3), 0);
    close(sv[0]);
    size_t n = 0;
    ssize_t k;
    while ((k = read(sv[1], out + n, size - 1 - n)) > 0)
        n += (size_t)k;
    out[n] = '\0';
    close(sv[1]);
    return n;
}

TEST(an_answer_has_its_headers_and_exact_body)
{
    char out[1024];
    written(out, sizeof(out), false, "GET, PATCH");
    CHECK(!strncmp(out, "HTTP/1.1 405 Method Not Allowed\r\n", 33));
    CHECK_STR_CONTAINS(out, "\r\nConnection: close\r\n");
    CHECK_STR_CONTAINS(out, "\r\nContent-Type: application/json\r\n");
    CHECK_STR_CONTAINS(out, "\r\nContent-Length: 3\r\n");
    CHECK_STR_CONTAINS(out, "\r\nAllow: GET, PATCH\r\n");
    CHECK_STR_CONTAINS(out, " GMT\r\n");
    const char *body = strstr(out, "\r\n\r\n");
    CHECK(body && !strcmp(body + 4, "{}\n"));
}

TEST(head_only_has_the_length_but_no_body)
{
    char out[1024];
    written(out, sizeof(out), true, NULL);
    CHECK_STR_CONTAINS(out, "\r\nContent-Length: 3\r\n");
    CHECK(strstr(out, "\r\nAllow:") == NULL);
    const char *end = strstr(out, "\r\n\r\n");
    CHECK(end && end[4] == '\0');
}

TEST(a_chunked_stream_frames_each_piece)
{
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    CHECK_EQ(api_reply_stream_begin(sv[0], true, 200, "application/x-ndjson"), 0);
    CHECK_EQ(api_reply_stream_piece(sv[0], true, "{\"a\":1}\n", 8), 0);
    CHECK_EQ(api_reply_stream_piece(sv[0], true, "", 0), 0);   /* never the last chunk */
    CHECK_EQ(api_reply_stream_end(sv[0], true), 0);
    close(sv[0]);
    char out[1024];
    size_t n = 0;
    ssize_t k;
    while ((k = read(sv[1], out + n, sizeof(out) - 1 - n)) > 0)
        n += (size_t)k;
    out[n] = '\0';
    close(sv[1]);
    CHECK_STR_CONTAINS(out, "\r\nTransfer-Encoding: chunked\r\n");
    const char *body = strstr(out, "\r\n\r\n");
    CHECK(body && !strcmp(body + 4, "8\r\n{\"a\":1}\n\r\n0\r\n\r\n"));
}

TEST(a_closed_peer_is_an_error_not_a_signal)
{
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    CHECK_EQ(api_reply_write(sv[0], false, 200, "application/json", NULL, "{}\n", 3), -EPIPE);
    close(sv[0]);
}
