/* What the user asked for, after parsing and validation; immutable once the VM
 * starts. */
#ifndef MINIVMM_CONFIG_H
#define MINIVMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/hugepages.h"
#include "vmm/sandbox/seccomp.h"

#define CONFIG_MIN_MEM      (32ULL << 20)
#define CONFIG_MAX_MEM      (1ULL << 40)
/* The most vCPUs is the arch's (arch_max_vcpus). */
#define CONFIG_MAX_CMDLINE  4096

#define CONFIG_MAX_VIRTIO_MEM 8
#define CONFIG_MAX_NUMA_NODES 64
#define CONFIG_VIRTIO_MEM_ID_MAX 31
#define CONFIG_VIRTIO_MEM_DEFAULT_BLOCK (2ULL << 20)
/* Regions are multiples of the guest's memory block (arch_guest_memory_block):
 * a region smaller or unaligned wastes the rest. */

/* One --virtio-mem device. */
struct virtio_mem_opts {
    char id[CONFIG_VIRTIO_MEM_ID_MAX + 1];
    uint64_t size;                 /* region size */
    uint64_t block_size;
    uint64_t slot_size;            /* slot=: KVM memslot size; 0: the layout's policy */
    uint64_t requested;            /* plugged at boot by the guest */
    unsigned node;
    struct mem_backing backing;    /* hugepages=: thp (default), off or a hugetlbfs size */
    bool prealloc;
    bool guard;                    /* userfaultfd guard: host memory <= plugged (default on) */
};

struct vm_config {
    const char *kernel_path;
    const char *initrd_path;       /* NULL: no initrd */
    const char *cmdline;           /* NULL: arch default */
    uint64_t mem_size;
    struct mem_backing mem_backing; /* --mem ...,hugepages=: thp (default), off or a size */
    unsigned ncpus;
    bool verbose;
    bool exit_on_reboot;           /* --on-reboot exit */
    enum seccomp_mode seccomp;     /* --seccomp on|log|off (default on) */
    const char *api_sock;          /* NULL: no API server */
    struct virtio_mem_opts virtio_mem[CONFIG_MAX_VIRTIO_MEM];
    unsigned n_virtio_mem;
};

#endif
