/* The virtio-mem request handler and config space (virtio 1.2, 5.15): decode
 * a request, check its range against the usable region, check block states,
 * then change the memory through the backing and answer. The virtqueue glue
 * lives in virtio_mem_device.c, so this file links without a virtqueue. */
#include "devices/virtio_mem.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/bitmap.h"
#include "vmm/clock.h"
#include "vmm/hotplug/mem.h"

_Static_assert(sizeof(struct virtio_mem_req) == 24, "virtio-mem request is 24 bytes");
_Static_assert(sizeof(struct virtio_mem_resp) == 10, "virtio-mem response is 10 bytes");
_Static_assert(sizeof(struct virtio_mem_config) == 0x38, "virtio-mem config is 56 bytes");

#define MIN_BLOCK_SIZE 4096ULL
/* How far past requested_size the guest may plug (QEMU's x86 choice): room
 * for the driver to pick blocks in a memory block it already added, while a
 * terabyte region does not invite a terabyte of guest metadata. */
#define USABLE_EXTENT (256ULL << 20)
uint64_t virtio_mem_usable_for(uint64_t requested, uint64_t block_size, uint64_t memory_block,
                               uint64_t region_size)
{
    /* The guest's memory block: the usable end never cuts one in half. */
    uint64_t align = block_size > memory_block ? block_size : memory_block;
    if (requested > region_size || region_size - requested <= USABLE_EXTENT)
        return region_size;
    uint64_t want = requested + USABLE_EXTENT;
    want = (want + align - 1) / align * align;
    return want < region_size ? want : region_size;
}

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen,
                                                       const char *id, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "virtio-mem %s: %s", id, what);
    return -EINVAL;
}

int virtio_mem_init(struct virtio_mem *m, const struct virtio_mem_params *p,
                    const struct virtio_mem_backing_ops *backing_ops, void *backing,
                    char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    const char *id = p->id ? p->id : "?";
    snprintf(m->id, sizeof(m->id), "%s", id);
    uint64_t bs = p->block_size;

    if (bs < MIN_BLOCK_SIZE || (bs & (bs - 1)))
        return fail(err, errlen, id, "block size 0x%llx is not a power of two >= 4 KiB",
                    (unsigned long long)bs);
    if (p->region_size == 0 || p->region_size % bs)
        return fail(err, errlen, id,
                    "region size 0x%llx is not a non-zero multiple of the block size 0x%llx",
                    (unsigned long long)p->region_size, (unsigned long long)bs);
    if (p->memory_block < MIN_BLOCK_SIZE || (p->memory_block & (p->memory_block - 1)))
        return fail(err, errlen, id, "guest memory block 0x%llx is not a power of two >= 4 KiB",
                    (unsigned long long)p->memory_block);
    if (p->addr % bs)
        return fail(err, errlen, id,
                    "address 0x%llx is not a multiple of the block size 0x%llx",
                    (unsigned long long)p->addr, (unsigned long long)bs);
    if (p->addr + p->region_size < p->addr)
        return fail(err, errlen, id,
                    "region at 0x%llx of 0x%llx bytes wraps past the end of the address space",
                    (unsigned long long)p->addr, (unsigned long long)p->region_size);
    if (p->requested_size > p->region_size)
        return fail(err, errlen, id, "requested size 0x%llx exceeds the region size 0x%llx",
                    (unsigned long long)p->requested_size,
                    (unsigned long long)p->region_size);
    if (p->requested_size % bs)
        return fail(err, errlen, id,
                    "requested size 0x%llx is not a multiple of the block size 0x%llx",
                    (unsigned long long)p->requested_size, (unsigned long long)bs);
    if (!backing_ops || !backing_ops->plug || !backing_ops->unplug)
        return fail(err, errlen, id, "no backing memory");

    m->nb_blocks = p->region_size / bs;
    m->plugged = calloc(bitmap_words(m->nb_blocks), sizeof(uint64_t));
    if (!m->plugged) {
        snprintf(err, errlen, "virtio-mem %s: cannot allocate the state of %llu blocks", id,
                 (unsigned long long)m->nb_blocks);
        return -ENOMEM;
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->idle, NULL);
    m->acpi_pxm = p->acpi_pxm;
    m->memory_block = p->memory_block;
    m->backing_ops = backing_ops;
    m->backing = backing;
    m->cfg.block_size = bs;
    m->cfg.node_id = p->node_id;
    m->cfg.addr = p->addr;
    m->cfg.region_size = p->region_size;
    /* Policy (docs/virtio-mem.md): requested_size plus an extent, grown
     * with requested_size, shrunk only when nothing is plugged (UNPLUG_ALL,
     * system reset), as the spec allows. */
    m->cfg.usable_region_size = virtio_mem_usable_for(p->requested_size, bs, p->memory_block,
                                                      p->region_size);
    m->cfg.requested_size = p->requested_size;
    return 0;
}

