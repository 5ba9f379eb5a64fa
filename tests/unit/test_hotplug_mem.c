/* hotplug_mem without KVM (vm_fd -1): parameters, range checks and the
 * per-slot bookkeeping that decides when memslots come and go. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "unit.h"
#include "vmm/anon_mem.h"
#include "vmm/hotplug/mem.h"

#define MiB (1ULL << 20)
#define GPA (1ULL << 32)

TEST(init_rejects_bad_geometry)
{
    struct hotplug_mem hm;
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 64 * MiB, 3 * MiB, 4096, 0, 0, false), -EINVAL);
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 64 * MiB, 2048, 4096, 0, 0, false), -EINVAL);
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 0, 16 * MiB, 4096, 0, 0, false), -EINVAL);
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 40 * MiB, 16 * MiB, 4096, 0, 0, false), -EINVAL);
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA + MiB, 64 * MiB, 16 * MiB, 4096, 0, 0, false), -EINVAL);
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", 0xffffffffff000000ULL, 32 * MiB, 16 * MiB, 4096, 0, 0, false),
             -EINVAL);
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 64 * MiB, 16 * MiB, 4096, 0xfffe, 0, false), -EINVAL);
    hotplug_mem_destroy(&hm);   /* safe after a failed init */
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 64 * MiB, 16 * MiB, 4096, 0xfffc, 0, false), 0);
    CHECK_EQ(hm.n_slots, 4);
    /* Anonymous memory by default: no file that anyone could resize under
     * the mapping. */
    CHECK_EQ(hm.memfd, -1);
    hotplug_mem_destroy(&hm);
    hotplug_mem_destroy(&hm);   /* idempotent */
}

TEST(range_checks)
{
    struct hotplug_mem hm;
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 64 * MiB, 16 * MiB, 4096, 0, 0, false), 0);
    CHECK_EQ(hotplug_mem_plug(&hm, 0, 0), -EINVAL);
    CHECK_EQ(hotplug_mem_plug(&hm, 100, 4096), -EINVAL);
    CHECK_EQ(hotplug_mem_plug(&hm, 0, 4097), -EINVAL);
    CHECK_EQ(hotplug_mem_plug(&hm, 64 * MiB, 4096), -EINVAL);
    CHECK_EQ(hotplug_mem_plug(&hm, 60 * MiB, 8 * MiB), -EINVAL);
    CHECK_EQ(hotplug_mem_plug(&hm, 4096, UINT64_MAX - 4095), -EINVAL);   /* wraps */
    CHECK_EQ(hotplug_mem_unplug(&hm, 0xfffffffffffff000ULL, 8192), -EINVAL);
    CHECK_EQ(hm.slots_registered, 0);
    hotplug_mem_destroy(&hm);
}

TEST(bookkeeping_refuses_double_plug_and_over_unplug)
{
    struct hotplug_mem hm;
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 64 * MiB, 16 * MiB, 4096, 0, 0, false), 0);
    CHECK_EQ(hotplug_mem_plug(&hm, 0, 16 * MiB), 0);
    CHECK_EQ(hotplug_mem_plug(&hm, 0, 4096), -EINVAL);          /* slot already full */
    CHECK_EQ(hotplug_mem_unplug(&hm, 16 * MiB, 4096), -EINVAL); /* slot 1 holds nothing */
    CHECK_EQ(hotplug_mem_unplug(&hm, 12 * MiB, 8 * MiB), -EINVAL);
    CHECK_EQ(hm.slot_plugged[0], 16 * MiB);
    CHECK_EQ(hm.slot_plugged[1], 0);
    CHECK_EQ(hm.slots_registered, 1);
    CHECK_EQ(hotplug_mem_plug(&hm, 20 * MiB, 40 * MiB), 0);     /* slots 1..3 */
    CHECK_EQ(hm.slots_registered, 4);
    CHECK_EQ(hm.slot_plugged[1], 12 * MiB);
    CHECK_EQ(hm.slot_plugged[3], 12 * MiB);
    CHECK_EQ(hotplug_mem_unplug(&hm, 0, 64 * MiB), -EINVAL);    /* 16..20 MiB not plugged */
    CHECK_EQ(hotplug_mem_unplug(&hm, 0, 16 * MiB), 0);
    CHECK_EQ(hotplug_mem_unplug(&hm, 20 * MiB, 40 * MiB), 0);
    CHECK_EQ(hm.slots_registered, 0);
    CHECK(hotplug_mem_ptr(&hm, GPA, 64 * MiB) == hm.hva);
    CHECK(hotplug_mem_ptr(&hm, GPA, 64 * MiB + 1) == NULL);
    CHECK(hotplug_mem_ptr(&hm, GPA - 1, 1) == NULL);
    CHECK(hotplug_mem_ptr(&hm, GPA + 64 * MiB, 0) == NULL);
    hotplug_mem_destroy(&hm);
}

