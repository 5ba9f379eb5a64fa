#include <errno.h>
#include <stdio.h>

#include "unit.h"
#include "vmm/arch.h"
#include "vmm/hotplug/layout.h"

static struct vm_config config_with(uint64_t mem, unsigned n, const uint64_t *sizes,
                                    const uint64_t *blocks)
{
    struct vm_config cfg = {.mem_size = mem, .ncpus = 1, .n_virtio_mem = n};
    for (unsigned i = 0; i < n; i++) {
        snprintf(cfg.virtio_mem[i].id, sizeof(cfg.virtio_mem[i].id), "dev%u", i);
        cfg.virtio_mem[i].size = sizes[i];
        cfg.virtio_mem[i].block_size = blocks ? blocks[i] : (2ULL << 20);
    }
    return cfg;
}

TEST(regions_sit_above_ram_aligned_and_apart)
{
    const uint64_t sizes[] = {64ULL << 30, 2ULL << 30, 128ULL << 20};
    struct vm_config cfg = config_with(1ULL << 30, 3, sizes, NULL);
    struct hotplug_placement p[3];
    char err[256];
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), 0);
    uint64_t start, end;
    arch_hotplug_window(cfg.mem_size, &start, &end);
    CHECK(p[0].gpa >= start);
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ(p[i].gpa % HOTPLUG_REGION_ALIGN, 0);
        CHECK_EQ(p[i].size, sizes[i]);
        CHECK_EQ(p[i].size % p[i].slot_size, 0);
        CHECK_EQ(p[i].n_slots, p[i].size / p[i].slot_size);
        CHECK(p[i].gpa + p[i].size <= end);
        if (i) {
            CHECK(p[i].gpa >= p[i - 1].gpa + p[i - 1].size);
            CHECK_EQ(p[i].first_slot, p[i - 1].first_slot + p[i - 1].n_slots);
        }
    }
    CHECK_EQ(p[0].first_slot, HOTPLUG_FIRST_SLOT);
    CHECK_EQ(p[0].slot_size, 1ULL << 30);      /* 64 slots for 64G */
    CHECK_EQ(p[1].slot_size, 1ULL << 30);
    CHECK_EQ(p[2].slot_size, 128ULL << 20);    /* all a 128M region allows */
    CHECK_EQ(hotplug_layout_slots_end(p, 3), p[2].first_slot + p[2].n_slots);
}

TEST(slot_size_grows_for_huge_regions_and_big_blocks)
{
    const uint64_t sizes[] = {1ULL << 40, 8ULL << 30};
    const uint64_t blocks[] = {2ULL << 20, 1ULL << 30};
    struct vm_config cfg = config_with(1ULL << 30, 2, sizes, blocks);
    struct hotplug_placement p[2];
    char err[256];
    uint64_t start, end;
    arch_hotplug_window(cfg.mem_size, &start, &end);
    if (end < (2ULL << 40)) {
        unit_skip("host physical address width below 41 bits: no room for a 1T region");
        return;
    }
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), 0);
    CHECK_EQ(p[0].slot_size, 1ULL << 30);      /* 1024 slots */
    CHECK_EQ(p[0].n_slots, 1024);
    CHECK_EQ(p[1].slot_size, 1ULL << 30);      /* never below the block */
}

TEST(slots_are_the_largest_power_of_two_up_to_1g_dividing_the_region)
{
    const uint64_t sizes[] = {1536ULL << 20, 384ULL << 20, 3ULL << 30};
    struct vm_config cfg = config_with(1ULL << 30, 3, sizes, NULL);
    struct hotplug_placement p[3];
    char err[256];
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), 0);
    CHECK_EQ(p[0].slot_size, 512ULL << 20);
    CHECK_EQ(p[0].n_slots, 3);
    CHECK_EQ(p[1].slot_size, 128ULL << 20);
    CHECK_EQ(p[1].n_slots, 3);
    CHECK_EQ(p[2].slot_size, 1ULL << 30);
    CHECK_EQ(p[2].n_slots, 3);
}

TEST(odd_multiples_of_128m_keep_small_slots)
{
    const uint64_t sizes[] = {(1ULL << 37) + (128ULL << 20)};     /* 128G + 128M */
    struct vm_config cfg = config_with(1ULL << 30, 1, sizes, NULL);
    struct hotplug_placement p[1];
    char err[256];
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), 0);
    CHECK_EQ(p[0].slot_size, 128ULL << 20);
    CHECK_EQ(p[0].n_slots, 1025);
}

