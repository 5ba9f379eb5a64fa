/* The CPUID a vCPU sees: what KVM supports, plus this VM's topology and the
 * hypervisor leaves Linux needs to pick kvm-clock. */
#ifndef MINIVMM_ARCH_X86_64_CPUID_H
#define MINIVMM_ARCH_X86_64_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

/* KVM_GET_SUPPORTED_CPUID into a malloc'd table (caller frees), with room for
 * `spare` more entries. Returns NULL with the error logged. */
struct kvm_cpuid2 *x86_supported_cpuid(int kvm_fd, unsigned spare);

/* Rewrites the table for vCPU `index` of `ncpus`: APIC ids and core counts in
 * leaves 1, 4, 0xB, 0x1F, 0x80000008 and 0x8000001E, and the hypervisor bit.
 * `capacity` is how many entries the table can hold. Returns 0 or -ENOSPC. */
int x86_cpuid_adjust(struct kvm_cpuid2 *cpuid, unsigned capacity, unsigned index,
                     unsigned ncpus);

/* Sets or clears the TSC-deadline timer bit (leaf 1 ECX[24]): on when KVM
 * reports KVM_CAP_TSC_DEADLINE_TIMER and the LAPIC is in the kernel. */
void x86_cpuid_set_tsc_deadline(struct kvm_cpuid2 *cpuid, bool on);

struct kvm_cpuid_entry2 *x86_cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function,
                                        uint32_t index);

#endif
