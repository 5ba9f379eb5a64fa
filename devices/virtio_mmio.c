/* virtio-mmio lifecycle: setting up one transport instance (eventfds, irqfd,
 * ioeventfds), reset, the broken state, interrupts, and teardown. The
 * register file is in virtio_mmio_regs.c, the device thread in
 * virtio_mmio_thread.c. */
#include "devices/virtio_mmio.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/virtio_mmio_internal.h"
#include "vmm/log.h"

static void link_config_changed(void *transport)
{
    virtio_mmio_config_changed(transport);
}

void vmmio_raise(struct virtio_mmio *t, uint32_t bits)
{
    atomic_fetch_or(&t->interrupt_status, bits);
    atomic_fetch_add(&t->interrupts, 1);
    irq_line_trigger(&t->irq);
}

void virtio_mmio_config_changed(struct virtio_mmio *t)
{
    /* Lock-free on purpose: device models call this from their own threads
     * and from inside queue_notify, where the transport lock is held. */
    atomic_fetch_add(&t->config_generation, 1);
    if (vmmio_status(t) & VIRTIO_STATUS_DRIVER_OK)
        vmmio_raise(t, VIRTIO_INT_CONFIG_CHANGE);
}

void vmmio_mark_broken_locked(struct virtio_mmio *t, const char *fmt, ...)
{
    if (t->broken)
        return;     /* the first reason is the one worth reporting */
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_warn_ratelimited(&t->queue_rl, "%s: %s; device needs reset", t->name, why);
    /* Written under t->lock; the API reads it without (vm_control.c). */
    __atomic_store_n(&t->broken, true, __ATOMIC_RELEASE);
    /* virtio 1.2, 2.1.2: a live driver learns of NEEDS_RESET through a
     * configuration change notification. */
    if (vmmio_status(t) & VIRTIO_STATUS_DRIVER_OK)
        t->raise_pending |= VIRTIO_INT_CONFIG_CHANGE;
}

void vmmio_reset_locked(struct virtio_mmio *t)
{
    /* Holding serve_lock means no queue_notify is running (the device
     * thread serves queues with it held), so the reset is synchronous as
     * Linux, which does not poll Status after writing 0, expects. */
    if (t->ops->reset)
        t->ops->reset(t->dev);
    for (unsigned i = 0; i < t->ops->num_queues; i++)
        virtq_reset(&t->queues[i]);
    t->device_features_sel = 0;
    t->driver_features_sel = 0;
    t->driver_features = 0;
    t->queue_sel = 0;
    __atomic_store_n(&t->broken, false, __ATOMIC_RELEASE);
    t->raise_pending = 0;
    atomic_store(&t->interrupt_status, 0);
    vmmio_set_status(t, 0);
}

void vmmio_kick(struct virtio_mmio *t, unsigned index)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is saturated, the thread has a wake-up pending. */
    if (write(t->notify_fd[index], &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn_ratelimited(&t->queue_rl, "%s: notifying queue %u: %s", t->name, index,
                             strerror(errno));
}

static int ioeventfd_ctl(struct virtio_mmio *t, unsigned index, bool assign)
{
    uint64_t addr = t->base + VIRTIO_MMIO_QUEUE_NOTIFY;
    struct kvm_ioeventfd req = {
        .datamatch = index,
        .addr = addr,
        .len = 4,
        .fd = t->notify_fd[index],
        .flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };
    if (ioctl(t->vm_fd, KVM_IOEVENTFD, &req) < 0) {
        int err = errno;
        log_error("%s: KVM_IOEVENTFD%s queue %u at 0x%" PRIx64 ": %s", t->name,
                  assign ? "" : " deassign", index, addr, strerror(err));
        return -err;
    }
    return 0;
}

static const char *ops_problem(const struct virtio_device_ops *ops)
{
    if (ops->num_queues > VIRTIO_MAX_QUEUES)
        return "too many queues";
    if (ops->num_queues) {
        uint32_t m = ops->queue_max_size;
        if (m == 0 || m > 32768 || (m & (m - 1)))
            return "queue_max_size is not a power of two in 1..32768";
        if (!ops->queue_notify)
            return "queues without queue_notify";
    }
    if (ops->config_size > VIRTIO_MMIO_SIZE - VIRTIO_MMIO_CONFIG)
        return "config space larger than the register window";
    if (ops->config_size && !ops->config_read)
        return "config space without config_read";
    return NULL;
}

/* Undoes whatever part of init succeeded; the thread is already stopped. */
static void release(struct virtio_mmio *t)
{
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        if (t->ioeventfd_registered[i] && ioeventfd_ctl(t, i, false) == 0)
            t->ioeventfd_registered[i] = false;
        if (t->notify_fd[i] >= 0)
            close(t->notify_fd[i]);
        t->notify_fd[i] = -1;
    }
    if (t->stop_fd >= 0)
        close(t->stop_fd);
    t->stop_fd = -1;
    irq_line_destroy(&t->irq, t->vm_fd);
}

