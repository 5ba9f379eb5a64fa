/* Anonymous guest memory (hugepages=thp, the default, and hugepages=off):
 * private memory of the VMM that nothing else maps, so it needs no file. It
 * gets transparent huge pages without any host setting beyond THP itself
 * (enabled "always" or "madvise"), where shared memory (a memfd) would need
 * /sys/kernel/mm/transparent_hugepage/shmem_enabled, which Debian leaves at
 * "never". The mapping starts on a huge page boundary so that the
 * guest-physical 2 MiB frames of a memslot (themselves 2 MiB aligned) fall
 * on host huge pages, which KVM needs to map them with huge stage-2 pages.
 * Discarding (MADV_DONTNEED) frees the pages, and a range of whole huge
 * pages frees them whole. */
#ifndef MINIVMM_ANON_MEM_H
#define MINIVMM_ANON_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The host's transparent huge page size (hpage_pmd_size: 2 MiB on x86_64
 * and on arm64 with 4 KiB pages), or 0 when the kernel has none. Read once;
 * call it first before a seccomp filter that forbids opening files. */
uint64_t anon_mem_thp_size(void);

/* Maps size bytes (MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE), aligned to the
 * THP size, advised MADV_HUGEPAGE (thp) or MADV_NOHUGEPAGE, and
 * MADV_DONTDUMP. Returns the address, or NULL with errno set and a reason
 * in why. */
void *anon_mem_map(uint64_t size, bool thp, char *why, size_t whylen);

/* Whether this kernel has MADV_POPULATE_WRITE (Linux 5.14), which backs a
 * range now and reports a host out of memory as an error, not a SIGBUS. */
bool anon_mem_can_populate(void);

/* Backs [p, p + len) now (MADV_POPULATE_WRITE). Returns 0 or -errno
 * (-ENOMEM when the host cannot). */
int anon_mem_populate(void *p, uint64_t len);

/* Frees [p, p + len) (MADV_DONTNEED); it reads as zeros afterwards. */
int anon_mem_discard(void *p, uint64_t len);

/* Bytes of [p, p + len) that have host memory now (mincore; a page that
 * only maps the shared zero page counts too, so this never undercounts). */
uint64_t anon_mem_resident(const void *p, uint64_t len);

#endif
