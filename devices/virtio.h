/* What every virtio device model and transport share: status and feature
 * bits, and the const ops table through which a transport (virtio-mmio today,
 * PCI could follow) drives a device model without knowing its type. */
#ifndef MINIVMM_VIRTIO_H
#define MINIVMM_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtqueue.h"
#include "vmm/guest_mem.h"

/* Device status bits (virtio 1.2, 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01u
#define VIRTIO_STATUS_DRIVER 0x02u
#define VIRTIO_STATUS_DRIVER_OK 0x04u
#define VIRTIO_STATUS_FEATURES_OK 0x08u
#define VIRTIO_STATUS_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED 0x80u

/* Transport-level feature bits. */
#define VIRTIO_F_VERSION_1 32

/* InterruptStatus bits. */
#define VIRTIO_INT_USED_BUFFER 0x1u
#define VIRTIO_INT_CONFIG_CHANGE 0x2u

#define VIRTIO_MAX_QUEUES 8

/* How a device model reaches back into whichever transport carries it. The
 * transport fills this in before calling the device's activate(). */
struct virtio_link {
    void *transport;
    /* Guest RAM, for virtq_pop() in queue_notify. */
    const struct guest_mem *mem;
    /* Config space changed: bump the generation, interrupt the driver
     * (only once DRIVER_OK). Safe from any thread, without locks held. */
    void (*config_changed)(void *transport);
    /* Non-zero while the transport waits for queue_notify to return (a
     * reset, a queue taken away, teardown): long work should stop at its
     * next chunk and answer as if the host could not do it now. */
    const _Atomic uint32_t *cancel;
};

struct virtio_device_ops {
    const char *name;               /* "virtio-mem", for messages */
    uint32_t device_id;             /* virtio device type (24 for memory) */
    uint64_t features;              /* device-specific feature bits offered */
    /* Per-instance offer, when instances of one type differ (virtio-mem
     * offers ACPI_PXM only with a NUMA node): if set, the transport offers
     * get_features(dev) instead of `features`. The table is shared by every
     * instance, so it cannot carry per-instance bits itself. */
    uint64_t (*get_features)(void *dev);
    unsigned num_queues;            /* <= VIRTIO_MAX_QUEUES */
    uint16_t queue_max_size;        /* power of two */
    uint32_t config_size;           /* bytes of device config space */

    /* The driver's accepted features are about to be checked (FEATURES_OK).
     * Return false to refuse them (FEATURES_OK will not read back). */
    bool (*validate_features)(void *dev, uint64_t driver_features);
    /* offset + len <= config_size is checked by the transport; len 1, 2, 4
     * or 8. config_write may be NULL (read-only config space). */
    void (*config_read)(void *dev, uint32_t offset, void *data, unsigned len);
    void (*config_write)(void *dev, uint32_t offset, const void *data, unsigned len);
    /* DRIVER_OK: queues are validated and ready; link is valid from now. */
    void (*activate)(void *dev, const struct virtio_link *link);
    /* The driver reset the device (status 0). Called with no queue work in
     * flight; must not change state that survives a device reset by spec. */
    void (*reset)(void *dev);
    /* The driver notified queue `index` (already validated and ready).
     * Called from the device's own thread, never concurrently with itself,
     * reset or queue setup, but concurrently with other register and config
     * accesses: it may take long (no transport lock is held), and should
     * stop early when *link->cancel becomes non-zero. Called with no
     * transport lock held other than the serve lock, so it may take its own
     * locks. The device pops chains, pushes used entries;
     * the transport raises the used-buffer interrupt afterwards if needed.
     * Return false on a protocol violation (the transport marks the device
     * NEEDS_RESET). */
    bool (*queue_notify)(void *dev, struct virtq *q, unsigned index);
    /* Optional: called after a queue_notify pass once its used entries and
     * interrupt are out, in the same context as queue_notify. For work the
     * driver should not wait for, such as telling API clients; it should
     * not block, since a reset waits for it. */
    void (*queue_served)(void *dev);
};

#endif
