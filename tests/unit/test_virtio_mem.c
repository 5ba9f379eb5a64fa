/* virtio-mem against an in-memory guest: the real hotplug_mem (no KVM) or a
 * fake backing that records calls and injects failures. The queue glue is
 * driven through stand-ins for the virtqueue API (see the end of the file). */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "devices/virtio_mem.h"
#include "guard_watch.h"
#include "unit.h"
#include "vmm/hotplug/mem.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define BASE (4 * GiB)
#define BS (2 * MiB)
#define REGION (256 * MiB)      /* 128 blocks */
#define SLOT (64 * MiB)         /* 32 blocks per slot, 4 slots */
#define MEMORY_BLOCK (128 * MiB) /* the guest's memory block (x86_64, arm64 4K) */

struct fixture {
    struct hotplug_mem hm;
    struct virtio_mem m;
};

static void setup_hotplug(struct fixture *f, uint64_t requested)
{
    CHECK_EQ(hotplug_mem_init(&f->hm, -1, "virtio-mem test", BASE, REGION, SLOT, 4096, 100, 0, false),
             0);
    struct virtio_mem_params p = {.id = "test", .addr = BASE, .region_size = REGION,
                                  .block_size = BS, .memory_block = MEMORY_BLOCK,
                                  .requested_size = requested};
    char err[256] = "";
    CHECK_EQ(virtio_mem_init(&f->m, &p, &virtio_mem_hotplug_backing, &f->hm, err, sizeof(err)),
             0);
}

static void teardown(struct fixture *f)
{
    virtio_mem_destroy(&f->m);
    hotplug_mem_destroy(&f->hm);
}

/* A backing that records calls and fails on demand. */
struct fake_backing {
    int plug_rc, unplug_rc;
    unsigned plugs, unplugs;
    uint64_t last_offset[16], last_len[16];
    bool last_more[16];
};

static int fake_plug(void *b, uint64_t offset, uint64_t len, const _Atomic uint32_t *cancel)
{
    (void)cancel;
    struct fake_backing *fb = b;
    fb->plugs++;
    (void)offset;
    (void)len;
    return fb->plug_rc;
}

static int fake_unplug(void *b, uint64_t offset, uint64_t len, bool more_to_come)
{
    struct fake_backing *fb = b;
    if (fb->unplugs < 16) {
        fb->last_offset[fb->unplugs] = offset;
        fb->last_len[fb->unplugs] = len;
        fb->last_more[fb->unplugs] = more_to_come;
    }
    fb->unplugs++;
    return fb->unplug_rc;
}

static const struct virtio_mem_backing_ops fake_ops = {fake_plug, fake_unplug};

static void setup_fake(struct virtio_mem *m, struct fake_backing *fb, uint64_t addr,
                       uint64_t region, uint64_t bs, uint64_t requested)
{
    memset(fb, 0, sizeof(*fb));
    struct virtio_mem_params p = {.id = "fake", .addr = addr, .region_size = region,
                                  .block_size = bs, .memory_block = MEMORY_BLOCK,
                                  .requested_size = requested};
    char err[256] = "";
    CHECK_EQ(virtio_mem_init(m, &p, &fake_ops, fb, err, sizeof(err)), 0);
}

/* Sends one request; returns the response type, *state gets the state. */
static uint16_t req_state(struct virtio_mem *m, uint16_t type, uint64_t addr, uint16_t nb,
                          uint16_t *state)
{
    struct virtio_mem_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.type = htole16(type);
    rq.addr = htole64(addr);
    rq.nb_blocks = htole16(nb);
    struct virtio_mem_resp rs;
    memset(&rs, 0xa5, sizeof(rs));
    virtio_mem_handle_request(m, &rq, &rs, NULL);
    CHECK_EQ(rs.padding[0] | rs.padding[1] | rs.padding[2], 0);
    if (state)
        *state = le16toh(rs.state);
    return le16toh(rs.type);
}

static uint16_t req(struct virtio_mem *m, uint16_t type, uint64_t addr, uint16_t nb)
{
    return req_state(m, type, addr, nb, NULL);
}

static uint16_t state_of(struct virtio_mem *m, uint64_t addr, uint16_t nb)
{
    uint16_t st = 0xffff;
    CHECK_EQ(req_state(m, VIRTIO_MEM_REQ_STATE, addr, nb, &st), VIRTIO_MEM_RESP_ACK);
    return st;
}

static uint64_t plugged_size(struct virtio_mem *m)
{
    struct virtio_mem_config c;
    virtio_mem_get_config(m, &c);
    return c.plugged_size;
}

static uint64_t blk(uint64_t i)
{
    return BASE + i * BS;
}

