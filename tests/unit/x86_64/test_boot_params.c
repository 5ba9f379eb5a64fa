#include <errno.h>

#include "arch/x86_64/boot_params.h"
#include "arch/x86_64/cpu_state.h"
#include "arch/x86_64/layout.h"
#include "unit.h"
#include "vmm/arch.h"

static void fake_header(uint8_t *k, size_t len)
{
    memset(k, 0, len);
    k[0x1f1] = 1;                        /* setup_sects */
    k[0x1fe] = 0x55;
    k[0x1ff] = 0xaa;
    memcpy(k + 0x202, "HdrS", 4);
    k[0x206] = 0x0f;                     /* protocol 2.15 */
    k[0x207] = 0x02;
    k[0x201] = 0x6a;                     /* header length byte: ends at 0x26c */
    k[0x211] = 0x01;                     /* LOADED_HIGH */
}

TEST(e820_small_memory)
{
    struct mem_range ram[ARCH_MAX_RAM_RANGES];
    unsigned n;
    struct boot_e820_entry e[16];
    CHECK_EQ(arch_ram_layout(256ULL << 20, ram, ARCH_MAX_RAM_RANGES, &n), 0);
    CHECK_EQ(n, 1);
    int count = x86_build_e820(ram, n, e, 16);
    CHECK_EQ(count, 4);
    CHECK_EQ(e[0].addr, 0);
    CHECK_EQ(e[0].size, X86_EBDA_START);
    CHECK_EQ(e[0].type, E820_TYPE_RAM);
    CHECK_EQ(e[1].type, E820_TYPE_RESERVED);
    CHECK_EQ(e[2].addr, X86_ACPI_TABLES_ADDR);
    CHECK_EQ(e[2].addr + e[2].size, 0x100000);
    CHECK_EQ(e[2].type, E820_TYPE_RESERVED);
    CHECK_EQ(e[3].addr, 0x100000);
    CHECK_EQ(e[3].addr + e[3].size, 256ULL << 20);
    CHECK_EQ(e[3].type, E820_TYPE_RAM);
}

