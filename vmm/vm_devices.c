#include "vmm/vm_devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/arch.h"
#include "vmm/hotplug/guard.h"
#include "vmm/hotplug/layout.h"
#include "vmm/hugepages.h"
#include "vmm/log.h"
#include "vmm/size_parse.h"

/* Device changes become events for API clients (GET /events). */
static void publish_device_event(void *opaque, struct virtio_mem *m, enum virtio_mem_event what)
{
    struct vm *vm = opaque;
    if (what == VIRTIO_MEM_EVENT_PLUGGED) {
        struct virtio_mem_config c;
        virtio_mem_get_config(m, &c);
        event_publish(&vm->events, "virtio_mem_plugged", "\"id\":\"%s\",\"plugged_size\":%llu",
                      m->id, (unsigned long long)c.plugged_size);
    } else {
        event_publish(&vm->events, "virtio_mem_driver", "\"id\":\"%s\",\"state\":\"%s\"", m->id,
                      what == VIRTIO_MEM_EVENT_DRIVER_ACTIVE ? "active" : "not_probed");
    }
}

/* The rule a guest breaks by touching an unplugged block: the driver
 * negotiated VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE (minivmm requires it), so
 * nothing may read or write there. Such a guest is stopped: its access is
 * not served (no host memory is spent on it) and the VM ends with status 1,
 * a guest_error event and the device's blocked_accesses metric. */
static void guest_touched_unplugged(struct vm_virtio_mem *v, uint64_t gpa, bool write)
{
    if (__atomic_exchange_n(&v->error_reported, true, __ATOMIC_RELAXED))
        return;         /* other vCPUs racing into the same stop */
    struct vm *vm = v->vm;
    event_publish(&vm->events, "guest_error",
                  "\"id\":\"%s\",\"gpa\":%llu,\"access\":\"%s\",\"rule\":"
                  "\"unplugged_inaccessible\"",
                  v->dev.id, (unsigned long long)gpa, write ? "write" : "read");
    vm_request_stop(vm, VM_STOP_ERROR,
                    "%s: guest %s unplugged memory at 0x%llx; unplugged blocks are "
                    "inaccessible (VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE): VM stopped",
                    v->dev.id, write ? "wrote to" : "read from", (unsigned long long)gpa);
}

/* The same stop when a vCPU's KVM_RUN failed (EFAULT) on a page of an
 * unplugged block: one a kernel worker's late fetch left inaccessible
 * (vmm/hotplug/guard.c), which only the guest touches again. */
static void guest_touched_refused(struct vm_virtio_mem *v, uint64_t gpa, const char *how)
{
    if (__atomic_exchange_n(&v->error_reported, true, __ATOMIC_RELAXED))
        return;
    struct vm *vm = v->vm;
    __atomic_add_fetch(&v->mem.blocked_accesses, 1, __ATOMIC_RELAXED);
    event_publish(&vm->events, "guest_error",
                  "\"id\":\"%s\",\"gpa\":%llu,\"access\":\"unknown\",\"rule\":"
                  "\"unplugged_inaccessible\"",
                  v->dev.id, (unsigned long long)gpa);
    vm_request_stop(vm, VM_STOP_ERROR,
                    "%s: guest touched unplugged memory at 0x%llx (%s: EFAULT on a page made "
                    "inaccessible after a late fetch); unplugged blocks are inaccessible "
                    "(VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE): VM stopped",
                    v->dev.id, (unsigned long long)gpa, how);
}

static struct vm_virtio_mem *owner(struct hotplug_mem *hm)
{
    return (struct vm_virtio_mem *)((char *)hm - offsetof(struct vm_virtio_mem, mem));
}

static void guard_violation(void *opaque, struct hotplug_mem *hm, uint64_t gpa, bool write,
                            const char *who)
{
    (void)opaque;
    struct vm_virtio_mem *v = owner(hm);
    if (!__atomic_load_n(&v->error_reported, __ATOMIC_RELAXED))
        log_error("%s: the access to unplugged memory at 0x%llx faulted in %s",
                  v->dev.id, (unsigned long long)gpa, who);
    guest_touched_unplugged(v, gpa, write);
}

/* Why the host may have failed, for the error message (no file is read:
 * the threads that call this may not open any). */
static void backing_hint(const struct hotplug_mem *hm, char *buf, size_t len)
{
    char a[32];
    if (hm->page_size > 4096)
        snprintf(buf, len, "no %s huge page left in the host's pool",
                 size_format(hm->page_size, a, sizeof(a)));
    else
        snprintf(buf, len, "the host or the VMM's memory limit is out of memory");
}

