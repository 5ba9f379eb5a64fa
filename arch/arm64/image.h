/* The arm64 Linux Image header (Documentation/arch/arm64/booting.rst): the
 * 64 bytes at the start of an uncompressed kernel that say where it may be
 * loaded and how much memory it needs. Pure: no KVM, no I/O. */
#ifndef MINIVMM_ARCH_ARM64_IMAGE_H
#define MINIVMM_ARCH_ARM64_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARM64_IMAGE_HEADER_SIZE 64
#define ARM64_IMAGE_MAGIC_OFFSET 56
/* An Image's effective size beyond this is taken as a corrupt header: real
 * kernels need tens of MiB. */
#define ARM64_IMAGE_MAX_SIZE (1ULL << 30)
/* Kernels before v3.17 have image_size 0 and text_offset 0x80000. */
#define ARM64_IMAGE_LEGACY_TEXT_OFFSET 0x80000ULL

struct arm64_image_info {
    uint64_t text_offset;   /* load address = 2 MiB aligned base + text_offset */
    uint64_t image_size;    /* header's effective size; 0 for pre-3.17 kernels */
    uint64_t load_size;     /* bytes of the file to copy into guest memory */
    uint64_t footprint;     /* bytes from the load address the kernel needs free */
    unsigned page_size;     /* the kernel's page size; 0 when the header leaves it open */
    bool anywhere;          /* flags bit 3: the base may be anywhere in RAM */
};

/* Parses the header of an Image file of file_len bytes; header holds its
 * first header_len bytes (ARM64_IMAGE_HEADER_SIZE, or fewer when the file is
 * shorter). Returns 0, or -ENOEXEC with a one-line reason in *why (the
 * caller prefixes the option and path). */
int arm64_image_parse(const uint8_t *header, size_t header_len, uint64_t file_len,
                      struct arm64_image_info *out, const char **why);

#endif