TEST(init_rejects_bad_parameters)
{
    struct fake_backing fb = {0};
    struct virtio_mem m;
    char err[256];
    struct {
        uint64_t addr, region, bs, requested, memory_block;
        const char *msg;
    } cases[] = {
        {BASE, REGION, 0, 0, MEMORY_BLOCK, "power of two"},
        {BASE, REGION, 2048, 0, MEMORY_BLOCK, "power of two"},
        {BASE, REGION, 0x3000, 0, MEMORY_BLOCK, "power of two"},
        {BASE, 0, BS, 0, MEMORY_BLOCK, "region size"},
        {BASE, REGION + 4096, BS, 0, MEMORY_BLOCK, "region size"},
        {BASE + 4096, REGION, BS, 0, MEMORY_BLOCK, "not a multiple of the block size"},
        {0xffffffffffe00000ULL, 2 * BS, BS, 0, MEMORY_BLOCK, "wraps"},
        {BASE, REGION, BS, REGION + BS, MEMORY_BLOCK, "exceeds the region size"},
        {BASE, REGION, BS, BS + 4096, MEMORY_BLOCK, "requested size"},
        {BASE, REGION, BS, 0, 0, "guest memory block"},
        {BASE, REGION, BS, 0, 96 * MiB, "guest memory block"},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct virtio_mem_params p = {.id = "mem0", .addr = cases[i].addr,
                                      .region_size = cases[i].region,
                                      .block_size = cases[i].bs,
                                      .memory_block = cases[i].memory_block,
                                      .requested_size = cases[i].requested};
        err[0] = 0;
        CHECK_EQ(virtio_mem_init(&m, &p, &fake_ops, &fb, err, sizeof(err)), -EINVAL);
        CHECK_STR_CONTAINS(err, cases[i].msg);
        CHECK_STR_CONTAINS(err, "virtio-mem mem0");
    }
    struct virtio_mem_params ok = {.id = "mem0", .addr = BASE, .region_size = REGION,
                                   .block_size = BS, .memory_block = MEMORY_BLOCK,
                                   .requested_size = REGION};
    CHECK_EQ(virtio_mem_init(&m, &ok, NULL, &fb, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "backing");
    CHECK_EQ(virtio_mem_init(&m, &ok, &fake_ops, &fb, err, sizeof(err)), 0);
    struct virtio_mem_config c;
    virtio_mem_get_config(&m, &c);
    CHECK_EQ(c.usable_region_size, REGION);     /* the whole region, from the start */
    CHECK_EQ(c.requested_size, REGION);
    CHECK_EQ(c.plugged_size, 0);
    virtio_mem_destroy(&m);
}

TEST(usable_region_policy)
{
    /* requested + 256 MiB, rounded up to the guest's memory block (or the
     * device block), capped at the region; grows with requested_size,
     * shrinks only with nothing plugged. */
    const uint64_t mb = MEMORY_BLOCK;
    CHECK_EQ(virtio_mem_usable_for(0, BS, mb, 64 * GiB), 256 * MiB);
    CHECK_EQ(virtio_mem_usable_for(BS, BS, mb, 64 * GiB), 384 * MiB);
    CHECK_EQ(virtio_mem_usable_for(GiB, BS, mb, 64 * GiB), GiB + 256 * MiB);
    CHECK_EQ(virtio_mem_usable_for(GiB, GiB, mb, 64 * GiB), 2 * GiB);   /* block-aligned */
    CHECK_EQ(virtio_mem_usable_for(63 * GiB, BS, mb, 64 * GiB), 63 * GiB + 256 * MiB);
    CHECK_EQ(virtio_mem_usable_for(63 * GiB + 900 * MiB, BS, mb, 64 * GiB), 64 * GiB); /* capped */
    CHECK_EQ(virtio_mem_usable_for(64 * GiB, BS, mb, 64 * GiB), 64 * GiB);
    CHECK_EQ(virtio_mem_usable_for(0, BS, mb, 128 * MiB), 128 * MiB);
    /* A guest with larger memory blocks (512 MiB: arm64 with 64 KiB pages)
     * gets a usable end on its own boundary. */
    CHECK_EQ(virtio_mem_usable_for(0, BS, 512 * MiB, 64 * GiB), 512 * MiB);
    CHECK_EQ(virtio_mem_usable_for(GiB, BS, 512 * MiB, 64 * GiB), GiB + 512 * MiB);

    struct fake_backing fb = {0};
    struct virtio_mem m;
    uint64_t base = 0x100000000ULL;
    struct virtio_mem_params p = {.id = "u", .addr = base, .region_size = 8 * GiB,
                                  .block_size = BS, .memory_block = MEMORY_BLOCK,
                                  .requested_size = 0};
    char err[256];
    CHECK_EQ(virtio_mem_init(&m, &p, &fake_ops, &fb, err, sizeof(err)), 0);
    struct virtio_mem_config c;
    virtio_mem_get_config(&m, &c);
    CHECK_EQ(c.usable_region_size, 256 * MiB);
    /* Beyond the usable region a plug is an ERROR, even below requested. */
    CHECK_EQ(virtio_mem_set_requested_size(&m, GiB, err, sizeof(err)), 0);
    virtio_mem_get_config(&m, &c);
    CHECK_EQ(c.usable_region_size, GiB + 256 * MiB);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, base + GiB + 256 * MiB, 1), VIRTIO_MEM_RESP_ERROR);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, base + GiB + 256 * MiB - BS, 1), VIRTIO_MEM_RESP_ACK);
    /* Lowering requested_size with memory plugged keeps the window. */
    CHECK_EQ(virtio_mem_set_requested_size(&m, 0, err, sizeof(err)), 0);
    virtio_mem_get_config(&m, &c);
    CHECK_EQ(c.usable_region_size, GiB + 256 * MiB);
    /* UNPLUG_ALL empties the device: the window shrinks to what 0 needs. */
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0), VIRTIO_MEM_RESP_ACK);
    virtio_mem_get_config(&m, &c);
    CHECK_EQ(c.usable_region_size, 256 * MiB);
    /* Growing again; and a system reset shrinks it like UNPLUG_ALL. */
    CHECK_EQ(virtio_mem_set_requested_size(&m, 2 * GiB, err, sizeof(err)), 0);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, base + 2 * GiB, 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(virtio_mem_set_requested_size(&m, 128 * MiB, err, sizeof(err)), 0);
    virtio_mem_get_config(&m, &c);
    CHECK_EQ(c.usable_region_size, 2 * GiB + 256 * MiB);
    CHECK_EQ(virtio_mem_system_reset(&m), 0);
    virtio_mem_get_config(&m, &c);
    CHECK_EQ(c.usable_region_size, 384 * MiB);
    /* Lowered with nothing plugged: shrinks at once. */
    CHECK_EQ(virtio_mem_set_requested_size(&m, 0, err, sizeof(err)), 0);
    virtio_mem_get_config(&m, &c);
    CHECK_EQ(c.usable_region_size, 256 * MiB);
    virtio_mem_destroy(&m);
}

