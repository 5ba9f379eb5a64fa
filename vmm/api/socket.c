#include "vmm/api/socket.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* As many as the API serves at once (API_MAX_CONNECTIONS): a burst of
 * clients connecting together is queued, not refused with EAGAIN. */
#define API_LISTEN_BACKLOG 256

__attribute__((format(printf, 4, 5)))
static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static void make_addr(struct sockaddr_un *sun, const char *path)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path));
}

/* 0 when nothing (or only a dead socket, now removed) is at path. */
static int clear_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return fail(-errno, err, errlen, "--api-sock %s: %s", path, strerror(errno));
    }
    if (!S_ISSOCK(st.st_mode))
        return fail(-EEXIST, err, errlen, "--api-sock %s: exists and is not a socket", path);

    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return fail(-errno, err, errlen, "--api-sock %s: socket: %s", path, strerror(errno));
    struct sockaddr_un sun;
    make_addr(&sun, path);
    int rc = connect(probe, (struct sockaddr *)&sun, sizeof(sun));
    int cerr = errno;
    close(probe);
    if (rc == 0)
        return fail(-EADDRINUSE, err, errlen,
                    "--api-sock %s: another process is serving this socket", path);
    if (cerr == ENOENT)
        return 0;               /* removed meanwhile */
    if (cerr != ECONNREFUSED)
        return fail(-cerr, err, errlen, "--api-sock %s: cannot tell whether it is in use: %s",
                    path, strerror(cerr));
    /* Nobody listens: a leftover of a VMM that did not exit cleanly. */
    if (unlink(path) != 0 && errno != ENOENT)
        return fail(-errno, err, errlen, "--api-sock %s: removing the stale socket: %s", path,
                    strerror(errno));
    return 0;
}

int api_socket_open(struct api_socket *s, const char *path, char *err, size_t errlen)
{
    s->fd = -1;
    if (!*path || strlen(path) >= sizeof(s->path))
        return fail(-ENAMETOOLONG, err, errlen, "--api-sock: path empty or longer than %zu bytes",
                    sizeof(s->path) - 1);
    snprintf(s->path, sizeof(s->path), "%s", path);

    int rc = clear_stale(path, err, errlen);
    if (rc)
        return rc;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(-errno, err, errlen, "--api-sock %s: socket: %s", path, strerror(errno));
    /* Linux creates the file with the socket inode's mode (less the umask):
     * set it on the fd first, so the file is never more open than 0600 and
     * the process-wide umask is left alone for the other threads. */
    if (fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
        rc = fail(-errno, err, errlen, "--api-sock %s: fchmod: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    struct sockaddr_un sun;
    make_addr(&sun, path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        rc = fail(-errno, err, errlen, "--api-sock %s: bind: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    struct stat st;
    if (lstat(path, &st) != 0 || (st.st_mode & 0077)) {
        /* Not expected on Linux; refuse rather than serve a wider mode. */
        rc = fail(-EPERM, err, errlen, "--api-sock %s: could not create it with mode 0600", path);
        unlink(path);
        close(fd);
        return rc;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    if (listen(fd, API_LISTEN_BACKLOG) != 0) {
        rc = fail(-errno, err, errlen, "--api-sock %s: listen: %s", path, strerror(errno));
        api_socket_unlink(s);
        close(fd);
        return rc;
    }
    s->fd = fd;
    return 0;
}

void api_socket_unlink(const struct api_socket *s)
{
    struct stat st;
    /* Someone may have replaced it (another VMM after ours was declared
     * stale): leave theirs alone. */
    if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        unlink(s->path);
}
