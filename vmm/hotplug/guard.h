/* The host-side bound on hotplug memory: one userfaultfd watches every
 * virtio-mem region's mapping, so the first touch of any page that has no
 * host memory yet (a guest access through a memslot, KVM's or the VMM's)
 * stops in the guard's thread before anything is allocated. A page of a
 * plugged block is backed (hotplug_mem_fault) and the access goes on; a page
 * of an unplugged block is refused: the page is made inaccessible, the
 * faulting vCPU's KVM_RUN fails with EFAULT, and the owner hears of it
 * (on_violation), so the VM stops with a message naming device and address.
 * A first touch the host cannot back (out of memory) is reported the same
 * way through on_host_failure. Nothing is ever allocated outside plugged
 * blocks, which is why docs/virtio-mem.md can promise host memory <=
 * plugged size. */
#ifndef MINIVMM_HOTPLUG_GUARD_H
#define MINIVMM_HOTPLUG_GUARD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/config.h"
#include "vmm/hotplug/mem.h"

struct hotplug_guard {
    int uffd;                   /* -1 until opened */
    int stop_fd;                /* eventfd: ends the thread */
    pthread_t thread;
    bool running;
    bool thread_ids;            /* faults name their thread (UFFD_FEATURE_THREAD_ID) */
    unsigned n;
    struct hotplug_mem *regions[CONFIG_MAX_VIRTIO_MEM];
    /* Called from the guard's thread with the region that faulted; gpa is
     * the faulting page's guest-physical address; who names the thread
     * whose access faulted ("minivmm thread 1234", or a kernel thread: KVM
     * fetching a page for an async page fault). */
    void (*on_violation)(void *opaque, struct hotplug_mem *hm, uint64_t gpa, bool write,
                         const char *who);
    void (*on_host_failure)(void *opaque, struct hotplug_mem *hm, uint64_t gpa, int err);
    void *opaque;
};

/* Opens the userfaultfd (the userfaultfd system call, or /dev/userfaultfd
 * where unprivileged users may not make one that sees kernel faults).
 * Returns 0, or a negative errno with err saying what the host lacks. */
int hotplug_guard_open(struct hotplug_guard *g, char *err, size_t errlen);

/* Watches hm's whole mapping. 0 or a negative errno with err filled. */
int hotplug_guard_add(struct hotplug_guard *g, struct hotplug_mem *hm, char *err,
                      size_t errlen);

/* Starts the thread (seccomp role "guard"). 0 or a negative errno. */
int hotplug_guard_start(struct hotplug_guard *g);

/* Stops the thread and closes the descriptor; the regions must still be
 * mapped. Safe on a guard that was never opened (uffd -1, stop_fd -1). */
void hotplug_guard_destroy(struct hotplug_guard *g);

#endif
