#include "arch/x86_64/bzimage.h"

#include <asm/bootparam.h>
#include <errno.h>
#include <string.h>

#include "arch/x86_64/layout.h"

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16; }

int bzimage_parse(const uint8_t *head, size_t head_len, uint64_t file_len,
                  struct bzimage_info *info, const char **why)
{
    const uint8_t *image = head;
    memset(info, 0, sizeof(*info));
    if (file_len < BZIMAGE_HEAD_SIZE) {
        *why = "file too small to be a bzImage";
        return -ENOEXEC;
    }
    if (head_len < BZIMAGE_HEAD_SIZE) {
        *why = "internal error: less of the file read than its header";
        return -EINVAL;
    }
    if (le16(image + 0x1fe) != 0xaa55 || memcmp(image + 0x202, "HdrS", 4) != 0) {
        *why = "not a Linux bzImage (no boot sector signature or HdrS header)";
        return -ENOEXEC;
    }
    info->protocol = le16(image + 0x206);
    /* 2.12 added xloadflags, which is how a kernel says it has a 64-bit entry. */
    if (info->protocol < 0x020c) {
        *why = "boot protocol older than 2.12 (no 64-bit entry point)";
        return -ENOEXEC;
    }
    uint8_t xloadflags = image[0x236];
    if (!(xloadflags & XLF_KERNEL_64)) {
        *why = "kernel has no 64-bit entry point (not an x86_64 kernel?)";
        return -ENOEXEC;
    }
    uint8_t loadflags = image[0x211];
    if (!(loadflags & LOADED_HIGH)) {
        *why = "zImage kernels that load below 1 MiB are not supported";
        return -ENOEXEC;
    }
    unsigned setup_sects = image[0x1f1] ? image[0x1f1] : 4;
    info->setup_size = (size_t)(setup_sects + 1) * 512;
    if (info->setup_size >= file_len) {
        *why = "setup sectors extend past the end of the file";
        return -ENOEXEC;
    }
    info->payload_size = (size_t)(file_len - info->setup_size);

    int relocatable = image[0x234];
    uint64_t pref_address = (uint64_t)le32(image + 0x258) | (uint64_t)le32(image + 0x25c) << 32;
    /* A relocatable kernel moves itself to its alignment; a fixed one must sit
     * exactly at its preferred address. */
    info->load_addr = relocatable ? X86_KERNEL_LOAD_ADDR : pref_address;
    if (info->load_addr < X86_KERNEL_LOAD_ADDR) {
        *why = "kernel wants to load below 1 MiB";
        return -ENOEXEC;
    }
    info->entry64 = info->load_addr + 0x200;
    info->init_size = le32(image + 0x260);
    if (info->init_size < info->payload_size)
        info->init_size = info->payload_size;
    info->initrd_addr_max = le32(image + 0x22c);
    info->cmdline_size = le32(image + 0x238);
    info->can_load_initrd_above_4g = (xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G) != 0;
    return 0;
}
