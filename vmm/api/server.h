/* The HTTP/JSON API server (docs/api.md) on --api-sock: its own threads, one
 * per connection, all requests served through vmm/vm_control.h. */
#ifndef MINIVMM_API_SERVER_H
#define MINIVMM_API_SERVER_H

struct vm;
struct api_server;

/* Creates the socket at path and starts serving. Returns 0, or a negative
 * errno with the cause logged (naming --api-sock). */
int api_server_start(struct api_server **out, struct vm *vm, const char *path);

/* Ends open streams and waits (?wait) requests, stops every server thread and
 * removes the socket file. NULL is a no-op. Call before vm_destroy. */
void api_server_stop(struct api_server *s);

#endif
