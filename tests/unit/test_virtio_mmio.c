#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio_mmio.h"
#include "devices/virtio_mmio_internal.h"
#include "unit.h"
#include "vmm/guest_mem.h"
#include "vmm/io_bus.h"

#define BASE 0xd0000000ULL
#define RAM_SIZE (1u << 20)
#define QSIZE 16

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRV VIRTIO_STATUS_DRIVER
#define S_FOK VIRTIO_STATUS_FEATURES_OK
#define S_DOK VIRTIO_STATUS_DRIVER_OK

/* ---- A fake device model: echoes each request's u32 + 1 + 1000 * queue. */

#define FAKE_FEATURES ((1ULL << 0) | (1ULL << 3))
#define FAKE_CONFIG_SIZE 24

struct fake_dev {
    const struct guest_mem *mem;
    uint8_t config[FAKE_CONFIG_SIZE];
    const struct virtio_link *link;
    int resets, activations;
    unsigned notify_calls[2];
    bool refuse_features, fail_notify;
    char last_err[200];
};

static bool fake_validate(void *opaque, uint64_t features)
{
    struct fake_dev *d = opaque;
    return !d->refuse_features;
}

static void fake_config_read(void *opaque, uint32_t offset, void *data, unsigned len)
{
    struct fake_dev *d = opaque;
    memcpy(data, d->config + offset, len);
}

static void fake_config_write(void *opaque, uint32_t offset, const void *data, unsigned len)
{
    struct fake_dev *d = opaque;
    memcpy(d->config + offset, data, len);
}

static void fake_activate(void *opaque, const struct virtio_link *link)
{
    struct fake_dev *d = opaque;
    d->link = link;
    d->activations++;
}

static void fake_reset(void *opaque)
{
    struct fake_dev *d = opaque;
    d->link = NULL;
    d->resets++;
}

static bool fake_notify(void *opaque, struct virtq *q, unsigned index)
{
    struct fake_dev *d = opaque;
    d->notify_calls[index]++;
    if (d->fail_notify)
        return false;
    for (;;) {
        struct virtq_buf bufs[4];
        struct virtq_chain c;
        int rc = virtq_pop(q, d->mem, &c, bufs, 4, d->last_err, sizeof(d->last_err));
        if (rc == 0)
            return true;
        if (rc < 0)
            return false;
        uint32_t req = 0;
        virtq_chain_read(&c, &req, sizeof(req));
        uint32_t resp = req + 1 + 1000 * index;
        virtq_push(q, c.head, (uint32_t)virtq_chain_write(&c, &resp, sizeof(resp)));
    }
}

static const struct virtio_device_ops fake_ops = {
    .name = "fake",
    .device_id = 0x42,
    .features = FAKE_FEATURES,
    .num_queues = 2,
    .queue_max_size = 64,
    .config_size = FAKE_CONFIG_SIZE,
    .validate_features = fake_validate,
    .config_read = fake_config_read,
    .config_write = fake_config_write,
    .activate = fake_activate,
    .reset = fake_reset,
    .queue_notify = fake_notify,
};

/* The same device with read-only config space. */
static const struct virtio_device_ops fake_ro_ops = {
    .name = "fake-ro",
    .device_id = 0x42,
    .features = FAKE_FEATURES,
    .num_queues = 2,
    .queue_max_size = 64,
    .config_size = FAKE_CONFIG_SIZE,
    .config_read = fake_config_read,
    .activate = fake_activate,
    .reset = fake_reset,
    .queue_notify = fake_notify,
};

/* ---- Fixture: guest RAM, the fake device on the transport, on an MMIO bus. */

struct fx {
    struct guest_mem gm;
    struct fake_dev dev;
    struct virtio_mmio t;
    struct io_bus bus;
};

static void fx_setup_ops(struct fx *f, const struct virtio_device_ops *ops, const char *name)
{
    struct mem_range r = {0, RAM_SIZE};
    memset(f, 0, sizeof(*f));
    guest_mem_init(&f->gm, -1);
    CHECK_EQ(guest_mem_add_ram(&f->gm, &r, 1, 0), 0);
    f->dev.mem = &f->gm;
    const uint64_t a = 0x1122334455667788ULL;
    const uint32_t b = 0xaabbccdd;
    memcpy(f->dev.config, &a, 8);
    memcpy(f->dev.config + 8, &b, 4);
    CHECK_EQ(virtio_mmio_init(&f->t, ops, &f->dev, &f->gm, -1, BASE, 5, name), 0);
    io_bus_init(&f->bus, "mmio");
    CHECK_EQ(io_bus_register(&f->bus, BASE, VIRTIO_MMIO_SIZE, &virtio_mmio_io, &f->t, name), 0);
}

