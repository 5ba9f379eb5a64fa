#include <errno.h>
#include <stdlib.h>

#include "arch/x86_64/bzimage.h"
#include "arch/x86_64/layout.h"
#include "unit.h"

static uint8_t *make_image(size_t len)
{
    uint8_t *k = calloc(1, len);
    k[0x1f1] = 3;                          /* setup_sects */
    k[0x1fe] = 0x55;
    k[0x1ff] = 0xaa;
    memcpy(k + 0x202, "HdrS", 4);
    k[0x206] = 0x0f;
    k[0x207] = 0x02;
    k[0x211] = 0x01;                       /* LOADED_HIGH */
    k[0x22c] = 0xff; k[0x22d] = 0xff; k[0x22e] = 0xff; k[0x22f] = 0x7f;  /* initrd_addr_max */
    k[0x234] = 1;                          /* relocatable */
    k[0x236] = 0x03;                       /* XLF_KERNEL_64 | above 4G */
    k[0x238] = 0xff; k[0x239] = 0x07;      /* cmdline_size 2047 */
    k[0x260] = 0x00; k[0x261] = 0x00; k[0x262] = 0x40;  /* init_size 4 MiB */
    return k;
}

TEST(parses_a_valid_image)
{
    uint8_t *k = make_image(0x10000);
    struct bzimage_info info;
    const char *why = NULL;
    CHECK_EQ(bzimage_parse(k, BZIMAGE_HEAD_SIZE, 0x10000, &info, &why), 0);
    CHECK_EQ(info.setup_size, 4 * 512);
    CHECK_EQ(info.payload_size, 0x10000 - 4 * 512);
    CHECK_EQ(info.load_addr, X86_KERNEL_LOAD_ADDR);
    CHECK_EQ(info.entry64, X86_KERNEL_LOAD_ADDR + 0x200);
    CHECK_EQ(info.init_size, 0x400000);
    CHECK_EQ(info.cmdline_size, 2047);
    CHECK_EQ(info.initrd_addr_max, 0x7fffffff);
    CHECK(info.can_load_initrd_above_4g);
    free(k);
}

TEST(zero_setup_sects_means_four)
{
    uint8_t *k = make_image(0x10000);
    k[0x1f1] = 0;
    struct bzimage_info info;
    const char *why;
    CHECK_EQ(bzimage_parse(k, BZIMAGE_HEAD_SIZE, 0x10000, &info, &why), 0);
    CHECK_EQ(info.setup_size, 5 * 512);
    free(k);
}

TEST(non_relocatable_loads_at_pref_address)
{
    uint8_t *k = make_image(0x10000);
    k[0x234] = 0;
    k[0x25a] = 0x00; k[0x25b] = 0x01;      /* pref_address 0x1000000 */
    struct bzimage_info info;
    const char *why;
    CHECK_EQ(bzimage_parse(k, BZIMAGE_HEAD_SIZE, 0x10000, &info, &why), 0);
    CHECK_EQ(info.load_addr, 0x1000000);
    CHECK_EQ(info.entry64, 0x1000200);
    free(k);
}

static void expect_reject(uint8_t *k, size_t len, const char *fragment)
{
    struct bzimage_info info;
    const char *why = NULL;
    CHECK_EQ(bzimage_parse(k, len < BZIMAGE_HEAD_SIZE ? len : BZIMAGE_HEAD_SIZE, len, &info, &why),
             -ENOEXEC);
    CHECK_STR_CONTAINS(why, fragment);
}

TEST(rejects_bad_images)
{
    uint8_t *k = make_image(0x10000);
    expect_reject(k, 100, "too small");
    k[0x202] = 'X';
    expect_reject(k, 0x10000, "not a Linux bzImage");
    free(k);

    k = make_image(0x10000);
    k[0x1fe] = 0;
    expect_reject(k, 0x10000, "not a Linux bzImage");
    free(k);

    k = make_image(0x10000);
    k[0x206] = 0x0b;
    expect_reject(k, 0x10000, "older than 2.12");
    free(k);

    k = make_image(0x10000);
    k[0x236] = 0;
    expect_reject(k, 0x10000, "no 64-bit entry");
    free(k);

    k = make_image(0x10000);
    k[0x211] = 0;
    expect_reject(k, 0x10000, "below 1 MiB");
    free(k);

    k = make_image(0x10000);
    k[0x1f1] = 200;                /* 201 sectors > 64 KiB file */
    expect_reject(k, 0x10000, "past the end");
    free(k);

    k = make_image(0x10000);
    k[0x234] = 0;                  /* fixed kernel with pref_address 0 */
    expect_reject(k, 0x10000, "below 1 MiB");
    free(k);
}

TEST(init_size_never_below_payload)
{
    uint8_t *k = make_image(0x100000);
    k[0x260] = 0x10; k[0x261] = 0; k[0x262] = 0;
    struct bzimage_info info;
    const char *why;
    CHECK_EQ(bzimage_parse(k, BZIMAGE_HEAD_SIZE, 0x100000, &info, &why), 0);
    CHECK_EQ(info.init_size, info.payload_size);
    free(k);
}

/* The loader reads only the head of the file: the payload size comes from
 * the file's length, however large, not from the bytes read. */
TEST(parses_from_the_head_alone)
{
    uint8_t *k = make_image(BZIMAGE_HEAD_SIZE);
    struct bzimage_info info;
    const char *why;
    CHECK_EQ(bzimage_parse(k, BZIMAGE_HEAD_SIZE, 14ULL << 20, &info, &why), 0);
    CHECK_EQ(info.payload_size, (14u << 20) - 4 * 512);
    CHECK_EQ(info.init_size, (14u << 20) - 4 * 512);   /* init_size 4 MiB < payload */
    free(k);
}