/* The default backing: the region starts on a huge page boundary (so
 * 2 MiB-aligned guest frames fall on host huge pages), a plug that backs
 * its blocks gets transparent huge pages where the host allows them, and
 * the unplug gives every byte back. */
TEST(default_backing_is_transparent_huge_pages)
{
    uint64_t thp = anon_mem_thp_size();
    if (!thp || !unit_thp_enabled()) {
        unit_skip("no transparent huge pages on this host");
        return;
    }
    struct hotplug_mem hm;
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 256 * MiB, 128 * MiB, 2 * MiB, 0, 0, true), 0);
    CHECK(hm.thp);
    CHECK_EQ((uintptr_t)hm.hva % thp, 0);
    CHECK_EQ(hotplug_mem_plug(&hm, 64 * MiB, 64 * MiB), 0);
    struct unit_smaps sm;
    CHECK(unit_smaps_range(hm.hva, hm.size, &sm));
    printf("  plugged 64 MiB: Rss %llu MiB, AnonHugePages %llu MiB\n", sm.rss >> 20,
           sm.anon_huge >> 20);
    CHECK_EQ(hotplug_mem_resident(&hm), 64 * MiB);
    CHECK_EQ(sm.rss, 64 * MiB);
    CHECK_EQ(sm.anon_huge, 64 * MiB);
    /* Half of it unplugged: whole huge pages go, the rest stays huge. */
    CHECK_EQ(hotplug_mem_unplug(&hm, 64 * MiB, 32 * MiB), 0);
    CHECK(unit_smaps_range(hm.hva, hm.size, &sm));
    CHECK_EQ(hotplug_mem_resident(&hm), 32 * MiB);
    CHECK_EQ(sm.rss, 32 * MiB);
    CHECK_EQ(sm.anon_huge, 32 * MiB);
    CHECK_EQ(hotplug_mem_unplug(&hm, 96 * MiB, 32 * MiB), 0);
    CHECK(unit_smaps_range(hm.hva, hm.size, &sm));
    CHECK_EQ(hotplug_mem_resident(&hm), 0);
    CHECK_EQ(sm.rss, 0);
    hotplug_mem_destroy(&hm);
}

/* Blocks smaller than a huge page, or hugepages=off: base pages only, so
 * unplugging one block frees it at once rather than leaving it inside a
 * huge page that the kernel splits later. */
TEST(base_pages_when_blocks_are_small_or_asked_for)
{
    struct hotplug_mem hm;
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 64 * MiB, 16 * MiB, 4096, 0, 0, true), 0);
    CHECK(!hm.thp);
    CHECK_EQ(hotplug_mem_plug(&hm, 0, 8 * MiB), 0);
    struct unit_smaps sm;
    CHECK(unit_smaps_range(hm.hva, hm.size, &sm));
    CHECK_EQ(sm.rss, 8 * MiB);
    CHECK_EQ(sm.anon_huge, 0);
    CHECK_EQ(hotplug_mem_unplug(&hm, 4096, 4096), 0);
    CHECK_EQ(hotplug_mem_resident(&hm), 8 * MiB - 4096);
    hotplug_mem_destroy(&hm);

    struct mem_backing off = {.kind = MEM_BACKING_BASE};
    CHECK_EQ(hotplug_mem_init(&hm, -1, "t", GPA, 64 * MiB, 16 * MiB, 2 * MiB, 0, &off, true), 0);
    CHECK(!hm.thp);
    CHECK_EQ(hotplug_mem_plug(&hm, 0, 8 * MiB), 0);
    CHECK(unit_smaps_range(hm.hva, hm.size, &sm));
    CHECK_EQ(sm.rss, 8 * MiB);
    CHECK_EQ(sm.anon_huge, 0);
    hotplug_mem_destroy(&hm);
}
