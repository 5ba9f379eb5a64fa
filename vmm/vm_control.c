/* The facade between the API server and the VM. Everything is copied out
 * under the owners' locks so the server never holds pointers into devices.
 * Device IDs are restricted to [A-Za-z0-9_-] (cli/virtio_mem_opts.c), so they go
 * into JSON and Prometheus labels without escaping. */
#include "vmm/vm_control.h"

#include <errno.h>
#include <string.h>

#include "devices/virtio.h"
#include "vmm/startup.h"
#include "vmm/vm.h"
#include "vmm/vm_devices.h"

static double seconds_since(int64_t start_ns)
{
    return (double)(vm_clock_ns() - start_ns) / 1e9;
}

static const char *run_state(struct vm *vm)
{
    enum vm_stop_reason r = vm_stop_reason(vm);
    if (r == VM_RUNNING)
        return "running";
    if (r == VM_STOP_REBOOT && !vm->cfg->exit_on_reboot)
        return "rebooting";
    return "stopping";
}

void vmc_vm_info(struct vm *vm, struct vmc_vm_info *out)
{
    *out = (struct vmc_vm_info){
        .state = run_state(vm),
        .vcpus = vm->cfg->ncpus,
        .boot_mem = vm->cfg->mem_size,
        .uptime_s = seconds_since(__atomic_load_n(&vm->booted_ns, __ATOMIC_RELAXED)),
        .vmm_uptime_s = seconds_since(vm->created_ns),
        .reboots = __atomic_load_n(&vm->reboots, __ATOMIC_RELAXED),
        .version = MINIVMM_VERSION,
    };
}

/* The device count is fixed by the configuration; a reboot rebuilds the
 * devices but never changes how many there are. */
unsigned vmc_virtio_mem_count(struct vm *vm)
{
    return vm->cfg->n_virtio_mem;
}

static const char *driver_state(struct virtio_mmio *t)
{
    uint32_t status = __atomic_load_n(&t->status, __ATOMIC_ACQUIRE);
    bool broken = __atomic_load_n(&t->broken, __ATOMIC_ACQUIRE);
    if (broken || (status & (VIRTIO_STATUS_FAILED | VIRTIO_STATUS_NEEDS_RESET)))
        return "broken";
    if (status & VIRTIO_STATUS_DRIVER_OK)
        return "active";
    return "not_probed";
}

/* Bytes of the memslots that [first, first + n) blocks touch. */
static uint64_t slots_touched(const struct hotplug_mem *hm, uint64_t first, uint64_t n)
{
    uint64_t start = first * hm->block_size, end = (first + n) * hm->block_size;
    start -= start % hm->slot_size;
    end = (end + hm->slot_size - 1) / hm->slot_size * hm->slot_size;
    return end - start;
}

static void fill_info(struct vm_virtio_mem *v, const struct virtio_mem_opts *o,
                      struct vmc_virtio_mem_info *out)
{
    /* One snapshot under the device lock, which is only ever held briefly:
     * a change in flight (a plug populating gigabytes) is not waited for;
     * its blocks count once it completes. */
    pthread_mutex_lock(&v->dev.lock);
    struct virtio_mem_config c = v->dev.cfg;
    bool inflight = v->dev.inflight.active;
    bool plugging = inflight && v->dev.inflight.type == VIRTIO_MEM_REQ_PLUG;
    uint64_t inflight_blocks = v->dev.inflight.n;
    uint64_t inflight_slot_bytes =
        inflight ? slots_touched(&v->mem, v->dev.inflight.first, inflight_blocks) : 0;
    /* Stable while no change is in flight: a change begins under this lock. */
    uint32_t memslots = __atomic_load_n(&v->mem.slots_registered, __ATOMIC_RELAXED);
    *out = (struct vmc_virtio_mem_info){
        .req_plug = v->dev.stats.plug,
        .req_unplug = v->dev.stats.unplug,
        .req_unplug_all = v->dev.stats.unplug_all,
        .req_state = v->dev.stats.state,
        .resp_ack = v->dev.stats.ack,
        .resp_nack = v->dev.stats.nack,
        .resp_busy = v->dev.stats.busy,
        .resp_error = v->dev.stats.error,
        .serving_ns = v->dev.stats.serving_ns,
    };
    pthread_mutex_unlock(&v->dev.lock);

