/* What operators may ask of a running VM, for the API server: thread-safe
 * snapshots and requests that stay valid across guest reboots (a reboot
 * rebuilds the VM's devices; callers never hold pointers into them). */
#ifndef MINIVMM_VM_CONTROL_H
#define MINIVMM_VM_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vmm/events.h"

struct vm;

struct vmc_vm_info {
    const char *state;          /* "running", "rebooting", "stopping" */
    unsigned vcpus;
    uint64_t boot_mem;          /* bytes */
    double uptime_s;            /* since this boot of the guest */
    double vmm_uptime_s;        /* since minivmm started */
    uint64_t reboots;
    const char *version;
};

struct vmc_virtio_mem_info {
    char id[32];
    unsigned node;
    uint64_t addr, region_size, block_size, usable_region_size, plugged_size, requested_size;
    uint64_t page_size;         /* host page behind the region: 4 KiB or a huge page */
    const char *driver_state;   /* "not_probed", "active", "broken" */
    uint64_t host_backed_bytes; /* memory of the region's memfd now */
    uint64_t host_backed_bound; /* what host_backed_bytes never exceeds: plugged_size with
                                 * the guard, the registered memslots without it */
    uint64_t blocked_accesses;  /* guest touches of unplugged memory refused */
    uint64_t late_fetches;      /* kernel workers' late fetches of unplugged memory refused */
    uint32_t memslots;          /* KVM memslots registered now */
    uint64_t slot_size;         /* the size of each (slot= or the layout's policy) */
    uint64_t req_plug, req_unplug, req_unplug_all, req_state;
    uint64_t resp_ack, resp_nack, resp_busy, resp_error;
    uint64_t serving_ns;        /* time the device spent serving requests */
    uint64_t first_touch_ns;    /* time the guard spent backing first touches */
};

void vmc_vm_info(struct vm *vm, struct vmc_vm_info *out);

unsigned vmc_virtio_mem_count(struct vm *vm);
/* 0, or -ENOENT when there is no such index / id. */
int vmc_virtio_mem_at(struct vm *vm, unsigned index, struct vmc_virtio_mem_info *out);
int vmc_virtio_mem_get(struct vm *vm, const char *id, struct vmc_virtio_mem_info *out);

/* Sets requested_size. 0; -ENOENT (unknown id) or -EINVAL (misaligned, too
 * large) with err saying why. Emits a "virtio_mem_requested" event. */
int vmc_virtio_mem_resize(struct vm *vm, const char *id, uint64_t requested, char *err,
                          size_t errlen);

/* "shutdown" (the VMM exits, status 0) or "reboot" (a system reset, or an
 * exit with --on-reboot exit). 0 or -EINVAL for another word. */
int vmc_action(struct vm *vm, const char *action);

/* Prometheus text exposition of the VM's counters and gauges. */
void vmc_metrics(struct vm *vm, FILE *out);

struct event_bus *vmc_events(struct vm *vm);

#endif
