/* virtio-mem through the real virtio-mmio transport and split virtqueue, as
 * Linux's driver drives it: feature negotiation, config reads, PLUG / NACK /
 * UNPLUG_ALL requests on a ring in guest RAM, and a resize raising a config
 * interrupt. The other virtio-mem tests call the handler directly. */
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "devices/virtio_mem.h"
#include "devices/virtio_mmio.h"
#include "unit.h"
#include "vmm/guest_mem.h"
#include "vmm/hotplug/mem.h"
#include "vmm/io_bus.h"

#define BASE 0xd0000000ULL
#define RAM_SIZE (1u << 20)
#define REGION_GPA (1ULL << 30)
#define REGION_SIZE (256ULL << 20)
#define BLOCK (2ULL << 20)
#define QSIZE 8
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define REQ 0x4000
#define RESP 0x5000

struct fx {
    struct guest_mem gm;
    struct hotplug_mem hm;
    struct virtio_mem dev;
    struct virtio_mmio t;
    struct io_bus bus;
    uint16_t avail_idx;
};

static uint32_t rd(struct fx *f, uint64_t off)
{
    uint32_t v = 0;
    CHECK(io_bus_read(&f->bus, BASE + off, (uint8_t *)&v, 4));
    return v;
}

static void wr(struct fx *f, uint64_t off, uint32_t v)
{
    CHECK(io_bus_write(&f->bus, BASE + off, (const uint8_t *)&v, 4));
}

static uint64_t cfg64(struct fx *f, unsigned off)
{
    /* As Linux reads a u64: two u32 halves. */
    return rd(f, VIRTIO_MMIO_CONFIG + off) | (uint64_t)rd(f, VIRTIO_MMIO_CONFIG + off + 4) << 32;
}

static bool setup(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    struct mem_range r = {0, RAM_SIZE};
    guest_mem_init(&f->gm, -1);
    CHECK_EQ(guest_mem_add_ram(&f->gm, &r, 1, 0), 0);
    CHECK_EQ(hotplug_mem_init(&f->hm, -1, "e2e", REGION_GPA, REGION_SIZE, 128ULL << 20, 4096, 16, 0,
                              false), 0);
    struct virtio_mem_params p = {
        .id = "e2e", .addr = REGION_GPA, .region_size = REGION_SIZE, .block_size = BLOCK,
        .node_id = 1, .acpi_pxm = true, .memory_block = 128ULL << 20,
        .requested_size = 64ULL << 20};
    char err[200];
    CHECK_EQ(virtio_mem_init(&f->dev, &p, &virtio_mem_hotplug_backing, &f->hm, err, sizeof(err)),
             0);
    CHECK_EQ(virtio_mmio_init(&f->t, &virtio_mem_ops, &f->dev, &f->gm, -1, BASE, 5, "e2e"), 0);
    io_bus_init(&f->bus, "mmio");
    CHECK_EQ(io_bus_register(&f->bus, BASE, VIRTIO_MMIO_SIZE, &virtio_mmio_io, &f->t, "e2e"), 0);
    return true;
}

static void teardown(struct fx *f)
{
    virtio_mmio_destroy(&f->t);
    virtio_mem_destroy(&f->dev);
    hotplug_mem_destroy(&f->hm);
    guest_mem_destroy(&f->gm);
}

/* Returns whether FEATURES_OK stuck. */
static bool negotiate(struct fx *f, uint64_t features)
{
    wr(f, VIRTIO_MMIO_STATUS, 0);
    wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
    wr(f, VIRTIO_MMIO_STATUS, st);
    return (rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK) != 0;
}

