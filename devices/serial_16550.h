/* A 16550A UART: what Linux's 8250 driver needs for an interactive console
 * with interrupts. Output goes into a bounded buffer that the console thread
 * drains; input is pushed in by the console thread. No register access makes
 * a system call while holding the UART lock, and none can block: a stalled
 * stdout costs dropped output, never a stalled vCPU. */
#ifndef MINIVMM_DEVICES_SERIAL_16550_H
#define MINIVMM_DEVICES_SERIAL_16550_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/console_port.h"
#include "vmm/io_bus.h"
#include "vmm/irq_level.h"

#define SERIAL_RX_FIFO_SIZE 1024
/* Guest output waiting for the console thread. It only fills while stdout
 * does not take bytes as fast as the guest writes them; 128 KiB holds a whole
 * verbose Linux boot log (about 60 KiB) plus room, so a terminal or log
 * reader that falls behind for a moment loses nothing, while a stdout that
 * never drains costs at most 128 KiB per VM before bytes are dropped. */
#define SERIAL_TX_BUF_SIZE (128 * 1024)
#define SERIAL_REG_COUNT 8

struct serial_16550 {
    pthread_mutex_t lock;
    struct irq_level *irq;          /* NULL: no interrupts (polled) */
    /* eventfd the console thread polls: written (after the lock is dropped)
     * when output arrives in an empty buffer or receive space frees up while
     * the console waits for it. */
    int notify_fd;

    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thre_pending;              /* THR-empty interrupt not yet acknowledged */
    uint8_t rx[SERIAL_RX_FIFO_SIZE];
    size_t rx_head, rx_count;
    bool rx_waiter;                 /* the console waits for receive space */
    uint8_t tx[SERIAL_TX_BUF_SIZE];
    size_t tx_head, tx_count;
    bool tx_notified;               /* notify_fd written, buffer not yet drained */
    uint64_t tx_dropped;            /* bytes lost to a full buffer, ever */
    bool drop_notified;             /* console told of drops since it last took output */
    bool closing;
    /* Set under the lock, acted on by the accessor after unlocking. */
    bool level_changed, notify;
};

extern const struct io_handler serial_16550_io;

/* out of memory or eventfd failure: -errno. */
int serial_16550_init(struct serial_16550 *s, struct irq_level *irq);
void serial_16550_destroy(struct serial_16550 *s);

/* Queues up to n input bytes; returns how many fit. When not all fit, the
 * console is notified once the guest has read some. */
size_t serial_16550_push_input(struct serial_16550 *s, const uint8_t *buf, size_t n);

/* Moves up to max bytes of guest output into buf; returns how many. */
size_t serial_16550_take_output(struct serial_16550 *s, uint8_t *buf, size_t max);

/* Output bytes dropped because the buffer was full, since init. */
uint64_t serial_16550_output_dropped(struct serial_16550 *s);

/* Later pushes are refused. */
void serial_16550_close(struct serial_16550 *s);

/* The UART as the console thread drives it (after serial_16550_init). */
struct console_port serial_16550_console_port(struct serial_16550 *s);

#endif
