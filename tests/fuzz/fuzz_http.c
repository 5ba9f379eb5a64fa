/* The API's request check (vmm/api/http.c), the front door's judge of
 * whatever a client sends: any bytes, judged as a whole and as every prefix
 * the front door might have peeked at. Properties: a verdict on a prefix
 * never contradicts the whole (a prefix refused stays refused; a complete
 * request is complete on any longer buffer, with the same length), a refusal
 * is one of the documented statuses with a reason, and a complete request's
 * length lies inside the buffer. */
#include "tests/fuzz/fuzz.h"
#include "vmm/api/http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_mute_log();
    return 0;
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
