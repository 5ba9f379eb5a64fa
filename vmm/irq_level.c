#include "vmm/irq_level.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/log.h"

int irq_level_init(struct irq_level *l, int vm_fd, uint32_t irq)
{
    l->vm_fd = vm_fd;
    l->irq = irq;
    atomic_init(&l->wanted, false);
    l->applied = false;
    l->raises = 0;
    int rc = pthread_mutex_init(&l->apply_lock, NULL);
    if (rc) {
        log_error("level interrupt line %u: pthread_mutex_init: %s", irq, strerror(rc));
        return -rc;
    }
    return 0;
}

void irq_level_destroy(struct irq_level *l)
{
    pthread_mutex_destroy(&l->apply_lock);
}

bool irq_level_want(struct irq_level *l, bool high)
{
    /* Relaxed is enough: apply() takes apply_lock after the device lock was
     * released, and those two acquire/release pairs order the store. */
    return atomic_exchange_explicit(&l->wanted, high, memory_order_relaxed) != high;
}

void irq_level_apply(struct irq_level *l)
{
    pthread_mutex_lock(&l->apply_lock);
    bool high = atomic_load_explicit(&l->wanted, memory_order_relaxed);
    if (high != l->applied) {
        if (l->vm_fd >= 0) {
            struct kvm_irq_level req = {.irq = l->irq, .level = high};
            if (ioctl(l->vm_fd, KVM_IRQ_LINE, &req) < 0) {
                static struct log_ratelimit rl;
                log_warn_ratelimited(&rl, "KVM_IRQ_LINE irq %u level %d: %s", l->irq, high,
                                     strerror(errno));
                pthread_mutex_unlock(&l->apply_lock);
                return;
            }
        }
        l->applied = high;
        if (high)
            l->raises++;
    }
    pthread_mutex_unlock(&l->apply_lock);
}

bool irq_level_is_high(struct irq_level *l)
{
    pthread_mutex_lock(&l->apply_lock);
    bool high = l->applied;
    pthread_mutex_unlock(&l->apply_lock);
    return high;
}

uint64_t irq_level_raises(struct irq_level *l)
{
    pthread_mutex_lock(&l->apply_lock);
    uint64_t n = l->raises;
    pthread_mutex_unlock(&l->apply_lock);
    return n;
}
