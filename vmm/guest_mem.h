/* Guest physical memory: boot RAM (anonymous memory, or a hugetlbfs memfd
 * with hugepages=SIZE) mapped into the VMM and registered as KVM memslots, plus the one checked door through which every
 * device and loader reaches guest memory. */
#ifndef MINIVMM_GUEST_MEM_H
#define MINIVMM_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/hugepages.h"

#define GUEST_MEM_MAX_REGIONS 16

struct mem_range {
    uint64_t gpa;
    uint64_t size;
};

struct guest_mem_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *hva;
    uint32_t slot;
};

struct guest_mem {
    int vm_fd;                  /* -1: no KVM (unit tests); memslots are skipped */
    int memfd;                  /* boot RAM as a memfd (hugetlbfs, shmem); -1: anonymous */
    uint64_t page_size;         /* the hugetlbfs page size, else 0 */
    uint8_t *map;               /* whole boot RAM mapping */
    uint64_t map_size;
    struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
    unsigned n_regions;
    uint32_t next_slot;
};

void guest_mem_init(struct guest_mem *gm, int vm_fd);

/* Maps memory of the ranges' total size as one piece and registers each
 * range as a memslot. Called once, before any vCPU runs. backing NULL or
 * thp/off: anonymous memory committed as the guest touches it, with
 * transparent huge pages (thp) or base pages (off); shmem: a memfd (huge
 * pages where the host's shmem_enabled allows); hugetlbfs pages
 * (every range a multiple of them) are all reserved from the host's pool
 * now, so that a short pool is an error here and never a fault later. */
int guest_mem_add_ram(struct guest_mem *gm, const struct mem_range *ranges, unsigned n,
                      const struct mem_backing *backing);

/* Host pointer for [gpa, gpa + len) if the whole range lies in one region;
 * NULL otherwise (including len == 0 past the end and gpa + len overflow). */
void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Copies; return 0 or -EFAULT when the range is not entirely guest RAM. */
int guest_mem_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len);
int guest_mem_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len);

/* Total boot RAM bytes. */
uint64_t guest_mem_ram_size(const struct guest_mem *gm);

void guest_mem_destroy(struct guest_mem *gm);

#endif
