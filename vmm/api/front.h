/* The API's front door: one thread that accepts connections, waits for each
 * whole request under a total deadline, refuses malformed ones with a JSON
 * 4xx, and hands well-formed ones to a thread of their own (api/server.c).
 * See api/front.c. */
#ifndef MINIVMM_API_FRONT_H
#define MINIVMM_API_FRONT_H

#include <stddef.h>

struct api_server;
struct api_front;

/* Starts the thread; call it from a thread under the API's seccomp filter
 * (the new thread, and the connection threads it starts, inherit it). */
int api_front_start(struct api_server *s, struct api_front **out, char *err, size_t errlen);

/* Stops and joins the thread, closing connections not yet handed on. */
void api_front_stop(struct api_front *f);

#endif
