/* The virtio-mmio transport, version 2 only (virtio 1.2, 4.2.2): the register
 * file, feature negotiation, queue setup, interrupts, and the device's own
 * thread that serves queue notifications arriving on KVM ioeventfds. */
#ifndef MINIVMM_VIRTIO_MMIO_H
#define MINIVMM_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio.h"
#include "vmm/guest_mem.h"
#include "vmm/io_bus.h"
#include "vmm/irq.h"
#include "vmm/log.h"

#define VIRTIO_MMIO_SIZE 0x200      /* registers 0x000-0x0ff, config from 0x100 */
#define VIRTIO_MMIO_CONFIG 0x100

/* Register offsets (virtio 1.2, table 4.1). */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW 0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH 0x0a4
#define VIRTIO_MMIO_SHM_SEL 0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW 0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH 0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW 0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH 0x0bc
#define VIRTIO_MMIO_QUEUE_RESET 0x0c0
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc

#define VIRTIO_MMIO_MAGIC 0x74726976u   /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x4d564d4du  /* "MMVM", minivmm */

struct virtio_mmio {
    const struct virtio_device_ops *ops;
    void *dev;
    const struct guest_mem *mem;
    int vm_fd;                  /* -1 in unit tests: no KVM ioeventfd/irqfd */
    uint64_t base;              /* guest physical address of the registers */
    struct irq_line irq;
    char name[48];              /* "virtio-mem node0", for messages */

    /* Locks, outer first (docs/architecture.md, "Lock hierarchy"):
     *   serve_lock: held by the device thread while it serves a queue, which
     *     may take long (a virtio-mem plug populates gigabytes); taken before
     *     lock by the writes that must not overlap that (Status 0, QueueReady
     *     0), which first raise `cancel` so the device cuts its work short.
     *     No vCPU read ever takes it.
     *   lock: the register state below, held for a register access only:
     *     no device work, no long syscall, no interrupt raised under it.
     * InterruptStatus, InterruptACK, ConfigGeneration and QueueNotify take
     * neither (atomics and an eventfd). */
    pthread_mutex_t serve_lock;
    pthread_mutex_t lock;
    uint32_t status;            /* stored atomically: config_changed reads it unlocked */
    uint32_t device_features_sel;
    uint32_t driver_features_sel;
    uint64_t driver_features;
    uint32_t queue_sel;
    /* Set up under lock while no queue can be served (before DRIVER_OK);
     * taken away (QueueReady 0, reset) under serve_lock too. The device
     * thread uses them holding serve_lock. */
    struct virtq queues[VIRTIO_MAX_QUEUES];
    bool broken;                /* NEEDS_RESET set; queues not served. Written under
                                 * lock with atomic stores: the API reads it without */
    uint32_t raise_pending;     /* interrupt bits to raise once lock is dropped */

    /* Touched without the lock (device models signal from any thread). */
    _Atomic uint32_t interrupt_status;
    _Atomic uint32_t config_generation;
    /* Non-zero while somebody waits for the device thread's work to end (a
     * reset, a queue taken away, teardown): the device model checks it
     * between chunks of long work (virtio_link.cancel). */
    _Atomic uint32_t cancel;

    /* One eventfd per queue, bound to QueueNotify with KVM_IOEVENTFD
     * (datamatch = queue index), plus one to stop the thread. */
    int notify_fd[VIRTIO_MAX_QUEUES];
    bool ioeventfd_registered[VIRTIO_MAX_QUEUES];
    int stop_fd;
    pthread_t thread;
    bool thread_started;

    struct virtio_link link;
    uint64_t notifications;     /* counters, for metrics and tests (under serve_lock) */
    _Atomic uint64_t interrupts;    /* raised from any thread */

    /* Guest-triggered warnings: register misuse, and broken queues, limited
     * apart so a register flood cannot hide why the device broke. */
    struct log_ratelimit reg_rl;
    struct log_ratelimit queue_rl;
};

/* Sets up the transport for one device instance at `base` with interrupt
 * `gsi`; with vm_fd >= 0 binds the irqfd and the QueueNotify ioeventfds.
 * Returns 0 or a negative errno (logged with context); on failure nothing is
 * left to destroy. */
int virtio_mmio_init(struct virtio_mmio *t, const struct virtio_device_ops *ops, void *dev,
                     const struct guest_mem *mem, int vm_fd, uint64_t base, uint32_t gsi,
                     const char *name);

/* The register handler, to register on the MMIO bus at base with
 * VIRTIO_MMIO_SIZE bytes and t as opaque. */
extern const struct io_handler virtio_mmio_io;

/* Starts the device thread (notifications -> ops->queue_notify). */
int virtio_mmio_start(struct virtio_mmio *t);

/* Serves every queue once as if notified, on the calling thread (unit tests,
 * and the thread's own loop). */
void virtio_mmio_process_queues(struct virtio_mmio *t);

/* Device-config change: what the device's link->config_changed calls. */
void virtio_mmio_config_changed(struct virtio_mmio *t);

/* Stops the thread, unbinds ioeventfds and the irqfd, frees resources. */
void virtio_mmio_destroy(struct virtio_mmio *t);

#endif
