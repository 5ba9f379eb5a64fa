/* The virtio-mem request handler (devices/virtio_mem.c): any sequence of
 * guest requests, host resizes and system resets, against either the real
 * hotplug_mem backing (vm_fd -1: no KVM, memfd only) or a checking fake that
 * fails on command. After each step the device's invariants must hold, and
 * the backing must never be asked to plug plugged memory or unplug unplugged
 * memory.
 *
 * Input: u8 geometry/backing | steps of 16 bytes:
 *   u8 op | u8 flags | u16 block | u16 nb_blocks | u16 type | u64 value */
#include <errno.h>

#include "devices/virtio_mem.h"
#include "tests/fuzz/fuzz.h"
#include "vmm/hotplug/mem.h"

#define GPA_BASE (4ULL << 30)

/* Small regions: the fuzzer reaches both ends, and MAP_NORESERVE memfds of
 * this size cost nothing. */
static const struct geometry {
    uint64_t region, block, slot;
} geometries[] = {
    {256ULL << 20, 2ULL << 20, 128ULL << 20},   /* the default block size */
    {8ULL << 20, 4096, 4ULL << 20},             /* 2048 blocks: multi-word bitmap runs */
    {256ULL << 20, 128ULL << 20, 128ULL << 20}, /* 2 blocks */
};
#define N_GEOMETRIES (sizeof(geometries) / sizeof(geometries[0]))

static struct hotplug_mem hms[N_GEOMETRIES];

/* The fake backing: tracks every block it holds and fails when told to. */
static struct fake {
    uint64_t region, block;
    uint8_t blocks[2048];                   /* 1 = plugged; the most any geometry has */
    uint64_t held;                          /* bytes plugged */
    int fail_next;                          /* errno for the next call, 0: succeed */
} fake;

static int fake_apply(void *backing, uint64_t off, uint64_t len, uint8_t want)
{
    struct fake *f = backing;
    /* The contract: whole blocks inside the region. */
    FUZZ_CHECK(len && off % f->block == 0 && len % f->block == 0);
    FUZZ_CHECK(off < f->region && len <= f->region - off);
    if (f->fail_next) {
        int rc = -f->fail_next;
        f->fail_next = 0;
        return rc;
    }
    for (uint64_t b = off / f->block; b < (off + len) / f->block; b++) {
        FUZZ_CHECK(f->blocks[b] != want);   /* never twice into the same state */
        f->blocks[b] = want;
    }
    if (want)
        f->held += len;
    else
        f->held -= len;
    return 0;
}

static int fake_plug(void *b, uint64_t off, uint64_t len, const _Atomic uint32_t *cancel)
{
    (void)cancel;
    return fake_apply(b, off, len, 1);
}
static int fake_unplug(void *b, uint64_t off, uint64_t len, bool more_to_come)
{
    (void)more_to_come;
    return fake_apply(b, off, len, 0);
}
static const struct virtio_mem_backing_ops fake_ops = {fake_plug, fake_unplug};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_mute_log();
    for (unsigned i = 0; i < N_GEOMETRIES; i++)
        if (hotplug_mem_init(&hms[i], -1, "fuzz", GPA_BASE, geometries[i].region,
                             geometries[i].slot, 4096, 0, 0, false) != 0)
            abort();
    return 0;
}

/* The backing's own bookkeeping must say what the device's bitmap says. */
static void check_backing(struct virtio_mem *m, bool real, struct hotplug_mem *hm)
{
    uint64_t held = 0;
    if (real) {
        for (uint32_t s = 0; s < hm->n_slots; s++)
            held += hm->slot_plugged[s];
    } else {
        held = fake.held;
    }
    FUZZ_CHECK(held == m->cfg.plugged_size);
}

