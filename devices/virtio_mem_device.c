/* virtio-mem as a virtio device: features, config space, and the one
 * request queue. Kept apart from the request handler (virtio_mem.c) so the
 * handler's tests link without a virtqueue. */
#include <endian.h>
#include <string.h>

#include "devices/virtio_mem.h"
#include "vmm/clock.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* Device-type feature bits are 0..23; 24 and up belong to the transport. */
#define DEVICE_FEATURE_MASK ((1ULL << 24) - 1)
/* Linux sends one readable and one writable descriptor; anything above this
 * is a broken or hostile driver, and virtq_pop refuses it. */
#define MAX_CHAIN_BUFS 16

static uint64_t mem_get_features(void *dev)
{
    const struct virtio_mem *m = dev;
    uint64_t f = 1ULL << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE;
    if (m->acpi_pxm)
        f |= 1ULL << VIRTIO_MEM_F_ACPI_PXM;
    return f;
}

static bool mem_validate_features(void *dev, uint64_t driver_features)
{
    /* Unplugged blocks have no memslot (and no memory), so a driver that
     * might read them (one that predates UNPLUGGED_INACCESSIBLE, Linux < 5.16)
     * would fault into the VMM; refuse it as QEMU does. */
    if (!(driver_features & (1ULL << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE)))
        return false;
    return !(driver_features & DEVICE_FEATURE_MASK & ~mem_get_features(dev));
}

static void mem_config_read(void *dev, uint32_t offset, void *data, unsigned len)
{
    struct virtio_mem *m = dev;
    struct virtio_mem_config le;
    memset(&le, 0, sizeof(le));
    pthread_mutex_lock(&m->lock);
    le.block_size = htole64(m->cfg.block_size);
    le.node_id = htole16(m->cfg.node_id);
    le.addr = htole64(m->cfg.addr);
    le.region_size = htole64(m->cfg.region_size);
    le.usable_region_size = htole64(m->cfg.usable_region_size);
    le.plugged_size = htole64(m->cfg.plugged_size);
    le.requested_size = htole64(m->cfg.requested_size);
    pthread_mutex_unlock(&m->lock);

    /* The transport checks bounds; a second check costs nothing. */
    if (offset > sizeof(le) || len > sizeof(le) - offset) {
        memset(data, 0, len);
        return;
    }
    memcpy(data, (const uint8_t *)&le + offset, len);
}

static void mem_activate(void *dev, const struct virtio_link *link)
{
    struct virtio_mem *m = dev;
    pthread_mutex_lock(&m->lock);
    m->link = *link;
    m->activated = true;
    pthread_mutex_unlock(&m->lock);
    if (m->observer)
        m->observer(m->observer_opaque, m, VIRTIO_MEM_EVENT_DRIVER_ACTIVE);
}

static void mem_reset(void *dev)
{
    /* By spec a device reset leaves block states and plugged_size alone: the
     * memory stays plugged, and a new driver's first act is UNPLUG_ALL. The
     * link stays too (it lives as long as the transport), so a resize while
     * the driver is away still bumps the config generation. */
    struct virtio_mem *m = dev;
    if (m->observer)
        m->observer(m->observer_opaque, m, VIRTIO_MEM_EVENT_DRIVER_RESET);
}

/* Per-request timing with --verbose: when the request started
 * (CLOCK_MONOTONIC) and how long serving it took. */
static void log_served(struct virtio_mem *m)
{
    struct virtio_mem_served *r = &m->served;
    if (!r->pending)
        return;
    r->pending = false;
    log_debug("virtio-mem %s: request %u addr 0x%llx blocks %u -> %u at %llu.%06llu s, "
              "served in %llu us", m->id, r->type, (unsigned long long)r->addr, r->nb_blocks,
              r->answer, (unsigned long long)(r->start_ns / 1000000000ull),
              (unsigned long long)(r->start_ns % 1000000000ull / 1000ull),
              (unsigned long long)(r->spent_ns / 1000ull));
}