TEST(e820_splits_around_the_mmio_hole)
{
    struct mem_range ram[ARCH_MAX_RAM_RANGES];
    unsigned n;
    struct boot_e820_entry e[16];
    CHECK_EQ(arch_ram_layout(8ULL << 30, ram, ARCH_MAX_RAM_RANGES, &n), 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(ram[0].size, X86_MMIO32_START);
    CHECK_EQ(ram[1].gpa, X86_4GIB);
    CHECK_EQ(ram[1].size, (8ULL << 30) - X86_MMIO32_START);
    int count = x86_build_e820(ram, n, e, 16);
    CHECK_EQ(count, 5);
    uint64_t total_ram = 0;
    for (int i = 0; i < count; i++) {
        if (e[i].type == E820_TYPE_RAM)
            total_ram += e[i].size;
        /* Nothing may claim the 32-bit device hole. */
        CHECK(e[i].addr + e[i].size <= X86_MMIO32_START || e[i].addr >= X86_4GIB);
    }
    /* Everything but the EBDA and BIOS area is usable RAM. */
    CHECK_EQ(total_ram, (8ULL << 30) - (0x100000 - X86_EBDA_START));
    CHECK_EQ(e[4].addr, X86_4GIB);
}

TEST(e820_exactly_at_the_hole)
{
    struct mem_range ram[ARCH_MAX_RAM_RANGES];
    unsigned n;
    CHECK_EQ(arch_ram_layout(X86_MMIO32_START, ram, ARCH_MAX_RAM_RANGES, &n), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(arch_ram_layout(X86_MMIO32_START + (1 << 20), ram, ARCH_MAX_RAM_RANGES, &n), 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(ram[1].size, 1 << 20);
}

TEST(e820_table_full_is_an_error)
{
    struct mem_range ram[2] = {{0, 1ULL << 30}, {X86_4GIB, 1ULL << 30}};
    struct boot_e820_entry e[4];
    CHECK_EQ(x86_build_e820(ram, 2, e, 4), -ENOSPC);
    struct mem_range bad[1] = {{0x1000, 1ULL << 30}};
    CHECK_EQ(x86_build_e820(bad, 1, e, 4), -EINVAL);
}

TEST(boot_params_fields)
{
    uint8_t k[4096];
    fake_header(k, sizeof(k));
    k[0x210] = 0x42;             /* a loader type the VMM must overwrite */
    k[0x236] = 0x03;             /* xloadflags survive the header copy */
    struct mem_range ram[2] = {{0, X86_MMIO32_START}, {X86_4GIB, 1ULL << 30}};
    struct boot_params bp;
    struct x86_boot_info info = {
        .kernel_header = k,
        .kernel_header_len = sizeof(k),
        .cmdline_addr = X86_CMDLINE_ADDR,
        .cmdline_len = 13,
        .initrd_addr = 0x7000000,
        .initrd_size = 0x123456,
        .rsdp_addr = X86_ACPI_TABLES_ADDR,
        .ram = ram,
        .n_ram = 2,
    };
    CHECK_EQ(x86_build_boot_params(&bp, &info), 0);
    CHECK_EQ(bp.hdr.type_of_loader, 0xff);
    CHECK_EQ(bp.hdr.boot_flag, 0xaa55);
    CHECK_EQ(bp.hdr.header, 0x53726448);    /* "HdrS" */
    CHECK_EQ(bp.hdr.version, 0x020f);
    CHECK_EQ(bp.hdr.xloadflags, 0x03);
    CHECK(bp.hdr.loadflags & CAN_USE_HEAP);
    CHECK_EQ(bp.hdr.cmd_line_ptr, X86_CMDLINE_ADDR);
    CHECK_EQ(bp.ext_cmd_line_ptr, 0);
    CHECK_EQ(bp.hdr.ramdisk_image, 0x7000000);
    CHECK_EQ(bp.hdr.ramdisk_size, 0x123456);
    CHECK_EQ(bp.acpi_rsdp_addr, X86_ACPI_TABLES_ADDR);
    CHECK_EQ(bp.e820_entries, 5);
    CHECK_EQ(bp.e820_table[4].addr, X86_4GIB);
    /* Layout offsets fixed by Documentation/x86/zero-page.rst */
    CHECK_EQ(offsetof(struct boot_params, e820_entries), 0x1e8);
    CHECK_EQ(offsetof(struct boot_params, e820_table), 0x2d0);
    CHECK_EQ(offsetof(struct boot_params, acpi_rsdp_addr), 0x070);
    CHECK_EQ(offsetof(struct boot_params, hdr), 0x1f1);
}

TEST(boot_params_no_initrd)
{
    uint8_t k[4096];
    fake_header(k, sizeof(k));
    struct mem_range ram[1] = {{0, 64ULL << 20}};
    struct boot_params bp;
    struct x86_boot_info info = {.kernel_header = k, .kernel_header_len = sizeof(k),
                                 .cmdline_addr = X86_CMDLINE_ADDR, .ram = ram, .n_ram = 1};
    CHECK_EQ(x86_build_boot_params(&bp, &info), 0);
    CHECK_EQ(bp.hdr.ramdisk_image, 0);
    CHECK_EQ(bp.hdr.ramdisk_size, 0);
}

TEST(boot_params_rejects_truncated_header)
{
    uint8_t k[0x300];
    fake_header(k, sizeof(k));
    k[0x201] = 0xff;            /* claims a header longer than the file */
    struct mem_range ram[1] = {{0, 64ULL << 20}};
    struct boot_params bp;
    struct x86_boot_info info = {.kernel_header = k, .kernel_header_len = sizeof(k),
                                 .ram = ram, .n_ram = 1};
    CHECK_EQ(x86_build_boot_params(&bp, &info), -EINVAL);
}

TEST(reset_vector_stub_writes_the_acpi_reset_register)
{
    struct guest_mem gm;
    struct mem_range r = {0, 2 << 20};
    guest_mem_init(&gm, -1);
    CHECK_EQ(guest_mem_add_ram(&gm, &r, 1, 0), 0);
    CHECK_EQ(x86_write_boot_tables(&gm), 0);
    const uint8_t *v = guest_mem_ptr(&gm, X86_RESET_VECTOR_ADDR, 16);
    /* mov al, 1; mov dx, 0x602; out dx, al: what the FADT's RESET_REG says. */
    const uint8_t expect[] = {0xb0, 0x01, 0xba, 0x02, 0x06, 0xee};
    CHECK(!memcmp(v, expect, sizeof(expect)));
    CHECK_EQ(X86_ACPI_RESET_PORT, 0x602);
    CHECK_EQ(X86_ACPI_RESET_VALUE, 0x01);
    /* The stub sits in the range e820 reserves, so the guest keeps it. */
    CHECK(X86_RESET_VECTOR_ADDR >= X86_ACPI_TABLES_ADDR + X86_ACPI_TABLES_SIZE);
    CHECK(X86_RESET_VECTOR_ADDR + sizeof(expect) <= 0x100000);
    guest_mem_destroy(&gm);
}
