#include "vmm/console.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/serial_16550.h"
#include "vmm/log.h"
#include "vmm/seccomp.h"
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

static void forward(struct console *c, const unsigned char *buf, size_t n)
{
    while (n && !vm_stopping(c->vm)) {
        size_t taken = serial_16550_push_input(c->uart, buf, n);
        buf += taken;
        n -= taken;
        if (n)
            serial_16550_wait_rx_space(c->uart, 100);
    }
}

static void *console_thread(void *arg)
{
    struct console *c = arg;
    unsigned char buf[256];

    pthread_setname_np(pthread_self(), "console");
    if (seccomp_enter(SECCOMP_ROLE_CONSOLE, "console") < 0) {
        vm_request_stop(c->vm, VM_STOP_ERROR, "console: cannot install its seccomp filter");
        return NULL;
    }
    for (;;) {
        struct pollfd fds[2] = {
            {.fd = c->in_fd, .events = POLLIN},
            {.fd = c->wake_fd, .events = POLLIN},
        };
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_warn("console: poll: %s", strerror(errno));
            return NULL;
        }
        if (fds[1].revents)
            return NULL;
        ssize_t n = read(c->in_fd, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return NULL;    /* EOF or error: the guest just gets no more input */
        size_t len = c->is_tty ? filter_escapes(c, buf, (size_t)n) : (size_t)n;
        forward(c, buf, len);
    }
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

int console_start(struct console *c, struct vm *vm, struct serial_16550 *uart, int in_fd)
{
    memset(c, 0, sizeof(*c));
    c->vm = vm;
    c->uart = uart;
    c->in_fd = in_fd;
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
            log_warn("console: waking reader: %s", strerror(errno));
        serial_16550_close(c->uart);
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