    out->node = o->node;
    out->addr = c.addr;
    out->region_size = c.region_size;
    out->block_size = c.block_size;
    out->page_size = v->mem.page_size;
    out->usable_region_size = c.usable_region_size;
    out->plugged_size = c.plugged_size;
    out->requested_size = c.requested_size;
    out->driver_state = driver_state(&v->transport);
    out->host_backed_bytes = hotplug_mem_resident(&v->mem);
    out->blocked_accesses = __atomic_load_n(&v->mem.blocked_accesses, __ATOMIC_RELAXED);
    out->late_fetches = __atomic_load_n(&v->mem.late_fetches, __ATOMIC_RELAXED);
    out->first_touch_ns = __atomic_load_n(&v->mem.first_touch_ns, __ATOMIC_RELAXED);
    out->memslots = memslots;
    out->slot_size = v->mem.slot_size;
    /* With the guard only plugged blocks are ever backed. Without it a
     * guest can make the host back any page of a registered memslot, and a
     * memslot's memory all goes when it is removed. A change in flight may
     * hold memory before it counts (a plug populates first) or after (an
     * unplug removes memslots before it discards): the bound includes it. */
    out->host_backed_bound =
        o->guard ? c.plugged_size + (plugging ? inflight_blocks * c.block_size : 0)
                 : (uint64_t)memslots * v->mem.slot_size + inflight_slot_bytes;
    snprintf(out->id, sizeof(out->id), "%s", v->dev.id);
}

/* Under vm->control_lock (read): a guest reboot rebuilds the devices. */
static int info_at_locked(struct vm *vm, unsigned index, struct vmc_virtio_mem_info *out)
{
    if (index >= vm->n_virtio_mem || !vm->virtio_mem[index].dev_ready)
        return -ENOENT;
    fill_info(&vm->virtio_mem[index], &vm->cfg->virtio_mem[index], out);
    return 0;
}

int vmc_virtio_mem_at(struct vm *vm, unsigned index, struct vmc_virtio_mem_info *out)
{
    pthread_rwlock_rdlock(&vm->control_lock);
    int rc = info_at_locked(vm, index, out);
    pthread_rwlock_unlock(&vm->control_lock);
    return rc;
}

int vmc_virtio_mem_get(struct vm *vm, const char *id, struct vmc_virtio_mem_info *out)
{
    pthread_rwlock_rdlock(&vm->control_lock);
    struct vm_virtio_mem *v = vm_find_virtio_mem(vm, id);
    int rc = v ? info_at_locked(vm, (unsigned)(v - vm->virtio_mem), out) : -ENOENT;
    pthread_rwlock_unlock(&vm->control_lock);
    return rc;
}

int vmc_virtio_mem_resize(struct vm *vm, const char *id, uint64_t requested, char *err,
                          size_t errlen)
{
    pthread_rwlock_rdlock(&vm->control_lock);
    int rc = vm_virtio_mem_resize(vm, id, requested, err, errlen);
    pthread_rwlock_unlock(&vm->control_lock);
    if (rc == 0)
        event_publish(&vm->events, "virtio_mem_requested", "\"id\":\"%s\",\"requested_size\":%llu",
                      id, (unsigned long long)requested);
    return rc;
}

int vmc_action(struct vm *vm, const char *action)
{
    if (!strcmp(action, "shutdown"))
        vm_request_stop(vm, VM_STOP_API, "stopped through the API");
    else if (!strcmp(action, "reboot"))
        vm_request_stop(vm, VM_STOP_REBOOT, "reboot requested through the API");
    else
        return -EINVAL;
    return 0;
}

struct event_bus *vmc_events(struct vm *vm)
{
    return &vm->events;
}

/* One gauge or counter per device: HELP/TYPE once, then a sample per device. */
struct dev_metric {
    const char *name, *type, *help;
    size_t offset;              /* of a uint64_t in vmc_virtio_mem_info */
};

#define DEV_FIELD(f) offsetof(struct vmc_virtio_mem_info, f)

