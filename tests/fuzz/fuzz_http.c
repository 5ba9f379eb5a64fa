/* The API's request check (vmm/api/http.c), the front door's judge of
 * whatever a client sends: any bytes, judged as a whole and as every prefix
 * the front door might have peeked at. Properties: a verdict on a prefix
 * never contradicts the whole (a prefix refused stays refused; a complete
 * request is complete on any longer buffer, with the same length), a refusal
 * is one of the documented statuses with a reason, and a complete request's
 * length and parts lie inside the buffer and decode whole (api/request.c). */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/api/http.h"
#include "vmm/api/request.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_mute_log();
    return 0;
}

/* A whole request taken apart (api/request.c): every part within it, no
 * decoded string cut short by a NUL. */
static void check_parts(const char *buf, const struct api_http_check *chk)
{
    struct api_http_request r;
    int rc = api_request_parse(buf, chk, &r);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(strlen(r.method) == chk->method.len);
        /* Each %XX becomes one byte, never a NUL (http.c refuses %00). */
        size_t plen = 0, escapes = 0;
        while (plen < chk->target.len && buf[chk->target.off + plen] != '?')
            escapes += buf[chk->target.off + plen++] == '%';
        FUZZ_CHECK(strlen(r.path) == plen - 2 * escapes);
        FUZZ_CHECK(r.body == buf + chk->body.off && r.body_len == chk->body.len);
        FUZZ_CHECK(!chk->has_content_type ||
                   (r.content_type && strlen(r.content_type) == chk->content_type.len));
        FUZZ_CHECK(r.n_query <= API_MAX_QUERY);
        for (unsigned i = 0; i < r.n_query; i++)
            FUZZ_CHECK(r.query[i].key[0] != '\0');
    }
    api_request_free(&r);
}

static void check_one(const char *buf, size_t n, struct api_http_check *out)
{
    api_http_check(buf, n, out);
    switch (out->verdict) {
    case API_HTTP_INCOMPLETE:
        break;
    case API_HTTP_COMPLETE:
        FUZZ_CHECK(out->length > 0 && out->length <= n);
        FUZZ_CHECK(out->head_done);
        FUZZ_CHECK(out->method.len > 0 && out->target.len > 0);
        FUZZ_CHECK(out->body.off + out->body.len == out->length);
        check_parts(buf, out);
        break;
    case API_HTTP_REFUSE:
        FUZZ_CHECK(out->status == 400 || out->status == 411 || out->status == 413 ||
                   out->status == 414 || out->status == 431);
        FUZZ_CHECK(out->msg[0] != '\0' && memchr(out->msg, '\0', sizeof(out->msg)));
        break;
    default:
        FUZZ_CHECK(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > API_HTTP_MAX_WIRE + 16)
        size = API_HTTP_MAX_WIRE + 16;
    const char *buf = (const char *)data;
    struct api_http_check whole;
    check_one(buf, size, &whole);
    /* A few prefixes, as the front door sees a request arrive. */
    size_t step = size / 7 + 1;
    for (size_t n = 0; n < size; n += step) {
        struct api_http_check part;
        check_one(buf, n, &part);
        if (part.verdict == API_HTTP_REFUSE)
            FUZZ_CHECK(whole.verdict == API_HTTP_REFUSE);
        if (part.verdict == API_HTTP_COMPLETE) {
            FUZZ_CHECK(whole.verdict == API_HTTP_COMPLETE);
            FUZZ_CHECK(whole.length == part.length);
        }
    }
    return 0;
}
