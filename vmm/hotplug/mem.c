#include "vmm/hotplug/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/anon_mem.h"
#include "vmm/bitmap.h"
#include "vmm/clock.h"
#include "vmm/hugepages.h"
#include "vmm/log.h"
#include "vmm/test_hooks.h"

#define PAGE_SIZE_MIN 4096ULL
/* What one first touch of a plugged block backs (at least one host page):
 * large enough that a guest streaming through new memory costs one guard
 * round trip per 2 MiB, small enough that a 1 GiB block of base pages is
 * not zeroed for one page. */
#define FAULT_CHUNK (2ULL << 20)
/* What a prealloc plug populates per fallocate call (at least one host
 * page): about 10-30 ms of zeroing on current hosts, so a plug of 65535
 * blocks notices a cancel (a reset, teardown) within that. */
#define POPULATE_CHUNK (64ULL << 20)
/* What one MADV_POPULATE_WRITE call populates: 2 MiB (one huge page) is
 * ~0.1-1 ms of zeroing, so the mm's lock is never held longer than that. */
#define POPULATE_STEP (2ULL << 20)
/* KVM's slot field carries the address space in its upper 16 bits. */
#define KVM_SLOT_ID_LIMIT 0x10000ULL

static unsigned long long mib(uint64_t bytes)
{
    return (unsigned long long)(bytes >> 20);
}

