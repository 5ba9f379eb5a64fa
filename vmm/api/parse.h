/* The API's request inputs, parsed and validated apart from the socket: the
 * JSON bodies and query values of the handlers that take them. Pure
 * functions (no VM, no connection), so tests/fuzz calls them directly; the
 * handlers in api/routes.c only send what they decide. */
#ifndef MINIVMM_API_PARSE_H
#define MINIVMM_API_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PATCH /virtio-mem/{id}: `wait` is the ?wait value (NULL for "?wait" with
 * no '='), wait_given whether the parameter was present at all; body is the
 * JSON body. 0 with *requested and *wait_s (0 without ?wait), or -EINVAL
 * with err holding the 400's message. */
int api_parse_resize(const char *body, size_t len, bool wait_given, const char *wait,
                     uint64_t *requested, double *wait_s, char *err, size_t errlen);

/* PUT /vm/actions: 0 with the action ("shutdown" or "reboot") copied into
 * action, or -EINVAL with err holding the 400's message. */
int api_parse_action(const char *body, size_t len, char *action, size_t action_len, char *err,
                     size_t errlen);

#endif
