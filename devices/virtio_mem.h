/* The virtio-mem device (virtio 1.2, 5.15): a region of guest physical
 * memory that the driver plugs and unplugs block by block, asked to reach the
 * host's requested_size. The request handler decides per the spec; the memory
 * behind it is a hotplug_mem (or, in unit tests, any backing ops). */
#ifndef MINIVMM_VIRTIO_MEM_H
#define MINIVMM_VIRTIO_MEM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio.h"
#include "vmm/log.h"

#define VIRTIO_ID_MEM 24

#define VIRTIO_MEM_F_ACPI_PXM 0
#define VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE 1

#define VIRTIO_MEM_REQ_PLUG 0
#define VIRTIO_MEM_REQ_UNPLUG 1
#define VIRTIO_MEM_REQ_UNPLUG_ALL 2
#define VIRTIO_MEM_REQ_STATE 3

#define VIRTIO_MEM_RESP_ACK 0
#define VIRTIO_MEM_RESP_NACK 1
#define VIRTIO_MEM_RESP_BUSY 2
#define VIRTIO_MEM_RESP_ERROR 3

#define VIRTIO_MEM_STATE_PLUGGED 0
#define VIRTIO_MEM_STATE_UNPLUGGED 1
#define VIRTIO_MEM_STATE_MIXED 2

/* Wire formats (little endian). */
struct virtio_mem_req {
    uint16_t type;
    uint16_t padding[3];
    uint64_t addr;
    uint16_t nb_blocks;
    uint16_t padding2[3];
};

struct virtio_mem_resp {
    uint16_t type;
    uint16_t padding[3];
    uint16_t state;
};

struct virtio_mem_config {
    uint64_t block_size;
    uint16_t node_id;
    uint8_t padding[6];
    uint64_t addr;
    uint64_t region_size;
    uint64_t usable_region_size;
    uint64_t plugged_size;
    uint64_t requested_size;
};

/* What backs the region: offsets are relative to the region start, ranges
 * are whole blocks not yet in the target state. plug returns -ENOMEM when
 * the host cannot provide the memory, -ECANCELED when *cancel (may be NULL)
 * became non-zero before it finished (both answered BUSY, nothing changed),
 * another negative errno for a host failure (answered ERROR). Called with
 * no virtio-mem lock held, one call at a time per device. */
struct virtio_mem_backing_ops {
    int (*plug)(void *backing, uint64_t offset, uint64_t len, const _Atomic uint32_t *cancel);
    /* more_to_come: plugged_size stays above requested_size after this
     * range, so the driver will send more unplugs; the backing may leave
     * work it can do once for all of them (memslot removal) to the last. */
    int (*unplug)(void *backing, uint64_t offset, uint64_t len, bool more_to_come);
};

struct virtio_mem_params {
    const char *id;             /* user's device id, for messages */
    uint64_t addr;              /* guest physical base */
    uint64_t region_size;
    uint64_t block_size;        /* power of two, >= 4 KiB */
    uint16_t node_id;
    bool acpi_pxm;              /* offer VIRTIO_MEM_F_ACPI_PXM */
    /* The guest's memory block (arch_guest_memory_block), a power of two:
     * the usable region never ends inside one. */
    uint64_t memory_block;
    uint64_t requested_size;    /* initial */
};

/* What an observer (the VM's event stream) hears about. */
enum virtio_mem_event {
    VIRTIO_MEM_EVENT_PLUGGED,           /* plugged_size may have changed */
    VIRTIO_MEM_EVENT_DRIVER_ACTIVE,     /* the driver set DRIVER_OK */
    VIRTIO_MEM_EVENT_DRIVER_RESET,      /* the driver reset the device */
};

