#include "arch/x86_64/boot_params.h"

#include <errno.h>
#include <string.h>

#include "arch/x86_64/layout.h"

static int add_entry(struct boot_e820_entry *out, unsigned max, unsigned *n, uint64_t addr,
                     uint64_t size, uint32_t type)
{
    if (size == 0)
        return 0;
    if (*n == max)
        return -ENOSPC;
    out[*n] = (struct boot_e820_entry){.addr = addr, .size = size, .type = type};
    (*n)++;
    return 0;
}

int x86_build_e820(const struct mem_range *ram, unsigned n_ram, struct boot_e820_entry *out,
                   unsigned max)
{
    unsigned n = 0;
    int rc;

    if (n_ram == 0 || ram[0].gpa != 0 || ram[0].size <= X86_HIGH_MEM_START)
        return -EINVAL;
    /* Real-mode RAM stops at the EBDA; the kernel expects that gap. */
    rc = add_entry(out, max, &n, 0, X86_EBDA_START, E820_TYPE_RAM);
    if (!rc)
        rc = add_entry(out, max, &n, X86_EBDA_START, 0xA0000 - X86_EBDA_START,
                       E820_TYPE_RESERVED);
    /* The BIOS area holds the ACPI tables: reserved, so the guest keeps them. */
    if (!rc)
        rc = add_entry(out, max, &n, X86_ACPI_TABLES_ADDR,
                       X86_HIGH_MEM_START - X86_ACPI_TABLES_ADDR, E820_TYPE_RESERVED);
    if (!rc)
        rc = add_entry(out, max, &n, X86_HIGH_MEM_START, ram[0].size - X86_HIGH_MEM_START,
                       E820_TYPE_RAM);
    for (unsigned i = 1; i < n_ram && !rc; i++)
        rc = add_entry(out, max, &n, ram[i].gpa, ram[i].size, E820_TYPE_RAM);
    return rc ? rc : (int)n;
}

int x86_build_boot_params(struct boot_params *bp, const struct x86_boot_info *info)
{
    memset(bp, 0, sizeof(*bp));

    /* The setup header runs from 0x1f1 to 0x202 + the byte at 0x201 (its own
     * length field, protocol 2.04+). */
    const size_t hdr_off = offsetof(struct boot_params, hdr);
    if (info->kernel_header_len < 0x202)
        return -EINVAL;
    size_t hdr_end = 0x202 + info->kernel_header[0x201];
    if (hdr_end > info->kernel_header_len || hdr_end - hdr_off > sizeof(bp->hdr))
        return -EINVAL;
    memcpy(&bp->hdr, info->kernel_header + hdr_off, hdr_end - hdr_off);

    bp->hdr.type_of_loader = 0xff;      /* "undefined" boot loader */
    bp->hdr.loadflags |= CAN_USE_HEAP | LOADED_HIGH;
    bp->hdr.heap_end_ptr = 0xfe00;
    bp->hdr.vid_mode = 0xffff;          /* "normal", no mode switch */
    bp->hdr.cmd_line_ptr = (uint32_t)info->cmdline_addr;
    bp->ext_cmd_line_ptr = (uint32_t)(info->cmdline_addr >> 32);
    if (info->initrd_size) {
        bp->hdr.ramdisk_image = (uint32_t)info->initrd_addr;
        bp->ext_ramdisk_image = (uint32_t)(info->initrd_addr >> 32);
        bp->hdr.ramdisk_size = (uint32_t)info->initrd_size;
        bp->ext_ramdisk_size = (uint32_t)(info->initrd_size >> 32);
    }
    bp->acpi_rsdp_addr = info->rsdp_addr;

    int n = x86_build_e820(info->ram, info->n_ram, bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE);
    if (n < 0)
        return n;
    bp->e820_entries = (uint8_t)n;
    return 0;
}
