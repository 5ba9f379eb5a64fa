#include <fcntl.h>
#include <unistd.h>

#include "devices/serial_16550.h"
#include "unit.h"

struct uart_fixture {
    struct serial_16550 s;
    struct irq_line irq;
    int out[2];
};

static void setup(struct uart_fixture *f)
{
    CHECK_EQ(pipe2(f->out, O_NONBLOCK), 0);
    CHECK_EQ(irq_line_init(&f->irq, -1, 4), 0);
    serial_16550_init(&f->s, f->out[1], &f->irq);
}

static void teardown(struct uart_fixture *f)
{
    serial_16550_destroy(&f->s);
    irq_line_destroy(&f->irq, -1);
    close(f->out[0]);
    close(f->out[1]);
}

static uint8_t rd(struct uart_fixture *f, unsigned reg)
{
    uint8_t v;
    serial_16550_io.read(&f->s, reg, &v, 1);
    return v;
}

static void wr(struct uart_fixture *f, unsigned reg, uint8_t v)
{
    serial_16550_io.write(&f->s, reg, &v, 1);
}

/* How many interrupts were raised since the last call. */
static uint64_t irqs(struct uart_fixture *f)
{
    uint64_t n = 0;
    if (read(f->irq.eventfd, &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

TEST(transmit_writes_to_output)
{
    struct uart_fixture f;
    setup(&f);
    CHECK(rd(&f, 5) & 0x60);                 /* THRE | TEMT */
    wr(&f, 0, 'h');
    wr(&f, 0, 'i');
    char buf[4] = {0};
    CHECK_EQ(read(f.out[0], buf, sizeof(buf)), 2);
    CHECK(!strcmp(buf, "hi"));
    CHECK_EQ(irqs(&f), 0);                   /* interrupts not enabled */
    teardown(&f);
}

TEST(thre_interrupt_on_enable_and_ack_by_iir_read)
{
    struct uart_fixture f;
    setup(&f);
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x01);        /* nothing pending */
    wr(&f, 1, 0x02);                         /* enable THR-empty */
    CHECK_EQ(irqs(&f), 1);
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x02);        /* reading IIR acknowledges it */
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x01);
    wr(&f, 0, 'x');                          /* after a byte leaves, THRE again */
    CHECK_EQ(irqs(&f), 1);
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x02);
    teardown(&f);
}

TEST(receive_fifo_and_rda_interrupt)
{
    struct uart_fixture f;
    setup(&f);
    wr(&f, 1, 0x01);                         /* enable received-data interrupt */
    CHECK_EQ(irqs(&f), 0);
    CHECK_EQ(serial_16550_push_input(&f.s, (const uint8_t *)"ab", 2), 2);
    CHECK_EQ(irqs(&f), 1);
    CHECK(rd(&f, 5) & 0x01);
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x04);
    CHECK_EQ(rd(&f, 0), 'a');
    CHECK_EQ(rd(&f, 0), 'b');
    CHECK(!(rd(&f, 5) & 0x01));
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x01);
    CHECK_EQ(rd(&f, 0), 0);                  /* empty FIFO reads as 0 */
    teardown(&f);
}

TEST(fifo_full_takes_what_fits)
{
    struct uart_fixture f;
    setup(&f);
    static uint8_t big[SERIAL_RX_FIFO_SIZE + 100];
    memset(big, 'z', sizeof(big));
    CHECK_EQ(serial_16550_push_input(&f.s, big, sizeof(big)), SERIAL_RX_FIFO_SIZE);
    CHECK_EQ(serial_16550_push_input(&f.s, big, 1), 0);
    rd(&f, 0);
    CHECK_EQ(serial_16550_push_input(&f.s, big, 5), 1);
    wr(&f, 2, 0x03);                         /* FCR: enable + clear RX */
    CHECK(!(rd(&f, 5) & 0x01));
    CHECK_EQ(rd(&f, 2) & 0xc0, 0xc0);        /* FIFO-enabled bits, as a 16550A */
    serial_16550_close(&f.s);
    CHECK_EQ(serial_16550_push_input(&f.s, big, 5), 0);
    teardown(&f);
}

TEST(loopback_as_linux_probes_it)
{
    struct uart_fixture f;
    setup(&f);
    CHECK_EQ(rd(&f, 6) & 0xf0, 0xb0);        /* DCD, DSR, CTS: a terminal is there */
    wr(&f, 4, 0x10 | 0x0a);                  /* LOOP | OUT2 | RTS */
    CHECK_EQ(rd(&f, 6) & 0xf0, 0x90);
    wr(&f, 0, 'L');                          /* loopback data comes back in */
    CHECK(rd(&f, 5) & 0x01);
    CHECK_EQ(rd(&f, 0), 'L');
    char buf[2];
    CHECK_EQ(read(f.out[0], buf, 1), -1);    /* and is not transmitted */
    teardown(&f);
}

TEST(divisor_latch_and_scratch)
{
    struct uart_fixture f;
    setup(&f);
    wr(&f, 3, 0x80);                         /* DLAB */
    wr(&f, 0, 0x01);
    wr(&f, 1, 0x02);
    CHECK_EQ(rd(&f, 0), 0x01);
    CHECK_EQ(rd(&f, 1), 0x02);
    wr(&f, 3, 0x03);
    CHECK_EQ(rd(&f, 1), 0);                  /* IER untouched by DLM write */
    wr(&f, 7, 0xa5);
    CHECK_EQ(rd(&f, 7), 0xa5);
    wr(&f, 5, 0x00);                         /* LSR is read-only */
    CHECK(rd(&f, 5) & 0x20);
    teardown(&f);
}

TEST(out_of_range_offsets)
{
    struct uart_fixture f;
    setup(&f);
    uint8_t v[4];
    serial_16550_io.read(&f.s, 8, v, 1);
    CHECK_EQ(v[0], 0xff);
    serial_16550_io.write(&f.s, 100, v, 1);
    teardown(&f);
}