static const struct dev_metric dev_metrics[] = {
    {"minivmm_virtio_mem_region_size_bytes", "gauge", "Size of the hotpluggable region.",
     DEV_FIELD(region_size)},
    {"minivmm_virtio_mem_block_size_bytes", "gauge", "Plug granularity.", DEV_FIELD(block_size)},
    {"minivmm_virtio_mem_slot_size_bytes", "gauge", "Size of each KVM memslot of the region.",
     DEV_FIELD(slot_size)},
    {"minivmm_virtio_mem_usable_region_size_bytes", "gauge",
     "Part of the region the driver may plug.", DEV_FIELD(usable_region_size)},
    {"minivmm_virtio_mem_plugged_size_bytes", "gauge", "Memory the guest has plugged.",
     DEV_FIELD(plugged_size)},
    {"minivmm_virtio_mem_requested_size_bytes", "gauge", "Memory the host asks the guest to plug.",
     DEV_FIELD(requested_size)},
    {"minivmm_virtio_mem_host_backed_bytes", "gauge", "Host memory backing the region now.",
     DEV_FIELD(host_backed_bytes)},
    {"minivmm_virtio_mem_host_backed_bound_bytes", "gauge",
     "What host_backed_bytes never exceeds: the plugged size with guard=on, else the "
     "registered memslots.", DEV_FIELD(host_backed_bound)},
    {"minivmm_virtio_mem_blocked_accesses_total", "counter",
     "Guest accesses to unplugged memory refused (each stops the VM).",
     DEV_FIELD(blocked_accesses)},
    {"minivmm_virtio_mem_late_fetches_refused_total", "counter",
     "Fetches of unplugged memory by KVM's async page fault workers, refused without "
     "blaming the guest (the guest may have unplugged the block since its access).",
     DEV_FIELD(late_fetches)},
};

/* Nanosecond totals, shown in seconds. */
static const struct dev_metric dev_seconds[] = {
    {"minivmm_virtio_mem_serving_seconds_total", "counter",
     "Time the device spent serving driver requests (its backing work included: populate, "
     "discard, memslots).", DEV_FIELD(serving_ns)},
    {"minivmm_virtio_mem_first_touch_seconds_total", "counter",
     "Time the guard spent backing first touches of plugged blocks (the touching thread waits "
     "for it).", DEV_FIELD(first_touch_ns)},
};

struct dev_counter {
    const char *label_value;
    size_t offset;
};

static const struct dev_counter requests[] = {
    {"plug", DEV_FIELD(req_plug)}, {"unplug", DEV_FIELD(req_unplug)},
    {"unplug_all", DEV_FIELD(req_unplug_all)}, {"state", DEV_FIELD(req_state)},
};
static const struct dev_counter responses[] = {
    {"ack", DEV_FIELD(resp_ack)}, {"nack", DEV_FIELD(resp_nack)},
    {"busy", DEV_FIELD(resp_busy)}, {"error", DEV_FIELD(resp_error)},
};

static uint64_t field(const struct vmc_virtio_mem_info *d, size_t offset)
{
    uint64_t v;
    memcpy(&v, (const char *)d + offset, sizeof(v));
    return v;
}