TEST(first_and_last_block)
{
    struct fixture f;
    setup_hotplug(&f, REGION);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(0), 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(127), 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(plugged_size(&f.m), 2 * BS);
    CHECK_EQ(state_of(&f.m, blk(0), 1), VIRTIO_MEM_STATE_PLUGGED);
    CHECK_EQ(state_of(&f.m, blk(127), 1), VIRTIO_MEM_STATE_PLUGGED);
    CHECK_EQ(state_of(&f.m, blk(1), 126), VIRTIO_MEM_STATE_UNPLUGGED);
    CHECK_EQ(state_of(&f.m, blk(0), 128), VIRTIO_MEM_STATE_MIXED);
    CHECK_EQ(f.hm.slots_registered, 2);
    CHECK_EQ(f.hm.slot_plugged[0], BS);
    CHECK_EQ(f.hm.slot_plugged[3], BS);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(127), 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(0), 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(plugged_size(&f.m), 0);
    CHECK_EQ(f.hm.slots_registered, 0);
    teardown(&f);
}

TEST(bad_ranges_are_errors_for_every_type)
{
    struct fixture f;
    setup_hotplug(&f, REGION);
    const uint16_t types[] = {VIRTIO_MEM_REQ_PLUG, VIRTIO_MEM_REQ_UNPLUG, VIRTIO_MEM_REQ_STATE};
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(10), 1), VIRTIO_MEM_RESP_ACK);
    for (unsigned i = 0; i < 3; i++) {
        uint16_t t = types[i];
        CHECK_EQ(req(&f.m, t, blk(10) + 4096, 1), VIRTIO_MEM_RESP_ERROR);   /* misaligned */
        CHECK_EQ(req(&f.m, t, blk(10) + BS / 2, 1), VIRTIO_MEM_RESP_ERROR);
        CHECK_EQ(req(&f.m, t, blk(10), 0), VIRTIO_MEM_RESP_ERROR);          /* no blocks */
        CHECK_EQ(req(&f.m, t, BASE - BS, 1), VIRTIO_MEM_RESP_ERROR);        /* below */
        CHECK_EQ(req(&f.m, t, BASE - BS, 2), VIRTIO_MEM_RESP_ERROR);        /* straddles start */
        CHECK_EQ(req(&f.m, t, 0, 1), VIRTIO_MEM_RESP_ERROR);
        CHECK_EQ(req(&f.m, t, blk(127), 2), VIRTIO_MEM_RESP_ERROR);         /* past the end */
        CHECK_EQ(req(&f.m, t, blk(128), 1), VIRTIO_MEM_RESP_ERROR);         /* just after */
        CHECK_EQ(req(&f.m, t, blk(0), 129), VIRTIO_MEM_RESP_ERROR);
        /* addr + nb_blocks * block_size wraps around 2^64. */
        CHECK_EQ(req(&f.m, t, UINT64_MAX & ~(BS - 1), 65535), VIRTIO_MEM_RESP_ERROR);
        CHECK_EQ(req(&f.m, t, UINT64_MAX & ~(BS - 1), 1), VIRTIO_MEM_RESP_ERROR);
        CHECK_EQ(req(&f.m, t, UINT64_MAX, 1), VIRTIO_MEM_RESP_ERROR);
    }
    /* Nothing changed along the way. */
    CHECK_EQ(plugged_size(&f.m), BS);
    CHECK_EQ(state_of(&f.m, blk(0), 128), VIRTIO_MEM_STATE_MIXED);
    CHECK_EQ(state_of(&f.m, blk(10), 1), VIRTIO_MEM_STATE_PLUGGED);
    CHECK_EQ(f.hm.slots_registered, 1);
    CHECK_EQ(req(&f.m, 77, blk(10), 1), VIRTIO_MEM_RESP_ERROR);             /* unknown type */
    CHECK_EQ(req(&f.m, 0xffff, blk(10), 1), VIRTIO_MEM_RESP_ERROR);
    CHECK(f.m.stats.error >= 3 * 12 + 2);
    teardown(&f);
}

TEST(block_count_times_size_overflow)
{
    /* Huge blocks, so nb_blocks * block_size wraps although the start lies
     * inside the region: 32768 * 2^49 is 2^64 (wraps to 0), 32769 * 2^49
     * wraps to one block, 65535 * 2^49 to 2^64 - 2^49. */
    struct fake_backing fb;
    struct virtio_mem m;
    uint64_t bs = 1ULL << 49;
    setup_fake(&m, &fb, bs, 2 * bs, bs, 2 * bs);
    const uint16_t counts[] = {32768, 32769, 65535};
    const uint16_t types[] = {VIRTIO_MEM_REQ_PLUG, VIRTIO_MEM_REQ_STATE, VIRTIO_MEM_REQ_UNPLUG};
    for (unsigned i = 0; i < 3; i++)
        for (unsigned t = 0; t < 3; t++)
            CHECK_EQ(req(&m, types[t], bs, counts[i]), VIRTIO_MEM_RESP_ERROR);
    CHECK_EQ(fb.plugs, 0);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, 2 * bs, 1), VIRTIO_MEM_RESP_ACK);  /* last block */
    CHECK_EQ(fb.plugs, 1);
    CHECK_EQ(state_of(&m, bs, 2), VIRTIO_MEM_STATE_MIXED);
    CHECK_EQ(plugged_size(&m), bs);
    virtio_mem_destroy(&m);
}

