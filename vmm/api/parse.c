#include "vmm/api/parse.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/api/json.h"

/* ?wait=SECONDS: 0 < S <= 3600, plain decimal ("2", "0.5"): no sign,
 * exponent, hex, inf or nan, which strtod alone would take. */
static int parse_wait(const char *text, double *out)
{
    if (!text || !*text || strspn(text, "0123456789.") != strlen(text))
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || *end || !isfinite(v) || v <= 0 || v > 3600)
        return -EINVAL;
    *out = v;
    return 0;
}

int api_parse_resize(const char *body, size_t len, bool wait_given, const char *wait,
                     uint64_t *requested, double *wait_s, char *err, size_t errlen)
{
    *wait_s = 0;
    if (wait_given && parse_wait(wait, wait_s) != 0) {
        snprintf(err, errlen, "wait '%.40s': expected seconds, more than 0 and at most 3600",
                 wait ? wait : "");
        return -EINVAL;
    }

    static const char *const fields[] = {"requested_size", NULL};
    json_t *obj = api_json_parse_object(body, len, fields, err, errlen);
    if (!obj)
        return -EINVAL;
    json_t *value = json_object_get(obj, "requested_size");
    int rc = value ? api_json_size("requested_size", value, requested, err, errlen)
                   : (snprintf(err, errlen, "requested_size is required"), -EINVAL);
    json_decref(obj);
    return rc;
}

int api_parse_action(const char *body, size_t len, char *action, size_t action_len, char *err,
                     size_t errlen)
{
    static const char *const fields[] = {"action", NULL};
    json_t *obj = api_json_parse_object(body, len, fields, err, errlen);
    if (!obj)
        return -EINVAL;
    json_t *value = json_object_get(obj, "action");
    const char *text = json_string_value(value);
    int rc = -EINVAL;
    if (!value)
        snprintf(err, errlen, "action is required");
    else if (!text)
        snprintf(err, errlen, "action: expected a string");
    else if (strcmp(text, "shutdown") != 0 && strcmp(text, "reboot") != 0)
        snprintf(err, errlen, "action '%.40s': expected \"shutdown\" or \"reboot\"", text);
    else
        rc = 0, snprintf(action, action_len, "%s", text);
    json_decref(obj);
    return rc;
}