static int new_eventfd(struct virtio_mmio *t, const char *what, int *fd)
{
    *fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (*fd < 0) {
        int err = errno;
        log_error("%s: eventfd for %s: %s", t->name, what, strerror(err));
        return -err;
    }
    return 0;
}

static int init_fds(struct virtio_mmio *t, uint32_t gsi)
{
    int rc = new_eventfd(t, "stopping the device thread", &t->stop_fd);
    for (unsigned i = 0; rc == 0 && i < t->ops->num_queues; i++)
        rc = new_eventfd(t, "queue notifications", &t->notify_fd[i]);
    if (rc)
        return rc;
    rc = irq_line_init(&t->irq, t->vm_fd, gsi);
    if (rc) {
        log_error("%s: interrupt line GSI %u: %s", t->name, gsi, strerror(-rc));
        return rc;
    }
    if (t->vm_fd < 0)
        return 0;
    for (unsigned i = 0; i < t->ops->num_queues; i++) {
        rc = ioeventfd_ctl(t, i, true);
        if (rc)
            return rc;
        t->ioeventfd_registered[i] = true;
    }
    return 0;
}

int virtio_mmio_init(struct virtio_mmio *t, const struct virtio_device_ops *ops, void *dev,
                     const struct guest_mem *mem, int vm_fd, uint64_t base, uint32_t gsi,
                     const char *name)
{
    memset(t, 0, sizeof(*t));
    t->ops = ops;
    t->dev = dev;
    t->mem = mem;
    t->vm_fd = vm_fd;
    t->base = base;
    t->stop_fd = -1;
    t->irq.eventfd = -1;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        t->notify_fd[i] = -1;
    snprintf(t->name, sizeof(t->name), "%s", name ? name : ops->name);

    const char *problem = ops_problem(ops);
    if (problem) {
        log_error("%s: device model %s: %s", t->name, ops->name, problem);
        return -EINVAL;
    }
    for (unsigned i = 0; i < ops->num_queues; i++)
        virtq_init(&t->queues[i], ops->queue_max_size);
    t->link.transport = t;
    t->link.mem = mem;
    t->link.config_changed = link_config_changed;
    t->link.cancel = &t->cancel;

    int rc = pthread_mutex_init(&t->lock, NULL);
    if (rc == 0) {
        rc = pthread_mutex_init(&t->serve_lock, NULL);
        if (rc)
            pthread_mutex_destroy(&t->lock);
    }
    if (rc) {
        log_error("%s: pthread_mutex_init: %s", t->name, strerror(rc));
        return -rc;
    }
    rc = init_fds(t, gsi);
    if (rc) {
        release(t);
        pthread_mutex_destroy(&t->serve_lock);
        pthread_mutex_destroy(&t->lock);
        return rc;
    }
    return 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
    if (t->thread_started) {
        /* A request in progress stops at its next chunk (answered BUSY)
         * instead of finishing a populate nobody will use. Never lowered:
         * the transport is going away. */
        atomic_fetch_add(&t->cancel, 1);
        uint64_t one = 1;
        if (write(t->stop_fd, &one, sizeof(one)) < 0)
            log_error("%s: stopping the device thread: %s", t->name, strerror(errno));
        else
            pthread_join(t->thread, NULL);
        t->thread_started = false;
    }
    release(t);
    pthread_mutex_destroy(&t->serve_lock);
    pthread_mutex_destroy(&t->lock);
}
