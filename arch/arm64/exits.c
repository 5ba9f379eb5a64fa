#include "arch/arm64/exits.h"

#include <errno.h>
#include <linux/kvm.h>

#include "arch/arm64/vcpu.h"
#include "vmm/log.h"
#include "vmm/vm.h"

/* ESR_ELx.ISS bit 6, WnR: KVM passes it (with CM and FSC) in esr_iss. */
#define ESR_ISS_WNR (1ULL << 6)
/* kvm_run.system_event.data[0] for a PSCI SYSTEM_RESET2 (Linux 5.18+). */
#define SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2 (1ULL << 0)

static const char *mmio_owner(const struct io_bus *bus, uint64_t addr)
{
    for (unsigned i = 0; i < bus->n; i++) {
        const struct io_bus_entry *e = &bus->entries[i];
        if (addr >= e->base && addr - e->base < e->len)
            return e->name;
    }
    return NULL;
}

static bool in_hotplug_region(const struct vm *vm, uint64_t addr)
{
    for (unsigned i = 0; i < vm->n_devices; i++) {
        const struct vm_device_info *d = &vm->devices[i];
        if (d->kind == VM_DEVICE_HOTPLUG_MEMORY && addr >= d->mmio_base &&
            addr - d->mmio_base < d->mmio_size)
            return true;
    }
    return false;
}

/* A data abort outside every memslot that KVM could not decode: no valid
 * instruction syndrome (ISV = 0), as for a load/store pair, a writeback
 * addressing mode or a SIMD access. MMIO cannot be emulated from it. */
static void abort_without_syndrome(struct vcpu *vcpu, uint64_t ipa, bool write)
{
    struct vm *vm = vcpu->vm;
    /* In a hotpluggable region this is a touch of an unplugged block (a
     * plugged block has its memslot): the region's own rule answers, through
     * the handler generic code registered for it, exactly as for a decoded
     * access (a guest_error event, the VM stopped). memcpy's LDP/STP make
     * this the usual way such a touch arrives on arm64. */
    if (in_hotplug_region(vm, ipa)) {
        uint8_t byte = 0xff;
        if (write)
            io_bus_write(&vm->mmio, ipa, &byte, 1);
        else
            io_bus_read(&vm->mmio, ipa, &byte, 1);
        return;
    }
    const char *owner = mmio_owner(&vm->mmio, ipa);
    arm64_vcpu_log_state(vcpu->fd, vcpu->index);
    if (owner)
        event_publish(&vm->events, "guest_error",
                      "\"id\":\"%s\",\"gpa\":%llu,\"access\":\"%s\",\"rule\":\"mmio_syndrome\"",
                      owner, (unsigned long long)ipa, write ? "write" : "read");
    else
        event_publish(&vm->events, "guest_error",
                      "\"gpa\":%llu,\"access\":\"%s\",\"rule\":\"mmio_syndrome\"",
                      (unsigned long long)ipa, write ? "write" : "read");
    vm_request_stop(vm, VM_STOP_ERROR,
                    "guest error: vCPU %u %s %s at 0x%llx with an instruction that gives no "
                    "syndrome (a data abort KVM cannot turn into MMIO: a load/store pair, "
                    "writeback or SIMD access to device memory): VM stopped",
                    vcpu->index, write ? "wrote to" : "read from",
                    owner ? owner : "unmapped guest-physical memory", (unsigned long long)ipa);
}

static bool system_event(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    switch (run->system_event.type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN:
        vm_request_stop(vcpu->vm, VM_STOP_POWEROFF, "guest powered off (PSCI SYSTEM_OFF)");
        return true;
    case KVM_SYSTEM_EVENT_RESET:
        vm_request_stop(vcpu->vm, VM_STOP_REBOOT, "guest requested a reboot (PSCI %s)",
                        run->system_event.ndata > 0 &&
                                (run->system_event.data[0] & SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2)
                            ? "SYSTEM_RESET2"
                            : "SYSTEM_RESET");
        return true;
    default:
        return false;       /* a crash report and the rest: generic */
    }
}

bool arm64_vcpu_exit(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    switch (run->exit_reason) {
    case KVM_EXIT_ARM_NISV:
        abort_without_syndrome(vcpu, run->arm_nisv.fault_ipa,
                               (run->arm_nisv.esr_iss & ESR_ISS_WNR) != 0);
        return true;
    case KVM_EXIT_SYSTEM_EVENT:
        return system_event(vcpu);
    default:
        return false;
    }
}

bool arm64_vcpu_run_error(struct vcpu *vcpu, int err)
{
    if (err != ENOSYS)
        return false;
    /* Without KVM_CAP_ARM_NISV_TO_USER, KVM_RUN fails this way for the same
     * abort as KVM_EXIT_ARM_NISV, and the address is not reported. */
    arm64_vcpu_log_state(vcpu->fd, vcpu->index);
    event_publish(&vcpu->vm->events, "guest_error", "\"rule\":\"mmio_syndrome\"");
    vm_request_stop(vcpu->vm, VM_STOP_ERROR,
                    "guest error: vCPU %u accessed memory outside RAM with an instruction that "
                    "gives no syndrome (KVM_RUN: ENOSYS; this host's KVM cannot say where): "
                    "VM stopped", vcpu->index);
    return true;
}
