/* The host side of the guest console: stdin feeds the UART, a terminal is put
 * in raw mode for the VM's lifetime and restored on every exit path. */
#ifndef MINIVMM_CONSOLE_H
#define MINIVMM_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <termios.h>

struct vm;
struct serial_16550;

struct console {
    struct vm *vm;
    struct serial_16550 *uart;
    int in_fd;
    bool is_tty;
    bool raw_active;
    struct termios saved;
    bool escape_pending;        /* Ctrl-A seen: the next key is a command */
    int wake_fd;                /* eventfd that ends the reader thread */
    pthread_t thread;
    bool thread_started;
};

/* Starts forwarding in_fd to the UART; a terminal goes into raw mode. */
int console_start(struct console *c, struct vm *vm, struct serial_16550 *uart, int in_fd);

/* Stops the reader and restores the terminal. Idempotent. */
void console_stop(struct console *c);

#endif