static int kvm_set_slot(const struct hotplug_mem *hm, uint32_t s, bool on)
{
    if (hm->vm_fd < 0)
        return 0;
    struct kvm_userspace_memory_region kr = {
        .slot = hm->first_slot + s,
        .guest_phys_addr = hm->gpa + (uint64_t)s * hm->slot_size,
        .memory_size = on ? hm->slot_size : 0,
        .userspace_addr = (uint64_t)(uintptr_t)(hm->hva + (uint64_t)s * hm->slot_size),
    };
    if (ioctl(hm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0) {
        int err = errno;
        log_error("%s: KVM_SET_USER_MEMORY_REGION slot %u gpa 0x%llx%s: %s", hm->name, kr.slot,
                  (unsigned long long)kr.guest_phys_addr, on ? "" : " (delete)", strerror(err));
        return -err;
    }
    return 0;
}

/* Registers slot s with KVM, or removes it, and keeps slot_live and
 * slots_registered in step. */
static int set_slot(struct hotplug_mem *hm, uint32_t s, bool on)
{
    if (hm->slot_live[s] == on)
        return 0;
    int rc = kvm_set_slot(hm, s, on);
    if (rc)
        return rc;
    hm->slot_live[s] = on;
    if (on)
        __atomic_add_fetch(&hm->slots_registered, 1, __ATOMIC_RELAXED);
    else
        __atomic_sub_fetch(&hm->slots_registered, 1, __ATOMIC_RELAXED);
    return 0;
}

/* Hands [offset, offset + len) back to the host. Anonymous memory:
 * MADV_DONTNEED frees the pages (whole huge pages when the range holds
 * them whole, which the block size guarantees with THP). A memfd: punching
 * a hole frees its pages; MADV_DONTNEED would only drop this mapping's view
 * of a shared page and free nothing. Either way the pages are unmapped
 * from every mapping, KVM's included (its MMU notifier zaps the stage-2
 * entries). */
static int discard(const struct hotplug_mem *hm, uint64_t offset, uint64_t len)
{
    int err;
    if (hm->memfd < 0) {
        err = -anon_mem_discard(hm->hva + offset, len);
        if (!err)
            return 0;
    } else {
        if (fallocate(hm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
                      (off_t)len) == 0)
            return 0;
        err = errno;
        if (err == EOPNOTSUPP || err == ENOSYS) {
            if (madvise(hm->hva + offset, len, MADV_REMOVE) == 0)
                return 0;
            err = errno;
        }
    }
    log_error("%s: discarding %llu MiB at offset 0x%llx: %s", hm->name, mib(len),
              (unsigned long long)offset, strerror(err));
    return -err;
}

static int uffd_range(int uffd, unsigned long request, uint8_t *p, uint64_t len)
{
    struct uffdio_range range = {.start = (uint64_t)(uintptr_t)p, .len = len};
    if (request == UFFDIO_UNREGISTER)
        return ioctl(uffd, UFFDIO_UNREGISTER, &range);
    struct uffdio_register reg = {.range = range, .mode = UFFDIO_REGISTER_MODE_MISSING};
    return ioctl(uffd, UFFDIO_REGISTER, &reg);
}

/* Backs [offset, offset + len) of anonymous memory through the mapping
 * (MADV_POPULATE_WRITE), which makes transparent huge pages where the
 * range holds them whole. The guard's userfaultfd would stop that populate
 * at the first missing page and could only fill it with base pages, so the
 * range leaves its watch meanwhile: unregistering splits the mapping's VMA
 * and registering again merges it back. The caller makes sure nothing can
 * be plugged or unplugged there meanwhile (the range is being plugged, or
 * it is the guard's populate in flight, which an unplug waits for), and a
 * fault there in the window is the guest
 * touching memory it is being given; faults in flight when the range is
 * registered again finish first (registering takes the mm's write lock). */
static int populate_anon(const struct hotplug_mem *hm, uint64_t offset, uint64_t len)
{
    uint8_t *p = hm->hva + offset;
    if (hm->uffd >= 0 && uffd_range(hm->uffd, UFFDIO_UNREGISTER, p, len) < 0) {
        int err = errno;
        log_error("%s: taking %llu MiB at offset 0x%llx out of the guard's watch to back "
                  "it: %s", hm->name, mib(len), (unsigned long long)offset, strerror(err));
        return err == ENOMEM ? -ENOMEM : -err;
    }
    /* MADV_POPULATE_WRITE holds the mm's lock (read) for its whole range,
     * and any mmap or munmap of the process (a thread's stack, a large
     * malloc) waits for it, and with it every later page fault of a vCPU:
     * so the range is populated in short steps, each releasing the lock. */
    int rc = 0;
    for (uint64_t done = 0; done < len && !rc; done += POPULATE_STEP) {
        uint64_t n = len - done < POPULATE_STEP ? len - done : POPULATE_STEP;
        rc = anon_mem_populate(p + done, n);
    }
    if (hm->uffd >= 0 && uffd_range(hm->uffd, UFFDIO_REGISTER, p, len) < 0) {
        int err = errno;
        /* Unwatched, a later touch after an unplug could be backed: the
         * range goes and becomes inaccessible, so such a touch stops the VM
         * (KVM_RUN fails) instead of allocating. */
        anon_mem_discard(p, len);
        int prot = mprotect(p, len, PROT_NONE);
        log_error("%s: the guard cannot watch %llu MiB at offset 0x%llx again: %s; %s",
                  hm->name, mib(len), (unsigned long long)offset, strerror(err),
                  prot == 0 ? "the range is inaccessible from now on"
                            : "and it cannot be made inaccessible either");
        return -EIO;
    }
    return rc;
}

/* Allocates every page of [offset, offset + len) now (a memfd through the
 * file, not the mapping the guard watches; anonymous memory as
 * populate_anon says), so a host without the memory says so here as an
 * error (a plug answered BUSY) instead of a SIGBUS in a vCPU later. In chunks of POPULATE_CHUNK, so
 * that a non-zero *cancel (may be NULL) stops it within one chunk
 * (-ECANCELED; the caller discards what was populated). */
static int populate(const struct hotplug_mem *hm, uint64_t offset, uint64_t len,
                    const _Atomic uint32_t *cancel)
{
    uint64_t chunk = POPULATE_CHUNK > hm->page_size ? POPULATE_CHUNK : hm->page_size;
    for (uint64_t done = 0; done < len;) {
        if (cancel && atomic_load_explicit(cancel, memory_order_relaxed))
            return -ECANCELED;
        uint64_t n = len - done < chunk ? len - done : chunk;
        int rc;
        if (hm->memfd < 0) {
            rc = populate_anon(hm, offset + done, n);
        } else {
            do
                rc = fallocate(hm->memfd, 0, (off_t)(offset + done), (off_t)n);
            while (rc < 0 && errno == EINTR);
            if (rc < 0)
                rc = errno == ENOMEM || errno == ENOSPC ? -ENOMEM : -errno;
        }
        if (rc < 0) {
            log_warn("%s: backing %llu MiB at offset 0x%llx: %s", hm->name, mib(n),
                     (unsigned long long)(offset + done), strerror(-rc));
            return rc;
        }
        done += n;
    }
    return 0;
}

int hotplug_mem_init(struct hotplug_mem *hm, int vm_fd, const char *name, uint64_t gpa,
                     uint64_t size, uint64_t slot_size, uint64_t block_size,
                     uint32_t first_slot, const struct mem_backing *backing, bool prealloc)
{
    uint64_t page_size = hugepages_size(backing);
    memset(hm, 0, sizeof(*hm));
    hm->vm_fd = vm_fd;
    hm->memfd = -1;
    hm->uffd = -1;
    hm->gpa = gpa;
    hm->size = size;
    hm->slot_size = slot_size;
    hm->block_size = block_size;
    hm->page_size = page_size ? page_size : PAGE_SIZE_MIN;
    hm->first_slot = first_slot;
    hm->prealloc = prealloc;
    snprintf(hm->name, sizeof(hm->name), "%s", name ? name : "hotplug-mem");

    if (slot_size < PAGE_SIZE_MIN || (slot_size & (slot_size - 1)) || size == 0 ||
        size % slot_size || gpa % slot_size || gpa + size < gpa || size > (uint64_t)INT64_MAX ||
        block_size < PAGE_SIZE_MIN || (block_size & (block_size - 1)) || slot_size % block_size ||
        (hm->page_size & (hm->page_size - 1)) || block_size % hm->page_size) {
        log_error("%s: region gpa 0x%llx size 0x%llx is not a non-empty multiple of the "
                  "slot size 0x%llx (a power of two >= 4 KiB, a multiple of the block size "
                  "0x%llx, itself of the page size 0x%llx) inside the address space",
                  hm->name, (unsigned long long)gpa, (unsigned long long)size,
                  (unsigned long long)slot_size, (unsigned long long)block_size,
                  (unsigned long long)hm->page_size);
        return -EINVAL;
    }
    uint64_t n_slots = size / slot_size;
    uint64_t slot_limit = KVM_SLOT_ID_LIMIT;
    if (vm_fd >= 0) {
        int nr = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
        if (nr > 0 && (uint64_t)nr < slot_limit)
            slot_limit = (uint64_t)nr;
    }
    if (first_slot >= slot_limit || n_slots > slot_limit - first_slot) {
        log_error("%s: %llu memslots of %llu MiB from slot %u exceed the %llu KVM offers; "
                  "use a larger slot size",
                  hm->name, (unsigned long long)n_slots, mib(slot_size), first_slot,
                  (unsigned long long)slot_limit);
        return -EINVAL;
    }
    hm->n_slots = (uint32_t)n_slots;

    hm->slot_plugged = calloc(n_slots, sizeof(*hm->slot_plugged));
    hm->slot_live = calloc(n_slots, sizeof(*hm->slot_live));
    hm->block_plugged = calloc(bitmap_words(size / block_size), sizeof(uint64_t));
    if (!hm->slot_plugged || !hm->slot_live || !hm->block_plugged) {
        log_error("%s: cannot allocate bookkeeping for %llu slots", hm->name,
                  (unsigned long long)n_slots);
        hotplug_mem_destroy(hm);
        return -ENOMEM;
    }

    pthread_mutex_init(&hm->backing_lock, NULL);
    pthread_cond_init(&hm->populated, NULL);
    hm->backing_lock_ready = true;

    /* Anonymous memory for thp and off, unless blocks are backed when
     * plugged and this kernel cannot populate anonymous memory with an
     * error instead of a SIGBUS (before Linux 5.14): then, as for shmem, a
     * memfd of base pages populated with fallocate. */
    enum mem_backing_kind kind = backing ? backing->kind : MEM_BACKING_THP;
    uint64_t thp_size = anon_mem_thp_size();
    bool huge_blocks = thp_size && block_size >= thp_size;
    bool anon = (kind == MEM_BACKING_THP || kind == MEM_BACKING_BASE) &&
                (!prealloc || anon_mem_can_populate());
    if (anon) {
        hm->thp = kind == MEM_BACKING_THP && huge_blocks;
        char why[200];
        hm->hva = anon_mem_map(size, hm->thp, why, sizeof(why));
        if (!hm->hva) {
            int err = errno;
            log_error("%s: %s", hm->name, why);
            hotplug_mem_destroy(hm);
            return -err;
        }
        return 0;
    }
    if (!page_size && kind != MEM_BACKING_SHMEM)
        log_info("%s: this kernel has no MADV_POPULATE_WRITE (Linux 5.14): backing the region "
                 "with a shmem memfd of base pages", hm->name);

    /* Sealing lets nobody (not even a bug here) shrink the file under the
     * mapping, which would turn guest accesses into SIGBUS. */
    char why[200];
    int fd = hugepages_memfd("minivmm-hotplug", page_size, MFD_ALLOW_SEALING, why, sizeof(why));
    if (fd < 0) {
        log_error("%s: %s", hm->name, why);
        hotplug_mem_destroy(hm);
        return fd;
    }
    hm->memfd = fd;
    int err = 0;
    const char *what = "ftruncate";
    if (ftruncate(fd, (off_t)size) < 0) {
        err = errno;
        goto fail;
    }
    what = "F_ADD_SEALS";
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
        err = errno;
        goto fail;
    }
    /* MAP_NORESERVE: an unplugged terabyte costs neither memory nor commit,
     * and with huge pages none is reserved from the pool. */
    what = "mmap";
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (map == MAP_FAILED) {
        err = errno;
        goto fail;
    }
    hm->hva = map;
    /* Guest memory never belongs in a core dump of the VMM. */
    if (madvise(map, size, MADV_DONTDUMP) < 0)
        log_warn("%s: MADV_DONTDUMP: %s", hm->name, strerror(errno));
    /* shmem: huge pages where shmem_enabled allows them (advise, within_size,
     * always), and only when blocks hold them whole. EINVAL: no THP here. */
    if (kind == MEM_BACKING_SHMEM && huge_blocks) {
        if (madvise(map, size, MADV_HUGEPAGE) == 0)
            hm->thp = true;
        else if (errno != EINVAL)
            log_warn("%s: MADV_HUGEPAGE: %s", hm->name, strerror(errno));
    }
    return 0;

fail:
    log_error("%s: %s for %llu MiB of hotpluggable memory: %s", hm->name, what, mib(size),
              strerror(err));
    hotplug_mem_destroy(hm);
    return -err;
}

