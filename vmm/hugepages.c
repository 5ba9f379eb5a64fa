#include "vmm/hugepages.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/size_parse.h"

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif

#define HUGEPAGES_MIN (64ULL << 10)     /* arm64's contiguous 64K pages */
#define HUGEPAGES_MAX (16ULL << 30)     /* ppc64's 16G pages; nothing larger exists */

int hugepages_check(uint64_t page_size, const char **why)
{
    if (page_size < HUGEPAGES_MIN || page_size > HUGEPAGES_MAX || (page_size & (page_size - 1))) {
        *why = "a huge page size is a power of two from 64K to 16G (2M or 1G on x86_64)";
        return -EINVAL;
    }
    return 0;
}

int hugepages_parse(const char *text, size_t len, struct mem_backing *out, const char **why)
{
    char buf[32];
    if (len >= sizeof(buf)) {
        *why = "expected thp, off, shmem or a huge page size such as 2M or 1G";
        return -EINVAL;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (!strcmp(buf, "thp")) {
        *out = (struct mem_backing){.kind = MEM_BACKING_THP};
        return 0;
    }
    if (!strcmp(buf, "off")) {
        *out = (struct mem_backing){.kind = MEM_BACKING_BASE};
        return 0;
    }
    if (!strcmp(buf, "shmem")) {
        *out = (struct mem_backing){.kind = MEM_BACKING_SHMEM};
        return 0;
    }
    uint64_t size;
    if (size_parse(buf, &size, why) != 0) {
        *why = "expected thp, off, shmem or a huge page size such as 2M or 1G";
        return -EINVAL;
    }
    if (hugepages_check(size, why) != 0)
        return -EINVAL;
    *out = (struct mem_backing){.kind = MEM_BACKING_HUGETLB, .page_size = size};
    return 0;
}

uint64_t hugepages_size(const struct mem_backing *b)
{
    return b && b->kind == MEM_BACKING_HUGETLB ? b->page_size : 0;
}

static void pool_dir(uint64_t page_size, char *buf, size_t len)
{
    snprintf(buf, len, "/sys/kernel/mm/hugepages/hugepages-%llukB",
             (unsigned long long)(page_size >> 10));
}

long long hugepages_free(uint64_t page_size)
{
    char path[128];
    pool_dir(page_size, path, sizeof(path));
    strncat(path, "/free_hugepages", sizeof(path) - strlen(path) - 1);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long long n = -1;
    if (fscanf(f, "%lld", &n) != 1)
        n = -1;
    fclose(f);
    return n;
}

int hugepages_memfd(const char *name, uint64_t page_size, unsigned extra_flags, char *err,
                    size_t errlen)
{
    unsigned flags = MFD_CLOEXEC | extra_flags;
    if (page_size)
        flags |= MFD_HUGETLB | ((unsigned)__builtin_ctzll(page_size) << MFD_HUGE_SHIFT);
    int fd = memfd_create(name, flags);
    if (fd >= 0)
        return fd;
    int e = errno;
    char sz[32], dir[128];
    size_format(page_size, sz, sizeof(sz));
    pool_dir(page_size, dir, sizeof(dir));
    /* No system call here to find out more: a rebuilt VM's devices are
     * created under the control thread's seccomp filter. */
    if (!page_size)
        snprintf(err, errlen, "memfd_create: %s", strerror(e));
    else if (e == ENODEV || e == EINVAL)
        snprintf(err, errlen, "memfd_create with %s huge pages: %s (the host has no pool of %s "
                 "pages: %s)", sz, strerror(e), sz, dir);
    else
        snprintf(err, errlen, "memfd_create with %s huge pages: %s", sz, strerror(e));
    return -e;
}
