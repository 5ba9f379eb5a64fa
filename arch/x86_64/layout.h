/* x86_64 guest physical address map. Generic code never includes this; it asks
 * the arch layer through vmm/arch.h. */
#ifndef MINIVMM_ARCH_X86_64_LAYOUT_H
#define MINIVMM_ARCH_X86_64_LAYOUT_H

#define X86_GDT_ADDR            0x0500ULL
#define X86_IDT_ADDR            0x0520ULL
#define X86_BOOT_STACK_TOP      0x8000ULL
#define X86_PML4_ADDR           0x9000ULL
#define X86_PDPT_ADDR           0xA000ULL
#define X86_PD_ADDR             0xB000ULL     /* 4 pages: identity map of 4 GiB */
#define X86_ZERO_PAGE_ADDR      0x10000ULL    /* boot_params */
#define X86_CMDLINE_ADDR        0x20000ULL
#define X86_CMDLINE_MAX         0x10000ULL
#define X86_EBDA_START          0x9FC00ULL    /* low RAM ends here in e820 */
#define X86_ACPI_TABLES_ADDR    0xE0000ULL    /* RSDP must sit in 0xE0000-0xFFFFF */
#define X86_ACPI_TABLES_SIZE    0x1F000ULL    /* the last page holds the reset vector */
#define X86_RESET_VECTOR_ADDR   0xFFFF0ULL    /* F000:FFF0, inside the reserved BIOS area */
#define X86_KERNEL_LOAD_ADDR    0x100000ULL   /* protected-mode kernel, 1 MiB */
#define X86_HIGH_MEM_START      0x100000ULL

/* 32-bit MMIO hole: low RAM stops here; RAM beyond continues at 4 GiB. */
#define X86_MMIO32_START        0xC0000000ULL
#define X86_VIRTIO_MMIO_BASE    0xD0000000ULL /* virtio-mmio windows, 4 KiB each */
#define X86_VIRTIO_MMIO_STRIDE  0x1000ULL
#define X86_VIRTIO_MMIO_MAX     64
#define X86_IOAPIC_ADDR         0xFEC00000ULL
#define X86_LAPIC_ADDR          0xFEE00000ULL
#define X86_4GIB                0x100000000ULL

/* Port I/O */
#define X86_COM1_PORT           0x3F8
#define X86_COM1_GSI            4
#define X86_I8042_DATA_PORT     0x60
#define X86_I8042_CMD_PORT      0x64
#define X86_SYSTEM_CONTROL_PORT 0x61    /* PC speaker gate, PIT channel 2 output */
/* ACPI hardware-reduced sleep/reset registers (FADT SLEEP_CONTROL_REG,
 * SLEEP_STATUS_REG, RESET_REG), one byte each. */
#define X86_ACPI_SLEEP_CONTROL_PORT 0x600
#define X86_ACPI_SLEEP_STATUS_PORT  0x601
#define X86_ACPI_RESET_PORT         0x602
#define X86_ACPI_RESET_VALUE        0x01

/* IOAPIC pins handed to devices: 5..23 (0-4 are legacy timer/keyboard/cascade/COM). */
#define X86_FIRST_DEVICE_GSI    5
#define X86_LAST_DEVICE_GSI     23

#endif