static void fx_setup(struct fx *f)
{
    fx_setup_ops(f, &fake_ops, "fake0");
}

static void fx_teardown(struct fx *f)
{
    virtio_mmio_destroy(&f->t);
    guest_mem_destroy(&f->gm);
}

static uint32_t rd(struct fx *f, uint64_t off)
{
    uint32_t v = 0xdeadbeef;
    CHECK(io_bus_read(&f->bus, BASE + off, (uint8_t *)&v, 4));
    return v;
}

static void wr(struct fx *f, uint64_t off, uint32_t v)
{
    CHECK(io_bus_write(&f->bus, BASE + off, (const uint8_t *)&v, 4));
}

static uint64_t cfg_rd(struct fx *f, uint64_t off, unsigned len)
{
    uint64_t v = 0;
    CHECK(io_bus_read(&f->bus, BASE + VIRTIO_MMIO_CONFIG + off, (uint8_t *)&v, len));
    return v;
}

/* How many times the interrupt line fired since the last call. */
static uint64_t irq_count(struct fx *f)
{
    uint64_t n = 0;
    if (read(f->t.irq.eventfd, &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

static uint64_t ring_base(unsigned q)
{
    return 0x10000ULL * (q + 1);
}

/* What Linux's virtio_mmio + virtio core do at probe, up to FEATURES_OK. */
static void negotiate(struct fx *f, uint64_t features)
{
    wr(f, VIRTIO_MMIO_STATUS, 0);
    wr(f, VIRTIO_MMIO_STATUS, S_ACK);
    wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK);
}

static void setup_queue(struct fx *f, unsigned q, uint64_t desc, uint64_t avail, uint64_t used)
{
    wr(f, VIRTIO_MMIO_QUEUE_SEL, q);
    CHECK_EQ(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
    CHECK_EQ(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
    wr(f, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
    wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
    wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
    wr(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
    wr(f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
    wr(f, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
    wr(f, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
    wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
}

static void setup_good_queue(struct fx *f, unsigned q)
{
    setup_queue(f, q, ring_base(q), ring_base(q) + 0x1000, ring_base(q) + 0x2000);
    CHECK_EQ(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
}

static void linux_init(struct fx *f)
{
    negotiate(f, (1ULL << VIRTIO_F_VERSION_1) | 1);
    CHECK_EQ(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK);
    setup_good_queue(f, 0);
    setup_good_queue(f, 1);
    wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
    CHECK_EQ(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
}

/* Driver side: offers a 4-byte request and a 4-byte response buffer. */
static void submit(struct fx *f, unsigned q, uint32_t value)
{
    uint64_t b = ring_base(q);
    struct virtq_desc *desc = guest_mem_ptr(&f->gm, b, QSIZE * 16);
    struct virtq_avail *avail = guest_mem_ptr(&f->gm, b + 0x1000, 4 + 2 * QSIZE);
    uint16_t idx = avail->idx;
    uint16_t head = (uint16_t)((idx * 2) % QSIZE);
    uint64_t buf = b + 0x8000 + head * 0x10;
    CHECK_EQ(guest_mem_write(&f->gm, buf, &value, 4), 0);
    desc[head] = (struct virtq_desc){buf, 4, VIRTQ_DESC_F_NEXT, (uint16_t)(head + 1)};
    desc[head + 1] = (struct virtq_desc){buf + 8, 4, VIRTQ_DESC_F_WRITE, 0};
    avail->ring[idx % QSIZE] = head;
    __atomic_store_n(&avail->idx, (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

static struct virtq_used *used_ring(struct fx *f, unsigned q)
{
    return guest_mem_ptr(&f->gm, ring_base(q) + 0x2000, 4 + 8 * QSIZE);
}

static uint32_t response(struct fx *f, unsigned q, uint16_t head)
{
    uint32_t v = 0;
    CHECK_EQ(guest_mem_read(&f->gm, ring_base(q) + 0x8000 + head * 0x10 + 8, &v, 4), 0);
    return v;
}

static uint64_t notify_pending(struct fx *f, unsigned q)
{
    uint64_t n = 0;
    if (read(f->t.notify_fd[q], &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

/* ---- Tests */

TEST(linux_init_sequence_and_notify)
{
    struct fx f;
    fx_setup(&f);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_VERSION), 2);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_DEVICE_ID), 0x42);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
    wr(&f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_DEVICE_FEATURES), 0x9);
    wr(&f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_DEVICE_FEATURES), 0x1);    /* VERSION_1 */
    wr(&f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_DEVICE_FEATURES), 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_SHM_LEN_HIGH), 0xffffffff);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_RESET), 0);

    linux_init(&f);
    CHECK_EQ(f.dev.activations, 1);
    CHECK(f.dev.link != NULL && f.dev.link->transport == &f.t);
    CHECK_EQ(f.t.driver_features, (1ULL << VIRTIO_F_VERSION_1) | 1);
    CHECK_EQ(f.t.queues[0].size, QSIZE);

    submit(&f, 0, 41);
    wr(&f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    CHECK_EQ(f.dev.notify_calls[0], 0);     /* served by the device thread, not the vCPU */
    virtio_mmio_process_queues(&f.t);
    CHECK_EQ(notify_pending(&f, 0), 0);     /* drained */
    CHECK_EQ(f.dev.notify_calls[0], 1);
    struct virtq_used *u = used_ring(&f, 0);
    CHECK_EQ(u->idx, 1);
    CHECK_EQ(u->ring[0].id, 0);
    CHECK_EQ(u->ring[0].len, 4);
    CHECK_EQ(response(&f, 0, 0), 42);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_USED_BUFFER);
    CHECK_EQ(irq_count(&f), 1);
    CHECK_EQ(f.t.notifications, 2);         /* both ready queues were served */
    wr(&f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_USED_BUFFER);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);

    /* Queue 1 answers with its own index mixed in. */
    submit(&f, 1, 7);
    virtio_mmio_process_queues(&f.t);
    CHECK_EQ(used_ring(&f, 1)->idx, 1);
    CHECK_EQ(response(&f, 1, 0), 1008);
    CHECK_EQ(irq_count(&f), 1);
    fx_teardown(&f);
}

TEST(features_ok_refused)
{
    struct fx f;
    fx_setup(&f);
    negotiate(&f, 1);       /* no VERSION_1 */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
    negotiate(&f, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << 1));    /* bit 1 not offered */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
    negotiate(&f, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << 40));   /* nor bit 40 */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
    f.dev.refuse_features = true;
    negotiate(&f, (1ULL << VIRTIO_F_VERSION_1) | 8);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
    f.dev.refuse_features = false;
    negotiate(&f, (1ULL << VIRTIO_F_VERSION_1) | 8 | 1);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK);
    /* Features are frozen once FEATURES_OK is in. */
    wr(&f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(&f, VIRTIO_MMIO_DRIVER_FEATURES, 0);
    CHECK_EQ(f.t.driver_features, (1ULL << VIRTIO_F_VERSION_1) | 9);
    fx_teardown(&f);
}

TEST(status_transitions)
{
    struct fx f;
    fx_setup(&f);
    wr(&f, VIRTIO_MMIO_STATUS, S_DRV);                  /* DRIVER before ACK */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), 0);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);          /* two steps at once */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), 0);
    wr(&f, VIRTIO_MMIO_STATUS, 0x10);                   /* unknown bit */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), 0);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK | S_FOK);          /* skips DRIVER */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_DOK);  /* DRIVER_OK before FEATURES_OK */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
    CHECK_EQ(f.dev.activations, 0);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK);                  /* clearing DRIVER */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);          /* same value: harmless */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
    /* FAILED may come any time, and then only a reset moves things. */
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | VIRTIO_STATUS_FAILED);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | VIRTIO_STATUS_FAILED);
    wr(&f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(&f, VIRTIO_MMIO_DRIVER_FEATURES, 1);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | VIRTIO_STATUS_FAILED);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | VIRTIO_STATUS_FAILED);
    wr(&f, VIRTIO_MMIO_STATUS, 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), 0);
    CHECK_EQ(f.dev.resets, 1);
    fx_teardown(&f);
}