/* Plugged memory the host cannot back when the guest first touches it: the
 * access cannot be served and a vCPU cannot be left waiting, so the VM
 * stops with the reason (prealloc=on turns this into a BUSY answer at plug
 * time instead). how: who found out ("userfaultfd guard", "KVM_RUN on vCPU
 * 1"). */
static void backing_failed(struct vm_virtio_mem *v, uint64_t gpa, int err, const char *how)
{
    if (__atomic_exchange_n(&v->error_reported, true, __ATOMIC_RELAXED))
        return;     /* already stopping for this device (the guard, another vCPU) */
    struct vm *vm = v->vm;
    char hint[128];
    backing_hint(&v->mem, hint, sizeof(hint));
    event_publish(&vm->events, "host_error", "\"id\":\"%s\",\"gpa\":%llu,\"error\":\"%s\"",
                  v->dev.id, (unsigned long long)gpa, strerror(err));
    vm_request_stop(vm, VM_STOP_ERROR,
                    "%s: the host cannot back plugged memory at 0x%llx the guest touched: %s: %s "
                    "(%s; prealloc=on would have answered the plug BUSY): VM stopped",
                    v->dev.id, (unsigned long long)gpa, how, strerror(err), hint);
}

static void guard_host_failure(void *opaque, struct hotplug_mem *hm, uint64_t gpa, int err)
{
    (void)opaque;
    backing_failed(owner(hm), gpa, err, "userfaultfd guard");
}

void vm_memory_fault(struct vm *vm, unsigned vcpu, const uint64_t *gpa, int err)
{
    /* The guard stops the VM before it makes a refused page fail the
     * access; that stop (and its event) already says what happened. */
    if (vm_stopping(vm))
        return;
    char how[32];
    snprintf(how, sizeof(how), "KVM_RUN on vCPU %u", vcpu);
    for (unsigned i = 0; gpa && i < vm->n_virtio_mem; i++) {
        struct vm_virtio_mem *v = &vm->virtio_mem[i];
        if (v->mem_ready && *gpa >= v->mem.gpa && *gpa - v->mem.gpa < v->mem.size) {
            if (err == EFAULT && !hotplug_mem_is_plugged(&v->mem, *gpa - v->mem.gpa))
                guest_touched_refused(v, *gpa, how);
            else
                backing_failed(v, *gpa, err, how);
            return;
        }
    }
    /* Without the address: the pages a late fetch left inaccessible are
     * the only ones a running VM has, and only the guest goes back to
     * them (the guard's refusals of the guest's own touches stopped the VM
     * before this). */
    for (unsigned i = 0; !gpa && err == EFAULT && i < vm->n_virtio_mem; i++) {
        struct vm_virtio_mem *v = &vm->virtio_mem[i];
        uint64_t offset;
        if (v->mem_ready && hotplug_mem_late_refused_page(&v->mem, &offset)) {
            guest_touched_refused(v, v->mem.gpa + offset, how);
            return;
        }
    }
    if (gpa) {
        event_publish(&vm->events, "host_error", "\"gpa\":%llu,\"error\":\"%s\"",
                      (unsigned long long)*gpa, strerror(err));
        vm_request_stop(vm, VM_STOP_ERROR,
                        "the host cannot back guest memory at 0x%llx%s: %s: %s: VM stopped",
                        (unsigned long long)*gpa,
                        guest_mem_ptr(&vm->mem, *gpa, 1) ? " (boot RAM)" : "", how,
                        strerror(err));
        return;
    }
    event_publish(&vm->events, "host_error", "\"error\":\"%s\"", strerror(err));
    vm_request_stop(vm, VM_STOP_ERROR,
                    "%s: %s: the host could not back guest memory the guest touched (this "
                    "kernel does not say where: no KVM_CAP_MEMORY_FAULT_INFO; a huge page pool "
                    "or a memory limit may be exhausted): VM stopped",
                    how, strerror(err));
}

/* Where no memslot is registered (every block of that slot is unplugged)
 * a guest access exits to us as MMIO: the same rule, the same answer. An
 * access KVM emulates (an instruction it had to decode) exits here too when
 * the host page behind a plugged block cannot be had: that is the host's
 * failure, not the guest's. */
