#include "vmm/hotplug/layout.h"

#include <errno.h>
#include <stdio.h>

#include "vmm/arch.h"
#include "vmm/size_parse.h"

/* The slot size must divide the region (so hotplug_mem needs no partial
 * slot); the CLI guarantees the block and the guest's memory block do. */
static uint64_t slot_size_for(uint64_t size, uint64_t block)
{
    uint64_t slot = arch_guest_memory_block();
    while (slot < HOTPLUG_PREFERRED_SLOT_SIZE && size % (slot << 1) == 0)
        slot <<= 1;
    if (slot < block)
        slot = block;
    while (size / slot > HOTPLUG_MAX_SLOTS_PER_REGION && size % (slot << 1) == 0)
        slot <<= 1;
    return slot;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

int hotplug_layout(const struct vm_config *cfg, struct hotplug_placement *out, char *err,
                   size_t errlen)
{
    uint64_t next, end;
    arch_hotplug_window(cfg->mem_size, &next, &end);
    uint32_t slot = HOTPLUG_FIRST_SLOT;

    for (unsigned i = 0; i < cfg->n_virtio_mem; i++) {
        const struct virtio_mem_opts *o = &cfg->virtio_mem[i];
        /* slot= was checked against the region and the block by the CLI. */
        uint64_t slot_size = o->slot_size ? o->slot_size : slot_size_for(o->size, o->block_size);
        uint64_t align = slot_size > HOTPLUG_REGION_ALIGN ? slot_size : HOTPLUG_REGION_ALIGN;
        char a[32], b[32];
        /* next < end <= 2^52 here, so the alignment cannot wrap. */
        uint64_t gpa = align_up(next, align);
        if (gpa >= end || o->size > end - gpa) {
            snprintf(err, errlen,
                     "%s: size %s does not fit the guest-physical address space "
                     "(%s free above boot RAM and earlier regions)",
                     o->id, size_format(o->size, a, sizeof(a)),
                     size_format(gpa < end ? end - gpa : 0, b, sizeof(b)));
            return -ENOSPC;
        }
        uint64_t n_slots = o->size / slot_size;
        if (slot + n_slots > HOTPLUG_MAX_SLOT_ID) {
            snprintf(err, errlen,
                     "%s: size %s needs %llu KVM memslots of %s, more than KVM offers; %s",
                     o->id, size_format(o->size, a, sizeof(a)), (unsigned long long)n_slots,
                     size_format(slot_size, b, sizeof(b)),
                     o->slot_size ? "a larger slot= helps"
                                  : "a size with more factors of two or a larger block helps");
            return -ENOSPC;
        }
        out[i] = (struct hotplug_placement){
            .gpa = gpa,
            .size = o->size,
            .slot_size = slot_size,
            .first_slot = slot,
            .n_slots = (uint32_t)n_slots,
        };
        slot += (uint32_t)n_slots;
        next = gpa + o->size;
    }
    return 0;
}

uint32_t hotplug_layout_slots_end(const struct hotplug_placement *p, unsigned n)
{
    return n ? p[n - 1].first_slot + p[n - 1].n_slots : HOTPLUG_FIRST_SLOT;
}
