#include "devices/serial_16550.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Register offsets */
#define REG_DATA 0      /* RBR (read) / THR (write); DLL when LCR.DLAB */
#define REG_IER 1       /* DLM when LCR.DLAB */
#define REG_IIR_FCR 2   /* IIR (read) / FCR (write) */
#define REG_LCR 3
#define REG_MCR 4
#define REG_LSR 5
#define REG_MSR 6
#define REG_SCR 7

#define IER_RDA 0x01
#define IER_THRE 0x02
#define IER_MASK 0x0f

#define IIR_NONE 0x01
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_FIFO_ENABLED 0xc0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

int serial_16550_init(struct serial_16550 *s, struct irq_level *irq)
{
    /* Everything but the 128 KiB output ring, which is only ever read where
     * the guest wrote it (tx_head, tx_count): zeroing it would make all of
     * it resident at once in a VMM whose guest may print a few KiB. */
    memset(s, 0, offsetof(struct serial_16550, tx));
    memset((uint8_t *)s + offsetof(struct serial_16550, tx) + sizeof(s->tx), 0,
           sizeof(*s) - offsetof(struct serial_16550, tx) - sizeof(s->tx));
    s->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->notify_fd < 0)
        return -errno;
    pthread_mutex_init(&s->lock, NULL);
    s->irq = irq;
    s->mcr = MCR_OUT2;
    s->dll = 0x0c;      /* 9600 baud, what firmware would leave behind */
    return 0;
}

void serial_16550_destroy(struct serial_16550 *s)
{
    if (s->notify_fd < 0)
        return;
    pthread_mutex_destroy(&s->lock);
    close(s->notify_fd);
    s->notify_fd = -1;
}

/* The system calls a register access or push caused, made once the lock is
 * dropped (a KVM_IRQ_LINE and a non-blocking eventfd write), so that no
 * thread ever waits for the UART behind a syscall. The line is set to the
 * level the latest state asks for (see vmm/irq_level.h), so a late apply
 * never leaves it at a stale level. */
static void unlock_and_signal(struct serial_16550 *s)
{
    bool level_changed = s->level_changed, notify = s->notify;
    s->level_changed = s->notify = false;
    pthread_mutex_unlock(&s->lock);
    if (level_changed)
        irq_level_apply(s->irq);
    if (notify) {
        uint64_t one = 1;
        /* Cannot fail but with EAGAIN (counter saturated), and then the
         * console is woken anyway. */
        ssize_t r = write(s->notify_fd, &one, sizeof(one));
        (void)r;
    }
}

static uint8_t current_iir(const struct serial_16550 *s)
{
    uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO_ENABLED : 0;
    if ((s->ier & IER_RDA) && s->rx_count)
        return IIR_RDA | fifo;
    if ((s->ier & IER_THRE) && s->thre_pending)
        return IIR_THRE | fifo;
    return IIR_NONE | fifo;
}

/* The 16550's interrupt output is a level: high while IIR reports a
 * pending source. It is wired to the guest as one (level-triggered, see
 * arch/), so an interrupt the guest's handler finished without seeing is
 * delivered again at its EOI; with an edge, a source that became pending
 * while the line was already up would raise nothing new. */
static void update_irq(struct serial_16550 *s)
{
    bool pending = (current_iir(s) & IIR_NONE) == 0;
    if (s->irq && irq_level_want(s->irq, pending))
        s->level_changed = true;
}

static void rx_push_locked(struct serial_16550 *s, uint8_t byte)
{
    if (s->rx_count == SERIAL_RX_FIFO_SIZE)
        return;     /* overrun: the byte is lost, as on hardware */
    s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO_SIZE] = byte;
    s->rx_count++;
}

static uint8_t rx_pop_locked(struct serial_16550 *s)
{
    if (!s->rx_count)
        return 0;
    uint8_t byte = s->rx[s->rx_head];
    s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO_SIZE;
    s->rx_count--;
    if (s->rx_waiter) {
        s->rx_waiter = false;
        s->notify = true;
    }
    return byte;
}

static void transmit_locked(struct serial_16550 *s, uint8_t byte)
{
    if (s->mcr & MCR_LOOP) {
        rx_push_locked(s, byte);
        return;
    }
    /* The UART always accepts the byte (THRE stays set): a guest that waits
     * for THRE must not wait on the host's stdout. A full buffer drops it. */
    if (s->tx_count == SERIAL_TX_BUF_SIZE) {
        s->tx_dropped++;
        /* The console says so once per overflow, not once per byte. */
        if (!s->drop_notified) {
            s->drop_notified = true;
            s->notify = true;
        }
        return;
    }
    s->tx[(s->tx_head + s->tx_count) % SERIAL_TX_BUF_SIZE] = byte;
    s->tx_count++;
    if (!s->tx_notified) {
        s->tx_notified = true;
        s->notify = true;
    }
}

