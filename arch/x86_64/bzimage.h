/* Linux bzImage parsing and placement per Documentation/x86/boot.rst, 64-bit
 * boot protocol (no real-mode setup code runs). */
#ifndef MINIVMM_ARCH_X86_64_BZIMAGE_H
#define MINIVMM_ARCH_X86_64_BZIMAGE_H

#include <stddef.h>
#include <stdint.h>

struct bzimage_info {
    uint16_t protocol;          /* e.g. 0x020f */
    size_t setup_size;          /* boot sector + real-mode setup, skipped */
    size_t payload_size;        /* protected-mode kernel bytes */
    uint64_t load_addr;         /* where the protected-mode kernel goes */
    uint64_t entry64;           /* 64-bit entry point */
    uint64_t init_size;         /* memory the kernel needs from load_addr */
    uint32_t initrd_addr_max;   /* highest byte address an initrd may use */
    uint32_t cmdline_size;      /* longest command line, without the NUL */
    int can_load_initrd_above_4g;
};

/* How much of the file's start bzimage_parse needs: the boot sector and the
 * setup header (which ends before 0x302). The loader reads only this much
 * into its own memory; the protected-mode kernel goes straight into guest
 * memory. */
#define BZIMAGE_HEAD_SIZE 0x1000

/* Validates a bzImage from its first head_len bytes (at least
 * min(file_len, BZIMAGE_HEAD_SIZE)) and the file's length. Returns 0, or
 * -ENOEXEC with *why set to a static explanation. */
int bzimage_parse(const uint8_t *head, size_t head_len, uint64_t file_len,
                  struct bzimage_info *info, const char **why);

#endif
