#include "vmm/anon_mem.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define BASE_PAGE 4096ULL

uint64_t anon_mem_thp_size(void)
{
    static uint64_t cached;
    static bool known;
    if (__atomic_load_n(&known, __ATOMIC_ACQUIRE))
        return cached;
    uint64_t size = 0;
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "re");
    if (f) {
        unsigned long long v;
        if (fscanf(f, "%llu", &v) == 1 && v >= BASE_PAGE && !(v & (v - 1)))
            size = v;
        fclose(f);
    }
    cached = size;
    __atomic_store_n(&known, true, __ATOMIC_RELEASE);
    return size;
}

void *anon_mem_map(uint64_t size, bool thp, char *why, size_t whylen)
{
    uint64_t align = anon_mem_thp_size();
    if (align < BASE_PAGE)
        align = BASE_PAGE;
    /* Over-allocate by one huge page and trim both ends: mmap aligns
     * anonymous memory to base pages only. */
    uint64_t span = size + align - BASE_PAGE;
    if (span < size) {
        snprintf(why, whylen, "%llu bytes do not fit the address space",
                 (unsigned long long)size);
        errno = ENOMEM;
        return NULL;
    }
    uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
        int err = errno;
        snprintf(why, whylen, "mmap of %llu MiB of anonymous memory: %s",
                 (unsigned long long)(size >> 20), strerror(err));
        errno = err;
        return NULL;
    }
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    if (raw + span > p + size)
        munmap(p + size, (size_t)(raw + span - (p + size)));
    /* EINVAL: a kernel without THP; the memory works with base pages. */
    if (madvise(p, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) < 0 && errno != EINVAL) {
        int err = errno;
        snprintf(why, whylen, "madvise(%s) on %llu MiB: %s",
                 thp ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE", (unsigned long long)(size >> 20),
                 strerror(err));
        munmap(p, size);
        errno = err;
        return NULL;
    }
    /* Guest memory never belongs in a core dump of the VMM. */
    madvise(p, size, MADV_DONTDUMP);
    return p;
}

bool anon_mem_can_populate(void)
{
    /* The kernel checks the advice before the (empty) range. */
    return madvise((void *)0, 0, MADV_POPULATE_WRITE) == 0;
}

int anon_mem_populate(void *p, uint64_t len)
{
    int rc;
    do
        rc = madvise(p, len, MADV_POPULATE_WRITE);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return 0;
    /* EFAULT: the range met a SIGBUS (out of memory for it); ENOMEM: out of
     * memory or a hole in the mapping (not ours: the mapping is whole). */
    return errno == EFAULT ? -ENOMEM : -errno;
}

int anon_mem_discard(void *p, uint64_t len)
{
    return madvise(p, len, MADV_DONTNEED) == 0 ? 0 : -errno;
}

uint64_t anon_mem_resident(const void *p, uint64_t len)
{
    /* 64 MiB per call with 4 KiB pages: a 64 GiB region is 1024 calls. */
    unsigned char vec[16384];
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t total = 0;
    const uint8_t *at = p;
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done;
        if (n > sizeof(vec) * page)
            n = sizeof(vec) * page;
        uint64_t pages = (n + page - 1) / page;
        if (mincore((void *)(at + done), n, vec) == 0) {
            for (uint64_t i = 0; i < pages; i++)
                total += (vec[i] & 1) * page;
        } else {
            total += n;     /* unknown: never undercount */
        }
        done += n;
    }
    return total;
}