TEST(read_only_registers_ignore_writes)
{
    struct fx f;
    fx_setup(&f);
    linux_init(&f);
    virtio_mmio_config_changed(&f.t);
    const uint32_t offs[] = {VIRTIO_MMIO_MAGIC_VALUE, VIRTIO_MMIO_VERSION,
                             VIRTIO_MMIO_DEVICE_ID, VIRTIO_MMIO_VENDOR_ID,
                             VIRTIO_MMIO_DEVICE_FEATURES, VIRTIO_MMIO_QUEUE_NUM_MAX,
                             VIRTIO_MMIO_INTERRUPT_STATUS, VIRTIO_MMIO_CONFIG_GENERATION};
    uint32_t before[8];
    for (unsigned i = 0; i < 8; i++)
        before[i] = rd(&f, offs[i]);
    CHECK_EQ(before[6], VIRTIO_INT_CONFIG_CHANGE);
    CHECK_EQ(before[7], 1);
    for (unsigned i = 0; i < 8; i++)
        wr(&f, offs[i], 0);
    for (unsigned i = 0; i < 8; i++)
        CHECK_EQ(rd(&f, offs[i]), before[i]);
    /* Write-only registers read as 0; unknown offsets too. */
    wr(&f, VIRTIO_MMIO_QUEUE_SEL, 1);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_SEL), 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_DESC_LOW), 0);
    CHECK_EQ(rd(&f, 0x0f0), 0);
    wr(&f, 0x0f0, 1);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
    fx_teardown(&f);
}

