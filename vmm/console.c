#include "vmm/console.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/log.h"
#include "vmm/sandbox/seccomp.h"
#include "vmm/vm.h"

#define CONSOLE_ESCAPE 0x01     /* Ctrl-A */

/* A fatal signal (SIGSEGV, SIGABRT from a sanitizer) must not leave the user's
 * terminal raw. Signal handlers cannot reach a struct, so the terminal state
 * to restore lives here; it is written once before raw mode starts. */
static struct termios crash_restore_termios;
static int crash_restore_fd = -1;

static void crash_restore(int sig)
{
    if (crash_restore_fd >= 0)
        tcsetattr(crash_restore_fd, TCSANOW, &crash_restore_termios);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_crash_restore(int fd, const struct termios *t)
{
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    crash_restore_termios = *t;
    crash_restore_fd = fd;
    for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
        struct sigaction sa = {.sa_handler = crash_restore, .sa_flags = SA_RESETHAND};
        sigemptyset(&sa.sa_mask);
        sigaction(fatal[i], &sa, NULL);
    }
}

/* Handles the Ctrl-A escape on a terminal: "Ctrl-A x" quits, "Ctrl-A Ctrl-A"
 * sends one Ctrl-A. Returns the number of bytes left in buf to forward. */
static size_t filter_escapes(struct console *c, unsigned char *buf, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = buf[i];
        if (c->escape_pending) {
            c->escape_pending = false;
            if (ch == 'x' || ch == 'X') {
                vm_request_stop(c->vm, VM_STOP_USER, "stopped from the console (Ctrl-A x)");
                return out;
            }
            if (ch != CONSOLE_ESCAPE)
                continue;   /* unknown command: swallow it */
        } else if (ch == CONSOLE_ESCAPE) {
            c->escape_pending = true;
            continue;
        }
        buf[out++] = ch;
    }
    return out;
}

void console_output_open(struct console_output *out, int fd)
{
    *out = (struct console_output){.fd = -1};
    struct stat st;
    if (fstat(fd, &st) < 0)
        return;     /* stdout closed: the guest's output goes nowhere */
    out->fd = fd;
    if (S_ISSOCK(st.st_mode)) {
        out->is_socket = true;      /* MSG_DONTWAIT makes each send non-blocking */
        return;
    }
    if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
        return;     /* a regular file: writes do not wait for a reader */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_NONBLOCK))
        return;
    /* Setting O_NONBLOCK on stdout itself would change the file description
     * the user's shell shares; a fresh open of the same pipe or terminal
     * gets a description of our own. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int own = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (own >= 0) {
        out->fd = own;
        out->own_fd = true;
        return;
    }
    log_warn("console: cannot reopen stdout non-blocking (%s): a stalled stdout can hold "
             "back the console thread", strerror(errno));
    out->may_block = true;
}

void console_output_close(struct console_output *out)
{
    if (out->own_fd && out->fd >= 0)
        close(out->fd);
    out->fd = -1;
    out->own_fd = false;
}

/* Writes guest output until the UART's buffer is empty (true) or stdout
 * would block (false). writable: poll said POLLOUT, which is what a
 * description that may block needs before each write of at most PIPE_BUF. */
