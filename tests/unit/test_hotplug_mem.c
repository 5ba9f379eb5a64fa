/* hotplug_mem without KVM (vm_fd -1): parameters, range checks and the
 * per-slot bookkeeping that decides when memslots come and go. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>

#include "unit.h"
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
    /* Sealed: nobody can shrink the file under the mapping. */
    CHECK(fcntl(hm.memfd, F_GET_SEALS) & F_SEAL_SHRINK);
    CHECK(fcntl(hm.memfd, F_GET_SEALS) & F_SEAL_GROW);
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