TEST(bad_queue_sel)
{
    struct fx f;
    fx_setup(&f);
    negotiate(&f, 1ULL << VIRTIO_F_VERSION_1);
    const uint32_t sels[] = {2, 8, 0xffffffff};
    for (unsigned i = 0; i < 3; i++) {
        wr(&f, VIRTIO_MMIO_QUEUE_SEL, sels[i]);
        CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
        CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_READY), 0);
        wr(&f, VIRTIO_MMIO_QUEUE_NUM, 4);
        wr(&f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
        wr(&f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 1);
        wr(&f, VIRTIO_MMIO_QUEUE_READY, 1);
        CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_READY), 0);
    }
    for (unsigned q = 0; q < 2; q++) {
        CHECK_EQ(f.t.queues[q].size, 64);
        CHECK_EQ(f.t.queues[q].desc_gpa, 0);
        CHECK_EQ(f.t.queues[q].avail_gpa, 0);
        CHECK(!f.t.queues[q].ready);
    }
    /* A wild select breaks nothing: the device is still healthy. */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK);
    setup_good_queue(&f, 1);
    CHECK(f.t.queues[1].ready);
    fx_teardown(&f);
}

TEST(queue_notify_index_checked)
{
    struct fx f;
    fx_setup(&f);
    linux_init(&f);
    wr(&f, VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    wr(&f, VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffff);
    CHECK_EQ(notify_pending(&f, 0), 0);
    CHECK_EQ(notify_pending(&f, 1), 0);
    wr(&f, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    wr(&f, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    CHECK_EQ(notify_pending(&f, 0), 0);
    CHECK_EQ(notify_pending(&f, 1), 2);
    fx_teardown(&f);
}

TEST(queue_registers_frozen_outside_setup)
{
    struct fx f;
    fx_setup(&f);
    /* Before FEATURES_OK. */
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
    wr(&f, VIRTIO_MMIO_QUEUE_SEL, 0);
    wr(&f, VIRTIO_MMIO_QUEUE_NUM, 8);
    wr(&f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
    CHECK_EQ(f.t.queues[0].size, 64);
    CHECK_EQ(f.t.queues[0].desc_gpa, 0);

    linux_init(&f);
    wr(&f, VIRTIO_MMIO_QUEUE_SEL, 0);
    wr(&f, VIRTIO_MMIO_QUEUE_NUM, 8);
    wr(&f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
    wr(&f, VIRTIO_MMIO_QUEUE_USED_HIGH, 1);
    CHECK_EQ(f.t.queues[0].size, QSIZE);
    CHECK_EQ(f.t.queues[0].desc_gpa, ring_base(0));
    CHECK_EQ(f.t.queues[0].used_gpa, ring_base(0) + 0x2000);
    /* Still serving correctly. */
    submit(&f, 0, 1);
    virtio_mmio_process_queues(&f.t);
    CHECK_EQ(used_ring(&f, 0)->idx, 1);
    /* QueueReady = 0 always works, and stops service. */
    wr(&f, VIRTIO_MMIO_QUEUE_READY, 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_READY), 0);
    submit(&f, 0, 2);
    virtio_mmio_process_queues(&f.t);
    CHECK_EQ(used_ring(&f, 0)->idx, 1);
    /* ... and re-enabling after DRIVER_OK is refused. */
    wr(&f, VIRTIO_MMIO_QUEUE_READY, 1);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_READY), 0);
    fx_teardown(&f);
}

TEST(queue_ready_with_bad_rings_needs_reset)
{
    struct fx f;
    fx_setup(&f);
    negotiate(&f, 1ULL << VIRTIO_F_VERSION_1);
    setup_queue(&f, 0, ring_base(0) + 8, ring_base(0) + 0x1000, ring_base(0) + 0x2000);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_READY), 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | VIRTIO_STATUS_NEEDS_RESET);
    /* A broken device does not go live. */
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS) & S_DOK, 0);
    CHECK_EQ(f.dev.activations, 0);
    CHECK_EQ(irq_count(&f), 0);     /* no DRIVER_OK yet: no config interrupt */

    /* Out-of-RAM rings and a bad size break it the same way. */
    negotiate(&f, 1ULL << VIRTIO_F_VERSION_1);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK);
    setup_queue(&f, 1, ring_base(1), RAM_SIZE - 4, ring_base(1) + 0x2000);
    CHECK(rd(&f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    negotiate(&f, 1ULL << VIRTIO_F_VERSION_1);
    wr(&f, VIRTIO_MMIO_QUEUE_SEL, 0);
    wr(&f, VIRTIO_MMIO_QUEUE_NUM, 0x10010);     /* would truncate to a valid 16 */
    wr(&f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)ring_base(0));
    wr(&f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)ring_base(0) + 0x1000);
    wr(&f, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)ring_base(0) + 0x2000);
    wr(&f, VIRTIO_MMIO_QUEUE_READY, 1);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_READY), 0);
    CHECK(rd(&f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    fx_teardown(&f);
}

TEST(config_space_bounds)
{
    struct fx f;
    fx_setup(&f);
    CHECK_EQ(cfg_rd(&f, 0, 8), 0x1122334455667788ULL);
    CHECK_EQ(cfg_rd(&f, 0, 4), 0x55667788);
    CHECK_EQ(cfg_rd(&f, 6, 2), 0x1122);
    CHECK_EQ(cfg_rd(&f, 8, 4), 0xaabbccdd);
    CHECK_EQ(cfg_rd(&f, 11, 1), 0xaa);
    uint64_t v = 0x0102030405060708ULL;
    CHECK(io_bus_write(&f.bus, BASE + VIRTIO_MMIO_CONFIG + 16, (uint8_t *)&v, 8));
    CHECK_EQ(cfg_rd(&f, 16, 8), v);
    CHECK_EQ(cfg_rd(&f, 23, 1), 0x01);
    /* Past the end: reads 0, writes change nothing. */
    CHECK_EQ(cfg_rd(&f, 20, 8), 0);
    CHECK_EQ(cfg_rd(&f, 24, 1), 0);
    CHECK_EQ(cfg_rd(&f, 0xf8, 8), 0);
    v = 0xffffffffffffffffULL;
    CHECK(io_bus_write(&f.bus, BASE + VIRTIO_MMIO_CONFIG + 20, (uint8_t *)&v, 8));
    CHECK_EQ(cfg_rd(&f, 16, 8), 0x0102030405060708ULL);
    /* Offsets no bus would pass: huge, and wrapping offset + len. */
    uint8_t d[8];
    memset(d, 0x77, sizeof(d));
    virtio_mmio_io.read(&f.t, UINT64_MAX - 2, d, 4);
    CHECK_EQ(d[0], 0);
    CHECK_EQ(d[3], 0);
    virtio_mmio_io.read(&f.t, VIRTIO_MMIO_CONFIG + 0x100000000ULL, d, 4);
    CHECK_EQ(d[0], 0);
    virtio_mmio_io.write(&f.t, UINT64_MAX - 3, d, 8);
    virtio_mmio_io.read(&f.t, VIRTIO_MMIO_CONFIG + 16, d, 3);   /* odd width */
    CHECK_EQ(d[0], 0);
    fx_teardown(&f);

    fx_setup_ops(&f, &fake_ro_ops, "fake-ro0");
    v = 0;
    CHECK(io_bus_write(&f.bus, BASE + VIRTIO_MMIO_CONFIG, (uint8_t *)&v, 8));
    CHECK_EQ(cfg_rd(&f, 0, 8), 0x1122334455667788ULL);
    fx_teardown(&f);
}

TEST(register_access_must_be_32_bit)
{
    struct fx f;
    fx_setup(&f);
    uint64_t v = 0x1234;
    CHECK(io_bus_read(&f.bus, BASE, (uint8_t *)&v, 2));
    CHECK_EQ(v, 0);
    v = 0x34;
    CHECK(io_bus_read(&f.bus, BASE, (uint8_t *)&v, 1));
    CHECK_EQ(v, 0);
    v = 0x1234;
    CHECK(io_bus_read(&f.bus, BASE, (uint8_t *)&v, 8));
    CHECK_EQ(v, 0);
    v = 0x1234;
    CHECK(io_bus_read(&f.bus, BASE + 2, (uint8_t *)&v, 4));    /* misaligned */
    CHECK_EQ(v, 0);
    v = 0x1234;
    CHECK(io_bus_read(&f.bus, BASE + 0xfe, (uint8_t *)&v, 4)); /* straddles config */
    CHECK_EQ(v, 0);
    v = S_ACK;
    CHECK(io_bus_write(&f.bus, BASE + VIRTIO_MMIO_STATUS, (uint8_t *)&v, 1));
    CHECK(io_bus_write(&f.bus, BASE + VIRTIO_MMIO_STATUS, (uint8_t *)&v, 2));
    CHECK(io_bus_write(&f.bus, BASE + VIRTIO_MMIO_STATUS, (uint8_t *)&v, 8));
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), 0);
    wr(&f, VIRTIO_MMIO_STATUS, S_ACK);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), S_ACK);
    fx_teardown(&f);
}