/* A request's blocks as bitmap indices, if the range is valid: block
 * aligned, non-empty, and entirely inside the usable region. addr and
 * nb_blocks come from the guest. */
static bool decode_range(const struct virtio_mem *m, uint64_t addr, uint16_t nb_blocks,
                         uint64_t *first, uint64_t *size)
{
    const struct virtio_mem_config *c = &m->cfg;
    if (nb_blocks == 0 || addr % c->block_size || addr < c->addr)
        return false;
    uint64_t offset = addr - c->addr;
    if (offset >= c->usable_region_size)
        return false;
    if (__builtin_mul_overflow((uint64_t)nb_blocks, c->block_size, size) ||
        *size > c->usable_region_size - offset)
        return false;
    *first = offset / c->block_size;
    return true;
}

/* Takes the one in-flight slot (waiting, with lock dropped, for another
 * change to finish). Called with m->lock held. */
static void begin_change(struct virtio_mem *m, uint16_t type, uint64_t first, uint64_t n)
{
    while (m->inflight.active)
        pthread_cond_wait(&m->idle, &m->lock);
    m->inflight.active = true;
    m->inflight.type = type;
    m->inflight.first = first;
    m->inflight.n = n;
}

static void end_change(struct virtio_mem *m)
{
    m->inflight.active = false;
    pthread_cond_broadcast(&m->idle);
}

/* Called with m->lock held and no change in flight; returns with m->lock
 * held. The populate (up to 65535 blocks) and memslot ioctls run unlocked,
 * so config reads and the API are answered meanwhile. */
static uint16_t do_plug(struct virtio_mem *m, uint64_t first, uint64_t n, uint64_t size,
                        const _Atomic uint32_t *cancel)
{
    struct virtio_mem_config *c = &m->cfg;
    if (bitmap_count(m->plugged, first, n))
        return VIRTIO_MEM_RESP_ERROR;
    /* requested_size may have been lowered below plugged_size. */
    if (c->plugged_size > c->requested_size || size > c->requested_size - c->plugged_size)
        return VIRTIO_MEM_RESP_NACK;
    begin_change(m, VIRTIO_MEM_REQ_PLUG, first, n);
    uint64_t offset = first * c->block_size;
    pthread_mutex_unlock(&m->lock);
    int rc = m->backing_ops->plug(m->backing, offset, size, cancel);
    pthread_mutex_lock(&m->lock);
    if (rc == 0) {
        bitmap_set_range(m->plugged, first, n);
        c->plugged_size += size;
    }
    end_change(m);
    if (rc == -ENOMEM || rc == -ECANCELED)
        return VIRTIO_MEM_RESP_BUSY;
    return rc ? VIRTIO_MEM_RESP_ERROR : VIRTIO_MEM_RESP_ACK;
}

static uint16_t do_unplug(struct virtio_mem *m, uint64_t first, uint64_t n, uint64_t size)
{
    struct virtio_mem_config *c = &m->cfg;
    if (bitmap_count(m->plugged, first, n) != n)
        return VIRTIO_MEM_RESP_ERROR;
    bool more_to_come = c->plugged_size - size > c->requested_size;
    begin_change(m, VIRTIO_MEM_REQ_UNPLUG, first, n);
    uint64_t offset = first * c->block_size;
    pthread_mutex_unlock(&m->lock);
    int rc = m->backing_ops->unplug(m->backing, offset, size, more_to_come);
    pthread_mutex_lock(&m->lock);
    if (rc == 0) {
        bitmap_clear_range(m->plugged, first, n);
        c->plugged_size -= size;
    }
    end_change(m);
    return rc ? VIRTIO_MEM_RESP_ERROR : VIRTIO_MEM_RESP_ACK;
}