struct virtio_mem {
    /* Config, block states, stats and the request in flight. Held only to
     * read or change them: never across backing work (populate, discard,
     * memslot ioctls), a config_changed or the observer. */
    pthread_mutex_t lock;
    /* The one block-state change in progress, whose backing work runs with
     * lock dropped. Its blocks are neither plugged nor unplugged yet:
     * plugged_size and the bitmap change when it completes, so a reader
     * sees it whole or not at all. Another change (a system reset) waits on
     * idle; resize does not shrink the usable region under it. */
    struct {
        bool active;
        uint16_t type;          /* VIRTIO_MEM_REQ_* */
        uint64_t first, n;      /* blocks */
    } inflight;
    pthread_cond_t idle;
    struct virtio_mem_config cfg;
    char id[32];
    bool acpi_pxm;
    uint64_t memory_block;      /* virtio_mem_params.memory_block */
    uint64_t nb_blocks;         /* region_size / block_size */
    uint64_t *plugged;          /* bitmap, one bit per block */
    const struct virtio_mem_backing_ops *backing_ops;
    void *backing;
    struct virtio_link link;    /* valid once activated */
    bool activated;
    struct log_ratelimit bad_chain_rl;
    /* Called without m->lock held, from the device's thread or a vCPU; set
     * before the device runs. */
    void (*observer)(void *opaque, struct virtio_mem *m, enum virtio_mem_event what);
    void *observer_opaque;      /* the observer's first argument */
    /* A request changed what is plugged since the observer last heard of
     * it: told by virtio_mem_publish_changes, once the answer is out. */
    bool plugged_event_pending;
    /* The last request served, for its --verbose line once the answer is
     * out; the device's thread only. */
    struct virtio_mem_served {
        bool pending;
        uint16_t type, nb_blocks, answer;
        uint64_t addr, start_ns, spent_ns;
    } served;
    struct {                    /* counters per request type and answer */
        uint64_t plug, unplug, unplug_all, state;
        uint64_t ack, nack, busy, error;
        /* CLOCK_MONOTONIC time spent serving requests (validation, the
         * backing work: populate, discard, memslot ioctls): the VMM's own
         * share of a plug or unplug, which the guest's time to plug is
         * compared with (bench/plug). */
        uint64_t serving_ns;
    } stats;
};

extern const struct virtio_device_ops virtio_mem_ops;

/* Backing ops for a struct hotplug_mem (vmm/hotplug/mem.h) as `backing`. */
extern const struct virtio_mem_backing_ops virtio_mem_hotplug_backing;

/* The usable_region_size policy: requested plus a 256 MiB extent, rounded
 * up to the guest's memory block (or the device block, if larger), at most
 * the region. */
uint64_t virtio_mem_usable_for(uint64_t requested, uint64_t block_size, uint64_t memory_block,
                               uint64_t region_size);

/* Returns 0 or a negative errno with err describing what is wrong. */
int virtio_mem_init(struct virtio_mem *m, const struct virtio_mem_params *p,
                    const struct virtio_mem_backing_ops *backing_ops, void *backing,
                    char *err, size_t errlen);

/* Decides one request: validates per the spec, changes block states through
 * the backing, fills resp. Thread-safe; m->lock is dropped around the
 * backing work (the range is in flight meanwhile). A plug stops early when
 * *cancel (may be NULL) becomes non-zero, and is answered BUSY. */
void virtio_mem_handle_request(struct virtio_mem *m, const struct virtio_mem_req *req,
                               struct virtio_mem_resp *resp, const _Atomic uint32_t *cancel);

/* Tells the observer (VIRTIO_MEM_EVENT_PLUGGED, once for any number of
 * requests) that requests answered since the last call changed what is
 * plugged. The transport calls it after the answers and their interrupt
 * are out (virtio_mem_ops.queue_served), so the driver never waits for the
 * event stream. */
void virtio_mem_publish_changes(struct virtio_mem *m);

/* The runtime resize hook: sets requested_size (a multiple of block_size,
 * <= region_size) and raises a config-change interrupt if the driver is
 * running. Returns 0 or -EINVAL with err set. Thread-safe. */
int virtio_mem_set_requested_size(struct virtio_mem *m, uint64_t requested, char *err,
                                  size_t errlen);

/* A snapshot of the config space (for the API and tests). */
void virtio_mem_get_config(struct virtio_mem *m, struct virtio_mem_config *out);

/* Unplugs everything (after the request in flight, if there is one):
 * plugged_size 0, the usable region shrunk to what is requested. A guest
 * reboot does not use it (vm_reset builds the devices afresh); the tests and
 * fuzzers do, to take one device through many lives. */
int virtio_mem_system_reset(struct virtio_mem *m);

void virtio_mem_destroy(struct virtio_mem *m);

#endif
