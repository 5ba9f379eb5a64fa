/* How guest memory is backed (the hugepages= option of --mem and
 * --virtio-mem): anonymous memory with transparent huge pages (the default),
 * anonymous memory with base pages only, or the host's hugetlbfs pools
 * through memfd_create(MFD_HUGETLB), so no hugetlbfs mount is needed. */
#ifndef MINIVMM_HUGEPAGES_H
#define MINIVMM_HUGEPAGES_H

#include <stddef.h>
#include <stdint.h>

enum mem_backing_kind {
    /* hugepages=thp (default): private anonymous memory advised
     * MADV_HUGEPAGE, so the host backs it with transparent huge pages
     * wherever /sys/kernel/mm/transparent_hugepage/enabled is "always" or
     * "madvise" (Debian's default is "always") and with base pages where
     * it is "never". Nothing shares guest memory, so it needs no file. */
    MEM_BACKING_THP = 0,
    /* hugepages=off: the same memory advised MADV_NOHUGEPAGE. */
    MEM_BACKING_BASE,
    /* hugepages=shmem (virtio-mem's default): a memfd of base pages, advised
     * MADV_HUGEPAGE, so shmem's huge pages where the host's
     * transparent_hugepage/shmem_enabled allows them (advise, within_size or
     * always; Debian: never). A plug backs blocks through the file
     * (fallocate), which never holds the mm's lock and uses whatever pages
     * are free, where populating anonymous huge pages was measured 80 times
     * slower in a nested test host (docs/performance.md). */
    MEM_BACKING_SHMEM,
    /* hugepages=SIZE: hugetlbfs pages of page_size from the host's pool. */
    MEM_BACKING_HUGETLB,
};

struct mem_backing {
    enum mem_backing_kind kind;
    uint64_t page_size;         /* MEM_BACKING_HUGETLB only */
};

/* Parses a hugepages= value of len bytes: "thp", "off", "shmem" or a huge page size
 * (hugepages_check). Returns 0, or -EINVAL with a static reason in *why. */
int hugepages_parse(const char *text, size_t len, struct mem_backing *out, const char **why);

/* The hugetlbfs page size of a backing, 0 for anonymous memory (b may be
 * NULL: the default). */
uint64_t hugepages_size(const struct mem_backing *b);

/* Checks a hugepages= size: a power of two from 64K to 16G (whether the
 * host has a pool of that size is found when the memory is created).
 * Returns 0, or -EINVAL with a static reason in *why. */
int hugepages_check(uint64_t page_size, const char **why);

/* memfd_create(name) backed by pages of page_size (0: base pages), with
 * MFD_CLOEXEC and extra_flags. Returns the descriptor, or -errno with a
 * one-line reason in err (naming the pool when the host lacks it). */
int hugepages_memfd(const char *name, uint64_t page_size, unsigned extra_flags, char *err,
                    size_t errlen);

/* Free pages in the host's pool of page_size (sysfs), or -1 if unknown.
 * For error messages and tests; the pool can change at any time. */
long long hugepages_free(uint64_t page_size);

#endif