static int check_range(const struct hotplug_mem *hm, uint64_t offset, uint64_t len,
                       const char *op)
{
    if (len == 0 || (offset | len) % hm->block_size || offset > hm->size ||
        len > hm->size - offset) {
        log_error("%s: %s of 0x%llx bytes at offset 0x%llx is not block aligned inside the "
                  "0x%llx-byte region",
                  hm->name, op, (unsigned long long)len, (unsigned long long)offset,
                  (unsigned long long)hm->size);
        return -EINVAL;
    }
    return 0;
}

/* Pages a late fetch left inaccessible in [offset, offset + len) become
 * accessible again (backing_lock held): their block is being plugged. */
static void restore_late_refused(struct hotplug_mem *hm, uint64_t offset, uint64_t len)
{
    for (unsigned i = 0; i < hm->n_late_refused;) {
        uint64_t page = hm->late_refused[i];
        if (page < offset || page - offset >= len) {
            i++;
            continue;
        }
        if (mprotect(hm->hva + page, hm->page_size, PROT_READ | PROT_WRITE) != 0)
            log_error("%s: making the page at offset 0x%llx accessible again: %s", hm->name,
                      (unsigned long long)page, strerror(errno));
        hm->late_refused[i] = hm->late_refused[--hm->n_late_refused];
    }
}