static bool reply(struct virtq *q, const struct virtq_chain *chain,
                  const struct virtio_mem_resp *resp)
{
    size_t n = virtq_chain_write(chain, resp, sizeof(*resp));
    virtq_push(q, chain->head, (uint32_t)n);
    return n == sizeof(*resp);
}

/* Serves one popped chain and always hands it back. Returns false on a
 * protocol violation. */
static bool serve_chain(struct virtio_mem *m, struct virtq *q, const struct virtq_chain *chain,
                        const _Atomic uint32_t *cancel)
{
    struct virtio_mem_resp resp;
    memset(&resp, 0, sizeof(resp));
    if (chain->in_len < sizeof(resp)) {
        virtq_push(q, chain->head, 0);
        log_warn_ratelimited(&m->bad_chain_rl,
                             "virtio-mem %s: request with %llu writable bytes, no room for "
                             "the %zu-byte response",
                             m->id, (unsigned long long)chain->in_len, sizeof(resp));
        return false;
    }
    struct virtio_mem_req req;
    if (virtq_chain_read(chain, &req, sizeof(req)) < sizeof(req)) {
        log_warn_ratelimited(&m->bad_chain_rl,
                             "virtio-mem %s: request of %llu bytes, shorter than %zu", m->id,
                             (unsigned long long)chain->out_len, sizeof(req));
        pthread_mutex_lock(&m->lock);
        m->stats.error++;
        pthread_mutex_unlock(&m->lock);
        resp.type = htole16(VIRTIO_MEM_RESP_ERROR);
        return reply(q, chain, &resp);
    }
    uint64_t t0 = clock_mono_ns();
    virtio_mem_handle_request(m, &req, &resp, cancel);
    uint64_t spent = clock_mono_ns() - t0;
    pthread_mutex_lock(&m->lock);
    m->stats.serving_ns += spent;
    pthread_mutex_unlock(&m->lock);
    /* Logged once the answer is out (a line to a slow console must not
     * delay it); a second request in the same pass flushes the first. */
    log_served(m);
    m->served = (struct virtio_mem_served){.pending = true, .type = le16toh(req.type),
                                           .nb_blocks = le16toh(req.nb_blocks),
                                           .answer = le16toh(resp.type),
                                           .addr = le64toh(req.addr), .start_ns = t0,
                                           .spent_ns = spent};
    return reply(q, chain, &resp);
}

static bool mem_queue_notify(void *dev, struct virtq *q, unsigned index)
{
    struct virtio_mem *m = dev;
    pthread_mutex_lock(&m->lock);
    const struct guest_mem *gm = m->activated ? m->link.mem : NULL;
    const _Atomic uint32_t *cancel = m->link.cancel;
    pthread_mutex_unlock(&m->lock);
    /* Not running yet: requests wait in the ring until DRIVER_OK. */
    if (!gm)
        return true;

    for (;;) {
        struct virtq_buf bufs[MAX_CHAIN_BUFS];
        struct virtq_chain chain;
        char err[160] = "";
        int rc = virtq_pop(q, gm, &chain, bufs, ARRAY_SIZE(bufs), err, sizeof(err));
        if (rc == 0)
            return true;
        if (rc < 0) {
            log_warn_ratelimited(&m->bad_chain_rl, "virtio-mem %s: queue %u: %s", m->id,
                                 index, err);
            return false;
        }
        if (!serve_chain(m, q, &chain, cancel))
            return false;
    }
}

static void mem_queue_served(void *dev)
{
    virtio_mem_publish_changes(dev);
    log_served(dev);
}

/* Shared by every instance, so per-instance bits (ACPI_PXM) come from
 * get_features; `features` holds what all instances offer. */
const struct virtio_device_ops virtio_mem_ops = {
    .name = "virtio-mem",
    .device_id = VIRTIO_ID_MEM,
    .features = 1ULL << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE,
    .get_features = mem_get_features,
    .num_queues = 1,
    .queue_max_size = 128,
    .config_size = sizeof(struct virtio_mem_config),
    .validate_features = mem_validate_features,
    .config_read = mem_config_read,
    .config_write = NULL,
    .activate = mem_activate,
    .reset = mem_reset,
    .queue_notify = mem_queue_notify,
    .queue_served = mem_queue_served,
};
