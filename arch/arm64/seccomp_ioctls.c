/* The arm64 KVM ioctls each thread role may make (arch_seccomp_ioctls), on
 * top of the generic ones in vmm/sandbox/seccomp_rules.c: what arch/arm64/
 * needs to build a VM (vCPU init with PSCI, registers through ONE_REG, the
 * in-kernel GICv3 as a KVM device) and to say where a vCPU stopped.
 * KVM_ARM_VCPU_INIT's number encodes arm64's struct kvm_vcpu_init, so this
 * file exists only in an arm64 build. */
#include <linux/kvm.h>

#include "vmm/arch.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Building the VM, and building it again on a reset. */
static const struct seccomp_ioctl main_ioctls[] = {
    {KVM_ARM_PREFERRED_TARGET, "the vCPU target for this host"},
    {KVM_ARM_VCPU_INIT, "vCPU init (PSCI 0.2, secondaries powered off)"},
    {KVM_SET_ONE_REG, "the boot vCPU's entry registers"},
    {KVM_GET_ONE_REG, "vCPU identity (MPIDR) for the device tree"},
    {KVM_CREATE_DEVICE, "the in-kernel GICv3"},
    {KVM_SET_DEVICE_ATTR, "GICv3 regions, interrupt count and init"},
    {KVM_HAS_DEVICE_ATTR, "GICv3 attributes this KVM supports"},
    {KVM_ENABLE_CAP, "KVM_CAP_ARM_NISV_TO_USER: undecodable guest accesses exit to minivmm"},
};

/* Reads only: where a guest stopped (arch_vcpu_log_state). */
static const struct seccomp_ioctl vcpu_ioctls[] = {
    {KVM_GET_ONE_REG, "logging where a vCPU stopped (PC, PSTATE)"},
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