static bool populating_in(const struct hotplug_mem *hm, uint64_t offset, uint64_t len)
{
    return hm->populating && hm->populating_offset < offset + len &&
           offset < hm->populating_offset + hm->populating_len;
}

/* Marks blocks backable (plugged) or not, as the guard sees them. A plug
 * never waits for a first touch being backed elsewhere; an unplug returns
 * only when no populate is left in its blocks, so its discard frees all. */
static void set_backable(struct hotplug_mem *hm, uint64_t offset, uint64_t len, bool on)
{
    pthread_mutex_lock(&hm->backing_lock);
    if (on) {
        restore_late_refused(hm, offset, len);
        bitmap_set_range(hm->block_plugged, offset / hm->block_size, len / hm->block_size);
    } else {
        bitmap_clear_range(hm->block_plugged, offset / hm->block_size, len / hm->block_size);
        while (populating_in(hm, offset, len))
            pthread_cond_wait(&hm->populated, &hm->backing_lock);
    }
    pthread_mutex_unlock(&hm->backing_lock);
}

/* Bytes of [offset, offset + len) that fall into slot s. */
static uint64_t bytes_in_slot(const struct hotplug_mem *hm, uint64_t offset, uint64_t len,
                              uint32_t s)
{
    uint64_t start = (uint64_t)s * hm->slot_size;
    uint64_t end = start + hm->slot_size;
    uint64_t lo = offset > start ? offset : start;
    uint64_t hi = offset + len < end ? offset + len : end;
    return hi - lo;
}

