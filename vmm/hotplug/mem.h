/* A hotpluggable guest memory region (what one virtio-mem device owns): its
 * own memfd (shmem by default, or hugetlbfs pages) or anonymous memory
 * (hugepages=thp|off, vmm/anon_mem.h), mapped MAP_NORESERVE so an unplugged terabyte costs
 * the host nothing; KVM memslots of slot_size registered when the first byte
 * in them is plugged and removed when the last is unplugged (with the guard,
 * at the end of an unplug in steps: hotplug_mem_unplug_step); unplugged
 * ranges (and an emptied slot whole) handed back to the host
 * (MADV_DONTNEED, or punching holes in the memfd).
 *
 * The host memory bound: with a guard (vmm/hotplug/guard.h) watching the
 * mapping, host pages are only ever allocated inside plugged blocks, by
 * hotplug_mem_fault (first touch) or prealloc, so the region never holds more
 * than the plugged bytes, whatever the guest touches. block_plugged is the
 * guard's view of which blocks are plugged, under its own short lock:
 * plug and unplug run memslot ioctls, which wait for every vCPU, and a vCPU
 * may be waiting on the guard, so the guard must never wait for them.
 *
 * Plug and unplug are called by one thread at a time per region (the
 * virtio-mem device's change in flight), with no device lock held; the slot
 * bookkeeping is theirs. */
#ifndef MINIVMM_HOTPLUG_MEM_H
#define MINIVMM_HOTPLUG_MEM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/hugepages.h"

/* Pages of one region that late fetches may hold inaccessible at once;
 * one more is the guest's doing (hotplug_mem_fault_late). */
#define HOTPLUG_MEM_MAX_LATE 64

struct hotplug_mem {
    int vm_fd;                  /* -1: no KVM (unit tests); memslots skipped */
    int memfd;                  /* -1: anonymous memory */
    bool thp;                   /* advised MADV_HUGEPAGE (anonymous memory or shmem) */
    /* The guard's userfaultfd once it watches the region, else -1: anonymous
     * memory is populated through the mapping, which must leave the
     * guard's watch meanwhile (populate_anon). */
    int uffd;
    uint8_t *hva;               /* whole region, PROT_READ|PROT_WRITE */
    uint64_t gpa;
    uint64_t size;
    uint64_t slot_size;         /* power of two, divides size */
    uint64_t block_size;        /* plug granularity: power of two, divides slot_size */
    uint64_t page_size;         /* host page behind it: 4 KiB, or the hugetlbfs page size */
    uint32_t first_slot;        /* KVM slot ids first_slot .. first_slot + n_slots - 1 */
    uint32_t n_slots;
    uint64_t *slot_plugged;     /* plugged bytes per slot */
    /* Per slot: registered with KVM. A live slot with nothing plugged is
     * idle: emptied by an unplug with more to come (guard only). */
    bool *slot_live;
    uint32_t slots_registered;  /* how many memslots are live now (atomic: the API reads it) */
    bool prealloc;              /* populate on plug; failure -> -ENOMEM */
    char name[32];
    /* Guards block_plugged against the guard thread: a first touch is
     * populated only if its block is marked plugged, and unplug clears the
     * mark, then waits for a populate of that block in flight, before it
     * discards, so no allocation can outlive the block's unplug. Held only
     * for bookkeeping: never across a populate (a plug must not wait for a
     * vCPU's first touch) or a memslot change. */
    pthread_mutex_t backing_lock;
    bool backing_lock_ready;
    uint64_t *block_plugged;    /* bitmap, one bit per block */
    /* The first touch being backed now, with backing_lock dropped: one at a
     * time (the guard has one thread); `populated` is signalled when it ends. */
    bool populating;
    uint64_t populating_offset, populating_len;
    pthread_cond_t populated;
    /* Pages of unplugged blocks made inaccessible for a kernel worker's
     * late fetch (hotplug_mem_fault_late), made accessible again when their
     * block is plugged; under backing_lock. */
    uint64_t late_refused[HOTPLUG_MEM_MAX_LATE];
    unsigned n_late_refused;
    uint64_t late_fetches;      /* late fetches refused in all (atomic) */
    uint64_t blocked_accesses;  /* guest touches of unplugged memory (atomic) */
    uint64_t backing_failures;  /* first touches the host could not back (atomic) */
    uint64_t first_touch_ns;    /* time first touches of plugged blocks took the guard to
                                 * back, waiting for backing_lock included (atomic) */
};

/* Creates the region's memory of `size` bytes, reserving address space
 * only. Nothing is registered with KVM yet. size and gpa must be multiples
 * of slot_size, slot_size of block_size, block_size of the page size.
 * backing NULL or thp: anonymous memory with transparent huge pages when
 * blocks hold whole ones (else base pages: a block smaller than a huge page
 * could not give its memory back alone); off: anonymous, base pages;
 * shmem: a memfd of base pages, advised MADV_HUGEPAGE under the same rule
 * (huge where the host's shmem_enabled allows); hugetlbfs: a memfd of
 * those pages. A memfd is sealed against resizing; of hugetlbfs pages none
 * is reserved: a block takes them from the pool when plugged
 * (prealloc) or first touched. Returns 0 or a negative errno (logged). */
