/* arm64's exits (arch_vcpu_exit): PSCI power events, and data aborts KVM
 * cannot hand over as MMIO. The generic run loop serves MMIO and the
 * failures every arch shares. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>

#include "arch/arm64/vcpu.h"
#include "vmm/arch.h"
#include "vmm/log.h"

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
static enum arch_exit abort_without_syndrome(struct vcpu *vcpu, uint64_t ipa, bool write,
                                             char *detail, size_t len)
{
    struct vm *vm = vcpu->vm;
    /* In a hotpluggable region this is a touch of an unplugged block (a
     * plugged block has its memslot): the region's own rule answers,
     * through the handler generic code registered for it, exactly as for a
     * decoded access (a guest_error event, the VM stopped). memcpy's
     * LDP/STP make this the usual way such a touch arrives on arm64. */
    if (in_hotplug_region(vm, ipa)) {
        uint8_t byte = 0xff;
        if (write)
            io_bus_write(&vm->mmio, ipa, &byte, 1);
        else
            io_bus_read(&vm->mmio, ipa, &byte, 1);
        return ARCH_EXIT_RESUME;        /* the rule has stopped the VM */
    }
    const char *owner = mmio_owner(&vm->mmio, ipa);
    arch_vcpu_log_state(vcpu);
    if (owner)
        event_publish(&vm->events, "guest_error",
                      "\"id\":\"%s\",\"gpa\":%llu,\"access\":\"%s\",\"rule\":\"mmio_syndrome\"",
                      owner, (unsigned long long)ipa, write ? "write" : "read");
    else
        event_publish(&vm->events, "guest_error",
                      "\"gpa\":%llu,\"access\":\"%s\",\"rule\":\"mmio_syndrome\"",
                      (unsigned long long)ipa, write ? "write" : "read");
    snprintf(detail, len,
             "guest error: vCPU %u %s %s at 0x%llx with an instruction that gives no "
             "syndrome (a data abort KVM cannot turn into MMIO: a load/store pair, writeback "
             "or SIMD access to device memory): VM stopped",
             vcpu->index, write ? "wrote to" : "read from",
             owner ? owner : "unmapped guest-physical memory", (unsigned long long)ipa);
    return ARCH_EXIT_STOP;
}

/* PSCI SYSTEM_OFF and SYSTEM_RESET, handled by KVM's PSCI, end the VM or
 * rebuild it as x86's ACPI S5 and reset do. */
static enum arch_exit system_event(const struct kvm_run *run, enum vm_stop_reason *reason,
                                   char *detail, size_t len)
{
    switch (run->system_event.type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN:
        *reason = VM_STOP_POWEROFF;
        snprintf(detail, len, "guest powered off (PSCI SYSTEM_OFF)");
        return ARCH_EXIT_STOP;
    case KVM_SYSTEM_EVENT_RESET:
        *reason = VM_STOP_REBOOT;
        snprintf(detail, len, "guest requested a reboot (PSCI %s)",
                 run->system_event.ndata > 0 &&
                         (run->system_event.data[0] & SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2)
                     ? "SYSTEM_RESET2"
                     : "SYSTEM_RESET");
        return ARCH_EXIT_STOP;
    default:
        return ARCH_EXIT_UNKNOWN;       /* a crash report: the generic meaning */
    }
}

enum arch_exit arch_vcpu_exit(struct vcpu *vcpu, enum vm_stop_reason *reason, char *detail,
                              size_t len)
{
    const struct kvm_run *run = vcpu->run;
    switch (run->exit_reason) {
    case KVM_EXIT_ARM_NISV:
        *reason = VM_STOP_ERROR;
        return abort_without_syndrome(vcpu, run->arm_nisv.fault_ipa,
                                      (run->arm_nisv.esr_iss & ESR_ISS_WNR) != 0, detail, len);
    case KVM_EXIT_SYSTEM_EVENT:
        return system_event(run, reason, detail, len);
    default:
        return ARCH_EXIT_UNKNOWN;
    }
}

bool arch_vcpu_run_error(const struct vcpu *vcpu, int err, char *detail, size_t len)
{
    if (err != ENOSYS)
        return false;
    /* Without KVM_CAP_ARM_NISV_TO_USER, KVM_RUN fails this way for the same
     * abort as KVM_EXIT_ARM_NISV, and the address is not reported. */
    arch_vcpu_log_state(vcpu);
    event_publish(&vcpu->vm->events, "guest_error", "\"rule\":\"mmio_syndrome\"");
    snprintf(detail, len,
             "guest error: vCPU %u accessed memory outside RAM with an instruction that gives "
             "no syndrome (KVM_RUN: ENOSYS; this host's KVM cannot say where): VM stopped",
             vcpu->index);
    return true;
}

void arch_vcpu_log_state(const struct vcpu *vcpu)
{
    arm64_vcpu_log_state(vcpu->fd, vcpu->index);
}
