/* The device's own thread: waits on the per-queue notify eventfds (written
 * by KVM's ioeventfd, or by the register file when there is no KVM) and
 * hands each notified queue to the device model, under the serve lock. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/sandbox/seccomp.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_mmio_internal.h"
#include "vmm/log.h"

/* The device model's work runs under serve_lock only, so a long request
 * (a virtio-mem plug populating gigabytes) never blocks a vCPU's register
 * or config access; lock is taken twice, briefly, for the register state. */
static void serve_queue(struct virtio_mmio *t, unsigned index)
{
    struct virtq *q = &t->queues[index];
    pthread_mutex_lock(&t->serve_lock);
    pthread_mutex_lock(&t->lock);
    bool serve = (vmmio_status(t) & VIRTIO_STATUS_DRIVER_OK) && !t->broken && q->ready;
    if (serve)
        t->notifications++;
    pthread_mutex_unlock(&t->lock);
    if (!serve) {
        pthread_mutex_unlock(&t->serve_lock);
        return;
    }

    bool ok = t->ops->queue_notify(t->dev, q, index);
    uint32_t raise = 0;
    if (!ok) {
        pthread_mutex_lock(&t->lock);
        vmmio_mark_broken_locked(t, "queue %u: protocol violation", index);
        raise = vmmio_take_raise_locked(t);
        pthread_mutex_unlock(&t->lock);
    }
    /* Even a breaking request may have completed others before it. */
    if (virtq_should_interrupt(q))
        raise |= VIRTIO_INT_USED_BUFFER;
    /* Raised with no register lock held, but before serve_lock goes: a
     * reset waiting for it cannot clear InterruptStatus between the used
     * entry and its interrupt. */
    if (raise)
        vmmio_raise(t, raise);
    /* Still under serve_lock: what it reports comes before a reset's. */
    if (t->ops->queue_served)
        t->ops->queue_served(t->dev);
    pthread_mutex_unlock(&t->serve_lock);
}

/* Consumes pending notifications; the queue is then served in full, so
 * however many there were, one pass answers them all. */
static void drain(int fd)
{
    uint64_t count;
    while (read(fd, &count, sizeof(count)) < 0 && errno == EINTR)
        ;
}

void virtio_mmio_process_queues(struct virtio_mmio *t)
{
    for (unsigned i = 0; i < t->ops->num_queues; i++) {
        drain(t->notify_fd[i]);
        serve_queue(t, i);
    }
}

static void *device_thread(void *arg)
{
    struct virtio_mmio *t = arg;
    /* Logged by seccomp_enter; the device then serves nothing, which the
     * guest sees as a stalled queue rather than a host compromise. */
    if (seccomp_enter(SECCOMP_ROLE_DEVICE, t->name) < 0)
        return NULL;
    unsigned n = t->ops->num_queues;
    struct pollfd fds[VIRTIO_MAX_QUEUES + 1];
    for (unsigned i = 0; i < n; i++)
        fds[i] = (struct pollfd){.fd = t->notify_fd[i], .events = POLLIN};
    fds[n] = (struct pollfd){.fd = t->stop_fd, .events = POLLIN};

    for (;;) {
        if (poll(fds, n + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("%s: device thread: poll: %s; queues are no longer served", t->name,
                      strerror(errno));
            return NULL;
        }
        if (fds[n].revents)
            return NULL;
        for (unsigned i = 0; i < n; i++) {
            if (fds[i].revents & (POLLERR | POLLNVAL)) {
                log_error("%s: device thread: queue %u eventfd failed; queues are no longer"
                          " served", t->name, i);
                return NULL;
            }
            if (fds[i].revents & POLLIN) {
                drain(fds[i].fd);
                serve_queue(t, i);
            }
        }
    }
}

void vmmio_thread_name(const char *device, char out[16])
{
    /* The kernel keeps 15 characters: "virtio-mem node0" and "virtio-mem
     * node1" would both be "virtio-mem node". The ID after the last space is
     * what tells devices apart, so it leads: "vio-node0"; an ID too long for
     * that keeps its first 8 characters and a hash of the whole, so IDs that
     * differ only further on still get different names. */
    const char *space = strrchr(device, ' ');
    const char *id = space ? space + 1 : device;
    size_t len = strlen(id);
    if (len <= 11) {
        snprintf(out, 16, "vio-%s", id);
        return;
    }
    uint32_t h = 2166136261u;           /* FNV-1a */
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    snprintf(out, 16, "vio-%.8s~%02x", id, (unsigned)(h ^ (h >> 8) ^ (h >> 16) ^ (h >> 24)) & 0xff);
}

int virtio_mmio_start(struct virtio_mmio *t)
{
    if (t->thread_started)
        return 0;
    int rc = pthread_create(&t->thread, NULL, device_thread, t);
    if (rc) {
        log_error("%s: starting the device thread: %s", t->name, strerror(rc));
        return -rc;
    }
    t->thread_started = true;
    /* Named here rather than by the thread, so it is named once we return. */
    char name[16];
    vmmio_thread_name(t->name, name);
    rc = pthread_setname_np(t->thread, name);
    if (rc)
        log_warn("%s: naming the device thread: %s", t->name, strerror(rc));
    return 0;
}
