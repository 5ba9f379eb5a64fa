/* The host side of the guest console: stdin feeds the UART, the UART's
 * output buffer drains to stdout, a terminal is put in raw mode for the VM's
 * lifetime and restored on every exit path. */
#ifndef MINIVMM_CONSOLE_H
#define MINIVMM_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#include "vmm/console_port.h"

struct vm;

/* Where guest output goes: a file description of stdout of its own, so that
 * writes can be non-blocking without changing the shared one (the user's
 * shell has the same terminal or pipe open). */
struct console_output {
    int fd;                     /* -1: output is discarded */
    bool own_fd;                /* fd was opened here and is closed here */
    bool is_socket;             /* send(MSG_DONTWAIT) instead of write() */
    bool may_block;             /* could not get a non-blocking description */
};

/* Called before the main thread's seccomp filter: may open /proc/self/fd/N. */
void console_output_open(struct console_output *out, int fd);
void console_output_close(struct console_output *out);

/* How long console_stop keeps writing what the guest printed last when
 * stdout is slow; then it gives up and says how much was lost. */
#define CONSOLE_FLUSH_MS 500

struct console {
    struct vm *vm;
    struct console_port port;   /* the arch's UART (vm->console) */
    int in_fd;
    bool in_open;               /* stdin not yet at EOF */
    const struct console_output *out;
    bool out_dead;              /* stdout failed (EPIPE...): output discarded */
    bool is_tty;
    bool raw_active;
    struct termios saved;
    bool escape_pending;        /* Ctrl-A seen: the next key is a command */
    int wake_fd;                /* eventfd that ends the console thread */
    pthread_t thread;
    bool thread_started;
    unsigned char in_buf[256];  /* read from stdin, not yet taken by the UART */
    size_t in_off, in_len;
    unsigned char out_buf[4096];    /* taken from the UART, not yet written */
    size_t out_off, out_len;
    uint64_t dropped_reported;  /* UART drop count last seen */
    bool drops_warned;          /* warned since stdout last caught up */
};

/* Starts forwarding in_fd to the UART and its output to out; a terminal on
 * in_fd goes into raw mode. -ENODEV when the port has no UART. */
int console_start(struct console *c, struct vm *vm, const struct console_port *port, int in_fd,
                  const struct console_output *out);

/* Stops the console thread after at most CONSOLE_FLUSH_MS of flushing and
 * restores the terminal. Idempotent. */
void console_stop(struct console *c);

#endif
