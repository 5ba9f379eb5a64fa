/* The x86_64 KVM ioctls each thread role may make (arch_seccomp_ioctls), on
 * top of the generic ones in vmm/sandbox/seccomp_rules.c. Their numbers
 * encode x86 structure sizes, so they exist only in an x86 build. */
#include <linux/kvm.h>

#include "vmm/arch.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Building the VM, and building it again on a reset. */
static const struct seccomp_ioctl main_ioctls[] = {
    {KVM_SET_TSS_ADDR, "x86 TSS"},
    {KVM_SET_IDENTITY_MAP_ADDR, "x86 identity map"},
    {KVM_CREATE_IRQCHIP, "in-kernel IOAPIC/PIC/LAPIC"},
    {KVM_GET_SUPPORTED_CPUID, "CPUID"},
    {KVM_SET_CPUID2, "CPUID"},
    {KVM_GET_SREGS, "boot vCPU state"},
    {KVM_SET_SREGS, "boot vCPU state"},
    {KVM_SET_REGS, "boot vCPU state"},
    {KVM_SET_MSRS, "boot vCPU state"},
    {KVM_SET_FPU, "boot vCPU state"},
    {KVM_GET_LAPIC, "LAPIC LINT0/LINT1"},
    {KVM_SET_LAPIC, "LAPIC LINT0/LINT1"},
};

/* Reads only: where a triple fault happened (arch_vcpu_log_state). */
static const struct seccomp_ioctl vcpu_ioctls[] = {
    {KVM_GET_REGS, "logging where a triple fault happened"},
    {KVM_GET_SREGS, "logging where a triple fault happened"},
    {KVM_GET_VCPU_EVENTS, "logging where a triple fault happened"},
};

const struct seccomp_ioctl *arch_seccomp_ioctls(enum seccomp_role role, size_t *n)
{
    switch (role) {
    case SECCOMP_ROLE_MAIN:
        *n = N(main_ioctls);
        return main_ioctls;
    case SECCOMP_ROLE_VCPU:
        *n = N(vcpu_ioctls);
        return vcpu_ioctls;
    default:
        *n = 0;
        return main_ioctls;     /* never read: n is 0 */
    }
}
