#include <errno.h>

#include "unit.h"
#include "vmm/io_bus.h"

struct recorder {
    uint64_t last_offset;
    uint8_t last_value;
    int reads, writes;
};

static void rec_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
    struct recorder *r = opaque;
    r->reads++;
    r->last_offset = offset;
    memset(data, 0x5a, len);
}

static void rec_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
    struct recorder *r = opaque;
    r->writes++;
    r->last_offset = offset;
    r->last_value = data[0];
}

static const struct io_handler rec_ops = {.read = rec_read, .write = rec_write};

TEST(dispatch_with_offsets)
{
    struct io_bus bus;
    struct recorder a = {0}, b = {0};
    io_bus_init(&bus, "test");
    CHECK_EQ(io_bus_register(&bus, 0x100, 8, &rec_ops, &a, "a"), 0);
    CHECK_EQ(io_bus_register(&bus, 0x108, 8, &rec_ops, &b, "b"), 0);
    uint8_t v = 7;
    CHECK(io_bus_write(&bus, 0x10a, &v, 1));
    CHECK_EQ(b.writes, 1);
    CHECK_EQ(b.last_offset, 2);
    CHECK_EQ(a.writes, 0);
    uint8_t d[4];
    CHECK(io_bus_read(&bus, 0x104, d, 4));
    CHECK_EQ(a.reads, 1);
    CHECK_EQ(d[3], 0x5a);
}

TEST(unclaimed_reads_all_ones)
{
    struct io_bus bus;
    struct recorder a = {0};
    io_bus_init(&bus, "test");
    CHECK_EQ(io_bus_register(&bus, 0x100, 8, &rec_ops, &a, "a"), 0);
    uint8_t d[4] = {0};
    CHECK(!io_bus_read(&bus, 0x200, d, 4));
    CHECK_EQ(d[0], 0xff);
    CHECK_EQ(d[3], 0xff);
    /* An access straddling the end of a window is not the device's. */
    CHECK(!io_bus_read(&bus, 0x106, d, 4));
    CHECK(!io_bus_write(&bus, 0x107, d, 2));
    CHECK_EQ(a.reads + a.writes, 0);
}

TEST(rejects_overlaps_and_wraps)
{
    struct io_bus bus;
    struct recorder a = {0};
    io_bus_init(&bus, "test");
    CHECK_EQ(io_bus_register(&bus, 0x100, 0x10, &rec_ops, &a, "a"), 0);
    CHECK_EQ(io_bus_register(&bus, 0x10f, 1, &rec_ops, &a, "b"), -EEXIST);
    CHECK_EQ(io_bus_register(&bus, 0xf0, 0x11, &rec_ops, &a, "c"), -EEXIST);
    CHECK_EQ(io_bus_register(&bus, 0x110, 1, &rec_ops, &a, "d"), 0);
    CHECK_EQ(io_bus_register(&bus, UINT64_MAX, 2, &rec_ops, &a, "e"), -EINVAL);
    CHECK_EQ(io_bus_register(&bus, 0x300, 0, &rec_ops, &a, "f"), -EINVAL);
}
