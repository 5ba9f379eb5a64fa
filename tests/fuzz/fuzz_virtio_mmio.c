/* The virtio-mmio register file (devices/virtio_mmio*.c) with the real
 * virtio-mem device model behind it, driven as a guest drives it: register
 * reads and writes through the MMIO bus, writes to guest RAM (rings,
 * descriptors, requests), queue notifications served on this thread, and
 * host resizes. No KVM: vm_fd -1, the memory is memfds.
 *
 * Input: u16 RAM image length | RAM image (from gpa 0) | ops of 12 bytes:
 *   u8 kind | u8 width | u16 offset | u64 value */
#include "devices/virtio_mem.h"
#include "devices/virtio_mmio.h"
#include "tests/fuzz/fuzz.h"
#include "vmm/guest_mem.h"
#include "vmm/hotplug/mem.h"
#include "vmm/io_bus.h"

#define RAM_SIZE 0x10000ULL
#define MMIO_BASE 0xd0000000ULL
#define MEM_GPA (4ULL << 30)
#define MEM_SIZE (256ULL << 20)
#define MEM_BLOCK (2ULL << 20)

static struct guest_mem gm;
static struct hotplug_mem hm;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_mute_log();
    const struct mem_range ram = {0, RAM_SIZE};
    guest_mem_init(&gm, -1);
    if (guest_mem_add_ram(&gm, &ram, 1, 0) != 0 ||
        hotplug_mem_init(&hm, -1, "fuzz", MEM_GPA, MEM_SIZE, 128ULL << 20, 4096, 0, 0, false) != 0)
        abort();
    return 0;
}

static void check(struct virtio_mmio *t, struct virtio_mem *m)
{
    fuzz_check_virtio_mem(m);
    uint64_t held = 0;
    for (uint32_t s = 0; s < hm.n_slots; s++)
        held += hm.slot_plugged[s];
    FUZZ_CHECK(held == m->cfg.plugged_size);

    FUZZ_CHECK(!(atomic_load(&t->interrupt_status) &
                 ~(VIRTIO_INT_USED_BUFFER | VIRTIO_INT_CONFIG_CHANGE)));
    FUZZ_CHECK(!(t->status & ~0x8fu));      /* progress bits and FAILED, never NEEDS_RESET */
    const struct virtq *q = &t->queues[0];
    /* Queues are set up after FEATURES_OK, and only a reset clears status
     * bits, and it takes the queues down with it. */
    if (q->ready)
        FUZZ_CHECK(t->status & VIRTIO_STATUS_FEATURES_OK);
    if (q->ready) {
        /* A ready queue's rings were checked once; they must still be RAM. */
        FUZZ_CHECK(q->size && q->size <= q->max_size && !(q->size & (q->size - 1)));
        FUZZ_CHECK((void *)q->desc == guest_mem_ptr(&gm, q->desc_gpa, q->size * 16ULL));
        FUZZ_CHECK((void *)q->avail == guest_mem_ptr(&gm, q->avail_gpa, 6 + q->size * 2ULL));
        FUZZ_CHECK((void *)q->used == guest_mem_ptr(&gm, q->used_gpa, 6 + q->size * 8ULL));
    }
}

static void run_op(struct io_bus *bus, struct virtio_mmio *t, struct virtio_mem *m,
                   struct fuzz_in *in)
{
    uint8_t kind = fuzz_u8(in), width = fuzz_u8(in);
    uint16_t offset = fuzz_u16(in);
    uint64_t value = fuzz_u64(in);
    unsigned len = 1u << (width % 4);
    uint8_t buf[8];

    switch (kind % 6) {
    case 0:
        io_bus_read(bus, MMIO_BASE + offset, buf, len);
        if (len == 4 && offset == VIRTIO_MMIO_STATUS) {
            uint32_t s;
            memcpy(&s, buf, 4);
            FUZZ_CHECK(!!(s & VIRTIO_STATUS_NEEDS_RESET) == t->broken);
        }
        break;
    case 1:
        memcpy(buf, &value, sizeof(buf));
        io_bus_write(bus, MMIO_BASE + offset, buf, len);
        break;
    case 2: {           /* QueueNotify, then the device thread's work */
        uint32_t index = (uint32_t)value;
        io_bus_write(bus, MMIO_BASE + VIRTIO_MMIO_QUEUE_NOTIFY, (uint8_t *)&index, 4);
        virtio_mmio_process_queues(t);
        break;
    }
    case 3:
        virtio_mmio_process_queues(t);
        break;
    case 4:             /* the guest writes its RAM (a ring, a request) */
        guest_mem_write(&gm, offset, &value, len);
        break;
    case 5: {           /* the host resizes (the API's PATCH) */
        char err[256];
        uint64_t want = width & 0x80 ? value : (value % 129) * MEM_BLOCK;
        virtio_mem_set_requested_size(m, want, err, sizeof(err));
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t ram_len = fuzz_u16(&in);
    if (ram_len > in.n)
        ram_len = in.n;
    memset(gm.regions[0].hva, 0, RAM_SIZE);
    memcpy(gm.regions[0].hva, in.p, ram_len);
    in.p += ram_len;
    in.n -= ram_len;

    struct virtio_mem m;
    struct virtio_mmio t;
    struct io_bus bus;
    char err[256];
    struct virtio_mem_params p = {.id = "fuzz", .addr = MEM_GPA, .region_size = MEM_SIZE,
                                  .block_size = MEM_BLOCK, .memory_block = 128ULL << 20,
                                  .requested_size = 64ULL << 20};
    if (virtio_mem_init(&m, &p, &virtio_mem_hotplug_backing, &hm, err, sizeof(err)) != 0 ||
        virtio_mmio_init(&t, &virtio_mem_ops, &m, &gm, -1, MMIO_BASE, 5, "fuzz") != 0)
        abort();
    io_bus_init(&bus, "mmio");
    if (io_bus_register(&bus, MMIO_BASE, VIRTIO_MMIO_SIZE, &virtio_mmio_io, &t, "fuzz") != 0)
        abort();

    for (unsigned i = 0; in.n && i < 1024; i++) {
        run_op(&bus, &t, &m, &in);
        check(&t, &m);
    }

    virtio_mmio_destroy(&t);
    /* Leave the shared hotplug_mem empty for the next input. */
    FUZZ_CHECK(virtio_mem_system_reset(&m) == 0);
    virtio_mem_destroy(&m);
    return 0;
}