int hotplug_mem_plug(struct hotplug_mem *hm, uint64_t offset, uint64_t len)
{
    return hotplug_mem_plug_cancellable(hm, offset, len, NULL);
}

int hotplug_mem_plug_cancellable(struct hotplug_mem *hm, uint64_t offset, uint64_t len,
                                 const _Atomic uint32_t *cancel)
{
    int rc = check_range(hm, offset, len, "plug");
    if (rc)
        return rc;
    uint32_t s0 = (uint32_t)(offset / hm->slot_size);
    uint32_t s1 = (uint32_t)((offset + len - 1) / hm->slot_size);
    for (uint32_t s = s0; s <= s1; s++) {
        if (bytes_in_slot(hm, offset, len, s) > hm->slot_size - hm->slot_plugged[s]) {
            log_error("%s: plug at offset 0x%llx: slot %u would hold more than it has",
                      hm->name, (unsigned long long)offset, hm->first_slot + s);
            return -EINVAL;
        }
    }

    if (hm->prealloc) {
        rc = populate(hm, offset, len, cancel);
        if (rc) {
            discard(hm, offset, len);
            return rc;
        }
    }
    /* A slot still registered (plugged, or idle) needs no memslot change. */
    for (uint32_t s = s0; s <= s1; s++) {
        if (hm->slot_live[s])
            continue;
        if (kvm_set_slot(hm, s, true) < 0) {
            for (uint32_t t = s0; t < s; t++)
                if (!hm->slot_live[t])
                    kvm_set_slot(hm, t, false);
            if (hm->prealloc)
                discard(hm, offset, len);
            /* Out of memslots or KVM memory: the device answers BUSY and the
             * guest retries later, rather than breaking the device. */
            return -ENOMEM;
        }
    }
    for (uint32_t s = s0; s <= s1; s++) {
        if (!hm->slot_live[s]) {
            hm->slot_live[s] = true;
            __atomic_add_fetch(&hm->slots_registered, 1, __ATOMIC_RELAXED);
        }
        hm->slot_plugged[s] += bytes_in_slot(hm, offset, len, s);
    }
    set_backable(hm, offset, len, true);
    return 0;
}

/* Undoes the removals of an unplug that failed part way: slots in
 * [s0, upto) that this unplug emptied and removed are registered again. */
static void restore_slots(struct hotplug_mem *hm, uint64_t offset, uint64_t len, uint32_t s0,
                          uint32_t upto)
{
    for (uint32_t t = s0; t < upto; t++)
        if (hm->slot_plugged[t] == bytes_in_slot(hm, offset, len, t))
            set_slot(hm, t, true);
}

/* Removes every idle slot (registered, nothing plugged). Their memory went
 * back to the host when they were emptied, so a slot that cannot be removed
 * costs only KVM's bookkeeping: it is logged (set_slot) and left idle. */
