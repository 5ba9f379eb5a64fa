#include "arch/arm64/boot_plan.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/arm64/layout.h"

#define PAGE 4096ULL

static uint64_t align_down(uint64_t v, uint64_t a)
{
    return v & ~(a - 1);
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static unsigned long long mib_up(uint64_t bytes)
{
    return (unsigned long long)((bytes + (1ULL << 20) - 1) >> 20);
}

int arm64_plan_boot(uint64_t ram_base, uint64_t ram_size, const struct arm64_image_info *k,
                    uint64_t initrd_size, struct arm64_boot_plan *plan, char *why,
                    size_t whylen)
{
    memset(plan, 0, sizeof(*plan));
    uint64_t ram_end = ram_base + ram_size;

    /* The kernel at the start of RAM: kernels before v4.6 cannot use memory
     * below their base, and newer ones do not mind. */
    plan->kernel_base = align_up(ram_base, ARM64_KERNEL_ALIGN);
    plan->kernel_entry = plan->kernel_base + k->text_offset;
    plan->kernel_end = plan->kernel_entry + k->footprint;

    /* The DTB in the last 2 MiB of RAM, 2 MiB aligned, so that the block
     * the kernel maps it with holds nothing else. */
    if (ram_size < ARM64_FDT_MAX_SIZE || ram_end - ARM64_FDT_MAX_SIZE < plan->kernel_base) {
        snprintf(why, whylen, "--mem: %llu MiB cannot hold the kernel and its device tree",
                 mib_up(ram_size));
        return -ENOEXEC;
    }
    plan->fdt_addr = align_down(ram_end - ARM64_FDT_MAX_SIZE, ARM64_FDT_MAX_SIZE);
    if (plan->kernel_end > plan->fdt_addr) {
        snprintf(why, whylen,
                 "--mem: the kernel needs %llu MiB from the start of RAM (Image image_size "
                 "plus text_offset) and the device tree 2 MiB more; %llu MiB is too little",
                 mib_up(plan->kernel_end - ram_base), mib_up(ram_size));
        return -ENOEXEC;
    }
    if (!initrd_size)
        return 0;

    /* The initrd just below the DTB, as high as it can go (the kernel's
     * memory follows its image), but inside the 1 GiB aligned window of at
     * most 32 GiB that also covers the kernel. */
    uint64_t window_end = align_down(plan->kernel_base, ARM64_INITRD_WINDOW_ALIGN) +
                          ARM64_INITRD_WINDOW_SIZE;
    uint64_t top = plan->fdt_addr < window_end ? plan->fdt_addr : window_end;
    uint64_t low = align_up(plan->kernel_end, PAGE);
    if (initrd_size > top || align_down(top - initrd_size, PAGE) < low) {
        snprintf(why, whylen,
                 "--initrd: %llu MiB does not fit between the kernel (%llu MiB) and the device "
                 "tree; raise --mem",
                 mib_up(initrd_size), mib_up(plan->kernel_end - ram_base));
        return -ENOEXEC;
    }
    plan->initrd_addr = align_down(top - initrd_size, PAGE);
    plan->initrd_size = initrd_size;
    return 0;
}