TEST(max_u16_block_count)
{
    /* 65536 blocks of 4 KiB: 65535 fits from block 0 or 1, not from 2. */
    struct hotplug_mem hm;
    struct virtio_mem m;
    uint64_t bs = 4096, region = 65536 * bs;
    CHECK_EQ(hotplug_mem_init(&hm, -1, "virtio-mem u16", BASE, region, SLOT, 4096, 0, 0, false), 0);
    struct virtio_mem_params p = {.id = "u16", .addr = BASE, .region_size = region,
                                  .block_size = bs, .memory_block = MEMORY_BLOCK,
                                  .requested_size = region};
    char err[256];
    CHECK_EQ(virtio_mem_init(&m, &p, &virtio_mem_hotplug_backing, &hm, err, sizeof(err)), 0);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, BASE + 2 * bs, 65535), VIRTIO_MEM_RESP_ERROR);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, BASE + bs, 65535), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(plugged_size(&m), 65535 * bs);
    CHECK_EQ(hm.slots_registered, 4);
    CHECK_EQ(hm.slot_plugged[0], SLOT - bs);
    CHECK_EQ(hm.slot_plugged[3], SLOT);
    uint16_t st;
    CHECK_EQ(req_state(&m, VIRTIO_MEM_REQ_STATE, BASE, 65535, &st), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(st, VIRTIO_MEM_STATE_MIXED);
    CHECK_EQ(req_state(&m, VIRTIO_MEM_REQ_STATE, BASE + bs, 65535, &st), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(st, VIRTIO_MEM_STATE_PLUGGED);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, BASE, 65535), VIRTIO_MEM_RESP_ERROR);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_UNPLUG, BASE + bs, 65535), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(hm.slots_registered, 0);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, BASE, 65535), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(plugged_size(&m), 0);
    virtio_mem_destroy(&m);
    hotplug_mem_destroy(&hm);
}

TEST(request_across_slot_boundary)
{
    struct fixture f;
    setup_hotplug(&f, REGION);
    /* Blocks 30..33: two in slot 0, two in slot 1. */
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(30), 4), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 2);
    CHECK_EQ(f.hm.slot_plugged[0], 2 * BS);
    CHECK_EQ(f.hm.slot_plugged[1], 2 * BS);
    CHECK_EQ(f.hm.slot_plugged[2], 0);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(30), 2), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 1);
    CHECK_EQ(f.hm.slot_plugged[0], 0);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(34), 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 1);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(32), 3), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 0);
    CHECK_EQ(f.hm.slot_plugged[1], 0);
    teardown(&f);
}

TEST(plug_plugged_and_unplug_unplugged_are_errors)
{
    struct fixture f;
    setup_hotplug(&f, REGION);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(5), 2), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(5), 1), VIRTIO_MEM_RESP_ERROR);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(4), 2), VIRTIO_MEM_RESP_ERROR);   /* partly */
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(6), 2), VIRTIO_MEM_RESP_ERROR); /* partly */
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(9), 1), VIRTIO_MEM_RESP_ERROR);
    CHECK_EQ(plugged_size(&f.m), 2 * BS);
    CHECK_EQ(state_of(&f.m, blk(4), 4), VIRTIO_MEM_STATE_MIXED);
    CHECK_EQ(state_of(&f.m, blk(5), 2), VIRTIO_MEM_STATE_PLUGGED);
    CHECK_EQ(state_of(&f.m, blk(4), 1), VIRTIO_MEM_STATE_UNPLUGGED);
    CHECK_EQ(state_of(&f.m, blk(7), 1), VIRTIO_MEM_STATE_UNPLUGGED);
    teardown(&f);
}

TEST(plug_beyond_requested_is_nacked)
{
    struct fixture f;
    setup_hotplug(&f, 4 * BS);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(0), 5), VIRTIO_MEM_RESP_NACK);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(0), 3), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(3), 2), VIRTIO_MEM_RESP_NACK);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(100), 1), VIRTIO_MEM_RESP_ACK); /* exactly */
    CHECK_EQ(plugged_size(&f.m), 4 * BS);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(101), 1), VIRTIO_MEM_RESP_NACK);
    /* An already-plugged block is an ERROR even when the size is also over. */
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(100), 1), VIRTIO_MEM_RESP_ERROR);

    /* requested_size lowered below plugged_size: plugs NACK, unplugs work. */
    char err[128];
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, BS, err, sizeof(err)), 0);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(50), 1), VIRTIO_MEM_RESP_NACK);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(0), 3), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(plugged_size(&f.m), BS);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(50), 1), VIRTIO_MEM_RESP_NACK);
    CHECK_EQ(f.m.stats.nack, 5);
    CHECK_EQ(f.m.stats.plug, 8);
    teardown(&f);
}

