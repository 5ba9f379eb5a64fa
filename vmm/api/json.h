/* Building and sending the API's JSON (and text) replies, and reading its
 * JSON bodies. */
#ifndef MINIVMM_API_JSON_H
#define MINIVMM_API_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/vm_control.h"

struct api_conn;

/* Each sends a whole answer on c and returns 0, or -1 when the client
 * could not take it (the connection is closed anyway). */

/* Sends body (dumped compactly, then released) with status. */
int api_send_json(struct api_conn *c, unsigned status, json_t *body);

/* Sends {"error": "<message>"}; allow, when not NULL, becomes the Allow header
 * (for 405). Bytes outside printable ASCII in the message become '?'. */
__attribute__((format(printf, 4, 5)))
int api_send_error(struct api_conn *c, unsigned status, const char *allow,
                               const char *fmt, ...);

/* Writes {"error": "<msg>"} to the client socket fd, as api_send_error
 * does (for a connection the front door has not handed on); no body when
 * head_only. 0, or -1 when the client did not take it. */
int api_write_error(int fd, bool head_only, unsigned status, const char *allow,
                    const char *msg);

/* Sends text of len bytes with the given Content-Type; takes ownership of
 * text (malloc'ed). */
int api_send_text(struct api_conn *c, unsigned status, const char *content_type,
                              char *text, size_t len);

json_t *api_json_vm(const struct vmc_vm_info *info);
json_t *api_json_virtio_mem(const struct vmc_virtio_mem_info *d);

/* Parses body as one JSON object whose member names are all in allowed
 * (NULL-terminated). Returns it, or NULL with err saying why. */
json_t *api_json_parse_object(const char *body, size_t len, const char *const *allowed,
                              char *err, size_t errlen);

/* A size member: a non-negative integer of bytes, or a string for
 * size_parse ("8G"). 0, or -EINVAL with err saying why. */
int api_json_size(const char *name, json_t *value, uint64_t *out, char *err, size_t errlen);

#endif
