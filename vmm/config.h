/* What the user asked for, after parsing and validation; immutable once the VM
 * starts. */
#ifndef MINIVMM_CONFIG_H
#define MINIVMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_MIN_MEM      (32ULL << 20)
#define CONFIG_MAX_MEM      (1ULL << 40)
#define CONFIG_MAX_CPUS     255    /* xAPIC ids in the MADT; x2APIC would lift it */
#define CONFIG_MAX_CMDLINE  4096

struct vm_config {
    const char *kernel_path;
    const char *initrd_path;       /* NULL: no initrd */
    const char *cmdline;           /* NULL: arch default */
    uint64_t mem_size;
    unsigned ncpus;
    bool verbose;
};

#endif