TEST(unplug_all_coalesces_runs)
{
    struct fake_backing fb = {0};
    struct virtio_mem m;
    setup_fake(&m, &fb, BASE, REGION, BS, REGION);
    /* Runs: 0-2, 5, 60-70 (across a bitmap word), 127 (the last block). */
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, blk(0), 3), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, blk(5), 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, blk(60), 5), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, blk(65), 6), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, blk(127), 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(plugged_size(&m), 16 * BS);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_UNPLUG_ALL, 0xdead, 7), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(fb.unplugs, 4);
    CHECK_EQ(fb.last_offset[0], 0);
    CHECK_EQ(fb.last_len[0], 3 * BS);
    CHECK_EQ(fb.last_offset[1], 5 * BS);
    CHECK_EQ(fb.last_len[1], BS);
    CHECK_EQ(fb.last_offset[2], 60 * BS);
    CHECK_EQ(fb.last_len[2], 11 * BS);
    CHECK_EQ(fb.last_offset[3], 127 * BS);
    CHECK_EQ(fb.last_len[3], BS);
    /* Only the last run is told that nothing more is coming. */
    CHECK(fb.last_more[0] && fb.last_more[1] && fb.last_more[2] && !fb.last_more[3]);
    CHECK_EQ(plugged_size(&m), 0);
    CHECK_EQ(state_of(&m, blk(0), 128), VIRTIO_MEM_STATE_UNPLUGGED);
    /* Nothing plugged: still ACK, no backing call. */
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(fb.unplugs, 4);
    CHECK_EQ(m.stats.unplug_all, 2);
    virtio_mem_destroy(&m);
}

TEST(unplug_all_with_hotplug_backing)
{
    struct fixture f;
    setup_hotplug(&f, REGION);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(1), 40), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(100), 3), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 3);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 0);
    for (unsigned s = 0; s < f.hm.n_slots; s++)
        CHECK_EQ(f.hm.slot_plugged[s], 0);
    teardown(&f);
}

/* The driver shrinks towards requested_size one memory block per request.
 * With the guard, the memslots those requests empty are removed by the
 * request that reaches the requested size, all at once: on x86 each
 * removal makes KVM drop every stage-2 mapping of the VM, which the guest
 * pays for by faulting its memory back in. Until then they hold no memory
 * (test_hotplug_guard: an_idle_slot_holds_and_backs_nothing). */
TEST(with_the_guard_emptied_slots_go_when_the_requested_size_is_reached)
{
    struct fixture f;
    setup_hotplug(&f, REGION);
    struct hotplug_guard g;
    if (!guard_watch(&g, &f.hm)) {
        teardown(&f);
        return;
    }
    char err[200];
    for (unsigned s = 0; s < 3; s++)
        CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(32 * s), 32), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 3);
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, SLOT, err, sizeof(err)), 0);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(64), 32), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 3);
    /* More than requested, unplugged again: plugging reuses the idle slot. */
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, REGION, err, sizeof(err)), 0);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(64), 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 3);
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, SLOT, err, sizeof(err)), 0);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(64), 1), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(32), 32), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(plugged_size(&f.m), SLOT);                 /* reached: both idle slots go */
    CHECK_EQ(f.hm.slots_registered, 1);
    CHECK(f.hm.slot_live[0] && !f.hm.slot_live[1] && !f.hm.slot_live[2]);

    /* Unplugging more than asked (below requested_size) ends a shrink too. */
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, REGION, err, sizeof(err)), 0);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(32), 32), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, 0, err, sizeof(err)), 0);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(32), 32), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 2);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 0);
    hotplug_guard_destroy(&g);
    teardown(&f);
}

/* Without the guard nothing stops a guest backing an emptied slot's
 * memory again, so the slot goes with the request that empties it. */
TEST(without_the_guard_emptied_slots_go_at_once)
{
    struct fixture f;
    setup_hotplug(&f, REGION);
    for (unsigned s = 0; s < 3; s++)
        CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(32 * s), 32), VIRTIO_MEM_RESP_ACK);
    char err[200];
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, 0, err, sizeof(err)), 0);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(64), 32), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 2);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(32), 32), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(f.hm.slots_registered, 1);
    teardown(&f);
}

TEST(backing_failures)
{
    struct fake_backing fb = {0};
    struct virtio_mem m;
    setup_fake(&m, &fb, BASE, REGION, BS, REGION);
    fb.plug_rc = -ENOMEM;
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, blk(3), 2), VIRTIO_MEM_RESP_BUSY);
    CHECK_EQ(plugged_size(&m), 0);
    CHECK_EQ(state_of(&m, blk(3), 2), VIRTIO_MEM_STATE_UNPLUGGED);
    fb.plug_rc = -EIO;
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, blk(3), 2), VIRTIO_MEM_RESP_ERROR);
    CHECK_EQ(state_of(&m, blk(3), 2), VIRTIO_MEM_STATE_UNPLUGGED);
    fb.plug_rc = 0;
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, blk(3), 2), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, blk(9), 1), VIRTIO_MEM_RESP_ACK);
    fb.unplug_rc = -EIO;
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_UNPLUG, blk(3), 2), VIRTIO_MEM_RESP_ERROR);
    CHECK_EQ(state_of(&m, blk(3), 2), VIRTIO_MEM_STATE_PLUGGED);
    CHECK_EQ(plugged_size(&m), 3 * BS);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0), VIRTIO_MEM_RESP_ERROR);
    CHECK_EQ(plugged_size(&m), 3 * BS);
    CHECK(virtio_mem_system_reset(&m) < 0);
    fb.unplug_rc = 0;
    CHECK_EQ(m.stats.busy, 1);
    CHECK_EQ(m.stats.error, 3);
    CHECK_EQ(virtio_mem_system_reset(&m), 0);
    CHECK_EQ(plugged_size(&m), 0);
    virtio_mem_destroy(&m);
}

/* A transport stand-in that counts config-change signals. */
struct fake_transport {
    unsigned config_changes;
};

static void fake_config_changed(void *transport)
{
    ((struct fake_transport *)transport)->config_changes++;
}

static const struct guest_mem fake_guest_ram;

static void activate(struct virtio_mem *m, struct fake_transport *t)
{
    struct virtio_link link = {.transport = t, .mem = &fake_guest_ram,
                               .config_changed = fake_config_changed};
    virtio_mem_ops.activate(m, &link);
}

