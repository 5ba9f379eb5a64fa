/* What an arm64 vCPU's exits mean beyond the generic ones: PSCI power
 * events, and data aborts KVM cannot hand over as MMIO. */
#ifndef MINIVMM_ARCH_ARM64_EXITS_H
#define MINIVMM_ARCH_ARM64_EXITS_H

#include <stdbool.h>

struct vcpu;

/* Handles vcpu->run's exit if it is an arm64 one (KVM_EXIT_ARM_NISV, a PSCI
 * KVM_EXIT_SYSTEM_EVENT). Returns false for exits generic code handles. */
bool arm64_vcpu_exit(struct vcpu *vcpu);

/* Handles a KVM_RUN failure with errno err if it is the guest's doing on
 * arm64 (ENOSYS: a data abort without a valid syndrome when the host's KVM
 * cannot report it as KVM_EXIT_ARM_NISV). The VM stops as a guest error.
 * Returns false for failures generic code handles. */
bool arm64_vcpu_run_error(struct vcpu *vcpu, int err);

#endif
