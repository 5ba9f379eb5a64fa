/* A level-triggered interrupt line into the guest (KVM_IRQ_LINE), for devices
 * whose interrupt is a level: asserted for as long as the device has a reason
 * pending, like the 16550's. A level line cannot lose a wakeup: an interrupt
 * the guest missed (masked, coalesced, taken while its handler was already
 * past the check) is delivered again at the guest's EOI while the level is
 * still high.
 *
 * A device records the level it wants under its own lock (irq_level_want), so
 * the order of the records is the order of its state changes, and makes the
 * line match the latest record after unlocking (irq_level_apply), so no
 * ioctl runs under the device lock. Two threads applying out of order still
 * leave the line at the latest wanted level, because apply reads the wanted
 * level under the line's own lock instead of carrying its caller's. */
#ifndef MINIVMM_IRQ_LEVEL_H
#define MINIVMM_IRQ_LEVEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct irq_level {
    int vm_fd;              /* < 0: no VM (unit tests read `applied`) */
    uint32_t irq;           /* KVM_IRQ_LINE's irq: the GSI on x86 */
    atomic_bool wanted;     /* written under the device's lock */
    pthread_mutex_t apply_lock;
    bool applied;           /* the line's level, under apply_lock */
    uint64_t raises;        /* low -> high transitions made, under apply_lock */
};

int irq_level_init(struct irq_level *l, int vm_fd, uint32_t irq);
void irq_level_destroy(struct irq_level *l);

/* Under the device's lock: the level the device's state asks for. Returns
 * true when it differs from the last one recorded, i.e. the caller must
 * irq_level_apply() once it has dropped its lock. */
bool irq_level_want(struct irq_level *l, bool high);

/* Outside the device's lock: sets the line to the latest wanted level. */
void irq_level_apply(struct irq_level *l);

/* The line's current level and how many times it went high (tests). */
bool irq_level_is_high(struct irq_level *l);
uint64_t irq_level_raises(struct irq_level *l);

#endif