TEST(region_too_large_for_the_address_space)
{
    uint64_t start, end;
    arch_hotplug_window(1ULL << 30, &start, &end);
    const uint64_t sizes[] = {end};
    struct vm_config cfg = config_with(1ULL << 30, 1, sizes, NULL);
    struct hotplug_placement p[1];
    char err[256];
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), -ENOSPC);
    CHECK_STR_CONTAINS(err, "dev0: size");
    CHECK_STR_CONTAINS(err, "does not fit the guest-physical address space");
}

TEST(too_many_memslots)
{
    uint64_t start, end;
    arch_hotplug_window(1ULL << 30, &start, &end);
    /* An odd multiple of 128M over 4 TiB would need > 32764 slots. */
    const uint64_t sizes[] = {(4ULL << 40) + (128ULL << 20)};
    if (end - (8ULL << 30) < sizes[0]) {
        unit_skip("host physical address width too small for this layout");
        return;
    }
    struct vm_config cfg = config_with(1ULL << 30, 1, sizes, NULL);
    struct hotplug_placement p[1];
    char err[256];
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), -ENOSPC);
    CHECK_STR_CONTAINS(err, "KVM memslots");
}

/* slot= (virtio_mem_opts.slot_size) replaces the policy for its device
 * alone; the others keep it. */
TEST(explicit_slot_size_is_used_as_given)
{
    const uint64_t sizes[] = {64ULL << 30, 64ULL << 30, 64ULL << 30, 1536ULL << 20};
    struct vm_config cfg = config_with(1ULL << 30, 4, sizes, NULL);
    cfg.virtio_mem[0].slot_size = 128ULL << 20;
    cfg.virtio_mem[1].slot_size = 512ULL << 20;
    cfg.virtio_mem[3].slot_size = 128ULL << 20;
    struct hotplug_placement p[4];
    char err[256];
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), 0);
    CHECK_EQ(p[0].slot_size, 128ULL << 20);
    CHECK_EQ(p[0].n_slots, 512);
    CHECK_EQ(p[1].slot_size, 512ULL << 20);
    CHECK_EQ(p[1].n_slots, 128);
    CHECK_EQ(p[2].slot_size, 1ULL << 30);      /* no slot=: the policy's 1G */
    CHECK_EQ(p[2].n_slots, 64);
    CHECK_EQ(p[3].slot_size, 128ULL << 20);    /* the policy would take 512M */
    CHECK_EQ(p[3].n_slots, 12);
    CHECK_EQ(p[1].first_slot, p[0].first_slot + 512);
    CHECK_EQ(hotplug_layout_slots_end(p, 4), HOTPLUG_FIRST_SLOT + 512 + 128 + 64 + 12);
}

/* The policy would double the slot of a 1T region to keep it at 1024
 * slots; slot= is taken as given while KVM has the memslots. */
TEST(explicit_small_slots_for_a_large_region)
{
    const uint64_t sizes[] = {1ULL << 40};
    struct vm_config cfg = config_with(1ULL << 30, 1, sizes, NULL);
    cfg.virtio_mem[0].slot_size = 128ULL << 20;
    uint64_t start, end;
    arch_hotplug_window(cfg.mem_size, &start, &end);
    if (end < (2ULL << 40)) {
        unit_skip("host physical address width below 41 bits: no room for a 1T region");
        return;
    }
    struct hotplug_placement p[1];
    char err[256];
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), 0);
    CHECK_EQ(p[0].slot_size, 128ULL << 20);
    CHECK_EQ(p[0].n_slots, 8192);
}

TEST(explicit_slot_size_beyond_kvms_memslots)
{
    /* 4T in 128M slots: 32768 memslots after the 16 of boot RAM. */
    const uint64_t sizes[] = {4ULL << 40};
    uint64_t start, end;
    arch_hotplug_window(1ULL << 30, &start, &end);
    if (end - (8ULL << 30) < sizes[0]) {
        unit_skip("host physical address width too small for this layout");
        return;
    }
    struct vm_config cfg = config_with(1ULL << 30, 1, sizes, NULL);
    cfg.virtio_mem[0].slot_size = 128ULL << 20;
    struct hotplug_placement p[1];
    char err[256];
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), -ENOSPC);
    CHECK_STR_CONTAINS(err, "dev0: size 4T needs 32768 KVM memslots of 128M");
    CHECK_STR_CONTAINS(err, "a larger slot= helps");
    /* The same region in 256M slots fits: 16384 memslots. */
    cfg.virtio_mem[0].slot_size = 256ULL << 20;
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), 0);
    CHECK_EQ(p[0].n_slots, 16384);
}
