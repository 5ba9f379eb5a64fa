/* Shared between the virtio-mmio lifecycle, register file and device thread
 * (virtio_mmio.c, virtio_mmio_regs.c, virtio_mmio_thread.c); not for device
 * models. */
#ifndef MINIVMM_VIRTIO_MMIO_INTERNAL_H
#define MINIVMM_VIRTIO_MMIO_INTERNAL_H

#include "devices/virtio_mmio.h"

static inline uint32_t vmmio_status(const struct virtio_mmio *t)
{
    return __atomic_load_n(&t->status, __ATOMIC_ACQUIRE);
}

static inline void vmmio_set_status(struct virtio_mmio *t, uint32_t status)
{
    __atomic_store_n(&t->status, status, __ATOMIC_RELEASE);
}

/* Sets InterruptStatus bits and raises the line; any thread, no lock. */
void vmmio_raise(struct virtio_mmio *t, uint32_t bits);

/* A protocol violation: NEEDS_RESET until the driver resets, queues are no
 * longer served. The reason is logged (rate-limited). The config-change
 * interrupt it owes a live driver is left in raise_pending, for the caller
 * to raise after unlocking (vmmio_take_raise_locked). */
__attribute__((format(printf, 2, 3))) void vmmio_mark_broken_locked(struct virtio_mmio *t,
                                                                    const char *fmt, ...);

/* Interrupt bits owed since the lock was taken; cleared. */
static inline uint32_t vmmio_take_raise_locked(struct virtio_mmio *t)
{
    uint32_t bits = t->raise_pending;
    t->raise_pending = 0;
    return bits;
}

/* The driver wrote 0 to Status; the caller holds serve_lock and lock. */
void vmmio_reset_locked(struct virtio_mmio *t);

/* Wakes the device thread for queue `index` (< num_queues). */
void vmmio_kick(struct virtio_mmio *t, unsigned index);

/* The device thread's kernel name (15 characters and a NUL) for a device
 * named "<type> <id>": distinct for distinct IDs (docs/architecture.md). */
void vmmio_thread_name(const char *device, char out[16]);

#endif