static void unplugged_access(struct vm_virtio_mem *v, uint64_t offset, bool write)
{
    if (hotplug_mem_is_plugged(&v->mem, offset)) {
        backing_failed(v, v->mem.gpa + offset, EFAULT, "access emulated by KVM");
        return;
    }
    __atomic_add_fetch(&v->mem.blocked_accesses, 1, __ATOMIC_RELAXED);
    guest_touched_unplugged(v, v->mem.gpa + offset, write);
}

static void unplugged_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
    memset(data, 0xff, len);
    unplugged_access(opaque, offset, false);
}

static void unplugged_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
    (void)data;
    (void)len;
    unplugged_access(opaque, offset, true);
}

static const struct io_handler unplugged_io = {
    .read = unplugged_read,
    .write = unplugged_write,
};

/* One guard for every region that asks for it (guard=on, the default);
 * without a userfaultfd such a device cannot keep its promise, so minivmm
 * refuses to run (docs/virtio-mem.md). */
static int guard_regions(struct vm *vm)
{
    char err[320];
    bool any = false;
    for (unsigned i = 0; i < vm->n_virtio_mem; i++)
        any = any || vm->cfg->virtio_mem[i].guard;
    if (!any)
        return 0;
    vm->mem_guard = calloc(1, sizeof(*vm->mem_guard));
    if (!vm->mem_guard)
        return -ENOMEM;
    int rc = hotplug_guard_open(vm->mem_guard, err, sizeof(err));
    for (unsigned i = 0; rc == 0 && i < vm->n_virtio_mem; i++)
        if (vm->cfg->virtio_mem[i].guard)
            rc = hotplug_guard_add(vm->mem_guard, &vm->virtio_mem[i].mem, err, sizeof(err));
    if (rc) {
        log_error("--virtio-mem: %s", err);
        return rc;
    }
    vm->mem_guard->on_violation = guard_violation;
    vm->mem_guard->on_host_failure = guard_host_failure;
    vm->mem_guard->opaque = vm;
    return 0;
}

int vm_devices_create(struct vm *vm)
{
    const struct vm_config *cfg = vm->cfg;
    if (!cfg->n_virtio_mem)
        return 0;

    struct hotplug_placement place[CONFIG_MAX_VIRTIO_MEM];
    char err[256];
    if (hotplug_layout(cfg, place, err, sizeof(err)) != 0) {
        log_error("--virtio-mem %s", err);
        return -ENOSPC;
    }
    /* hotplug_mem_init checks each region's slots against KVM_CAP_NR_MEMSLOTS. */
    int rc;

    vm->virtio_mem = calloc(cfg->n_virtio_mem, sizeof(*vm->virtio_mem));
    if (!vm->virtio_mem)
        return -ENOMEM;

    uint32_t first_gsi, last_gsi;
    arch_device_irq_range(&first_gsi, &last_gsi);
    for (unsigned i = 0; i < cfg->n_virtio_mem; i++) {
        const struct virtio_mem_opts *o = &cfg->virtio_mem[i];
        struct vm_virtio_mem *v = &vm->virtio_mem[i];
        v->vm = vm;
        vm->n_virtio_mem++;
        unsigned index = 0;     /* this transport's number among virtio-mmio devices */
        for (unsigned k = 0; k < vm->n_devices; k++)
            index += vm->devices[k].kind == VM_DEVICE_VIRTIO_MMIO;
        if (vm->n_devices + 2 > VM_MAX_DEVICES || first_gsi + index > last_gsi) {
            log_error("--virtio-mem %s: no interrupt line or device slot left", o->id);
            return -ENOSPC;
        }
        uint32_t gsi = first_gsi + index;
        uint64_t base = arch_device_mmio_base(index);

        /* Guarded or not, a block is backed on its first touch unless
         * prealloc=on: the guard backs only plugged blocks, and tells a
         * kernel worker's late fetch (an async page fault that ran after
         * the guest unplugged the block) from the guest's own touch
         * (vmm/hotplug/guard.c, docs/virtio-mem.md). */
        rc = hotplug_mem_init(&v->mem, vm->vm_fd, o->id, place[i].gpa, place[i].size,
                              place[i].slot_size, o->block_size, place[i].first_slot,
                              &o->backing, o->prealloc);
        if (rc)
            return rc;
        v->mem_ready = true;

        struct virtio_mem_params params = {
            .id = o->id,
            .addr = place[i].gpa,
            .region_size = place[i].size,
            .block_size = o->block_size,
            .node_id = (uint16_t)o->node,
            .acpi_pxm = arch_virtio_mem_acpi_pxm(),
            .memory_block = arch_guest_memory_block(),
            .requested_size = vm->requested_after_reset_valid ? vm->requested_after_reset[i]
                                                              : o->requested,
        };
        rc = virtio_mem_init(&v->dev, &params, &virtio_mem_hotplug_backing, &v->mem, err, sizeof(err));
        if (rc) {
            log_error("--virtio-mem %s: %s", o->id, err);
            return rc;
        }
        v->dev_ready = true;
        v->dev.observer = publish_device_event;
        v->dev.observer_opaque = vm;

        char name[48];
        snprintf(name, sizeof(name), "virtio-mem %s", o->id);
        rc = virtio_mmio_init(&v->transport, &virtio_mem_ops, &v->dev, &vm->mem, vm->vm_fd, base,
                              gsi, name);
        if (rc)
            return rc;
        v->transport_ready = true;

        rc = io_bus_register(&vm->mmio, base, VIRTIO_MMIO_SIZE, &virtio_mmio_io, &v->transport,
                             v->transport.name);
        if (rc == 0)
            rc = io_bus_register(&vm->mmio, place[i].gpa, place[i].size, &unplugged_io, v,
                                 v->dev.id);
        if (rc) {
            log_error("--virtio-mem %s: cannot register its MMIO ranges: %s", o->id,
                      strerror(-rc));
            return rc;
        }

        vm->devices[vm->n_devices++] = (struct vm_device_info){
            .kind = VM_DEVICE_VIRTIO_MMIO, .mmio_base = base, .mmio_size = VIRTIO_MMIO_SIZE,
            .irq = gsi};
        vm->devices[vm->n_devices++] = (struct vm_device_info){
            .kind = VM_DEVICE_HOTPLUG_MEMORY, .mmio_base = place[i].gpa,
            .mmio_size = place[i].size, .node = o->node};

        char a[32], b[32], c[32], d[32];
        log_debug("%s: %s at 0x%llx (node %u, block %s, memslots of %s), registers at 0x%llx "
                 "GSI %u, requested %s",
                 o->id, size_format(place[i].size, a, sizeof(a)),
                 (unsigned long long)place[i].gpa, o->node,
                 size_format(o->block_size, b, sizeof(b)),
                 size_format(place[i].slot_size, c, sizeof(c)), (unsigned long long)base, gsi,
                 size_format(o->requested, d, sizeof(d)));
    }
    return guard_regions(vm);
}