/* One backing call per run of plugged blocks, each with m->lock dropped;
 * the whole region is in flight meanwhile, so the bitmap changes only
 * here. A failed run stops the walk; the runs before it stay unplugged, so
 * the state always matches the memory. Called and returns with m->lock
 * held. */
static int unplug_all(struct virtio_mem *m)
{
    uint64_t bs = m->cfg.block_size;
    int rc = 0;
    begin_change(m, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, m->nb_blocks);
    uint64_t start = bitmap_find_next(m->plugged, m->nb_blocks, 0, true);
    while (start < m->nb_blocks) {
        uint64_t end = bitmap_find_next(m->plugged, m->nb_blocks, start, false);
        uint64_t next = bitmap_find_next(m->plugged, m->nb_blocks, end, true);
        pthread_mutex_unlock(&m->lock);
        rc = m->backing_ops->unplug(m->backing, start * bs, (end - start) * bs,
                                    next < m->nb_blocks);
        pthread_mutex_lock(&m->lock);
        if (rc)
            break;
        bitmap_clear_range(m->plugged, start, end - start);
        m->cfg.plugged_size -= (end - start) * bs;
        start = next;
    }
    end_change(m);
    return rc;
}

/* With nothing plugged the usable region may shrink back to what the
 * requested size needs (the spec allows it only then). Not while a change
 * is in flight: a plug checked against the current usable region is about
 * to land in it. True if it did. */
static bool shrink_usable(struct virtio_mem *m)
{
    struct virtio_mem_config *c = &m->cfg;
    if (c->plugged_size || m->inflight.active)
        return false;
    uint64_t want = virtio_mem_usable_for(c->requested_size, c->block_size, m->memory_block,
                                          c->region_size);
    if (want >= c->usable_region_size)
        return false;
    c->usable_region_size = want;
    return true;
}

static uint16_t block_state(const struct virtio_mem *m, uint64_t first, uint64_t n)
{
    uint64_t set = bitmap_count(m->plugged, first, n);
    if (set == n)
        return VIRTIO_MEM_STATE_PLUGGED;
    return set ? VIRTIO_MEM_STATE_MIXED : VIRTIO_MEM_STATE_UNPLUGGED;
}

void virtio_mem_handle_request(struct virtio_mem *m, const struct virtio_mem_req *req,
                               struct virtio_mem_resp *resp, const _Atomic uint32_t *cancel)
{
    uint16_t type = le16toh(req->type);
    uint64_t addr = le64toh(req->addr);
    uint16_t nb_blocks = le16toh(req->nb_blocks);
    uint16_t answer = VIRTIO_MEM_RESP_ERROR, state = 0;
    uint64_t first = 0, size = 0;
    bool usable_changed = false;

    pthread_mutex_lock(&m->lock);
    /* Requests come from one thread; only a system reset can be in flight
     * here, and the range is checked against what it leaves. */
    while (m->inflight.active)
        pthread_cond_wait(&m->idle, &m->lock);
    bool range_ok = decode_range(m, addr, nb_blocks, &first, &size);
    switch (type) {
    case VIRTIO_MEM_REQ_PLUG:
        m->stats.plug++;
        if (range_ok)
            answer = do_plug(m, first, nb_blocks, size, cancel);
        break;
    case VIRTIO_MEM_REQ_UNPLUG:
        m->stats.unplug++;
        if (range_ok)
            answer = do_unplug(m, first, nb_blocks, size);
        break;
    case VIRTIO_MEM_REQ_UNPLUG_ALL:
        m->stats.unplug_all++;
        answer = unplug_all(m) ? VIRTIO_MEM_RESP_ERROR : VIRTIO_MEM_RESP_ACK;
        if (answer == VIRTIO_MEM_RESP_ACK)
            usable_changed = shrink_usable(m);
        break;
    case VIRTIO_MEM_REQ_STATE:
        m->stats.state++;
        if (range_ok) {
            state = block_state(m, first, nb_blocks);
            answer = VIRTIO_MEM_RESP_ACK;
        }
        break;
    default:
        break;
    }
    switch (answer) {
    case VIRTIO_MEM_RESP_ACK: m->stats.ack++; break;
    case VIRTIO_MEM_RESP_NACK: m->stats.nack++; break;
    case VIRTIO_MEM_RESP_BUSY: m->stats.busy++; break;
    default: m->stats.error++; break;
    }
    if (answer == VIRTIO_MEM_RESP_ACK && type != VIRTIO_MEM_REQ_STATE)
        m->plugged_event_pending = true;
    struct virtio_link link = m->link;
    bool notify = usable_changed && m->activated;
    pthread_mutex_unlock(&m->lock);

