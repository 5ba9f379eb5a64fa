/* Writing the API's answers on a client socket: the status line, the
 * headers every answer carries (Date, Connection: close, Content-Type,
 * Content-Length) and the body, whole or as a stream. */
#ifndef MINIVMM_API_REPLY_H
#define MINIVMM_API_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/* The reason phrase of an HTTP status this API uses ("Error" otherwise). */
const char *api_reason_phrase(unsigned status);

/* Writes a whole answer to fd: body of len bytes unless head_only (the
 * answer to HEAD), and an Allow header when allow is not NULL. On a
 * non-blocking socket whatever does not fit at once is dropped; on a
 * blocking one a send waits at most the socket's send timeout. 0, or a
 * negative errno once the client cannot take more. */
int api_reply_write(int fd, bool head_only, unsigned status, const char *content_type,
                    const char *allow, const char *body, size_t len);

/* "100 Continue": the client may send the body it announced. */
int api_reply_continue(int fd);

/* A stream of unknown length: the head (chunked for an HTTP/1.1 client,
 * else ended by the connection's close), then pieces, then the end. Each
 * returns 0 or a negative errno. */
int api_reply_stream_begin(int fd, bool chunked, unsigned status, const char *content_type);
int api_reply_stream_piece(int fd, bool chunked, const char *p, size_t len);
int api_reply_stream_end(int fd, bool chunked);

#endif