static void start_queue(struct fx *f)
{
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    CHECK_EQ(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 128);
    wr(f, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
    wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC);
    wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    wr(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL);
    wr(f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
    wr(f, VIRTIO_MMIO_QUEUE_USED_LOW, USED);
    wr(f, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
    wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
    CHECK_EQ(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
    wr(f, VIRTIO_MMIO_STATUS, rd(f, VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
    CHECK(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK);
}

/* One request through the ring, served as the device thread would. Returns
 * the response type, or -1 if no used entry of the right size appeared. */
static int request(struct fx *f, uint16_t type, uint64_t addr, uint16_t nb_blocks, uint16_t *state)
{
    struct virtio_mem_req req = {.type = type, .addr = addr, .nb_blocks = nb_blocks};
    struct virtio_mem_resp resp = {.type = 0xffff};
    struct virtq_desc d[2] = {
        {.addr = REQ, .len = sizeof(req), .flags = VIRTQ_DESC_F_NEXT, .next = 1},
        {.addr = RESP, .len = sizeof(resp), .flags = VIRTQ_DESC_F_WRITE},
    };
    CHECK_EQ(guest_mem_write(&f->gm, REQ, &req, sizeof(req)), 0);
    CHECK_EQ(guest_mem_write(&f->gm, RESP, &resp, sizeof(resp)), 0);
    CHECK_EQ(guest_mem_write(&f->gm, DESC, d, sizeof(d)), 0);
    uint16_t head = 0;
    CHECK_EQ(guest_mem_write(&f->gm, AVAIL + 4 + 2 * (f->avail_idx % QSIZE), &head, 2), 0);
    f->avail_idx++;
    CHECK_EQ(guest_mem_write(&f->gm, AVAIL + 2, &f->avail_idx, 2), 0);
    wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    virtio_mmio_process_queues(&f->t);

    uint16_t used_idx;
    struct virtq_used_elem e;
    CHECK_EQ(guest_mem_read(&f->gm, USED + 2, &used_idx, 2), 0);
    CHECK_EQ(guest_mem_read(&f->gm, USED + 4 + 8 * ((f->avail_idx - 1) % QSIZE), &e, 8), 0);
    if (used_idx != f->avail_idx || e.id != 0 || e.len != sizeof(resp))
        return -1;
    CHECK_EQ(guest_mem_read(&f->gm, RESP, &resp, sizeof(resp)), 0);
    if (state)
        *state = resp.state;
    return resp.type;
}

TEST(linux_style_session)
{
    struct fx f;
    setup(&f);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_VERSION), 2);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_MEM);

    wr(&f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint32_t lo = rd(&f, VIRTIO_MMIO_DEVICE_FEATURES);
    wr(&f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    uint32_t hi = rd(&f, VIRTIO_MMIO_DEVICE_FEATURES);
    CHECK_EQ(lo, (1u << VIRTIO_MEM_F_ACPI_PXM) | (1u << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE));
    CHECK_EQ(hi, 1u);   /* VERSION_1 */

    /* A driver that may read unplugged memory is refused. */
    CHECK(!negotiate(&f, (1ULL << 32) | (1u << VIRTIO_MEM_F_ACPI_PXM)));
    CHECK(negotiate(&f, (1ULL << 32) | lo));
    start_queue(&f);

    CHECK_EQ(cfg64(&f, 0x00), BLOCK);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_CONFIG + 0x08) & 0xffff, 1);  /* node_id */
    CHECK_EQ(cfg64(&f, 0x10), REGION_GPA);
    CHECK_EQ(cfg64(&f, 0x18), REGION_SIZE);
    CHECK_EQ(cfg64(&f, 0x20), REGION_SIZE);                   /* usable: all of it */
    CHECK_EQ(cfg64(&f, 0x28), 0);
    CHECK_EQ(cfg64(&f, 0x30), 64ULL << 20);

    /* Plug the requested 64 MiB across the first memslot boundary (slot 0
     * ends at 128 MiB), then one block more is refused with NACK. */
    uint64_t at = REGION_GPA + (128ULL << 20) - (32ULL << 20);
    CHECK_EQ(request(&f, VIRTIO_MEM_REQ_PLUG, at, 32, NULL), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(cfg64(&f, 0x28), 64ULL << 20);
    CHECK(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_USED_BUFFER);
    wr(&f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_USED_BUFFER);
    CHECK_EQ(f.hm.slot_plugged[0], 32ULL << 20);
    CHECK_EQ(f.hm.slot_plugged[1], 32ULL << 20);
    CHECK_EQ(request(&f, VIRTIO_MEM_REQ_PLUG, REGION_GPA, 1, NULL), VIRTIO_MEM_RESP_NACK);
    uint16_t state = 0xffff;
    CHECK_EQ(request(&f, VIRTIO_MEM_REQ_STATE, at - BLOCK, 2, &state), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(state, VIRTIO_MEM_STATE_MIXED);
    CHECK_EQ(request(&f, VIRTIO_MEM_REQ_PLUG, at + 1, 1, NULL), VIRTIO_MEM_RESP_ERROR);

    /* The resize hook: a new requested_size is a config change. */
    uint32_t gen = rd(&f, VIRTIO_MMIO_CONFIG_GENERATION);
    char err[200];
    CHECK_EQ(virtio_mem_set_requested_size(&f.dev, 0, err, sizeof(err)), 0);
    CHECK(rd(&f, VIRTIO_MMIO_CONFIG_GENERATION) != gen);
    CHECK(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG_CHANGE);
    CHECK_EQ(cfg64(&f, 0x30), 0);
    CHECK_EQ(virtio_mem_set_requested_size(&f.dev, 3 << 20, err, sizeof(err)), -EINVAL);

    CHECK_EQ(request(&f, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0, NULL), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(cfg64(&f, 0x28), 0);
    CHECK_EQ(f.hm.slot_plugged[0], 0);
    CHECK_EQ(f.hm.slot_plugged[1], 0);

    /* A device reset keeps nothing of the queue but the spec's state. */
    wr(&f, VIRTIO_MMIO_STATUS, 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_READY), 0);
    teardown(&f);
}