static void step(struct virtio_mem *m, struct fuzz_in *in, uint64_t *answers)
{
    uint8_t op = fuzz_u8(in), flags = fuzz_u8(in);
    uint16_t block = fuzz_u16(in), nb = fuzz_u16(in), type = fuzz_u16(in);
    uint64_t value = fuzz_u64(in);
    const struct virtio_mem_config *c = &m->cfg;
    char err[256];

    switch (op % 4) {
    case 0: {           /* a request, mostly well-formed, sometimes not at all */
        struct virtio_mem_req req = {.type = op & 0x80 ? type : type % 4,
                                     .nb_blocks = nb};
        req.addr = flags & 1 ? value : c->addr + block * c->block_size;
        fake.fail_next = flags & 2 ? (flags & 4 ? ENOMEM : EIO) : 0;
        uint64_t before = c->plugged_size;
        struct virtio_mem_resp resp;
        memset(&resp, 0xa5, sizeof(resp));
        virtio_mem_handle_request(m, &req, &resp, NULL);
        fake.fail_next = 0;
        (*answers)++;
        FUZZ_CHECK(resp.type <= VIRTIO_MEM_RESP_ERROR);
        FUZZ_CHECK(!resp.padding[0] && !resp.padding[1] && !resp.padding[2]);
        FUZZ_CHECK(req.type == VIRTIO_MEM_REQ_STATE || resp.state == 0);
        FUZZ_CHECK(resp.state <= VIRTIO_MEM_STATE_MIXED);
        if (resp.type != VIRTIO_MEM_RESP_ACK) {
            FUZZ_CHECK(c->plugged_size == before);
        } else if (req.type == VIRTIO_MEM_REQ_PLUG) {
            FUZZ_CHECK(c->plugged_size == before + nb * c->block_size);
            FUZZ_CHECK(c->plugged_size <= c->requested_size);
        } else if (req.type == VIRTIO_MEM_REQ_UNPLUG) {
            FUZZ_CHECK(c->plugged_size == before - nb * c->block_size);
        } else if (req.type == VIRTIO_MEM_REQ_UNPLUG_ALL) {
            FUZZ_CHECK(c->plugged_size == 0);
        }
        break;
    }
    case 1: {           /* the host resizes: valid sizes, or anything */
        uint64_t want = flags & 1 ? value : (uint64_t)block * c->block_size;
        uint64_t old = c->requested_size;
        int rc = virtio_mem_set_requested_size(m, want, err, sizeof(err));
        bool valid = want <= c->region_size && want % c->block_size == 0;
        FUZZ_CHECK(rc == (valid ? 0 : -EINVAL));
        FUZZ_CHECK(c->requested_size == (valid ? want : old));
        break;
    }
    case 2:             /* the guest rebooted */
        fake.fail_next = flags & 2 ? EIO : 0;
        if (virtio_mem_system_reset(m) == 0)
            FUZZ_CHECK(c->plugged_size == 0);
        fake.fail_next = 0;
        break;
    case 3: {           /* the API's view */
        struct virtio_mem_config snap;
        virtio_mem_get_config(m, &snap);
        FUZZ_CHECK(!memcmp(&snap, c, sizeof(snap)));
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t sel = fuzz_u8(&in);
    const struct geometry *g = &geometries[(sel & 0x7f) % N_GEOMETRIES];
    bool real = sel & 0x80;
    struct hotplug_mem *hm = &hms[g - geometries];

    memset(&fake, 0, sizeof(fake));
    fake.region = g->region;
    fake.block = g->block;
    struct virtio_mem_params p = {.id = "fuzz", .addr = GPA_BASE, .region_size = g->region,
                                  .block_size = g->block, .memory_block = 128ULL << 20};
    struct virtio_mem m;
    char err[256];
    if (virtio_mem_init(&m, &p, real ? &virtio_mem_hotplug_backing : &fake_ops,
                        real ? (void *)hm : &fake, err, sizeof(err)) != 0)
        abort();

    uint64_t answers = 0;
    for (unsigned i = 0; in.n && i < 512; i++) {
        step(&m, &in, &answers);
        fuzz_check_virtio_mem(&m);
        check_backing(&m, real, hm);
    }
    FUZZ_CHECK(m.stats.ack + m.stats.nack + m.stats.busy + m.stats.error == answers);

    /* Leave the shared hotplug_mem empty for the next input. */
    FUZZ_CHECK(virtio_mem_system_reset(&m) == 0);
    check_backing(&m, real, hm);
    virtio_mem_destroy(&m);
    return 0;
}