static void remove_idle_slots(struct hotplug_mem *hm)
{
    for (uint32_t s = 0; s < hm->n_slots; s++)
        if (hm->slot_live[s] && !hm->slot_plugged[s])
            set_slot(hm, s, false);
}

int hotplug_mem_unplug(struct hotplug_mem *hm, uint64_t offset, uint64_t len)
{
    return hotplug_mem_unplug_step(hm, offset, len, false);
}

int hotplug_mem_unplug_step(struct hotplug_mem *hm, uint64_t offset, uint64_t len,
                            bool more_to_come)
{
    int rc = check_range(hm, offset, len, "unplug");
    if (rc)
        return rc;
    uint32_t s0 = (uint32_t)(offset / hm->slot_size);
    uint32_t s1 = (uint32_t)((offset + len - 1) / hm->slot_size);
    for (uint32_t s = s0; s <= s1; s++) {
        if (bytes_in_slot(hm, offset, len, s) > hm->slot_plugged[s]) {
            log_error("%s: unplug at offset 0x%llx: slot %u holds less than that", hm->name,
                      (unsigned long long)offset, hm->first_slot + s);
            return -EINVAL;
        }
    }
    /* Only the guard keeps an idle slot's unplugged blocks from being
     * backed again; without it an emptied slot goes at once. */
    bool keep_idle = more_to_come && hm->uffd >= 0;

    /* From here on the guard backs nothing in these blocks, so what the
     * discard below frees stays freed. */
    set_backable(hm, offset, len, false);
    for (uint32_t s = s0; s <= s1 && !keep_idle; s++) {
        if (hm->slot_plugged[s] != bytes_in_slot(hm, offset, len, s))
            continue;
        rc = set_slot(hm, s, false);
        if (rc) {
            restore_slots(hm, offset, len, s0, s);
            set_backable(hm, offset, len, true);
            return rc;
        }
    }
    rc = discard(hm, offset, len);
    if (rc) {
        restore_slots(hm, offset, len, s0, s1 + 1);
        set_backable(hm, offset, len, true);
        return rc;
    }
    for (uint32_t s = s0; s <= s1; s++) {
        hm->slot_plugged[s] -= bytes_in_slot(hm, offset, len, s);
        if (hm->slot_plugged[s])
            continue;
        /* A slot that holds nothing plugged holds no memory either: whatever
         * reached it outside the blocks just unplugged (the VMM's own
         * accesses, a guard-less build) goes too. */
        uint64_t start = (uint64_t)s * hm->slot_size;
        if (start < offset || start + hm->slot_size > offset + len)
            discard(hm, start, hm->slot_size);
    }
    if (!more_to_come)
        remove_idle_slots(hm);
    return 0;
}

/* hotplug_mem_fault and, late, hotplug_mem_fault_late: a plugged block's
 * chunk around offset is backed (0); an unplugged block's page is refused,
 * as the guest's doing (-EFAULT) or, late, made inaccessible and noted (1). */