TEST(set_requested_size)
{
    struct fixture f;
    struct fake_transport t = {0};
    char err[256] = "";
    setup_hotplug(&f, 0);
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, 8 * BS, err, sizeof(err)), 0);
    CHECK_EQ(t.config_changes, 0);               /* not activated: nobody to tell */
    activate(&f.m, &t);
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, 8 * BS, err, sizeof(err)), 0);
    CHECK_EQ(t.config_changes, 0);               /* unchanged */
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, 16 * BS, err, sizeof(err)), 0);
    CHECK_EQ(t.config_changes, 1);
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, REGION, err, sizeof(err)), 0);
    CHECK_EQ(t.config_changes, 2);
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, 0, err, sizeof(err)), 0);
    CHECK_EQ(t.config_changes, 3);
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, BS + 4096, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "multiple of the block size");
    CHECK_EQ(virtio_mem_set_requested_size(&f.m, REGION + BS, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "virtio-mem test");
    CHECK_EQ(t.config_changes, 3);
    struct virtio_mem_config c;
    virtio_mem_get_config(&f.m, &c);
    CHECK_EQ(c.requested_size, 0);
    CHECK_EQ(c.usable_region_size, REGION);      /* 0 + extent covers this small region */
    teardown(&f);
}

static uint64_t read_le(struct virtio_mem *m, uint32_t offset, unsigned len)
{
    uint8_t b[8] = {0};
    virtio_mem_ops.config_read(m, offset, b, len);
    uint64_t v = 0;
    for (unsigned i = 0; i < len; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

TEST(config_space_is_little_endian)
{
    struct fake_backing fb = {0};
    struct virtio_mem m;
    struct virtio_mem_params p = {.id = "cfg", .addr = 0x123400000000ULL,
                                  .region_size = 0x80000000ULL, .block_size = BS,
                                  .memory_block = MEMORY_BLOCK, .node_id = 0x0102,
                                  .requested_size = 6 * BS};
    char err[256];
    CHECK_EQ(virtio_mem_init(&m, &p, &fake_ops, &fb, err, sizeof(err)), 0);
    CHECK_EQ(virtio_mem_ops.config_size, 0x38);
    CHECK_EQ(read_le(&m, 0x00, 8), BS);
    CHECK_EQ(read_le(&m, 0x00, 4), BS);
    CHECK_EQ(read_le(&m, 0x04, 4), 0);
    CHECK_EQ(read_le(&m, 0x08, 2), 0x0102);
    CHECK_EQ(read_le(&m, 0x08, 1), 0x02);
    CHECK_EQ(read_le(&m, 0x0a, 2), 0);          /* padding */
    CHECK_EQ(read_le(&m, 0x10, 8), 0x123400000000ULL);
    CHECK_EQ(read_le(&m, 0x10, 4), 0);
    CHECK_EQ(read_le(&m, 0x14, 4), 0x1234);
    CHECK_EQ(read_le(&m, 0x18, 8), 0x80000000ULL);
    CHECK_EQ(read_le(&m, 0x20, 8), 0x18000000ULL);  /* usable: 12M + 256M, to 128M */
    CHECK_EQ(read_le(&m, 0x28, 8), 0);
    CHECK_EQ(read_le(&m, 0x30, 8), 6 * BS);
    CHECK_EQ(req(&m, VIRTIO_MEM_REQ_PLUG, p.addr, 3), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(read_le(&m, 0x28, 8), 3 * BS);
    CHECK_EQ(read_le(&m, 0x34, 4), 0);
    CHECK(virtio_mem_ops.config_write == NULL);
    virtio_mem_destroy(&m);
}

TEST(device_reset_keeps_block_states_system_reset_unplugs)
{
    struct fixture f;
    struct fake_transport t = {0};
    setup_hotplug(&f, 10 * BS);
    activate(&f.m, &t);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(40), 4), VIRTIO_MEM_RESP_ACK);
    virtio_mem_ops.reset(&f.m);
    CHECK_EQ(read_le(&f.m, 0x28, 8), 4 * BS);
    CHECK_EQ(state_of(&f.m, blk(40), 4), VIRTIO_MEM_STATE_PLUGGED);
    CHECK_EQ(f.hm.slots_registered, 1);
    CHECK_EQ(virtio_mem_system_reset(&f.m), 0);
    CHECK_EQ(read_le(&f.m, 0x28, 8), 0);
    CHECK_EQ(read_le(&f.m, 0x30, 8), 10 * BS);   /* requested_size survives */
    CHECK_EQ(state_of(&f.m, blk(40), 4), VIRTIO_MEM_STATE_UNPLUGGED);
    CHECK_EQ(f.hm.slots_registered, 0);
    teardown(&f);
}

TEST(unplugged_memory_is_discarded)
{
    struct fixture f;
    setup_hotplug(&f, REGION);
    uint64_t before = hotplug_mem_resident(&f.hm);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(63), 2), VIRTIO_MEM_RESP_ACK);
    uint8_t *p = hotplug_mem_ptr(&f.hm, blk(63), 2 * BS);
    CHECK(p != NULL);
    if (!p) {
        teardown(&f);
        return;
    }
    for (uint64_t i = 0; i < 2 * BS; i += 4096)
        p[i] = (uint8_t)(i >> 12 | 1);
    CHECK(hotplug_mem_resident(&f.hm) >= before + 2 * BS);
    for (uint64_t i = 0; i < 2 * BS; i += 4096)
        CHECK_EQ(p[i], (uint8_t)(i >> 12 | 1));
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_UNPLUG, blk(63), 2), VIRTIO_MEM_RESP_ACK);
    CHECK_EQ(hotplug_mem_resident(&f.hm), before);
    CHECK_EQ(req(&f.m, VIRTIO_MEM_REQ_PLUG, blk(63), 2), VIRTIO_MEM_RESP_ACK);
    unsigned nonzero = 0;
    for (uint64_t i = 0; i < 2 * BS; i += 4096)
        nonzero += p[i] != 0;
    CHECK_EQ(nonzero, 0);
    CHECK(hotplug_mem_ptr(&f.hm, BASE + REGION - 1, 2) == NULL);
    CHECK(hotplug_mem_ptr(&f.hm, BASE - 1, 1) == NULL);
    CHECK(hotplug_mem_ptr(&f.hm, BASE + 4096, UINT64_MAX) == NULL);
    teardown(&f);
}

