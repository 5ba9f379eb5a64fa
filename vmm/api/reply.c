/* The answers' bytes (api/reply.h). Every answer ends its connection
 * ("Connection: close"): the next request comes on a new connection, through
 * the front door's checks (api/front.c). */
#include "vmm/api/reply.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

const char *api_reason_phrase(unsigned status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    }
    return "Error";
}

static int send_all(int fd, const char *p, size_t len, int flags)
{
    while (len) {
        ssize_t n = send(fd, p, len, flags | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The status line and the headers every answer has; extra (CRLF-ended
 * lines, or "") goes after them. The length of the head, or -ENOSPC. */
static int format_head(char *buf, size_t size, unsigned status, const char *content_type,
                       const char *extra)
{
    char date[64] = "";
    time_t t = time(NULL);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    int n = snprintf(buf, size,
                     "HTTP/1.1 %u %s\r\n%sConnection: close\r\nContent-Type: %s\r\n%s\r\n", status,
                     api_reason_phrase(status), date, content_type, extra);
    return n > 0 && (size_t)n < size ? n : -ENOSPC;
}

int api_reply_write(int fd, bool head_only, unsigned status, const char *content_type,
                    const char *allow, const char *body, size_t len)
{
    char extra[256], head[512];
    int n = snprintf(extra, sizeof(extra), "Content-Length: %zu\r\n%s%s%s", len,
                     allow ? "Allow: " : "", allow ? allow : "", allow ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(extra))
        return -ENOSPC;
    n = format_head(head, sizeof(head), status, content_type, extra);
    if (n < 0)
        return n;
    bool more = !head_only && len;
    int rc = send_all(fd, head, (size_t)n, more ? MSG_MORE : 0);
    if (rc == 0 && more)
        rc = send_all(fd, body, len, 0);
    return rc;
}

int api_reply_continue(int fd)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    return send_all(fd, cont, sizeof(cont) - 1, 0);
}

int api_reply_stream_begin(int fd, bool chunked, unsigned status, const char *content_type)
{
    char head[512];
    int n = format_head(head, sizeof(head), status, content_type,
                        chunked ? "Cache-Control: no-store\r\nTransfer-Encoding: chunked\r\n"
                                : "Cache-Control: no-store\r\n");
    return n < 0 ? n : send_all(fd, head, (size_t)n, 0);
}

int api_reply_stream_piece(int fd, bool chunked, const char *p, size_t len)
{
    if (!len)
        return 0;               /* an empty chunk would end the stream */
    if (!chunked)
        return send_all(fd, p, len, 0);
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    int rc = send_all(fd, size, (size_t)n, MSG_MORE);
    if (rc == 0)
        rc = send_all(fd, p, len, MSG_MORE);
    if (rc == 0)
        rc = send_all(fd, "\r\n", 2, 0);
    return rc;
}

int api_reply_stream_end(int fd, bool chunked)
{
    return chunked ? send_all(fd, "0\r\n\r\n", 5, 0) : 0;
}
