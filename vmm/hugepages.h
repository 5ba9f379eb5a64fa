/* Huge page backing: guest memory from the host's hugetlbfs pools, through
 * memfd_create(MFD_HUGETLB), so no hugetlbfs mount is needed. A page size of
 * 0 everywhere means the host's base pages (shmem). */
#ifndef MINIVMM_HUGEPAGES_H
#define MINIVMM_HUGEPAGES_H

#include <stddef.h>
#include <stdint.h>

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
