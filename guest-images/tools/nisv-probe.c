/* nisv-probe: makes the arm64 guest access a guest-physical address through
 * /dev/mem with a chosen instruction, so a boot test can produce a data abort
 * KVM cannot decode (tests/boot/test_arm64_guest_errors.py).
 *
 *   nisv-probe ADDR ldr|ldp|stp
 *
 * ldr: one 64-bit load. It has a valid instruction syndrome (ISV = 1): KVM
 *      turns it into an MMIO exit, and the VMM answers it (minivmm: all-ones
 *      for an address nothing claims). The probe prints the value, so a test
 *      can show that the mapping works before it makes the abort.
 * ldp: a load pair, and stp: a store pair (of zeros). A load/store pair never
 *      has a syndrome (ISV = 0), so KVM cannot emulate it as MMIO: it returns
 *      KVM_EXIT_ARM_NISV to the VMM (or fails KVM_RUN with ENOSYS). minivmm
 *      stops the VM there, so these normally never return.
 *
 * /dev/mem with the kernel's STRICT_DEVMEM and IO_STRICT_DEVMEM (Debian's
 * arm64 kernels) maps only addresses that are not RAM and that no driver has
 * claimed: a hole in the address map, or the window of a device whose driver
 * is not loaded. It maps them as Device memory (not RAM: pgprot_noncached),
 * so every access reaches the hypervisor.
 *
 * Everything printed before the access is drained to the console first
 * (tcdrain): the VM may never run again once the access is made. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

/* The accesses, each at a global label, so the probe can print the address
 * of the very instruction (the binary is static, not PIE): a test compares
 * it with the PC the VMM reports. noinline: one copy of each label. */
#define ACCESS_FN(name, insn, ...)                                                    \
    __attribute__((noinline)) static void name(volatile uint64_t *p, uint64_t *out) \
    {                                                                               \
        uint64_t a = 0, b = 0;                                                      \
        __asm__ volatile(".globl " #name "_insn\n" #name "_insn:\n\t" insn          \
                         : "=&r"(a), "=&r"(b)                                       \
                         : "r"(p)                                                   \
                         : "memory");                                               \
        out[0] = a;                                                                 \
        out[1] = b;                                                                 \
    }                                                                               \
    extern const char name##_insn[]
ACCESS_FN(access_ldr, "ldr %0, [%2]");
ACCESS_FN(access_ldp, "ldp %0, %1, [%2]");
ACCESS_FN(access_stp, "stp xzr, xzr, [%2]");

static int usage(void)
{
    fprintf(stderr, "usage: nisv-probe ADDR ldr|ldp|stp\n");
    return 2;
}

/* What was printed reaches the console before the access is made. */
static void drain(void)
{
    fflush(stdout);
    fflush(stderr);
    if (isatty(STDOUT_FILENO))
        tcdrain(STDOUT_FILENO);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return usage();
    char *end;
    errno = 0;
    unsigned long long addr = strtoull(argv[1], &end, 0);
    if (errno || end == argv[1] || *end || addr % 16) {
        fprintf(stderr, "nisv-probe: ADDR '%s': want a 16-byte aligned number\n", argv[1]);
        return 2;
    }
    const char *op = argv[2];
    if (strcmp(op, "ldr") && strcmp(op, "ldp") && strcmp(op, "stp"))
        return usage();

    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) {
        fprintf(stderr, "nisv-probe: sysconf(_SC_PAGESIZE): %s\n", strerror(errno));
        return 1;
    }
    unsigned long long base = addr & ~(unsigned long long)(page - 1);
    int fd = open("/dev/mem", O_RDWR | O_SYNC);
    if (fd < 0) {
        fprintf(stderr, "nisv-probe: open /dev/mem: %s\n", strerror(errno));
        return 1;
    }
    void *map = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);
    if (map == MAP_FAILED) {
        fprintf(stderr, "nisv-probe: mmap /dev/mem at 0x%llx: %s\n", base, strerror(errno));
        return 1;
    }
    close(fd);
    volatile uint64_t *p = (volatile uint64_t *)((char *)map + (addr - base));

    void (*access)(volatile uint64_t *, uint64_t *) = access_ldr;
    const char *insn = access_ldr_insn;
    if (!strcmp(op, "ldp")) {
        access = access_ldp;
        insn = access_ldp_insn;
    } else if (!strcmp(op, "stp")) {
        access = access_stp;
        insn = access_stp_insn;
    }
    printf("NISV-PROBE-PC 0x%016" PRIxPTR "\n", (uintptr_t)insn);
    printf("NISV-PROBE %s at 0x%llx\n", op, addr);
    drain();
    uint64_t v[2];
    access(p, v);
    if (!strcmp(op, "ldr"))
        printf("NISV-PROBE-LDR 0x%016" PRIx64 "\n", v[0]);
    else
        printf("NISV-PROBE-RETURNED %s 0x%016" PRIx64 " 0x%016" PRIx64 "\n", op, v[0], v[1]);
    drain();
    return 0;
}
