/* The arm64 Image header checks and where the kernel, initrd and device tree
 * go in boot RAM (arch/arm64/image.c, boot_plan.c), by booting.rst's rules. */
#include "unit.h"

#include <errno.h>
#include <stdint.h>

#include "arch/arm64/boot_plan.h"
#include "arch/arm64/image.h"
#include "arch/arm64/layout.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

#define FLAG_BE 1ULL
#define FLAG_4K (1ULL << 1)
#define FLAG_16K (2ULL << 1)
#define FLAG_64K (3ULL << 1)
#define FLAG_ANYWHERE (1ULL << 3)

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A header as Linux's head.S lays it out. */
static void make_header(uint8_t h[ARM64_IMAGE_HEADER_SIZE], uint64_t text_offset,
                        uint64_t image_size, uint64_t flags)
{
    memset(h, 0, ARM64_IMAGE_HEADER_SIZE);
    h[0] = 0x4d; h[1] = 0x5a;               /* code0: the EFI "MZ" no-op */
    put_le64(h + 8, text_offset);
    put_le64(h + 16, image_size);
    put_le64(h + 24, flags);
    memcpy(h + 56, "ARM\x64", 4);
    h[60] = 0x40;                           /* res5: PE header offset */
}

TEST(image_good_header)
{
    uint8_t h[ARM64_IMAGE_HEADER_SIZE];
    make_header(h, 0, 40 * MiB, FLAG_4K | FLAG_ANYWHERE);
    struct arm64_image_info k;
    const char *why = NULL;
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 31 * MiB, &k, &why), 0);
    CHECK_EQ(k.text_offset, 0);
    CHECK_EQ(k.image_size, 40 * MiB);
    CHECK_EQ(k.load_size, 31 * MiB);        /* the file; BSS is not in it */
    CHECK_EQ(k.footprint, 40 * MiB);
    CHECK_EQ(k.page_size, 4096);
    CHECK(k.anywhere);
}

TEST(image_page_size_and_placement_flags)
{
    static const struct {
        uint64_t flags;
        unsigned page;
    } cases[] = {{0, 0}, {FLAG_4K, 4096}, {FLAG_16K, 16384}, {FLAG_64K, 65536}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t h[ARM64_IMAGE_HEADER_SIZE];
        make_header(h, 0x80000, 20 * MiB, cases[i].flags);
        struct arm64_image_info k;
        const char *why;
        CHECK_EQ(arm64_image_parse(h, sizeof(h), 10 * MiB, &k, &why), 0);
        CHECK_EQ(k.page_size, cases[i].page);
        CHECK(!k.anywhere);
        CHECK_EQ(k.text_offset, 0x80000);
    }
}

TEST(image_appended_data_is_not_loaded)
{
    /* A signature appended after the image makes the file longer than
     * image_size: only image_size bytes are the kernel. */
    uint8_t h[ARM64_IMAGE_HEADER_SIZE];
    make_header(h, 0, 8 * MiB, FLAG_4K);
    struct arm64_image_info k;
    const char *why;
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 8 * MiB + 4096, &k, &why), 0);
    CHECK_EQ(k.load_size, 8 * MiB);
    CHECK_EQ(k.footprint, 8 * MiB);
}

TEST(image_pre_3_17_header)
{
    /* image_size 0: text_offset is 0x80000 whatever the field says, and
     * the whole file is what can be checked. */
    uint8_t h[ARM64_IMAGE_HEADER_SIZE];
    make_header(h, 0x80000, 0, 0);
    struct arm64_image_info k;
    const char *why;
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 9 * MiB, &k, &why), 0);
    CHECK_EQ(k.text_offset, 0x80000);
    CHECK_EQ(k.image_size, 0);
    CHECK_EQ(k.load_size, 9 * MiB);
    CHECK_EQ(k.footprint, 9 * MiB);
}

TEST(image_bad_magic)
{
    uint8_t h[ARM64_IMAGE_HEADER_SIZE];
    make_header(h, 0, 40 * MiB, FLAG_4K);
    memcpy(h + 56, "ARM\x65", 4);
    struct arm64_image_info k;
    const char *why = NULL;
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 40 * MiB, &k, &why), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "not an arm64 Linux Image");
    CHECK_STR_CONTAINS(why, "offset 56");

    /* An x86 bzImage starts "MZ" too (its EFI stub) but has no arm64 magic. */
    memset(h, 0, sizeof(h));
    h[0] = 'M';
    h[1] = 'Z';
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 40 * MiB, &k, &why), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "not an arm64 Linux Image");
}

