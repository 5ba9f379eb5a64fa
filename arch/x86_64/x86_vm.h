/* The x86_64 arch's state behind vm->arch, shared by the files of
 * arch/x86_64/ that implement vmm/arch.h. */
#ifndef MINIVMM_ARCH_X86_64_X86_VM_H
#define MINIVMM_ARCH_X86_64_X86_VM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/serial_16550.h"
#include "vmm/arch.h"
#include "vmm/io_bus.h"
#include "vmm/irq_level.h"

struct x86_vm {
    struct io_bus pio;          /* port I/O space: COM1, ACPI power, i8042 */
    struct irq_level com1_irq;
    bool com1_irq_ready;
    struct serial_16550 com1;
    bool com1_ready;
    struct kvm_cpuid2 *supported_cpuid;
    uint64_t entry;
    /* The payload arch_load_kernel planned and arch_load_payload reads:
     * the files stay open in between, so what is read is what was checked
     * (-1: nothing left to read). */
    struct x86_payload {
        int fd;
        uint64_t file_off, gpa, len;
    } kernel, initrd;
    struct mem_range ram[ARCH_MAX_RAM_RANGES];
    unsigned n_ram;
};

#endif
