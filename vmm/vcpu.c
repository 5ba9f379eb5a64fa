/* The vCPU run loop: KVM_RUN, then hand each exit to the MMIO bus or the
 * arch, or stop the VM. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/arch.h"
#include "vmm/log.h"
#include "vmm/vm_devices.h"
#include "vmm/vm.h"

static void handle_mmio(struct vcpu *vcpu)
{
    static struct log_ratelimit unclaimed_rl;
    struct kvm_run *run = vcpu->run;
    unsigned len = run->mmio.len;

    if (len == 0 || len > sizeof(run->mmio.data)) {
        log_warn_ratelimited(&unclaimed_rl, "vCPU %u: MMIO access of %u bytes at 0x%llx ignored",
                             vcpu->index, len, (unsigned long long)run->mmio.phys_addr);
        return;
    }
    bool claimed;
    if (run->mmio.is_write)
        claimed = io_bus_write(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
    else
        claimed = io_bus_read(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
    if (!claimed)
        log_warn_ratelimited(&unclaimed_rl,
                             "vCPU %u: %s of %u bytes at unmapped guest address 0x%llx "
                             "(reads see all-ones, writes are dropped)",
                             vcpu->index, run->mmio.is_write ? "write" : "read", len,
                             (unsigned long long)run->mmio.phys_addr);
}

/* KVM_EXIT_SYSTEM_EVENT as the KVM API defines it for every arch, for an
 * arch that does not say more (arch_vcpu_exit). */
static void handle_system_event(struct vcpu *vcpu)
{
    struct vm *vm = vcpu->vm;
    switch (vcpu->run->system_event.type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN:
        vm_request_stop(vm, VM_STOP_POWEROFF, "guest powered off");
        break;
    case KVM_SYSTEM_EVENT_RESET:
        vm_request_stop(vm, VM_STOP_REBOOT, "guest requested a reboot");
        break;
    case KVM_SYSTEM_EVENT_CRASH:
        vm_request_stop(vm, VM_STOP_ERROR, "guest crashed (vCPU %u)", vcpu->index);
        break;
    default:
        log_warn("vCPU %u: ignoring system event type %u", vcpu->index,
                 vcpu->run->system_event.type);
    }
}

/* An exit the run loop does not serve itself: the arch's first. */
static void handle_arch_exit(struct vcpu *vcpu)
{
    struct vm *vm = vcpu->vm;
    enum vm_stop_reason reason = VM_STOP_ERROR;
    char detail[sizeof(vm->stop_detail)];
    detail[0] = '\0';
    switch (arch_vcpu_exit(vcpu, &reason, detail, sizeof(detail))) {
    case ARCH_EXIT_RESUME:
        return;
    case ARCH_EXIT_STOP:
        if (reason != VM_STOP_POWEROFF && reason != VM_STOP_REBOOT)
            reason = VM_STOP_ERROR;     /* an exit ends, restarts or fails the guest */
        vm_request_stop(vm, reason, "%s", detail[0] ? detail : "stopped by the arch");
        return;
    case ARCH_EXIT_UNKNOWN:
        break;
    }
    if (vcpu->run->exit_reason == KVM_EXIT_SYSTEM_EVENT)
        handle_system_event(vcpu);
    else
        vm_request_stop(vm, VM_STOP_ERROR, "vCPU %u: unhandled KVM exit reason %u", vcpu->index,
                        vcpu->run->exit_reason);
}

/* KVM could not map guest memory: no huge page left, a memory limit, or a
 * page the guard made inaccessible. With KVM_CAP_MEMORY_FAULT_INFO the run
 * structure says where (an exit reason that accompanies the error). */
static void memory_fault(struct vcpu *vcpu, int err)
{
    struct kvm_run *run = vcpu->run;
    struct {
        uint64_t flags, gpa, size;
    } info;
    if (!vcpu->vm->memory_fault_info || run->exit_reason != VM_KVM_EXIT_MEMORY_FAULT) {
        vm_memory_fault(vcpu->vm, vcpu->index, NULL, err);
        return;
    }
    memcpy(&info, &run->hw, sizeof(info));      /* the exit union's first bytes */
    vm_memory_fault(vcpu->vm, vcpu->index, &info.gpa, err);
}

int vcpu_run_loop(struct vcpu *vcpu)
{
    struct vm *vm = vcpu->vm;
    struct kvm_run *run = vcpu->run;

    while (!vm_stopping(vm)) {
        if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
            int err = errno;
            if (err == EINTR || err == EAGAIN) {
                __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                continue;
            }
            if (err == EFAULT || err == EHWPOISON) {
                memory_fault(vcpu, err);
                return -1;
            }
            /* Some failures are the guest's doing, which only the arch can
             * tell (arm64: ENOSYS for an access KVM cannot decode). */
            char detail[sizeof(vm->stop_detail)];
            if (arch_vcpu_run_error(vcpu, err, detail, sizeof(detail)))
                vm_request_stop(vm, VM_STOP_ERROR, "%s", detail);
            else
                vm_request_stop(vm, VM_STOP_ERROR, "KVM_RUN on vCPU %u: %s", vcpu->index,
                                strerror(err));
            return -1;
        }
        /* Only this thread writes it; /metrics reads it: no locked add. */
        __atomic_store_n(&vcpu->exits, vcpu->exits + 1, __ATOMIC_RELAXED);
        switch (run->exit_reason) {
        case KVM_EXIT_MMIO:
            handle_mmio(vcpu);
            break;
        case KVM_EXIT_INTR:
            break;
        case KVM_EXIT_FAIL_ENTRY:
            vm_request_stop(vm, VM_STOP_ERROR,
                            "vCPU %u: KVM_EXIT_FAIL_ENTRY, hardware reason 0x%llx", vcpu->index,
                            (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
            break;
        case KVM_EXIT_INTERNAL_ERROR:
            vm_request_stop(vm, VM_STOP_ERROR,
                            "vCPU %u: KVM_EXIT_INTERNAL_ERROR, suberror %u", vcpu->index,
                            run->internal.suberror);
            break;
        default:
            handle_arch_exit(vcpu);
        }
    }
    return 0;
}