TEST(image_compressed_or_elf_named)
{
    uint8_t h[ARM64_IMAGE_HEADER_SIZE] = {0x1f, 0x8b, 0x08};
    struct arm64_image_info k;
    const char *why = NULL;
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 12 * MiB, &k, &why), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "gzip");
    memset(h, 0, sizeof(h));
    memcpy(h, "\177ELF", 4);
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 12 * MiB, &k, &why), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "vmlinux");
}

TEST(image_big_endian_refused)
{
    uint8_t h[ARM64_IMAGE_HEADER_SIZE];
    make_header(h, 0, 40 * MiB, FLAG_BE | FLAG_4K);
    struct arm64_image_info k;
    const char *why = NULL;
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 30 * MiB, &k, &why), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "big-endian");

    /* Before v3.17 the only sign is text_offset in the kernel's byte order. */
    make_header(h, 0, 0, 0);
    for (int i = 0; i < 8; i++)
        h[8 + i] = (uint8_t)(0x80000ULL >> (8 * (7 - i)));
    why = NULL;
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 30 * MiB, &k, &why), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "big-endian");
}

TEST(image_truncated)
{
    uint8_t h[ARM64_IMAGE_HEADER_SIZE];
    make_header(h, 0, 40 * MiB, FLAG_4K);
    struct arm64_image_info k;
    const char *why = NULL;
    CHECK_EQ(arm64_image_parse(h, 63, 63, &k, &why), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "too short");
    why = NULL;
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 0, &k, &why), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "too short");
}

TEST(image_huge_image_size)
{
    uint8_t h[ARM64_IMAGE_HEADER_SIZE];
    make_header(h, 0, ARM64_IMAGE_MAX_SIZE + 4096, FLAG_4K);
    struct arm64_image_info k;
    const char *why = NULL;
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 30 * MiB, &k, &why), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "image_size");
    make_header(h, 0, UINT64_MAX, FLAG_4K);
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 30 * MiB, &k, &why), -ENOEXEC);
    /* The largest accepted one still loads only what the file holds. */
    make_header(h, 0, ARM64_IMAGE_MAX_SIZE, FLAG_4K);
    CHECK_EQ(arm64_image_parse(h, sizeof(h), 30 * MiB, &k, &why), 0);
    CHECK_EQ(k.load_size, 30 * MiB);
}

TEST(image_malformed_text_offset)
{
    static const uint64_t bad[] = {0x80001, 0x200000, 0x10000000, UINT64_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t h[ARM64_IMAGE_HEADER_SIZE];
        make_header(h, bad[i], 40 * MiB, FLAG_4K);
        struct arm64_image_info k;
        const char *why = NULL;
        CHECK_EQ(arm64_image_parse(h, sizeof(h), 30 * MiB, &k, &why), -ENOEXEC);
        CHECK_STR_CONTAINS(why, "text_offset");
    }
}

/* ---- the boot plan ---- */

static struct arm64_image_info kernel(uint64_t text_offset, uint64_t image_size)
{
    return (struct arm64_image_info){
        .text_offset = text_offset, .image_size = image_size, .load_size = image_size / 2,
        .footprint = image_size, .page_size = 4096, .anywhere = true};
}

/* Every rule of booting.rst, checked on one plan. */
static void check_plan_rules(const struct arm64_boot_plan *p, uint64_t ram_base,
                             uint64_t ram_size, const struct arm64_image_info *k,
                             uint64_t initrd_size)
{
    uint64_t ram_end = ram_base + ram_size;
    CHECK_EQ(p->kernel_base % ARM64_KERNEL_ALIGN, 0);
    CHECK_EQ(p->kernel_entry, p->kernel_base + k->text_offset);
    CHECK_EQ(p->kernel_end, p->kernel_entry + k->footprint);
    CHECK(p->kernel_base >= ram_base);
    /* The DTB: 8-byte aligned, its 2 MiB inside RAM, past the kernel, in a
     * 2 MiB block of its own. */
    CHECK_EQ(p->fdt_addr % 8, 0);
    CHECK_EQ(p->fdt_addr % ARM64_FDT_MAX_SIZE, 0);
    CHECK(p->fdt_addr >= p->kernel_end);
    CHECK(p->fdt_addr + ARM64_FDT_MAX_SIZE <= ram_end);
    CHECK_EQ(p->initrd_size, initrd_size);
    if (!initrd_size) {
        CHECK_EQ(p->initrd_addr, 0);
        return;
    }
    /* The initrd: page aligned, clear of the kernel and the DTB, inside a
     * 1 GiB aligned window of at most 32 GiB that covers the kernel. */
    CHECK_EQ(p->initrd_addr % 4096, 0);
    CHECK(p->initrd_addr >= p->kernel_end);
    CHECK(p->initrd_addr + initrd_size <= p->fdt_addr);
    uint64_t window = p->kernel_base & ~(GiB - 1);
    CHECK(p->initrd_addr >= window);
    CHECK(p->initrd_addr + initrd_size <= window + 32 * GiB);
}

