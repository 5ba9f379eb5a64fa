/* The in-kernel GICv3 (KVM_DEV_TYPE_ARM_VGIC_V3): created with its register
 * windows before the vCPUs, initialised once they all exist. The nested
 * arm64 KVM this runs on has no GICv2 emulation, so there is no fallback. */
#ifndef MINIVMM_ARCH_ARM64_GIC_H
#define MINIVMM_ARCH_ARM64_GIC_H

/* Creates the vGIC on vm_fd with its distributor at ARM64_GIC_DIST_BASE,
 * ncpus redistributors from ARM64_GIC_REDIST_BASE and ARM64_GIC_NR_IRQS
 * interrupts. Returns the device fd, or a negative errno (logged). */
int arm64_gic_create(int vm_fd, unsigned ncpus);

/* KVM_DEV_ARM_VGIC_CTRL_INIT: after every vCPU is created and before any
 * KVM_IRQFD (which KVM refuses with EAGAIN until the vGIC is initialised)
 * and the first KVM_RUN. Returns 0 or a negative errno (logged). */
int arm64_gic_init(int gic_fd);

#endif
