/* What generic code needs from an architecture. Implemented by arch/x86_64/
 * and arch/arm64/; nothing here names e820, ACPI, GIC or FDT types: each arch
 * keeps its own state behind vm->arch. */
#ifndef MINIVMM_ARCH_H
#define MINIVMM_ARCH_H

#include <stdint.h>

#include "vmm/config.h"
#include "vmm/guest_mem.h"

struct vm;
struct vcpu;

#define ARCH_MAX_RAM_RANGES 4

const char *arch_default_cmdline(void);

/* Where boot RAM of mem_size bytes goes in guest-physical space. */
int arch_ram_layout(uint64_t mem_size, struct mem_range *ranges, unsigned max, unsigned *n);

/* First guest-physical address above boot RAM and arch holes that is free for
 * hotpluggable regions, and the end of the guest-physical space usable for them. */
void arch_hotplug_window(uint64_t mem_size, uint64_t *start, uint64_t *end);

/* Interrupt lines and MMIO windows the arch hands to devices. */
void arch_device_irq_range(uint32_t *first, uint32_t *last);
uint64_t arch_device_mmio_base(unsigned index);

/* After the VM fd and boot RAM exist: interrupt controller, timers and the
 * platform devices (console UART, reset/poweroff) on vm->pio / vm->mmio. */
int arch_vm_init(struct vm *vm);

/* Validates the kernel file and command line against cfg before any KVM
 * resource exists, so user errors are reported first. -ENOEXEC with the
 * problem logged, naming the option. */
int arch_check_kernel(const struct vm_config *cfg);

/* Loads vm->cfg's kernel, initrd and command line into guest memory.
 * Returns -EINVAL etc. with the problem logged; the file is the user's fault
 * when the return is -ENOEXEC (exit status 2). */
int arch_load_kernel(struct vm *vm);

/* Describes every device in vm->devices to the guest (ACPI tables on x86_64,
 * a device tree on arm64). Called after arch_load_kernel. */
int arch_describe_devices(struct vm *vm);

/* Per-vCPU setup after KVM_CREATE_VCPU: CPU identity, registers, and for the
 * boot vCPU the kernel entry state. */
int arch_vcpu_init(struct vm *vm, struct vcpu *vcpu);

/* Logs where a vCPU stopped (registers, control state, pending events) as
 * error lines, for an exit that ends the guest (an x86 triple fault). Called
 * on the vCPU's own thread; a failed read is logged, never fatal. */
void arch_vcpu_log_state(const struct vcpu *vcpu);

void arch_vm_destroy(struct vm *vm);

#endif
