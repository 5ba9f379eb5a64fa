/* arm64 vCPU setup through KVM: the CPU model KVM prefers, PSCI, power state
 * at creation, the boot vCPU's entry registers, and reading them back. */
#ifndef MINIVMM_ARCH_ARM64_VCPU_H
#define MINIVMM_ARCH_ARM64_VCPU_H

#include <linux/kvm.h>
#include <stdint.h>

/* KVM_ARM_PREFERRED_TARGET on the VM: the target and features every vCPU
 * is initialised with. Returns 0 or a negative errno (logged). */
int arm64_vcpu_target(int vm_fd, struct kvm_vcpu_init *target);

/* KVM_ARM_VCPU_INIT with PSCI 0.2; every vCPU but the boot one (index 0)
 * starts powered off and waits for the guest's PSCI CPU_ON. Then reads the
 * MPIDR_EL1 KVM gave it (the device tree's cpu reg). Returns 0 or a
 * negative errno (logged). */
int arm64_vcpu_init(int vcpu_fd, unsigned index, const struct kvm_vcpu_init *target,
                    uint64_t *mpidr);

/* The boot protocol's entry state: PC = entry, x0 = the DTB's address,
 * x1..x3 = 0, EL1h with D, A, I and F masked. */
int arm64_vcpu_set_boot_regs(int vcpu_fd, unsigned index, uint64_t entry, uint64_t fdt_addr);

/* Logs PC, PSTATE and the EL1 exception registers as error lines; a failed
 * read is logged, never fatal. */
void arm64_vcpu_log_state(int vcpu_fd, unsigned index);

#endif
