/* x86_64's exits (arch_vcpu_exit): port I/O goes to the port bus, a triple
 * fault is a reset, HLT without an in-kernel interrupt controller ends the
 * guest. The generic run loop serves MMIO and the failures every arch
 * shares. */
#include <stdio.h>

#include "arch/x86_64/cpu_state.h"
#include "arch/x86_64/x86_vm.h"
#include "vmm/log.h"

static void handle_pio(struct vcpu *vcpu)
{
    struct x86_vm *x = vcpu->vm->arch;
    struct kvm_run *run = vcpu->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    unsigned size = run->io.size;

    /* String I/O (rep ins/outs) arrives as `count` consecutive items. */
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        bool claimed;
        if (run->io.direction == KVM_EXIT_IO_OUT)
            claimed = io_bus_write(&x->pio, run->io.port, data, size);
        else
            claimed = io_bus_read(&x->pio, run->io.port, data, size);
        /* Linux probes many legacy ports (PCI config, CMOS, POST); silence is
         * the hardware's answer for an absent device. */
        if (!claimed)
            log_debug("unclaimed port %s 0x%x size %u",
                      run->io.direction == KVM_EXIT_IO_OUT ? "write" : "read", run->io.port,
                      size);
    }
}

enum arch_exit arch_vcpu_exit(struct vcpu *vcpu, enum vm_stop_reason *reason, char *detail,
                              size_t len)
{
    switch (vcpu->run->exit_reason) {
    case KVM_EXIT_IO:
        handle_pio(vcpu);
        return ARCH_EXIT_RESUME;
    case KVM_EXIT_SHUTDOWN:
        /* A triple fault: what a PC does is reset. Where the guest was is
         * gone after the reset, so it is logged first. */
        arch_vcpu_log_state(vcpu);
        *reason = VM_STOP_REBOOT;
        snprintf(detail, len, "guest reset (triple fault on vCPU %u)", vcpu->index);
        return ARCH_EXIT_STOP;
    case KVM_EXIT_HLT:
        /* Only reachable without an in-kernel interrupt controller. */
        *reason = VM_STOP_POWEROFF;
        snprintf(detail, len, "guest halted (vCPU %u)", vcpu->index);
        return ARCH_EXIT_STOP;
    default:
        /* KVM_EXIT_SYSTEM_EVENT (a Hyper-V crash MSR) has its generic meaning. */
        return ARCH_EXIT_UNKNOWN;
    }
}

bool arch_vcpu_run_error(const struct vcpu *vcpu, int err, char *detail, size_t len)
{
    (void)vcpu; (void)err; (void)detail; (void)len;
    return false;       /* every KVM_RUN failure left on x86 is the host's */
}

void arch_vcpu_log_state(const struct vcpu *vcpu)
{
    x86_log_vcpu_state(vcpu->fd, vcpu->index);
}
