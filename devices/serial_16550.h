/* A 16550A UART: what Linux's 8250 driver needs for an interactive console
 * with interrupts. Output goes straight to a file descriptor; input is pushed
 * in by the console thread. */
#ifndef MINIVMM_DEVICES_SERIAL_16550_H
#define MINIVMM_DEVICES_SERIAL_16550_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/io_bus.h"
#include "vmm/irq.h"
#include "vmm/log.h"

#define SERIAL_RX_FIFO_SIZE 1024
#define SERIAL_REG_COUNT 8

struct serial_16550 {
    pthread_mutex_t lock;
    pthread_cond_t rx_space;
    int out_fd;
    const struct irq_line *irq;     /* NULL: no interrupts (polled) */

    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thre_pending;              /* THR-empty interrupt not yet acknowledged */
    bool irq_asserted;              /* last computed state of the line */
    uint8_t rx[SERIAL_RX_FIFO_SIZE];
    size_t rx_head, rx_count;
    bool closing;
    struct log_ratelimit write_rl;
};

extern const struct io_handler serial_16550_io;

void serial_16550_init(struct serial_16550 *s, int out_fd, const struct irq_line *irq);
void serial_16550_destroy(struct serial_16550 *s);

/* Queues up to n input bytes; returns how many fit. */
size_t serial_16550_push_input(struct serial_16550 *s, const uint8_t *buf, size_t n);

/* Waits (up to timeout_ms) until the receive FIFO has room or close was called. */
void serial_16550_wait_rx_space(struct serial_16550 *s, int timeout_ms);

/* Wakes any waiter; later pushes are refused. */
void serial_16550_close(struct serial_16550 *s);

#endif