static uint8_t modem_status(const struct serial_16550 *s)
{
    if (!(s->mcr & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS;    /* a terminal is always attached */
    /* Loopback wires the modem outputs back to the inputs; Linux's probe
     * checks exactly this mapping. */
    uint8_t msr = 0;
    if (s->mcr & MCR_RTS)
        msr |= MSR_CTS;
    if (s->mcr & MCR_DTR)
        msr |= MSR_DSR;
    if (s->mcr & MCR_OUT1)
        msr |= MSR_RI;
    if (s->mcr & MCR_OUT2)
        msr |= MSR_DCD;
    return msr;
}

static uint8_t read_reg(struct serial_16550 *s, unsigned reg)
{
    bool dlab = s->lcr & LCR_DLAB;
    uint8_t v;

    switch (reg) {
    case REG_DATA:
        if (dlab)
            return s->dll;
        v = rx_pop_locked(s);
        update_irq(s);
        return v;
    case REG_IER:
        return dlab ? s->dlm : s->ier;
    case REG_IIR_FCR:
        v = current_iir(s);
        /* Reading IIR while it reports THR-empty acknowledges that source. */
        if ((v & 0x0f) == IIR_THRE)
            s->thre_pending = false;
        update_irq(s);
        return v;
    case REG_LCR:
        return s->lcr;
    case REG_MCR:
        return s->mcr;
    case REG_LSR:
        return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
    case REG_MSR:
        return modem_status(s);
    case REG_SCR:
        return s->scr;
    }
    return 0xff;
}

static void write_reg(struct serial_16550 *s, unsigned reg, uint8_t v)
{
    bool dlab = s->lcr & LCR_DLAB;

    switch (reg) {
    case REG_DATA:
        if (dlab) {
            s->dll = v;
            return;
        }
        transmit_locked(s, v);
        /* The byte left at once, so THR is empty again. */
        s->thre_pending = true;
        update_irq(s);
        return;
    case REG_IER:
        if (dlab) {
            s->dlm = v;
            return;
        }
        {
            bool thre_enabled_now = (v & IER_THRE) && !(s->ier & IER_THRE);
            s->ier = v & IER_MASK;
            /* Enabling the THR-empty interrupt with THR empty interrupts at
             * once; the 8250 driver relies on it to start transmitting. */
            if (thre_enabled_now)
                s->thre_pending = true;
            update_irq(s);
        }
        return;
    case REG_IIR_FCR:
        s->fcr = v & (FCR_ENABLE | 0xc0);
        if (v & FCR_CLEAR_RX) {
            s->rx_head = s->rx_count = 0;
            if (s->rx_waiter) {
                s->rx_waiter = false;
                s->notify = true;
            }
        }
        update_irq(s);
        return;
    case REG_LCR:
        s->lcr = v;
        return;
    case REG_MCR:
        s->mcr = v & MCR_MASK;
        return;
    case REG_SCR:
        s->scr = v;
        return;
    default:
        return;     /* LSR and MSR are read-only */
    }
}

static void serial_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
    struct serial_16550 *s = opaque;
    memset(data, 0xff, len);
    if (offset >= SERIAL_REG_COUNT)
        return;
    pthread_mutex_lock(&s->lock);
    data[0] = read_reg(s, (unsigned)offset);
    unlock_and_signal(s);
}

static void serial_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
    struct serial_16550 *s = opaque;
    if (offset >= SERIAL_REG_COUNT || len == 0)
        return;
    pthread_mutex_lock(&s->lock);
    write_reg(s, (unsigned)offset, data[0]);
    unlock_and_signal(s);
}

const struct io_handler serial_16550_io = {
    .read = serial_read,
    .write = serial_write,
};

size_t serial_16550_push_input(struct serial_16550 *s, const uint8_t *buf, size_t n)
{
    size_t taken = 0;
    pthread_mutex_lock(&s->lock);
    if (!s->closing) {
        while (taken < n && s->rx_count < SERIAL_RX_FIFO_SIZE)
            rx_push_locked(s, buf[taken++]);
        if (taken)
            update_irq(s);
        /* Ask to be told when the guest makes room. */
        s->rx_waiter = taken < n;
    }
    unlock_and_signal(s);
    return taken;
}

size_t serial_16550_take_output(struct serial_16550 *s, uint8_t *buf, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    while (n < max && s->tx_count) {
        size_t run = SERIAL_TX_BUF_SIZE - s->tx_head;
        if (run > s->tx_count)
            run = s->tx_count;
        if (run > max - n)
            run = max - n;
        memcpy(buf + n, s->tx + s->tx_head, run);
        n += run;
        s->tx_head = (s->tx_head + run) % SERIAL_TX_BUF_SIZE;
        s->tx_count -= run;
    }
    if (n)
        s->drop_notified = false;
    /* Drained: the next byte written must wake the console again. */
    if (!s->tx_count)
        s->tx_notified = false;
    pthread_mutex_unlock(&s->lock);
    return n;
}

uint64_t serial_16550_output_dropped(struct serial_16550 *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->tx_dropped;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void serial_16550_close(struct serial_16550 *s)
{
    pthread_mutex_lock(&s->lock);
    s->closing = true;
    s->rx_waiter = false;
    pthread_mutex_unlock(&s->lock);
}

static size_t port_take_output(void *uart, uint8_t *buf, size_t max)
{
    return serial_16550_take_output(uart, buf, max);
}

static size_t port_push_input(void *uart, const uint8_t *buf, size_t n)
{
    return serial_16550_push_input(uart, buf, n);
}

static uint64_t port_output_dropped(void *uart)
{
    return serial_16550_output_dropped(uart);
}

static const struct console_port_ops console_ops = {
    .take_output = port_take_output,
    .push_input = port_push_input,
    .output_dropped = port_output_dropped,
};

struct console_port serial_16550_console_port(struct serial_16550 *s)
{
    return (struct console_port){.ops = &console_ops, .uart = s, .notify_fd = s->notify_fd,
                                 .output_buffer_size = SERIAL_TX_BUF_SIZE};
}
