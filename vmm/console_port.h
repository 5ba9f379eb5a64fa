/* The guest's console UART as the console thread (vmm/console.c) sees it,
 * whichever model the arch chose and wherever it put it (x86_64: a 16550 on
 * port 0x3f8; arm64: on an MMIO window). The UART never blocks a vCPU: it
 * buffers output and input, and signals notify_fd when the console has
 * something to do. */
#ifndef MINIVMM_CONSOLE_PORT_H
#define MINIVMM_CONSOLE_PORT_H

#include <stddef.h>
#include <stdint.h>

struct console_port_ops {
    /* Moves up to max bytes of guest output into buf; returns how many. */
    size_t (*take_output)(void *uart, uint8_t *buf, size_t max);
    /* Queues up to n input bytes; returns how many fit. When not all fit,
     * notify_fd is signalled once the guest has read some. */
    size_t (*push_input)(void *uart, const uint8_t *buf, size_t n);
    /* Output bytes dropped because the UART's buffer was full, ever. */
    uint64_t (*output_dropped)(void *uart);
};

struct console_port {
    const struct console_port_ops *ops;     /* NULL: the VM has no console */
    void *uart;
    /* eventfd, readable when output arrives in an empty buffer or receive
     * space frees up while input waits; the console thread drains it. */
    int notify_fd;
    size_t output_buffer_size;  /* bytes of output the UART holds, for messages */
};

#endif