TEST(config_generation_and_interrupt)
{
    struct fx f;
    fx_setup(&f);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_CONFIG_GENERATION), 0);
    virtio_mmio_config_changed(&f.t);       /* before DRIVER_OK: generation only */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_CONFIG_GENERATION), 1);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    CHECK_EQ(irq_count(&f), 0);

    linux_init(&f);
    CHECK(f.dev.link != NULL);
    f.dev.link->config_changed(f.dev.link->transport);     /* as a device model does */
    CHECK_EQ(rd(&f, VIRTIO_MMIO_CONFIG_GENERATION), 2);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG_CHANGE);
    CHECK_EQ(irq_count(&f), 1);
    CHECK_EQ(atomic_load(&f.t.interrupts), 1);
    /* ACK clears only the bits written. */
    submit(&f, 0, 1);
    virtio_mmio_process_queues(&f.t);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), 3);
    wr(&f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_CONFIG_CHANGE);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_USED_BUFFER);
    fx_teardown(&f);
}

TEST(reset_clears_state)
{
    struct fx f;
    fx_setup(&f);
    linux_init(&f);
    submit(&f, 0, 1);
    virtio_mmio_process_queues(&f.t);
    virtio_mmio_config_changed(&f.t);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), 3);
    CHECK_EQ(f.dev.resets, 1);      /* the driver's reset at probe */
    wr(&f, VIRTIO_MMIO_STATUS, 0);
    CHECK_EQ(f.dev.resets, 2);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    CHECK_EQ(f.t.driver_features, 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_CONFIG_GENERATION), 1);     /* not reset */
    for (unsigned q = 0; q < 2; q++) {
        wr(&f, VIRTIO_MMIO_QUEUE_SEL, q);
        CHECK_EQ(rd(&f, VIRTIO_MMIO_QUEUE_READY), 0);
        CHECK_EQ(f.t.queues[q].size, 64);
        CHECK_EQ(f.t.queues[q].desc_gpa, 0);
        CHECK_EQ(f.t.queues[q].last_avail, 0);
    }
    /* Nothing is served until the driver sets it up again. */
    unsigned calls = f.dev.notify_calls[0];
    submit(&f, 0, 1);
    virtio_mmio_process_queues(&f.t);
    CHECK_EQ(f.dev.notify_calls[0], calls);
    /* A second full init works from scratch (rings zeroed as a driver does). */
    memset(guest_mem_ptr(&f.gm, ring_base(0), 0x3000), 0, 0x3000);
    memset(guest_mem_ptr(&f.gm, ring_base(1), 0x3000), 0, 0x3000);
    linux_init(&f);
    CHECK_EQ(f.dev.activations, 2);
    submit(&f, 0, 9);
    virtio_mmio_process_queues(&f.t);
    CHECK_EQ(used_ring(&f, 0)->idx, 1);
    CHECK_EQ(response(&f, 0, 0), 10);
    fx_teardown(&f);
}