static int fault(struct hotplug_mem *hm, uint64_t offset, bool late)
{
    if (offset >= hm->size)
        return -EFAULT;
    uint64_t chunk = hm->block_size < FAULT_CHUNK ? hm->block_size : FAULT_CHUNK;
    if (chunk < hm->page_size)
        chunk = hm->page_size;
    uint64_t page = offset & ~(hm->page_size - 1);
    uint64_t t0 = clock_mono_ns();
    pthread_mutex_lock(&hm->backing_lock);
    while (hm->populating)
        pthread_cond_wait(&hm->populated, &hm->backing_lock);
    int rc;
    if (bitmap_count(hm->block_plugged, offset / hm->block_size, 1)) {
        /* Backed with the lock dropped, so plugs go on meanwhile; an
         * unplug of this block waits for it (set_backable). */
        hm->populating = true;
        hm->populating_offset = offset & ~(chunk - 1);
        hm->populating_len = chunk;
        pthread_mutex_unlock(&hm->backing_lock);
        test_hook_guard_populating();
        rc = populate(hm, offset & ~(chunk - 1), chunk, NULL);
        pthread_mutex_lock(&hm->backing_lock);
        hm->populating = false;
        pthread_cond_broadcast(&hm->populated);
        __atomic_add_fetch(&hm->first_touch_ns, clock_mono_ns() - t0, __ATOMIC_RELAXED);
    } else if (!late || hm->n_late_refused == HOTPLUG_MEM_MAX_LATE) {
        rc = -EFAULT;
    } else if (mprotect(hm->hva + page, hm->page_size, PROT_NONE) != 0) {
        rc = -errno;
        log_error("%s: making the page at offset 0x%llx inaccessible: %s", hm->name,
                  (unsigned long long)page, strerror(errno));
    } else {
        /* Under the lock, so a plug of this block cannot slip in between
         * and leave it inaccessible. */
        hm->late_refused[hm->n_late_refused++] = page;
        rc = 1;
    }
    pthread_mutex_unlock(&hm->backing_lock);
    if (rc == -EFAULT)
        __atomic_add_fetch(&hm->blocked_accesses, 1, __ATOMIC_RELAXED);
    else if (rc == 1)
        __atomic_add_fetch(&hm->late_fetches, 1, __ATOMIC_RELAXED);
    else if (rc)
        __atomic_add_fetch(&hm->backing_failures, 1, __ATOMIC_RELAXED);
    return rc;
}

int hotplug_mem_fault(struct hotplug_mem *hm, uint64_t offset)
{
    return fault(hm, offset, false);
}

int hotplug_mem_fault_late(struct hotplug_mem *hm, uint64_t offset)
{
    return fault(hm, offset, true);
}

bool hotplug_mem_late_refused_page(struct hotplug_mem *hm, uint64_t *offset)
{
    pthread_mutex_lock(&hm->backing_lock);
    bool any = hm->n_late_refused > 0;
    if (any)
        *offset = hm->late_refused[hm->n_late_refused - 1];
    pthread_mutex_unlock(&hm->backing_lock);
    return any;
}

bool hotplug_mem_is_plugged(struct hotplug_mem *hm, uint64_t offset)
{
    if (offset >= hm->size)
        return false;
    pthread_mutex_lock(&hm->backing_lock);
    bool plugged = bitmap_count(hm->block_plugged, offset / hm->block_size, 1) != 0;
    pthread_mutex_unlock(&hm->backing_lock);
    return plugged;
}

uint64_t hotplug_mem_resident(const struct hotplug_mem *hm)
{
    if (hm->memfd < 0)
        return hm->hva ? anon_mem_resident(hm->hva, hm->size) : 0;
    struct stat st;
    if (hm->memfd < 0 || fstat(hm->memfd, &st) < 0)
        return 0;
    return (uint64_t)st.st_blocks * 512;
}

void *hotplug_mem_ptr(const struct hotplug_mem *hm, uint64_t gpa, uint64_t len)
{
    /* Differences, never sums, so nothing can wrap. */
    if (!hm->hva || gpa < hm->gpa)
        return NULL;
    uint64_t offset = gpa - hm->gpa;
    if (offset >= hm->size || len > hm->size - offset)
        return NULL;
    return hm->hva + offset;
}

void hotplug_mem_destroy(struct hotplug_mem *hm)
{
    /* A memslot left pointing at unmapped memory would hand the guest
     * whatever the VMM maps there next. */
    for (uint32_t s = 0; hm->slot_live && s < hm->n_slots; s++)
        if (hm->slot_live[s])
            set_slot(hm, s, false);
    if (hm->hva)
        munmap(hm->hva, hm->size);
    if (hm->memfd >= 0)
        close(hm->memfd);
    free(hm->slot_plugged);
    free(hm->slot_live);
    free(hm->block_plugged);
    if (hm->backing_lock_ready) {
        pthread_cond_destroy(&hm->populated);
        pthread_mutex_destroy(&hm->backing_lock);
    }
    hm->backing_lock_ready = false;
    hm->hva = NULL;
    hm->memfd = -1;
    hm->uffd = -1;
    hm->slot_plugged = NULL;
    hm->slot_live = NULL;
    hm->block_plugged = NULL;
    hm->slots_registered = 0;
}
