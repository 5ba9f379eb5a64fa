#include <fcntl.h>
#include <unistd.h>

#include "devices/serial_16550.h"
#include "unit.h"

struct uart_fixture {
    struct serial_16550 s;
    struct irq_level irq;
};

static void setup(struct uart_fixture *f)
{
    CHECK_EQ(irq_level_init(&f->irq, -1, 4), 0);
    CHECK_EQ(serial_16550_init(&f->s, &f->irq), 0);
}

static void teardown(struct uart_fixture *f)
{
    serial_16550_destroy(&f->s);
    irq_level_destroy(&f->irq);
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

/* The level of the UART's interrupt line. */
static bool high(struct uart_fixture *f)
{
    return irq_level_is_high(&f->irq);
}

/* How many times the console was notified since the last call. */
static uint64_t notes(struct uart_fixture *f)
{
    uint64_t n = 0;
    if (read(f->s.notify_fd, &n, sizeof(n)) != sizeof(n))
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
    CHECK_EQ(notes(&f), 1);                  /* once, when the buffer stopped being empty */
    uint8_t buf[4] = {0};
    CHECK_EQ(serial_16550_take_output(&f.s, buf, sizeof(buf)), 2);
    CHECK(!memcmp(buf, "hi", 2));
    CHECK_EQ(serial_16550_take_output(&f.s, buf, sizeof(buf)), 0);
    CHECK(!high(&f));                        /* interrupts not enabled */
    wr(&f, 0, '!');                          /* drained: the next byte notifies again */
    CHECK_EQ(notes(&f), 1);
    teardown(&f);
}

/* Nobody takes the output: the UART still accepts every byte at once (THRE
 * and TEMT stay set, so a guest polling LSR never waits on the host), keeps
 * the first SERIAL_TX_BUF_SIZE bytes and counts the rest as dropped. */
TEST(full_output_buffer_drops_and_counts)
{
    static struct uart_fixture f;
    setup(&f);
    wr(&f, 1, 0x02);                         /* THR-empty interrupt on, as Linux's tty */
    for (size_t i = 0; i < SERIAL_TX_BUF_SIZE + 100; i++) {
        CHECK((rd(&f, 5) & 0x60) == 0x60);
        wr(&f, 0, (uint8_t)('a' + i % 26));
    }
    CHECK_EQ(serial_16550_output_dropped(&f.s), 100);
    /* One when output arrived, one at the first drop: no syscall per byte
     * while stalled. */
    CHECK_EQ(notes(&f), 2);
    CHECK(high(&f));                         /* and the guest's driver keeps going */
    static uint8_t out[SERIAL_TX_BUF_SIZE + 100];
    CHECK_EQ(serial_16550_take_output(&f.s, out, sizeof(out)), SERIAL_TX_BUF_SIZE);
    CHECK_EQ(out[0], 'a');
    CHECK_EQ(out[SERIAL_TX_BUF_SIZE - 1], (uint8_t)('a' + (SERIAL_TX_BUF_SIZE - 1) % 26));
    wr(&f, 0, 'z');                          /* room again: kept, not dropped */
    CHECK_EQ(serial_16550_output_dropped(&f.s), 100);
    CHECK_EQ(serial_16550_take_output(&f.s, out, 1), 1);
    CHECK_EQ(out[0], 'z');
    teardown(&f);
}

/* Input that does not fit waits in the console, which is told when the
 * guest has read some: the console thread never sleeps on the FIFO. */
TEST(receive_space_is_notified_to_a_waiting_console)
{
    struct uart_fixture f;
    setup(&f);
    static uint8_t big[SERIAL_RX_FIFO_SIZE + 10];
    memset(big, 'y', sizeof(big));
    CHECK_EQ(serial_16550_push_input(&f.s, big, sizeof(big)), SERIAL_RX_FIFO_SIZE);
    CHECK_EQ(notes(&f), 0);
    rd(&f, 0);
    CHECK_EQ(notes(&f), 1);
    rd(&f, 0);
    CHECK_EQ(notes(&f), 0);                  /* once per wait */
    teardown(&f);
}

TEST(thre_interrupt_on_enable_and_ack_by_iir_read)
{
    struct uart_fixture f;
    setup(&f);
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x01);        /* nothing pending */
    CHECK(!high(&f));
    wr(&f, 1, 0x02);                         /* enable THR-empty */
    CHECK(high(&f));
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x02);        /* reading IIR acknowledges it */
    CHECK(!high(&f));
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x01);
    wr(&f, 0, 'x');                          /* after a byte leaves, THRE again */
    CHECK(high(&f));
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x02);
    CHECK(!high(&f));
    teardown(&f);
}

TEST(receive_fifo_and_rda_interrupt)
{
    struct uart_fixture f;
    setup(&f);
    wr(&f, 1, 0x01);                         /* enable received-data interrupt */
    CHECK(!high(&f));
    CHECK_EQ(serial_16550_push_input(&f.s, (const uint8_t *)"ab", 2), 2);
    CHECK(high(&f));
    CHECK(rd(&f, 5) & 0x01);
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x04);
    CHECK(high(&f));                         /* reading IIR does not clear RDA */
    CHECK_EQ(rd(&f, 0), 'a');
    CHECK(high(&f));
    CHECK_EQ(rd(&f, 0), 'b');
    CHECK(!high(&f));                        /* FIFO empty: nothing pending */
    CHECK(!(rd(&f, 5) & 0x01));
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x01);
    CHECK_EQ(rd(&f, 0), 0);                  /* empty FIFO reads as 0 */
    teardown(&f);
}

/* The line is a level: a source that becomes pending while another holds
 * the line up keeps it up until the guest has dealt with every source, and
 * it never goes up and down again without a new reason. With an edge per
 * event, an interrupt the guest missed (taken while its handler was already
 * past its IIR read, or while the pin was masked) stays missed; with the
 * level, the guest's EOI finds the line still high and takes it again. */
TEST(interrupt_line_is_high_exactly_while_a_source_is_pending)
{
    struct uart_fixture f;
    setup(&f);
    wr(&f, 1, 0x01);                         /* RDA only */
    CHECK_EQ(serial_16550_push_input(&f.s, (const uint8_t *)"a", 1), 1);
    CHECK(high(&f));
    CHECK_EQ(irq_level_raises(&f.irq), 1);
    wr(&f, 1, 0x03);                         /* THR-empty too, while RDA holds the line */
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x04);        /* RDA first */
    CHECK_EQ(rd(&f, 0), 'a');
    CHECK(high(&f));                         /* THRE still pending */
    CHECK_EQ(serial_16550_push_input(&f.s, (const uint8_t *)"b", 1), 1);
    CHECK_EQ(irq_level_raises(&f.irq), 1);   /* never dropped in between */
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x04);
    CHECK_EQ(rd(&f, 0), 'b');
    CHECK_EQ(rd(&f, 2) & 0x0f, 0x02);        /* then THRE, acknowledged by this read */
    CHECK(!high(&f));
    wr(&f, 1, 0x00);                         /* disabling a source lowers the line */
    CHECK_EQ(serial_16550_push_input(&f.s, (const uint8_t *)"c", 1), 1);
    CHECK(!high(&f));
    wr(&f, 1, 0x01);                         /* enabling it with data waiting raises it */
    CHECK(high(&f));
    CHECK_EQ(irq_level_raises(&f.irq), 2);
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
    uint8_t buf[2];
    CHECK_EQ(serial_16550_take_output(&f.s, buf, 1), 0);    /* and is not transmitted */
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
