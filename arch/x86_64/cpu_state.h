/* Initial x86_64 vCPU state for the 64-bit Linux boot protocol: long mode with
 * identity-mapped page tables, flat segments, the zero page in %rsi. */
#ifndef MINIVMM_ARCH_X86_64_CPU_STATE_H
#define MINIVMM_ARCH_X86_64_CPU_STATE_H

#include <stdint.h>

#include "vmm/guest_mem.h"

/* GDT, IDT, page tables and the reset-vector stub in low guest memory. */
int x86_write_boot_tables(const struct guest_mem *gm);

/* Registers of the boot vCPU. Application processors are left in KVM's
 * wait-for-SIPI state and started by the guest. */
int x86_set_boot_regs(int vcpu_fd, uint64_t entry, uint64_t zero_page);

/* MSRs, FPU and local APIC LINT pins: every vCPU. */
int x86_set_msrs(int vcpu_fd, unsigned index);
int x86_set_fpu(int vcpu_fd, unsigned index);
int x86_set_lapic(int vcpu_fd, unsigned index);

/* Logs RIP, RSP, RFLAGS, control registers, EFER, CS/SS, GDT/IDT and the
 * pending exception, interrupt and NMI: where a triple fault happened. On AMD
 * a shutdown the CPU itself reports leaves an undefined VMCB, which KVM
 * replaces by an INIT (rip fff0, cs f000) before KVM_RUN returns; a triple
 * fault KVM raised itself (an exception it could not deliver) keeps the
 * state of the guest. */
void x86_log_vcpu_state(int vcpu_fd, unsigned index);

#endif
