/* What generic code needs from an architecture. Implemented by arch/x86_64/
 * and arch/arm64/; nothing here names e820, ACPI, GIC or FDT types: each arch
 * keeps its own state behind vm->arch. vmm/ and devices/ compile unchanged
 * for every arch because everything that differs is asked for here.
 *
 * How vm_create (and vm_reset, which builds the VM again) calls the arch:
 *    arch_check_kernel           before any KVM resource exists
 *    arch_kvm_vm_type            KVM_CREATE_VM's argument
 *    arch_ram_layout             boot RAM's memslots
 *    arch_vm_init                interrupt controller, vm->arch
 *    arch_load_kernel            plans kernel and initrd; command line, boot structures
 *    arch_vcpu_init              for each vCPU just after KVM_CREATE_VCPU
 *    arch_vm_finalize            once every vCPU exists
 *    arch_devices_create         the arch's own devices (the console UART)
 *    (the virtio devices)        generic: vmm/vm_devices.c
 *    arch_describe_devices       ACPI tables / device tree
 * then vm_load_payload (at start after the API listens, so the API answers
 * while the kernel is still being read; at a reset right away):
 *    arch_load_payload           the kernel and initrd bytes into guest memory
 * and vm_destroy (or the reset) ends with arch_vm_destroy. */
#ifndef MINIVMM_ARCH_H
#define MINIVMM_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/config.h"
#include "vmm/guest_mem.h"
#include "vmm/sandbox/seccomp.h"
#include "vmm/vm.h"

#define ARCH_MAX_RAM_RANGES 4

/* ---- Limits and facts the CLI checks options against (no VM needed) ---- */

const char *arch_default_cmdline(void);

/* The kernel format --kernel takes, for --help ("x86_64 bzImage"). */
const char *arch_kernel_format(void);

/* The most vCPUs the platform the arch describes can address (x86_64: 255
 * xAPIC ids in the MADT). KVM's own limit (KVM_CAP_MAX_VCPUS) is checked
 * when the VM is created. */
unsigned arch_max_vcpus(void);

/* Linux's memory block in the guest: the unit in which it adds and removes
 * hot-plugged memory (128 MiB on x86_64, and on arm64 with 4 KiB pages).
 * virtio-mem regions are sized and aligned to it, and a device's usable
 * region never ends inside one. A power of two. */
uint64_t arch_guest_memory_block(void);

/* Whether the guest learns a virtio-mem device's NUMA node from its
 * node_id as an ACPI proximity domain it was told about (x86_64: the SRAT),
 * so devices offer VIRTIO_MEM_F_ACPI_PXM. */
bool arch_virtio_mem_acpi_pxm(void);

/* Options this arch cannot honour although the CLI parsed them (a NUMA node
 * the guest could not be told about). Returns 0, or -EINVAL with a one-line
 * reason naming the option in err (exit status 2). */
int arch_check_config(const struct vm_config *cfg, char *err, size_t errlen);

/* ---- Guest-physical layout ---- */

/* Where boot RAM of mem_size bytes goes in guest-physical space. */
int arch_ram_layout(uint64_t mem_size, struct mem_range *ranges, unsigned max, unsigned *n);

/* First guest-physical address above boot RAM and arch holes that is free for
 * hotpluggable regions, and the end of the guest-physical space usable for them. */
void arch_hotplug_window(uint64_t mem_size, uint64_t *start, uint64_t *end);

/* Interrupt lines and MMIO windows the arch hands to virtio devices. */
void arch_device_irq_range(uint32_t *first, uint32_t *last);
uint64_t arch_device_mmio_base(unsigned index);

/* ---- Building the VM, in the order vm_create calls them ---- */

/* Validates the kernel file and command line against cfg before any KVM
 * resource exists, so user errors are reported first. -ENOEXEC with the
 * problem logged, naming the option. */
int arch_check_kernel(const struct vm_config *cfg);

/* The machine type for KVM_CREATE_VM, asked with vm->kvm_fd open (and
 * nothing else yet: no vm_fd, no vm->arch). x86_64: 0. arm64: the IPA size
 * the layout needs, KVM_VM_TYPE_ARM_IPA_SIZE(bits), within what
 * KVM_CAP_ARM_VM_IPA_SIZE offers. Returns 0 or -errno (logged). */
int arch_kvm_vm_type(struct vm *vm, unsigned long *type);

/* After the VM fd and boot RAM exist, before any vCPU: the interrupt
 * controller and the arch's state (vm->arch). No interrupt line may be
 * bound yet (arm64's KVM_IRQFD waits for arch_vm_finalize). */
int arch_vm_init(struct vm *vm);