int hotplug_mem_init(struct hotplug_mem *hm, int vm_fd, const char *name, uint64_t gpa,
                     uint64_t size, uint64_t slot_size, uint64_t block_size,
                     uint32_t first_slot, const struct mem_backing *backing, bool prealloc);

/* [offset, offset + len) (page aligned, inside the region, currently
 * unplugged according to the caller) becomes guest memory: memslots of the
 * slots it touches are registered if they were empty, and with prealloc the
 * pages are populated. Returns 0; -ENOMEM when the host cannot back the
 * memory (prealloc) or a memslot cannot be added; nothing changes then. */
int hotplug_mem_plug(struct hotplug_mem *hm, uint64_t offset, uint64_t len);

/* The same, populating (prealloc) in bounded chunks and giving up when
 * *cancel becomes non-zero between two of them: -ECANCELED, nothing
 * changes, what was populated is discarded. */
int hotplug_mem_plug_cancellable(struct hotplug_mem *hm, uint64_t offset, uint64_t len,
                                 const _Atomic uint32_t *cancel);

/* The reverse: the blocks stop being backable, slots left empty are removed
 * from KVM, then the range is discarded (an emptied slot as a whole) so the
 * host's memory use falls. Idle slots left by earlier steps are removed too.
 * Returns 0 or a negative errno (logged). */
int hotplug_mem_unplug(struct hotplug_mem *hm, uint64_t offset, uint64_t len);

/* One step of a larger unplug: the same, except that with more_to_come and
 * the guard watching, a slot this step empties stays registered (idle)
 * until the step without more_to_come, which removes every idle slot.
 * Removing a memslot costs the guest more than the ioctl: before Linux
 * 6.12, and after it unless the VMM disables KVM_X86_QUIRK_SLOT_ZAP_ALL,
 * x86 KVM drops every stage-2 mapping of the VM on a removal, and the
 * guest faults its memory back in. Done once at the end of an unplug that
 * empties several slots, that cost is paid once. An idle slot costs no host
 * memory: its memory was discarded, and the guard refuses any touch of its
 * unplugged blocks, exactly as in a partly plugged slot. Without the guard
 * nothing would stop the guest backing an idle slot again, so the slot goes
 * at once whatever more_to_come says. */
int hotplug_mem_unplug_step(struct hotplug_mem *hm, uint64_t offset, uint64_t len,
                            bool more_to_come);

/* The guard's question for a missing page at offset: 0 when it lies in a
 * plugged block, which is then backed around offset (2 MiB or one host page,
 * whichever is larger, within the block) so the faulting access can be
 * retried; -EFAULT when the block
 * is unplugged (the guest broke the rule; nothing is allocated); -ENOMEM
 * when the host cannot back plugged memory. Thread-safe. */
int hotplug_mem_fault(struct hotplug_mem *hm, uint64_t offset);

/* The same question asked by a thread that is not minivmm's: a kernel worker
 * KVM sent to fetch the page for an async page fault (x86), which may run
 * long after the guest's access, and after the guest, done with the page,
 * has unplugged its block: such a fetch says nothing of what the guest does
 * now. A plugged block's page is backed as by hotplug_mem_fault (0); an
 * unplugged block's page is made inaccessible (PROT_NONE) without blaming
 * the guest (1): the worker's fetch fails, nothing is allocated, and an
 * access the guest does make to it again fails on its vCPU (KVM_RUN
 * EFAULT). The page becomes accessible again when its block is plugged.
 * -EFAULT when HOTPLUG_MEM_MAX_LATE pages are held so already (no race of a
 * well-behaved guest comes near: this is the guest's doing); -ENOMEM as for
 * hotplug_mem_fault. Thread-safe. */
int hotplug_mem_fault_late(struct hotplug_mem *hm, uint64_t offset);

/* A page a late fetch left inaccessible (offset into the region), if any:
 * the page a vCPU's EFAULT most likely hit when the kernel cannot say
 * where. Thread-safe. */
bool hotplug_mem_late_refused_page(struct hotplug_mem *hm, uint64_t *offset);

/* Whether the block holding offset is plugged now. Thread-safe. */
bool hotplug_mem_is_plugged(struct hotplug_mem *hm, uint64_t offset);

/* Bytes of the region actually backed by host memory now (mincore for
 * anonymous memory, st_blocks for a memfd). */
uint64_t hotplug_mem_resident(const struct hotplug_mem *hm);

/* Host pointer for [gpa, gpa + len) inside the region, or NULL. */
void *hotplug_mem_ptr(const struct hotplug_mem *hm, uint64_t gpa, uint64_t len);

void hotplug_mem_destroy(struct hotplug_mem *hm);

#endif
