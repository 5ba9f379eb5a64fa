/* The API's listening Unix socket: created by minivmm (not by the HTTP
 * library) so its mode, stale-socket replacement and removal are ours. */
#ifndef MINIVMM_API_SOCKET_H
#define MINIVMM_API_SOCKET_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>

struct api_socket {
    int fd;                     /* listening; -1 when closed / handed over */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev;                  /* the socket file we created, so we only */
    ino_t ino;                  /* ever remove our own */
};

/* Binds and listens at path with mode 0600. A socket file there that nobody
 * accepts on (ECONNREFUSED) is replaced; a live socket or any other file is
 * refused. Returns 0, or a negative errno with err naming --api-sock. */
int api_socket_open(struct api_socket *s, const char *path, char *err, size_t errlen);

/* Removes the socket file if it is still the one we created. */
void api_socket_unlink(const struct api_socket *s);

#endif
