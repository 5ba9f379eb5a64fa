#include "vmm/guest_mem.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/anon_mem.h"
#include "vmm/hugepages.h"
#include "vmm/log.h"
#include "vmm/size_parse.h"

void guest_mem_init(struct guest_mem *gm, int vm_fd)
{
    memset(gm, 0, sizeof(*gm));
    gm->vm_fd = vm_fd;
    gm->memfd = -1;
}

static int register_slot(struct guest_mem *gm, struct guest_mem_region *r)
{
    if (gm->vm_fd < 0)
        return 0;
    struct kvm_userspace_memory_region kr = {
        .slot = r->slot,
        .guest_phys_addr = r->gpa,
        .memory_size = r->size,
        .userspace_addr = (uint64_t)(uintptr_t)r->hva,
    };
    if (ioctl(gm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0) {
        int err = errno;
        log_error("KVM_SET_USER_MEMORY_REGION slot %u (gpa 0x%llx size 0x%llx): %s", r->slot,
                  (unsigned long long)r->gpa, (unsigned long long)r->size, strerror(err));
        return -err;
    }
    return 0;
}

/* Anonymous boot RAM: nothing else maps it and a reset builds it anew, so
 * it needs no file, and it gets transparent huge pages without a host
 * setting for shared memory (vmm/anon_mem.h). */
static int map_anonymous(struct guest_mem *gm, uint64_t total, bool thp)
{
    char why[200];
    void *map = anon_mem_map(total, thp, why, sizeof(why));
    if (!map) {
        int err = errno;
        log_error("guest RAM: %s", why);
        return -err;
    }
    gm->page_size = 0;
    gm->memfd = -1;
    gm->map = map;
    gm->map_size = total;
    return 0;
}

/* A memfd: hugetlbfs pages (page_size), or shmem (0) advised MADV_HUGEPAGE,
 * which gets huge pages where the host's shmem_enabled allows them. */
static int map_memfd(struct guest_mem *gm, uint64_t total, uint64_t page_size)
{
    char why[200];
    int fd = hugepages_memfd("minivmm-ram", page_size, 0, why, sizeof(why));
    if (fd < 0) {
        log_error("guest RAM (%llu MiB): %s", (unsigned long long)(total >> 20), why);
        return fd;
    }
    if (ftruncate(fd, (off_t)total) < 0) {
        int err = errno;
        log_error("ftruncate guest RAM memfd to %llu bytes: %s", (unsigned long long)total,
                  strerror(err));
        close(fd);
        return -err;
    }
    /* Huge pages: the mapping reserves every page (no MAP_NORESERVE), so a
     * pool too small fails here rather than as a SIGBUS in a vCPU or the
     * loader. shmem: pages are committed as the guest touches them. */
    int flags = MAP_SHARED | (page_size ? 0 : MAP_NORESERVE);
    void *map = mmap(NULL, total, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (map == MAP_FAILED) {
        int err = errno;
        char a[32];
        if (page_size)
            log_error("guest RAM: reserving %llu huge pages of %s: %s (the pool has %lld free; "
                      "see /proc/sys/vm/nr_hugepages or /sys/kernel/mm/hugepages)",
                      (unsigned long long)(total / page_size),
                      size_format(page_size, a, sizeof(a)), strerror(err),
                      hugepages_free(page_size));
        else
            log_error("mmap %llu bytes of guest RAM: %s", (unsigned long long)total,
                      strerror(err));
        close(fd);
        return -err;
    }
    /* Guest RAM never belongs in a core dump of the VMM. */
    madvise(map, total, MADV_DONTDUMP);
    if (!page_size)
        madvise(map, total, MADV_HUGEPAGE);     /* EINVAL without THP: base pages */

    gm->page_size = page_size;
    gm->memfd = fd;
    gm->map = map;
    gm->map_size = total;
    return 0;
}

int guest_mem_add_ram(struct guest_mem *gm, const struct mem_range *ranges, unsigned n,
                      const struct mem_backing *backing)
{
    uint64_t total = 0;
    uint64_t page_size = hugepages_size(backing);
    uint64_t align = page_size ? page_size : 0x1000;

    if (gm->map || n == 0 || n > GUEST_MEM_MAX_REGIONS || (align & (align - 1)))
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        if (ranges[i].size == 0 || (ranges[i].gpa | ranges[i].size) & (align - 1) ||
            ranges[i].gpa + ranges[i].size < ranges[i].gpa || total + ranges[i].size < total)
            return -EINVAL;
        total += ranges[i].size;
    }
    enum mem_backing_kind kind = backing ? backing->kind : MEM_BACKING_THP;
    int rc = page_size || kind == MEM_BACKING_SHMEM
                 ? map_memfd(gm, total, page_size)
                 : map_anonymous(gm, total, kind == MEM_BACKING_THP);
    if (rc < 0)
        return rc;

    uint64_t offset = 0;
    for (unsigned i = 0; i < n; i++) {
        struct guest_mem_region *r = &gm->regions[gm->n_regions];
        r->gpa = ranges[i].gpa;
        r->size = ranges[i].size;
        r->hva = gm->map + offset;
        r->slot = gm->next_slot++;
        offset += ranges[i].size;
        rc = register_slot(gm, r);
        if (rc < 0)
            return rc;
        gm->n_regions++;
    }
    return 0;
}

void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < gm->n_regions; i++) {
        const struct guest_mem_region *r = &gm->regions[i];
        /* Written as differences so no sum can overflow. */
        if (gpa < r->gpa)
            continue;
        uint64_t offset = gpa - r->gpa;
        if (offset >= r->size)
            continue;
        if (len > r->size - offset)
            return NULL;
        return r->hva + offset;
    }
    return NULL;
}

int guest_mem_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len)
{
    void *dst = guest_mem_ptr(gm, gpa, len);
    if (!dst)
        return -EFAULT;
    memcpy(dst, src, len);
    return 0;
}

int guest_mem_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len)
{
    const void *src = guest_mem_ptr(gm, gpa, len);
    if (!src)
        return -EFAULT;
    memcpy(dst, src, len);
    return 0;
}

uint64_t guest_mem_ram_size(const struct guest_mem *gm)
{
    return gm->map_size;
}

void guest_mem_destroy(struct guest_mem *gm)
{
    if (gm->map)
        munmap(gm->map, gm->map_size);
    if (gm->memfd >= 0)
        close(gm->memfd);
    gm->map = NULL;
    gm->memfd = -1;
    gm->n_regions = 0;
}