TEST(queue_notify_failure_needs_reset)
{
    struct fx f;
    fx_setup(&f);
    linux_init(&f);
    f.dev.fail_notify = true;
    submit(&f, 0, 1);
    virtio_mmio_process_queues(&f.t);
    CHECK_EQ(f.dev.notify_calls[0], 1);
    CHECK(rd(&f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG_CHANGE);
    CHECK_EQ(irq_count(&f), 1);
    /* Broken: no more service, even when notified. */
    f.dev.fail_notify = false;
    wr(&f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    virtio_mmio_process_queues(&f.t);
    CHECK_EQ(f.dev.notify_calls[0], 1);
    CHECK_EQ(f.dev.notify_calls[1], 0);     /* queue 0 broke the device first */
    /* Reset heals it. */
    wr(&f, VIRTIO_MMIO_STATUS, 0);
    CHECK_EQ(rd(&f, VIRTIO_MMIO_STATUS), 0);
    fx_teardown(&f);
}

TEST(malformed_chain_needs_reset)
{
    struct fx f;
    fx_setup(&f);
    linux_init(&f);
    struct virtq_desc *desc = guest_mem_ptr(&f.gm, ring_base(0), QSIZE * 16);
    struct virtq_avail *avail = guest_mem_ptr(&f.gm, ring_base(0) + 0x1000, 4 + 2 * QSIZE);
    desc[3] = (struct virtq_desc){0x9000, 4, VIRTQ_DESC_F_NEXT, 3};     /* self loop */
    avail->ring[0] = 3;
    avail->idx = 1;
    virtio_mmio_process_queues(&f.t);
    CHECK(rd(&f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_STR_CONTAINS(f.dev.last_err, "chain at head 3");
    fx_teardown(&f);
}

/* Waits up to 5 s for the interrupt line; returns the count seen. */
static uint64_t wait_irq(struct fx *f)
{
    struct pollfd p = {.fd = f->t.irq.eventfd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1)
        return 0;
    return irq_count(f);
}

TEST(device_threads_serve_notifications)
{
    /* Two instances of the same model, each with its own thread. */
    static struct fx a, b;
    fx_setup_ops(&a, &fake_ops, "fake0");
    fx_setup_ops(&b, &fake_ops, "fake1");
    linux_init(&a);
    linux_init(&b);
    CHECK_EQ(virtio_mmio_start(&a.t), 0);
    CHECK_EQ(virtio_mmio_start(&b.t), 0);
    char name[16] = "";
    CHECK_EQ(pthread_getname_np(a.t.thread, name, sizeof(name)), 0);
    CHECK(strcmp(name, "vio-fake0") == 0);

    submit(&a, 0, 100);
    wr(&a, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    CHECK_EQ(wait_irq(&a), 1);
    CHECK_EQ(__atomic_load_n(&used_ring(&a, 0)->idx, __ATOMIC_ACQUIRE), 1);
    CHECK_EQ(response(&a, 0, 0), 101);
    CHECK_EQ(rd(&a, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_USED_BUFFER);

    submit(&b, 1, 200);
    wr(&b, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    CHECK_EQ(wait_irq(&b), 1);
    CHECK_EQ(response(&b, 1, 0), 1201);
    CHECK_EQ(b.dev.notify_calls[0], 0);
    CHECK_EQ(a.dev.notify_calls[1], 0);
    CHECK_EQ(irq_count(&a), 0);     /* b's work never touched a */

    /* A reset while the thread runs is synchronous with it. Seven more
     * two-descriptor chains fill the ring without reusing a descriptor the
     * device may still be reading, as a correct driver would. */
    for (int i = 0; i < 7; i++) {
        submit(&a, 0, (uint32_t)i);
        wr(&a, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    }
    wr(&a, VIRTIO_MMIO_STATUS, 0);
    CHECK_EQ(rd(&a, VIRTIO_MMIO_STATUS), 0);
    CHECK_EQ(a.dev.resets, 2);      /* probe's and this one */

    fx_teardown(&a);    /* joins the thread */
    fx_teardown(&b);
    CHECK(!a.t.thread_started);
}

TEST(init_rejects_bad_models)
{
    struct guest_mem gm;
    guest_mem_init(&gm, -1);
    struct virtio_mmio t;
    struct fake_dev d = {0};
    struct virtio_device_ops ops = fake_ops;
    ops.num_queues = VIRTIO_MAX_QUEUES + 1;
    CHECK_EQ(virtio_mmio_init(&t, &ops, &d, &gm, -1, BASE, 5, "bad"), -EINVAL);
    ops = fake_ops;
    ops.queue_max_size = 48;
    CHECK_EQ(virtio_mmio_init(&t, &ops, &d, &gm, -1, BASE, 5, "bad"), -EINVAL);
    ops = fake_ops;
    ops.config_size = 0x101;
    CHECK_EQ(virtio_mmio_init(&t, &ops, &d, &gm, -1, BASE, 5, "bad"), -EINVAL);
}

TEST(kvm_ioeventfd_binding)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        unit_skip("no /dev/kvm");
        return;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    CHECK(vm >= 0);
#ifdef MINIVMM_ARCH_x86_64
    CHECK_EQ(ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
#else
    unit_skip("irqfd needs an in-kernel GIC here");
    close(vm);
    close(kvm);
    return;
#endif
    struct guest_mem gm;
    guest_mem_init(&gm, -1);
    struct fake_dev d = {0};
    struct virtio_mmio t, t2;
    CHECK_EQ(virtio_mmio_init(&t, &fake_ops, &d, &gm, vm, BASE, 5, "fake0"), 0);
    CHECK(t.ioeventfd_registered[0] && t.ioeventfd_registered[1]);
    CHECK(!t.ioeventfd_registered[2]);
    /* The same notify address and datamatch again: KVM refuses, init fails
     * cleanly and leaves the first binding alone. */
    CHECK_EQ(virtio_mmio_init(&t2, &fake_ops, &d, &gm, vm, BASE, 6, "fake1"), -EEXIST);
    virtio_mmio_destroy(&t);
    CHECK(!t.ioeventfd_registered[0] && !t.ioeventfd_registered[1]);
    /* Unbound on destroy, so the address is free again. */
    CHECK_EQ(virtio_mmio_init(&t2, &fake_ops, &d, &gm, vm, BASE, 6, "fake1"), 0);
    virtio_mmio_destroy(&t2);
    close(vm);
    close(kvm);
}

TEST(device_thread_names_stay_distinct)
{
    char a[16], b[16], c[16], d[16];
    vmmio_thread_name("virtio-mem node0", a);
    vmmio_thread_name("virtio-mem node1", b);
    CHECK(!strcmp(a, "vio-node0"));
    CHECK(!strcmp(b, "vio-node1"));
    vmmio_thread_name("virtio-mem abcdefghijk", c);          /* 11: kept whole */
    CHECK(!strcmp(c, "vio-abcdefghijk"));
    vmmio_thread_name("virtio-mem memory-region-one", c);
    vmmio_thread_name("virtio-mem memory-region-two", d);
    CHECK_EQ(strlen(c), 15);
    CHECK(!strncmp(c, "vio-memory-r~", 13));
    CHECK(strcmp(c, d) != 0);
}