static bool drain_output(struct console *c, bool writable)
{
    const struct console_output *out = c->out;
    for (;;) {
        if (c->out_off == c->out_len) {
            c->out_off = 0;
            c->out_len = c->port.ops->take_output(c->port.uart, c->out_buf, sizeof(c->out_buf));
            if (!c->out_len)
                return true;
        }
        if (out->fd < 0 || c->out_dead) {
            c->out_off = c->out_len;
            continue;
        }
        if (out->may_block && !writable)
            return false;
        const unsigned char *p = c->out_buf + c->out_off;
        size_t len = c->out_len - c->out_off;
        ssize_t n = out->is_socket ? send(out->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL)
                                   : write(out->fd, p, out->may_block && len > PIPE_BUF
                                                           ? PIPE_BUF : len);
        if (n > 0) {
            c->out_off += (size_t)n;
            writable = false;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        log_warn("console: writing guest output: %s; discarding it from now on",
                 n < 0 ? strerror(errno) : "nothing written");
        c->out_dead = true;
    }
}

/* One line when drops start; another only after stdout caught up and fell
 * behind again (rate-limited). The running total is the metric. */
static void report_drops(struct console *c)
{
    static struct log_ratelimit rl;
    uint64_t dropped = c->port.ops->output_dropped(c->port.uart);
    if (dropped == c->dropped_reported)
        return;
    c->dropped_reported = dropped;
    if (c->drops_warned)
        return;
    c->drops_warned = true;
    log_warn_ratelimited(&rl, "console: stdout is not taking guest output; dropping what "
                         "does not fit in the UART's %zu KiB buffer "
                         "(minivmm_console_output_dropped_bytes_total)",
                         c->port.output_buffer_size / 1024);
}

/* Hands buffered input to the UART; what does not fit waits for the UART's
 * "receive space" notification, while output keeps draining. */
static void forward_input(struct console *c)
{
    if (c->in_off == c->in_len || vm_stopping(c->vm))
        return;
    c->in_off += c->port.ops->push_input(c->port.uart, c->in_buf + c->in_off,
                                         c->in_len - c->in_off);
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
}

static void read_input(struct console *c)
{
    ssize_t n = read(c->in_fd, c->in_buf, sizeof(c->in_buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        c->in_open = false;     /* EOF or error: the guest just gets no more input */
        return;
    }
    c->in_off = 0;
    c->in_len = c->is_tty ? filter_escapes(c, c->in_buf, (size_t)n) : (size_t)n;
    forward_input(c);
}

/* At stop the vCPUs have ended: write what is left, for a bounded time. */
static void flush_output(struct console *c)
{
    int64_t deadline = (int64_t)clock_mono_ms() + CONSOLE_FLUSH_MS;
    bool writable = false;
    while (!drain_output(c, writable)) {
        int64_t left = deadline - (int64_t)clock_mono_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = c->out->fd, .events = POLLOUT};
        int r = poll(&p, 1, (int)left);
        writable = r > 0 && (p.revents & POLLOUT);
        if (r > 0 && !writable)
            break;      /* POLLERR/POLLHUP: the next write would fail anyway */
    }
    size_t lost = c->out_len - c->out_off;
    c->out_off = c->out_len = 0;
    unsigned char scratch[4096];
    size_t n;
    while ((n = c->port.ops->take_output(c->port.uart, scratch, sizeof(scratch))) > 0)
        lost += n;
    if (lost)
        log_warn("console: %zu bytes of guest output not written: stdout did not take them "
                 "within %d ms", lost, CONSOLE_FLUSH_MS);
}

static void *console_thread(void *arg)
{
    struct console *c = arg;

    pthread_setname_np(pthread_self(), "console");
    if (seccomp_enter(SECCOMP_ROLE_CONSOLE, "console") < 0) {
        vm_request_stop(c->vm, VM_STOP_ERROR, "console: cannot install its seccomp filter");
        return NULL;
    }
    bool out_pending = false, writable = false;
    for (;;) {
        bool want_input = c->in_open && c->in_off == c->in_len;
        struct pollfd fds[4] = {
            {.fd = c->wake_fd, .events = POLLIN},
            {.fd = c->port.notify_fd, .events = POLLIN},
            {.fd = want_input ? c->in_fd : -1, .events = POLLIN},
            {.fd = out_pending ? c->out->fd : -1, .events = POLLOUT},
        };
        if (poll(fds, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_warn("console: poll: %s", strerror(errno));
            return NULL;
        }
        if (fds[0].revents)
            break;
        if (fds[1].revents) {
            uint64_t v;
            if (read(c->port.notify_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_warn("console: reading the UART's eventfd: %s", strerror(errno));
        }
        writable = fds[3].revents != 0;
        out_pending = !drain_output(c, writable);
        report_drops(c);
        if (!out_pending)
            c->drops_warned = false;    /* stdout caught up */
        forward_input(c);
        if (fds[2].revents)
            read_input(c);
    }
    flush_output(c);
    return NULL;
}

static int enter_raw_mode(struct console *c)
{
    if (tcgetattr(c->in_fd, &c->saved) < 0) {
        log_warn("console: tcgetattr: %s", strerror(errno));
        return 0;
    }
    install_crash_restore(c->in_fd, &c->saved);
    struct termios raw = c->saved;
    cfmakeraw(&raw);
    /* Keep output post-processing so the VMM's own log lines stay readable;
     * the guest's "\r\n" passes through unchanged either way. */
    raw.c_oflag |= OPOST | ONLCR;
    if (tcsetattr(c->in_fd, TCSANOW, &raw) < 0) {
        log_warn("console: tcsetattr raw: %s", strerror(errno));
        return 0;
    }
    c->raw_active = true;
    return 0;
}

int console_start(struct console *c, struct vm *vm, const struct console_port *port, int in_fd,
                  const struct console_output *out)
{
    memset(c, 0, sizeof(*c));
    c->wake_fd = -1;
    if (!port->ops) {
        log_error("console: this VM has no console UART");
        return -ENODEV;
    }
    c->vm = vm;
    c->port = *port;
    c->in_fd = in_fd;
    c->in_open = true;
    c->out = out;
    c->dropped_reported = port->ops->output_dropped(port->uart);
    c->is_tty = isatty(in_fd);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0) {
        log_error("console: eventfd: %s", strerror(errno));
        return -errno;
    }
    if (c->is_tty)
        enter_raw_mode(c);
    int rc = pthread_create(&c->thread, NULL, console_thread, c);
    if (rc) {
        log_error("console: starting reader thread: %s", strerror(rc));
        console_stop(c);
        return -rc;
    }
    c->thread_started = true;
    return 0;
}

void console_stop(struct console *c)
{
    if (c->thread_started) {
        uint64_t one = 1;
        if (write(c->wake_fd, &one, sizeof(one)) < 0)
            log_warn("console: waking the console thread: %s", strerror(errno));
        /* Returns within CONSOLE_FLUSH_MS: nothing in the thread blocks but
         * poll, which the wake eventfd ends, and the bounded flush. */
        pthread_join(c->thread, NULL);
        c->thread_started = false;
    }
    if (c->raw_active) {
        tcsetattr(c->in_fd, TCSANOW, &c->saved);
        c->raw_active = false;
        crash_restore_fd = -1;
    }
    if (c->wake_fd >= 0) {
        close(c->wake_fd);
        c->wake_fd = -1;
    }
}