void vmc_metrics(struct vm *vm, FILE *out)
{
    struct vmc_vm_info info;
    vmc_vm_info(vm, &info);
    fprintf(out, "# HELP minivmm_info minivmm version.\n# TYPE minivmm_info gauge\n"
                 "minivmm_info{version=\"%s\"} 1\n", info.version);
    fprintf(out, "# HELP minivmm_vcpus vCPUs of the VM.\n# TYPE minivmm_vcpus gauge\n"
                 "minivmm_vcpus %u\n", info.vcpus);
    fprintf(out, "# HELP minivmm_boot_memory_bytes Boot RAM.\n"
                 "# TYPE minivmm_boot_memory_bytes gauge\nminivmm_boot_memory_bytes %llu\n",
            (unsigned long long)info.boot_mem);
    fprintf(out, "# HELP minivmm_uptime_seconds Time since the guest last started.\n"
                 "# TYPE minivmm_uptime_seconds gauge\nminivmm_uptime_seconds %.3f\n",
            info.uptime_s);
    fprintf(out, "# HELP minivmm_vmm_uptime_seconds Time since minivmm started.\n"
                 "# TYPE minivmm_vmm_uptime_seconds gauge\nminivmm_vmm_uptime_seconds %.3f\n",
            info.vmm_uptime_s);
    startup_metrics(out);
    fprintf(out, "# HELP minivmm_reboots_total Guest resets served.\n"
                 "# TYPE minivmm_reboots_total counter\nminivmm_reboots_total %llu\n",
            (unsigned long long)info.reboots);
    fprintf(out, "# HELP minivmm_events_total Events published on the event stream.\n"
                 "# TYPE minivmm_events_total counter\nminivmm_events_total %llu\n",
            (unsigned long long)event_bus_last(&vm->events));
    /* The UART is the arch's: a reset replaces it, with the control lock
     * held for writing. */
    pthread_rwlock_rdlock(&vm->control_lock);
    if (vm->console.ops)
        fprintf(out, "# HELP minivmm_console_output_dropped_bytes_total Guest console output "
                     "dropped because stdout did not take it and the UART's buffer was full.\n"
                     "# TYPE minivmm_console_output_dropped_bytes_total counter\n"
                     "minivmm_console_output_dropped_bytes_total %llu\n",
                (unsigned long long)vm->console.ops->output_dropped(vm->console.uart));
    fprintf(out, "# HELP minivmm_vcpu_exits_total KVM exits per vCPU since the guest last "
                 "started.\n# TYPE minivmm_vcpu_exits_total counter\n");
    for (unsigned i = 0; i < vm->ncpus; i++)
        fprintf(out, "minivmm_vcpu_exits_total{vcpu=\"%u\"} %llu\n", i,
                (unsigned long long)__atomic_load_n(&vm->vcpus[i].exits, __ATOMIC_RELAXED));
    pthread_rwlock_unlock(&vm->control_lock);

    unsigned n = vmc_virtio_mem_count(vm);
    struct vmc_virtio_mem_info devs[CONFIG_MAX_VIRTIO_MEM];
    unsigned have = 0;
    for (unsigned i = 0; i < n && have < CONFIG_MAX_VIRTIO_MEM; i++) {
        if (vmc_virtio_mem_at(vm, i, &devs[have]) == 0)
            have++;
    }
    if (!have)
        return;

    for (size_t m = 0; m < sizeof(dev_metrics) / sizeof(dev_metrics[0]); m++) {
        const struct dev_metric *dm = &dev_metrics[m];
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", dm->name, dm->help, dm->name, dm->type);
        for (unsigned i = 0; i < have; i++)
            fprintf(out, "%s{id=\"%s\",node=\"%u\"} %llu\n", dm->name, devs[i].id, devs[i].node,
                    (unsigned long long)field(&devs[i], dm->offset));
    }
    fprintf(out, "# HELP minivmm_virtio_mem_memslots KVM memslots registered for the region.\n"
                 "# TYPE minivmm_virtio_mem_memslots gauge\n");
    for (unsigned i = 0; i < have; i++)
        fprintf(out, "minivmm_virtio_mem_memslots{id=\"%s\",node=\"%u\"} %u\n", devs[i].id,
                devs[i].node, devs[i].memslots);
    fprintf(out, "# HELP minivmm_virtio_mem_driver_active 1 when the guest driver is running.\n"
                 "# TYPE minivmm_virtio_mem_driver_active gauge\n");
    for (unsigned i = 0; i < have; i++)
        fprintf(out, "minivmm_virtio_mem_driver_active{id=\"%s\",node=\"%u\"} %d\n", devs[i].id,
                devs[i].node, !strcmp(devs[i].driver_state, "active"));

    for (size_t k = 0; k < sizeof(dev_seconds) / sizeof(dev_seconds[0]); k++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s counter\n", dev_seconds[k].name,
                dev_seconds[k].help, dev_seconds[k].name);
        for (unsigned i = 0; i < have; i++)
            fprintf(out, "%s{id=\"%s\",node=\"%u\"} %.6f\n", dev_seconds[k].name, devs[i].id,
                    devs[i].node, (double)field(&devs[i], dev_seconds[k].offset) / 1e9);
    }
    fprintf(out, "# HELP minivmm_virtio_mem_requests_total Driver requests by type.\n"
                 "# TYPE minivmm_virtio_mem_requests_total counter\n");
    for (unsigned i = 0; i < have; i++)
        for (size_t k = 0; k < sizeof(requests) / sizeof(requests[0]); k++)
            fprintf(out, "minivmm_virtio_mem_requests_total{id=\"%s\",type=\"%s\"} %llu\n",
                    devs[i].id, requests[k].label_value,
                    (unsigned long long)field(&devs[i], requests[k].offset));
    fprintf(out, "# HELP minivmm_virtio_mem_responses_total Device answers by result.\n"
                 "# TYPE minivmm_virtio_mem_responses_total counter\n");
    for (unsigned i = 0; i < have; i++)
        for (size_t k = 0; k < sizeof(responses) / sizeof(responses[0]); k++)
            fprintf(out, "minivmm_virtio_mem_responses_total{id=\"%s\",result=\"%s\"} %llu\n",
                    devs[i].id, responses[k].label_value,
                    (unsigned long long)field(&devs[i], responses[k].offset));
}
