/* arm64 entry points that generic code needs but vmm/arch.h does not name
 * yet: the VM type for KVM_CREATE_VM, a step after every vCPU exists, and
 * exits or KVM_RUN errors only arm64 knows. Until vmm/ calls them through
 * arch.h, arch.c calls arm64_vm_finalize itself from the last vCPU's
 * arch_vcpu_init, and the others are unused (docs/arm64.md, "Hooks"). */
#ifndef MINIVMM_ARCH_ARM64_HOOKS_H
#define MINIVMM_ARCH_ARM64_HOOKS_H

#include <stdbool.h>

#include "vmm/config.h"

struct vm;
struct vcpu;

/* The KVM_CREATE_VM type: an IPA size covering boot RAM and every
 * --virtio-mem region, checked against the host's KVM_CAP_ARM_VM_IPA_SIZE.
 * kvm_fd is /dev/kvm. Returns 0, or -ENOSPC with the reason logged. */
int arm64_vm_type(const struct vm_config *cfg, int kvm_fd, unsigned long *type);

/* Once every vCPU exists: initialises the vGIC, then what needs it (the
 * UART and its interrupt line: until then KVM refuses KVM_IRQFD with
 * EAGAIN, and KVM_IRQ_LINE on a GICv3 with EBUSY), and writes the device
 * tree if the devices are known. Must run before any interrupt line is
 * bound. Idempotent. Returns 0 or a negative errno (logged). */
int arm64_vm_finalize(struct vm *vm);

/* The most vCPUs an arm64 VM can have: the redistributor window's. */
unsigned arm64_max_vcpus(void);

#endif
