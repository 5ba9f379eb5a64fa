#include "arch/arm64/image.h"

#include <errno.h>
#include <string.h>

#include "arch/arm64/layout.h"

/* Header fields, little endian (booting.rst: "As of v3.17, all fields are
 * little endian unless stated otherwise"). */
#define HDR_TEXT_OFFSET 8
#define HDR_IMAGE_SIZE 16
#define HDR_FLAGS 24

#define FLAG_BIG_ENDIAN (1ULL << 0)
#define FLAG_PAGE_SIZE_SHIFT 1
#define FLAG_PAGE_SIZE_MASK 3ULL
#define FLAG_PHYS_ANYWHERE (1ULL << 3)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int arm64_image_parse(const uint8_t *header, size_t header_len, uint64_t file_len,
                      struct arm64_image_info *out, const char **why)
{
    static const uint8_t magic[4] = {'A', 'R', 'M', 0x64};

    memset(out, 0, sizeof(*out));
    if (header_len < ARM64_IMAGE_HEADER_SIZE || file_len < ARM64_IMAGE_HEADER_SIZE) {
        *why = "too short for an arm64 Image header (64 bytes): truncated?";
        return -ENOEXEC;
    }
    if (memcmp(header + ARM64_IMAGE_MAGIC_OFFSET, magic, sizeof(magic)) != 0) {
        /* The usual mistakes: an x86 bzImage, a gzip'ed Image.gz, a vmlinux ELF. */
        if (header[0] == 0x1f && header[1] == 0x8b)
            *why = "a gzip file (Image.gz?): minivmm loads the uncompressed arm64 Image";
        else if (!memcmp(header, "\177ELF", 4))
            *why = "an ELF file (vmlinux?): minivmm loads the arm64 Image, not vmlinux";
        else
            *why = "not an arm64 Linux Image (no \"ARM\\x64\" magic at offset 56)";
        return -ENOEXEC;
    }
    uint64_t text_offset = le64(header + HDR_TEXT_OFFSET);
    uint64_t image_size = le64(header + HDR_IMAGE_SIZE);
    uint64_t flags = le64(header + HDR_FLAGS);

    if (image_size == 0) {
        /* Before v3.17 the fields had the kernel's own endianness and no
         * flags existed; text_offset "can be assumed to be 0x80000", which
         * reads byte-swapped from a big-endian kernel. */
        if (text_offset == __builtin_bswap64(ARM64_IMAGE_LEGACY_TEXT_OFFSET)) {
            *why = "a big-endian kernel (pre-3.17 Image with a big-endian text_offset): "
                   "minivmm runs little-endian guests only";
            return -ENOEXEC;
        }
        text_offset = ARM64_IMAGE_LEGACY_TEXT_OFFSET;
        flags = 0;
    }
    if (flags & FLAG_BIG_ENDIAN) {
        *why = "a big-endian kernel (Image flags bit 0): minivmm runs little-endian guests only";
        return -ENOEXEC;
    }
    if (text_offset % 4096 || text_offset >= ARM64_KERNEL_ALIGN) {
        *why = "malformed Image header: text_offset is not a 4 KiB multiple below 2 MiB";
        return -ENOEXEC;
    }
    if (image_size > ARM64_IMAGE_MAX_SIZE) {
        *why = "malformed Image header: image_size is over 1 GiB";
        return -ENOEXEC;
    }

    out->text_offset = text_offset;
    out->image_size = image_size;
    /* image_size covers everything up to the end of BSS. A file longer than
     * that carries data after the image (an appended signature): only the
     * image is loaded. */
    out->load_size = image_size && image_size < file_len ? image_size : file_len;
    /* Without image_size the kernel's needs are unknown ("effectively
     * unbound"): the file is all that can be checked, and the loader keeps
     * the initrd and DTB at the top of RAM, away from it. */
    out->footprint = image_size ? image_size : file_len;
    static const unsigned page_sizes[4] = {0, 4096, 16384, 65536};
    out->page_size = page_sizes[(flags >> FLAG_PAGE_SIZE_SHIFT) & FLAG_PAGE_SIZE_MASK];
    out->anywhere = (flags & FLAG_PHYS_ANYWHERE) != 0;
    return 0;
}
