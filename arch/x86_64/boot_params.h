/* Construction of the Linux x86 "zero page" (struct boot_params) and its e820
 * map, as pure functions so they are unit-testable without KVM. */
#ifndef MINIVMM_ARCH_X86_64_BOOT_PARAMS_H
#define MINIVMM_ARCH_X86_64_BOOT_PARAMS_H

#include <asm/bootparam.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

#define E820_TYPE_RAM 1
#define E820_TYPE_RESERVED 2

/* Fills the e820 table from the boot RAM ranges: low RAM below the EBDA, the
 * legacy BIOS area reserved (ACPI tables live there), and every range above
 * 1 MiB. Returns the entry count or -ENOSPC / -EINVAL. */
int x86_build_e820(const struct mem_range *ram, unsigned n_ram, struct boot_e820_entry *out,
                   unsigned max);

struct x86_boot_info {
    const uint8_t *kernel_header;   /* the bzImage's first sector(s) */
    size_t kernel_header_len;
    uint64_t cmdline_addr;
    uint32_t cmdline_len;           /* without the NUL */
    uint64_t initrd_addr;
    uint64_t initrd_size;           /* 0: no initrd */
    uint64_t rsdp_addr;
    const struct mem_range *ram;
    unsigned n_ram;
};

/* Builds boot_params: the kernel's setup header copied in, loader fields, the
 * command line and initrd pointers, the e820 map and the ACPI RSDP address.
 * Returns 0 or a negative errno. */
int x86_build_boot_params(struct boot_params *bp, const struct x86_boot_info *info);

#endif