TEST(features)
{
    struct fake_backing fb = {0};
    struct virtio_mem m;
    char err[256];
    const uint64_t inacc = 1ULL << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE;
    const uint64_t pxm = 1ULL << VIRTIO_MEM_F_ACPI_PXM;
    const uint64_t v1 = 1ULL << VIRTIO_F_VERSION_1;
    struct virtio_mem_params p = {.id = "f", .addr = BASE, .region_size = REGION,
                                  .block_size = BS, .memory_block = MEMORY_BLOCK};
    CHECK_EQ(virtio_mem_init(&m, &p, &fake_ops, &fb, err, sizeof(err)), 0);
    CHECK_EQ(virtio_mem_ops.device_id, 24);
    CHECK_EQ(virtio_mem_ops.num_queues, 1);
    CHECK_EQ(virtio_mem_ops.queue_max_size, 128);
    CHECK_EQ(virtio_mem_ops.features, inacc);
    CHECK_EQ(virtio_mem_ops.get_features(&m), inacc);
    CHECK(virtio_mem_ops.validate_features(&m, inacc | v1));
    CHECK(!virtio_mem_ops.validate_features(&m, v1));           /* legacy guest */
    CHECK(!virtio_mem_ops.validate_features(&m, inacc | pxm | v1)); /* not offered */
    virtio_mem_destroy(&m);
    p.acpi_pxm = true;
    CHECK_EQ(virtio_mem_init(&m, &p, &fake_ops, &fb, err, sizeof(err)), 0);
    CHECK_EQ(virtio_mem_ops.get_features(&m), inacc | pxm);
    CHECK(virtio_mem_ops.validate_features(&m, inacc | pxm | v1));
    CHECK(virtio_mem_ops.validate_features(&m, inacc | v1));
    CHECK(!virtio_mem_ops.validate_features(&m, pxm | v1));
    virtio_mem_destroy(&m);
}

/* ---- The queue glue, against stand-ins for the virtqueue API. ----
 * They are weak so that a build which links the real devices/virtqueue.c
 * into this test uses it instead; fake_ring_active() then says so. */

struct fake_chain {
    uint8_t out[64], in[64];
    uint32_t out_len, in_len;
    bool malformed;
    bool pushed;
    uint32_t written;
};

static struct {
    struct fake_chain *chains;
    unsigned n, next, pushes;
    bool used;
} ring;

__attribute__((weak)) int virtq_pop(struct virtq *q, const struct guest_mem *gm,
                                    struct virtq_chain *chain, struct virtq_buf *bufs,
                                    unsigned cap, char *err, size_t errlen)
{
    ring.used = true;
    if (ring.next == ring.n)
        return 0;
    struct fake_chain *c = &ring.chains[ring.next];
    if (c->malformed) {
        ring.next++;
        snprintf(err, errlen, "fake: descriptor index out of range");
        return -EINVAL;
    }
    CHECK(cap >= 2);
    memset(chain, 0, sizeof(*chain));
    chain->head = (uint16_t)ring.next++;
    chain->bufs = bufs;
    if (c->out_len) {
        bufs[chain->n_out++] = (struct virtq_buf){c->out, c->out_len};
        chain->out_len = c->out_len;
    }
    if (c->in_len) {
        bufs[chain->n_out + chain->n_in++] = (struct virtq_buf){c->in, c->in_len};
        chain->in_len = c->in_len;
    }
    return 1;
}

__attribute__((weak)) void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
    CHECK(head < ring.n && !ring.chains[head].pushed);
    ring.chains[head].pushed = true;
    ring.chains[head].written = written;
    ring.pushes++;
}

__attribute__((weak)) size_t virtq_chain_read(const struct virtq_chain *chain, void *dst,
                                              size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < chain->n_out && done < len; i++) {
        size_t n = chain->bufs[i].len < len - done ? chain->bufs[i].len : len - done;
        memcpy((uint8_t *)dst + done, chain->bufs[i].addr, n);
        done += n;
    }
    return done;
}

__attribute__((weak)) size_t virtq_chain_write(const struct virtq_chain *chain,
                                               const void *src, size_t len)
{
    size_t done = 0;
    for (unsigned i = chain->n_out; i < chain->n_out + chain->n_in && done < len; i++) {
        size_t n = chain->bufs[i].len < len - done ? chain->bufs[i].len : len - done;
        memcpy(chain->bufs[i].addr, (const uint8_t *)src + done, n);
        done += n;
    }
    return done;
}

static void fake_request(struct fake_chain *c, uint16_t type, uint64_t addr, uint16_t nb)
{
    memset(c, 0, sizeof(*c));
    struct virtio_mem_req rq = {.type = htole16(type), .addr = htole64(addr),
                                .nb_blocks = htole16(nb)};
    memcpy(c->out, &rq, sizeof(rq));
    c->out_len = sizeof(rq);
    memset(c->in, 0xee, sizeof(c->in));
    c->in_len = sizeof(struct virtio_mem_resp);
}