/* Checks vm->cfg's kernel and initrd, writes the command line and boot
 * structures, and decides every boot-time address: the kernel's, the
 * initrd's and the device description's (arch_describe_devices writes it
 * later), so that arch_vcpu_init can give the boot vCPU its entry state.
 * The kernel and initrd bytes are read later by arch_load_payload. Returns
 * -EINVAL etc. with the problem logged; the file is the user's fault when
 * the return is -ENOEXEC (exit status 2). */
int arch_load_kernel(struct vm *vm);

/* Per-vCPU setup just after KVM_CREATE_VCPU: CPU identity, registers, and
 * for the boot vCPU (index 0) the kernel entry state; the others start
 * where the arch's SMP bring-up wants them (x86_64: waiting for SIPI;
 * arm64: powered off until PSCI CPU_ON). */
int arch_vcpu_init(struct vm *vm, struct vcpu *vcpu);

/* Once every vCPU exists and has been through arch_vcpu_init (arm64
 * initialises its vGIC here, which needs the final vCPU count). From here
 * on interrupt lines (vmm/irq.h) can be bound. */
int arch_vm_finalize(struct vm *vm);

/* The arch's own devices, after arch_vm_finalize: the console UART, which
 * it hands to the console as vm->console (x86_64: a 16550 at COM1, port
 * 0x3f8, GSI 4), and whatever powers off or resets the machine. */
int arch_devices_create(struct vm *vm);

/* Describes every device in vm->devices, and the arch's own, to the guest
 * (ACPI tables on x86_64, a device tree on arm64), at the place
 * arch_load_kernel chose. Called after the virtio devices exist. */
int arch_describe_devices(struct vm *vm);

/* Reads the kernel and initrd arch_load_kernel planned into guest memory,
 * after the whole VM is built. A file that no longer matches the plan is
 * the user's fault (-ENOEXEC, logged); the guest never runs a mix. */
int arch_load_payload(struct vm *vm);

/* Frees vm->arch and what arch_vm_init and arch_devices_create made; safe
 * on a partly built VM. vm->console is cleared. */
void arch_vm_destroy(struct vm *vm);

/* ---- Running ---- */

/* What an exit the generic run loop leaves to the arch means. The run loop
 * serves MMIO, KVM_EXIT_INTR and the failures every arch shares
 * (FAIL_ENTRY, INTERNAL_ERROR, a memory fault); everything else comes here
 * first, on the vCPU's thread. */
enum arch_exit {
    ARCH_EXIT_RESUME,       /* served (x86 port I/O): run the vCPU again */
    ARCH_EXIT_STOP,         /* the VM stops: *reason and detail say why */
    ARCH_EXIT_UNKNOWN,      /* not the arch's: the run loop applies the
                             * generic meaning (KVM_EXIT_SYSTEM_EVENT) or stops
                             * the VM with an error naming the exit */
};

/* E.g. an x86 triple fault (KVM_EXIT_SHUTDOWN) is a reboot, arm64's PSCI
 * SYSTEM_OFF a poweroff, a data abort KVM cannot decode a guest error.
 * On ARCH_EXIT_STOP *reason is VM_STOP_POWEROFF, VM_STOP_REBOOT or
 * VM_STOP_ERROR and detail is the one-line reason ("guest reset (triple
 * fault on vCPU 1)"). */
enum arch_exit arch_vcpu_exit(struct vcpu *vcpu, enum vm_stop_reason *reason, char *detail,
                              size_t len);

/* KVM_RUN failed with err (not EINTR, EAGAIN or a memory fault): true when
 * that is the guest's doing, with detail saying what it did (arm64: ENOSYS
 * for a data abort KVM cannot decode, "vCPU 0: guest accessed 0x... with an
 * instruction KVM cannot emulate"); the VM then stops with that line
 * instead of naming a VMM failure. Called on the vCPU's thread. */
bool arch_vcpu_run_error(const struct vcpu *vcpu, int err, char *detail, size_t len);

/* Logs where a vCPU stopped (registers, control state, pending events) as
 * error lines, for an exit that ends the guest (an x86 triple fault). Called
 * on the vCPU's own thread; a failed read is logged, never fatal. */
void arch_vcpu_log_state(const struct vcpu *vcpu);

/* ---- Sandbox ---- */

/* The arch's ioctls a thread role may make, on top of the generic ones in
 * vmm/sandbox/seccomp_rules.c (x86_64: CPUID, MSRs, LAPIC...; arm64: vCPU
 * init, ONE_REG, the vGIC device). The main role's list must include what
 * it needs to build a VM again on a reset; the rules give the main thread
 * the vCPU role's list as well, since vCPU threads of a rebuilt VM inherit
 * its filter. Sets *n; never NULL (n = 0 for none). */
const struct seccomp_ioctl *arch_seccomp_ioctls(enum seccomp_role role, size_t *n);

#endif
