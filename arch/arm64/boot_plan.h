/* Where the kernel, the initrd and the device tree go in boot RAM, by the
 * rules of booting.rst. Pure: arch_check_kernel runs it before any KVM
 * resource exists, arch_load_kernel runs it again to load. */
#ifndef MINIVMM_ARCH_ARM64_BOOT_PLAN_H
#define MINIVMM_ARCH_ARM64_BOOT_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "arch/arm64/image.h"

struct arm64_boot_plan {
    uint64_t kernel_base;       /* 2 MiB aligned */
    uint64_t kernel_entry;      /* kernel_base + text_offset: load address and first PC */
    uint64_t kernel_end;        /* kernel_entry + footprint */
    uint64_t initrd_addr;       /* 0 and size 0: no initrd */
    uint64_t initrd_size;
    uint64_t fdt_addr;          /* ARM64_FDT_MAX_SIZE bytes reserved here */
};

/* Plans a boot into RAM [ram_base, ram_base + ram_size) for kernel k and an
 * initrd of initrd_size bytes (0: none). Returns 0, or -ENOEXEC with the
 * reason in why, naming the option to change (--mem, --initrd). */
int arm64_plan_boot(uint64_t ram_base, uint64_t ram_size, const struct arm64_image_info *k,
                    uint64_t initrd_size, struct arm64_boot_plan *plan, char *why,
                    size_t whylen);

#endif