TEST(plan_kernel_initrd_dtb)
{
    struct arm64_image_info k = kernel(0, 40 * MiB);
    struct arm64_boot_plan p;
    char why[256] = "";
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 512 * MiB, &k, 8 * MiB + 123, &p, why,
                             sizeof(why)), 0);
    CHECK_EQ(p.kernel_base, ARM64_RAM_BASE);
    CHECK_EQ(p.kernel_entry, ARM64_RAM_BASE);
    CHECK_EQ(p.fdt_addr, ARM64_RAM_BASE + 510 * MiB);
    /* As high as it goes: the page below the DTB's block holds its end. */
    CHECK_EQ(p.initrd_addr, (ARM64_RAM_BASE + 510 * MiB - (8 * MiB + 123)) & ~4095ULL);
    check_plan_rules(&p, ARM64_RAM_BASE, 512 * MiB, &k, 8 * MiB + 123);
}

TEST(plan_text_offset_from_2mib_base)
{
    struct arm64_image_info k = kernel(0x80000, 20 * MiB);
    struct arm64_boot_plan p;
    char why[256];
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 128 * MiB, &k, 0, &p, why, sizeof(why)), 0);
    CHECK_EQ(p.kernel_entry, ARM64_RAM_BASE + 0x80000);
    check_plan_rules(&p, ARM64_RAM_BASE, 128 * MiB, &k, 0);
}

TEST(plan_ram_not_a_2mib_multiple)
{
    struct arm64_image_info k = kernel(0, 20 * MiB);
    struct arm64_boot_plan p;
    char why[256];
    uint64_t ram = 64 * MiB + 4096;
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, ram, &k, 4 * MiB, &p, why, sizeof(why)), 0);
    CHECK_EQ(p.fdt_addr, ARM64_RAM_BASE + 62 * MiB);
    check_plan_rules(&p, ARM64_RAM_BASE, ram, &k, 4 * MiB);
}

TEST(plan_initrd_stays_in_the_32gib_window)
{
    /* 40 GiB of RAM: the DTB at the top, the initrd below 1 GiB + 32 GiB. */
    struct arm64_image_info k = kernel(0, 40 * MiB);
    struct arm64_boot_plan p;
    char why[256];
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 40 * GiB, &k, 64 * MiB, &p, why, sizeof(why)), 0);
    CHECK_EQ(p.fdt_addr, ARM64_RAM_BASE + 40 * GiB - 2 * MiB);
    CHECK_EQ(p.initrd_addr + p.initrd_size, 33 * GiB);
    check_plan_rules(&p, ARM64_RAM_BASE, 40 * GiB, &k, 64 * MiB);
}

TEST(plan_kernel_larger_than_ram)
{
    struct arm64_image_info k = kernel(0, 100 * MiB);
    struct arm64_boot_plan p;
    char why[256] = "";
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 64 * MiB, &k, 0, &p, why, sizeof(why)), -ENOEXEC);
    CHECK_STR_CONTAINS(why, "--mem");
    CHECK_STR_CONTAINS(why, "100 MiB");
    /* Exactly enough: the kernel and the DTB's 2 MiB. */
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 102 * MiB, &k, 0, &p, why, sizeof(why)), 0);
    check_plan_rules(&p, ARM64_RAM_BASE, 102 * MiB, &k, 0);
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 102 * MiB - 4096, &k, 0, &p, why, sizeof(why)),
             -ENOEXEC);
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 1 * MiB, &k, 0, &p, why, sizeof(why)), -ENOEXEC);
}

TEST(plan_initrd_too_large)
{
    struct arm64_image_info k = kernel(0, 40 * MiB);
    struct arm64_boot_plan p;
    char why[256] = "";
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 128 * MiB, &k, 100 * MiB, &p, why, sizeof(why)),
             -ENOEXEC);
    CHECK_STR_CONTAINS(why, "--initrd");
    CHECK_STR_CONTAINS(why, "--mem");
    /* The largest that fits: RAM minus kernel minus DTB. */
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 128 * MiB, &k, 86 * MiB, &p, why, sizeof(why)), 0);
    check_plan_rules(&p, ARM64_RAM_BASE, 128 * MiB, &k, 86 * MiB);
    CHECK_EQ(arm64_plan_boot(ARM64_RAM_BASE, 128 * MiB, &k, 86 * MiB + 1, &p, why, sizeof(why)),
             -ENOEXEC);
}