    if (notify && link.config_changed)
        link.config_changed(link.transport);
    memset(resp, 0, sizeof(*resp));
    resp->type = htole16(answer);
    resp->state = htole16(state);
}

void virtio_mem_publish_changes(struct virtio_mem *m)
{
    pthread_mutex_lock(&m->lock);
    bool plugged_changed = m->plugged_event_pending;
    m->plugged_event_pending = false;
    pthread_mutex_unlock(&m->lock);
    if (plugged_changed && m->observer)
        m->observer(m->observer_opaque, m, VIRTIO_MEM_EVENT_PLUGGED);
}

int virtio_mem_set_requested_size(struct virtio_mem *m, uint64_t requested, char *err,
                                  size_t errlen)
{
    pthread_mutex_lock(&m->lock);
    uint64_t bs = m->cfg.block_size, region = m->cfg.region_size;
    bool changed = requested != m->cfg.requested_size;
    bool valid = requested <= region && requested % bs == 0;
    if (valid) {
        m->cfg.requested_size = requested;
        /* Grows at once; shrinks only when nothing is plugged. */
        uint64_t want = virtio_mem_usable_for(requested, bs, m->memory_block, region);
        if (want > m->cfg.usable_region_size) {
            m->cfg.usable_region_size = want;
            changed = true;
        } else if (shrink_usable(m)) {
            changed = true;
        }
    }
    bool notify = valid && changed && m->activated;
    struct virtio_link link = m->link;
    pthread_mutex_unlock(&m->lock);

    if (!valid) {
        snprintf(err, errlen,
                 "virtio-mem %s: requested size 0x%llx must be a multiple of the block size "
                 "0x%llx and at most the region size 0x%llx",
                 m->id, (unsigned long long)requested, (unsigned long long)bs,
                 (unsigned long long)region);
        return -EINVAL;
    }
    /* Outside the lock: the transport takes its own, and may be the thread
     * that holds it while reading our config. */
    if (notify && link.config_changed)
        link.config_changed(link.transport);
    /* With --verbose, beside the requests' timings: when the driver was
     * told (CLOCK_MONOTONIC), so a resize's timeline starts here. */
    uint64_t now = clock_mono_ns();
    log_debug("virtio-mem %s: requested size 0x%llx at %llu.%06llu s%s", m->id,
              (unsigned long long)requested, (unsigned long long)(now / 1000000000ull),
              (unsigned long long)(now % 1000000000ull / 1000ull),
              notify ? ", driver notified" : "");
    return 0;
}

void virtio_mem_get_config(struct virtio_mem *m, struct virtio_mem_config *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->cfg;
    pthread_mutex_unlock(&m->lock);
}

int virtio_mem_system_reset(struct virtio_mem *m)
{
    pthread_mutex_lock(&m->lock);
    int rc = unplug_all(m);     /* after the request in flight, if any */
    if (rc == 0)
        shrink_usable(m);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

void virtio_mem_destroy(struct virtio_mem *m)
{
    if (!m->plugged)
        return;
    free(m->plugged);
    m->plugged = NULL;
    pthread_cond_destroy(&m->idle);
    pthread_mutex_destroy(&m->lock);
}

static int hotplug_backing_plug(void *backing, uint64_t offset, uint64_t len,
                                const _Atomic uint32_t *cancel)
{
    return hotplug_mem_plug_cancellable(backing, offset, len, cancel);
}

static int hotplug_backing_unplug(void *backing, uint64_t offset, uint64_t len,
                                  bool more_to_come)
{
    return hotplug_mem_unplug_step(backing, offset, len, more_to_come);
}

const struct virtio_mem_backing_ops virtio_mem_hotplug_backing = {
    .plug = hotplug_backing_plug,
    .unplug = hotplug_backing_unplug,
};
