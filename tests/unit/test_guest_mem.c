#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "unit.h"
#include "vmm/anon_mem.h"
#include "vmm/guest_mem.h"

static void two_region_mem(struct guest_mem *gm)
{
    struct mem_range r[2] = {{0, 1 << 20}, {1ULL << 32, 2 << 20}};
    guest_mem_init(gm, -1);
    CHECK_EQ(guest_mem_add_ram(gm, r, 2, 0), 0);
}

TEST(translation_inside_regions)
{
    struct guest_mem gm;
    two_region_mem(&gm);
    uint8_t *p0 = guest_mem_ptr(&gm, 0, 1);
    CHECK(p0 != NULL);
    CHECK(guest_mem_ptr(&gm, 0, 1 << 20) == p0);
    CHECK(guest_mem_ptr(&gm, (1 << 20) - 1, 1) == p0 + (1 << 20) - 1);
    uint8_t *p1 = guest_mem_ptr(&gm, 1ULL << 32, 2 << 20);
    CHECK(p1 == p0 + (1 << 20));       /* one mapping, regions back to back */
    CHECK_EQ(guest_mem_ram_size(&gm), 3 << 20);
    guest_mem_destroy(&gm);
}

TEST(translation_rejects_outside_and_straddling)
{
    struct guest_mem gm;
    two_region_mem(&gm);
    CHECK(guest_mem_ptr(&gm, 1 << 20, 1) == NULL);              /* hole */
    CHECK(guest_mem_ptr(&gm, (1 << 20) - 1, 2) == NULL);        /* crosses end */
    CHECK(guest_mem_ptr(&gm, 0, (1 << 20) + 1) == NULL);
    CHECK(guest_mem_ptr(&gm, (1ULL << 32) - 1, 2) == NULL);     /* starts in the hole */
    CHECK(guest_mem_ptr(&gm, (1ULL << 32) + (2 << 20), 1) == NULL);
    CHECK(guest_mem_ptr(&gm, UINT64_MAX, 1) == NULL);
    guest_mem_destroy(&gm);
}

TEST(translation_is_overflow_safe)
{
    struct guest_mem gm;
    two_region_mem(&gm);
    /* gpa + len wraps to a small number: must not be mistaken for in range. */
    CHECK(guest_mem_ptr(&gm, 0x1000, UINT64_MAX) == NULL);
    CHECK(guest_mem_ptr(&gm, 0x1000, UINT64_MAX - 0xfff) == NULL);
    CHECK(guest_mem_ptr(&gm, (1ULL << 32) + 16, UINT64_MAX - 15) == NULL);
    guest_mem_destroy(&gm);
}

TEST(copy_helpers)
{
    struct guest_mem gm;
    two_region_mem(&gm);
    const char msg[] = "hello";
    char back[sizeof(msg)];
    CHECK_EQ(guest_mem_write(&gm, (1ULL << 32) + 100, msg, sizeof(msg)), 0);
    CHECK_EQ(guest_mem_read(&gm, (1ULL << 32) + 100, back, sizeof(back)), 0);
    CHECK(!memcmp(msg, back, sizeof(msg)));
    CHECK_EQ(guest_mem_write(&gm, (1 << 20) - 2, msg, sizeof(msg)), -EFAULT);
    CHECK_EQ(guest_mem_read(&gm, 5ULL << 32, back, 1), -EFAULT);
    guest_mem_destroy(&gm);
}

TEST(rejects_bad_ranges)
{
    struct guest_mem gm;
    guest_mem_init(&gm, -1);
    struct mem_range unaligned = {0x10, 1 << 20};
    CHECK_EQ(guest_mem_add_ram(&gm, &unaligned, 1, 0), -EINVAL);
    struct mem_range empty = {0, 0};
    CHECK_EQ(guest_mem_add_ram(&gm, &empty, 1, 0), -EINVAL);
    struct mem_range wrap = {UINT64_MAX - 0xfff, 0x2000};
    CHECK_EQ(guest_mem_add_ram(&gm, &wrap, 1, 0), -EINVAL);
    CHECK_EQ(guest_mem_add_ram(&gm, NULL, 0, 0), -EINVAL);
    guest_mem_destroy(&gm);
}

/* Boot RAM is anonymous memory starting on a huge page boundary: with the
 * default backing the guest's first touches get transparent huge pages
 * (where the host's THP is enabled), with hugepages=off base pages. */
TEST(boot_ram_gets_transparent_huge_pages_by_default)
{
    uint64_t thp = anon_mem_thp_size();
    if (!thp || !unit_thp_enabled()) {
        unit_skip("no transparent huge pages on this host");
        return;
    }
    struct mem_range r = {0, 64ULL << 20};
    struct guest_mem gm;
    guest_mem_init(&gm, -1);
    CHECK_EQ(guest_mem_add_ram(&gm, &r, 1, 0), 0);
    CHECK_EQ(gm.memfd, -1);
    CHECK_EQ((uintptr_t)gm.map % thp, 0);
    for (uint64_t off = 0; off < r.size; off += thp)
        gm.map[off] = 1;                /* one touch per huge page, as a guest might */
    struct unit_smaps sm;
    CHECK(unit_smaps_range(gm.map, gm.map_size, &sm));
    printf("  64 MiB touched once per %llu KiB: Rss %llu MiB, AnonHugePages %llu MiB\n",
           (unsigned long long)(thp >> 10), sm.rss >> 20, sm.anon_huge >> 20);
    CHECK_EQ(sm.anon_huge, r.size);
    guest_mem_destroy(&gm);

    struct mem_backing off = {.kind = MEM_BACKING_BASE};
    guest_mem_init(&gm, -1);
    CHECK_EQ(guest_mem_add_ram(&gm, &r, 1, &off), 0);
    for (uint64_t o = 0; o < r.size; o += thp)
        gm.map[o] = 1;
    CHECK(unit_smaps_range(gm.map, gm.map_size, &sm));
    CHECK_EQ(sm.anon_huge, 0);
    CHECK_EQ(sm.rss, (r.size / thp) * 4096);
    guest_mem_destroy(&gm);
}
