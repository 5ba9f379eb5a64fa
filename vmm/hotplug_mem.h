/* A hotpluggable guest memory region (what one virtio-mem device owns): its
 * own memfd, mapped MAP_SHARED|MAP_NORESERVE so an unplugged terabyte costs
 * the host nothing; KVM memslots of slot_size registered when the first byte
 * in them is plugged and removed when the last is unplugged; unplugged ranges
 * handed back to the host with MADV_REMOVE. Bookkeeping only: which blocks
 * are plugged is the device's business, this tracks bytes per slot. */
#ifndef MINIVMM_HOTPLUG_MEM_H
#define MINIVMM_HOTPLUG_MEM_H

#include <stdbool.h>
#include <stdint.h>

struct hotplug_mem {
    int vm_fd;                  /* -1: no KVM (unit tests); memslots skipped */
    int memfd;
    uint8_t *hva;               /* whole region, PROT_READ|PROT_WRITE */
    uint64_t gpa;
    uint64_t size;
    uint64_t slot_size;         /* power of two, divides size */
    uint32_t first_slot;        /* KVM slot ids first_slot .. first_slot + n_slots - 1 */
    uint32_t n_slots;
    uint64_t *slot_plugged;     /* plugged bytes per slot */
    uint32_t slots_registered;  /* how many memslots are live now */
    bool prealloc;              /* populate on plug; failure -> -ENOMEM */
    char name[32];
};

/* Creates the memfd of `size` bytes (sealed against shrinking) and the
 * reservation. Nothing is registered with KVM yet. size and gpa must be
 * multiples of slot_size. Returns 0 or a negative errno (logged). */
int hotplug_mem_init(struct hotplug_mem *hm, int vm_fd, const char *name, uint64_t gpa,
                     uint64_t size, uint64_t slot_size, uint32_t first_slot, bool prealloc);

/* [offset, offset + len) (page aligned, inside the region, currently
 * unplugged according to the caller) becomes guest memory: memslots of the
 * slots it touches are registered if they were empty, and with prealloc the
 * pages are populated. Returns 0; -ENOMEM when the host cannot back the
 * memory (prealloc) or a memslot cannot be added; nothing changes then. */
int hotplug_mem_plug(struct hotplug_mem *hm, uint64_t offset, uint64_t len);

/* The reverse: slots left empty are removed from KVM first, then the range
 * is discarded (MADV_REMOVE) so the host's memory use falls. Returns 0 or a
 * negative errno (logged). */
int hotplug_mem_unplug(struct hotplug_mem *hm, uint64_t offset, uint64_t len);

/* Bytes of the memfd actually backed by host memory now (from st_blocks). */
uint64_t hotplug_mem_resident(const struct hotplug_mem *hm);

/* Host pointer for [gpa, gpa + len) inside the region, or NULL. */
void *hotplug_mem_ptr(const struct hotplug_mem *hm, uint64_t gpa, uint64_t len);

void hotplug_mem_destroy(struct hotplug_mem *hm);

#endif
