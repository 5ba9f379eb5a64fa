/* Where each virtio-mem region goes in guest-physical space and how it is cut
 * into KVM memslots. Pure: the CLI uses it to reject a layout that cannot fit
 * before anything is created, the VM to place the devices. */
#ifndef MINIVMM_HOTPLUG_LAYOUT_H
#define MINIVMM_HOTPLUG_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/config.h"
#include "vmm/guest_mem.h"

/* Slot size policy (when --virtio-mem has no slot=): 1 GiB where the
 * region size allows (else the largest power of two from the guest's
 * memory block, arch_guest_memory_block,
 * 128 MiB on x86_64 and arm64 with 4 KiB pages, that divides it), never
 * smaller than the device block, doubled while a region would need more than
 * HOTPLUG_MAX_SLOTS_PER_REGION slots. Every slot added or removed makes KVM
 * publish a new memslot array and wait an SRCU grace period (every vCPU out
 * of the old one); removing a slot also zaps its stage-2 mappings. Adding
 * one flushes nothing, but it is still a grace period per slot. Measured
 * with 128M, 512M and 1G slots (docs/performance.md, "Slot size"): the same
 * plug and unplug times, a few tenths of a millisecond of ioctls per slot,
 * and with the TDP MMU ~8 KiB of KVM memory per slot whatever its size: the
 * largest slots cost the least. Shadow paging makes KVM's memory grow with
 * the registered size instead, which slot= (smaller slots) bounds. */
#define HOTPLUG_PREFERRED_SLOT_SIZE (1ULL << 30)
#define HOTPLUG_MAX_SLOTS_PER_REGION 1024u
/* Hotplug memslot ids start after the ones boot RAM may use. */
#define HOTPLUG_FIRST_SLOT GUEST_MEM_MAX_REGIONS
/* KVM's usual per-address-space memslot count, x86's (arm64 has 32767;
 * KVM_CAP_NR_MEMSLOTS says the real one, checked when the VM is created). */
#define HOTPLUG_MAX_SLOT_ID 32764u
/* Regions start on a 1 GiB boundary (or their slot size, if larger): huge
 * pages in the host and any Linux memory block size up to 1 GiB line up. */
#define HOTPLUG_REGION_ALIGN (1ULL << 30)

struct hotplug_placement {
    uint64_t gpa;
    uint64_t size;
    uint64_t slot_size;
    uint32_t first_slot;
    uint32_t n_slots;
};

/* Places cfg->virtio_mem[] in order above boot RAM. Returns 0, or -ENOSPC
 * with a one-line reason naming the device in err. */
int hotplug_layout(const struct vm_config *cfg, struct hotplug_placement *out, char *err,
                   size_t errlen);

/* Highest memslot id the layout uses + 1 (HOTPLUG_FIRST_SLOT if none). */
uint32_t hotplug_layout_slots_end(const struct hotplug_placement *p, unsigned n);

#endif