int vm_devices_start(struct vm *vm)
{
    /* Before anything can touch the regions: a fault with nobody serving
     * it would hold its thread forever. */
    if (vm->mem_guard) {
        int rc = hotplug_guard_start(vm->mem_guard);
        if (rc)
            return rc;
    }
    for (unsigned i = 0; i < vm->n_virtio_mem; i++) {
        int rc = virtio_mmio_start(&vm->virtio_mem[i].transport);
        if (rc)
            return rc;
    }
    return 0;
}

struct vm_virtio_mem *vm_find_virtio_mem(struct vm *vm, const char *id)
{
    for (unsigned i = 0; i < vm->n_virtio_mem; i++) {
        if (vm->virtio_mem[i].dev_ready && !strcmp(vm->virtio_mem[i].dev.id, id))
            return &vm->virtio_mem[i];
    }
    return NULL;
}

int vm_virtio_mem_resize(struct vm *vm, const char *id, uint64_t requested, char *err,
                         size_t errlen)
{
    struct vm_virtio_mem *v = vm_find_virtio_mem(vm, id);
    if (!v) {
        snprintf(err, errlen, "no virtio-mem device '%s'", id);
        return -ENOENT;
    }
    return virtio_mem_set_requested_size(&v->dev, requested, err, errlen);
}

void vm_devices_destroy(struct vm *vm)
{
    /* The vCPUs are gone (joined) by now, so no fault waits for the guard;
     * the regions stay mapped until after it stops. */
    if (vm->mem_guard) {
        hotplug_guard_destroy(vm->mem_guard);
        free(vm->mem_guard);
        vm->mem_guard = NULL;
    }
    for (unsigned i = 0; i < vm->n_virtio_mem; i++) {
        struct vm_virtio_mem *v = &vm->virtio_mem[i];
        if (v->transport_ready)
            virtio_mmio_destroy(&v->transport);
        if (v->dev_ready)
            virtio_mem_destroy(&v->dev);
        if (v->mem_ready)
            hotplug_mem_destroy(&v->mem);
    }
    free(vm->virtio_mem);
    vm->virtio_mem = NULL;
    vm->n_virtio_mem = 0;
}