static uint16_t fake_answer(const struct fake_chain *c)
{
    struct virtio_mem_resp rs;
    memcpy(&rs, c->in, sizeof(rs));
    return le16toh(rs.type);
}

static bool fake_ring_active(void)
{
    if (!ring.used)
        unit_fail(__FILE__, __LINE__, "the virtqueue stand-ins were not used: the real "
                                      "virtqueue.c is linked; test through a real ring");
    return ring.used;
}

TEST(queue_notify_serves_and_pushes_every_chain)
{
    struct fixture f;
    struct fake_transport t = {0};
    struct virtq q;
    memset(&q, 0, sizeof(q));
    struct fake_chain c[5];
    setup_hotplug(&f, REGION);

    /* Before DRIVER_OK nothing is popped. */
    memset(&ring, 0, sizeof(ring));
    fake_request(&c[0], VIRTIO_MEM_REQ_PLUG, blk(0), 1);
    ring.chains = c;
    ring.n = 1;
    CHECK(virtio_mem_ops.queue_notify(&f.m, &q, 0));
    CHECK_EQ(ring.next, 0);

    activate(&f.m, &t);
    fake_request(&c[1], VIRTIO_MEM_REQ_STATE, blk(0), 2);
    fake_request(&c[2], VIRTIO_MEM_REQ_PLUG, blk(0), 1);   /* already plugged */
    /* Short request with room for an answer: ERROR, not a violation. */
    fake_request(&c[3], VIRTIO_MEM_REQ_PLUG, blk(9), 1);
    c[3].out_len = 16;
    /* Bigger buffers than needed: still exactly 10 bytes written. */
    fake_request(&c[4], VIRTIO_MEM_REQ_UNPLUG, blk(0), 1);
    c[4].in_len = 64;
    c[4].out_len = 40;
    ring.n = 5;
    CHECK(virtio_mem_ops.queue_notify(&f.m, &q, 0));
    if (fake_ring_active()) {
        CHECK_EQ(ring.pushes, 5);
        for (unsigned i = 0; i < 5; i++) {
            CHECK(c[i].pushed);
            CHECK_EQ(c[i].written, 10);
        }
        CHECK_EQ(fake_answer(&c[0]), VIRTIO_MEM_RESP_ACK);
        CHECK_EQ(fake_answer(&c[1]), VIRTIO_MEM_RESP_ACK);
        struct virtio_mem_resp rs;
        memcpy(&rs, c[1].in, sizeof(rs));
        CHECK_EQ(le16toh(rs.state), VIRTIO_MEM_STATE_MIXED);
        CHECK_EQ(fake_answer(&c[2]), VIRTIO_MEM_RESP_ERROR);
        CHECK_EQ(fake_answer(&c[3]), VIRTIO_MEM_RESP_ERROR);
        CHECK_EQ(fake_answer(&c[4]), VIRTIO_MEM_RESP_ACK);
        CHECK_EQ(c[4].in[10], 0xee);           /* nothing beyond the response */
        CHECK_EQ(plugged_size(&f.m), 0);
        CHECK_EQ(state_of(&f.m, blk(9), 1), VIRTIO_MEM_STATE_UNPLUGGED);
    }
    teardown(&f);
}

TEST(queue_notify_protocol_violations)
{
    struct fixture f;
    struct fake_transport t = {0};
    struct virtq q;
    memset(&q, 0, sizeof(q));
    struct fake_chain c[3];
    setup_hotplug(&f, REGION);
    activate(&f.m, &t);

    /* No room for the response: the chain goes back with 0 bytes, the
     * request is not carried out, and the device reports a violation. */
    memset(&ring, 0, sizeof(ring));
    fake_request(&c[0], VIRTIO_MEM_REQ_PLUG, blk(1), 1);
    c[0].in_len = 9;
    fake_request(&c[1], VIRTIO_MEM_REQ_PLUG, blk(2), 1);
    ring.chains = c;
    ring.n = 2;
    CHECK(!virtio_mem_ops.queue_notify(&f.m, &q, 0));
    if (fake_ring_active()) {
        CHECK(c[0].pushed);
        CHECK_EQ(c[0].written, 0);
        CHECK_EQ(c[0].in[0], 0xee);
        CHECK(!c[1].pushed);                    /* not popped: stays in the ring */
        CHECK_EQ(ring.next, 1);
        CHECK_EQ(plugged_size(&f.m), 0);
    }

    /* No writable part at all, with a short request: also a violation. */
    memset(&ring, 0, sizeof(ring));
    fake_request(&c[0], VIRTIO_MEM_REQ_PLUG, blk(1), 1);
    c[0].in_len = 0;
    c[0].out_len = 3;
    ring.chains = c;
    ring.n = 1;
    CHECK(!virtio_mem_ops.queue_notify(&f.m, &q, 0));
    CHECK(c[0].pushed);

    /* A malformed chain: nothing to push, the device reports a violation. */
    memset(&ring, 0, sizeof(ring));
    fake_request(&c[0], VIRTIO_MEM_REQ_PLUG, blk(1), 1);
    c[1].malformed = true;
    c[1].pushed = false;
    fake_request(&c[2], VIRTIO_MEM_REQ_PLUG, blk(2), 1);
    ring.chains = c;
    ring.n = 3;
    CHECK(!virtio_mem_ops.queue_notify(&f.m, &q, 0));
    CHECK(c[0].pushed);
    CHECK_EQ(fake_answer(&c[0]), VIRTIO_MEM_RESP_ACK);
    CHECK(!c[1].pushed);
    CHECK(!c[2].pushed);
    CHECK_EQ(ring.pushes, 1);
    teardown(&f);
}
