/* The arm64 guest-physical address map (arch/arm64/layout.[ch]): devices
 * below RAM and clear of each other, RAM from 1 GiB, the hotplug window
 * after it, and the IPA size a VM needs. */
#include "unit.h"

#include <errno.h>
#include <stdint.h>

#include "arch/arm64/layout.h"
#include "vmm/hotplug/layout.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

struct window {
    const char *name;
    uint64_t base, size;
};

TEST(layout_device_windows_below_ram_and_disjoint)
{
    const struct window w[] = {
        {"GIC distributor", ARM64_GIC_DIST_BASE, ARM64_GIC_DIST_SIZE},
        {"UART", ARM64_UART_BASE, ARM64_UART_SIZE},
        {"virtio-mmio", ARM64_VIRTIO_MMIO_BASE,
         ARM64_VIRTIO_MMIO_MAX * ARM64_VIRTIO_MMIO_STRIDE},
        {"redistributors (max vCPUs)", ARM64_GIC_REDIST_BASE,
         arm64_gic_redist_size(ARM64_MAX_VCPUS)},
    };
    size_t n = sizeof(w) / sizeof(w[0]);
    for (size_t i = 0; i < n; i++) {
        CHECK(w[i].size > 0);
        CHECK(w[i].base + w[i].size <= ARM64_RAM_BASE);
        CHECK_EQ(w[i].base % 4096, 0);
        for (size_t j = i + 1; j < n; j++) {
            bool disjoint = w[i].base + w[i].size <= w[j].base ||
                            w[j].base + w[j].size <= w[i].base;
            if (!disjoint)
                fprintf(stderr, "  %s overlaps %s\n", w[i].name, w[j].name);
            CHECK(disjoint);
        }
    }
    /* KVM_VGIC_V3_ADDR_TYPE_{DIST,REDIST}: 64 KiB aligned. */
    CHECK_EQ(ARM64_GIC_DIST_BASE % 0x10000, 0);
    CHECK_EQ(ARM64_GIC_REDIST_BASE % 0x10000, 0);
    CHECK_EQ(arm64_gic_redist_size(3), 3 * 0x20000);
    CHECK_EQ(ARM64_GIC_REDIST_BASE + arm64_gic_redist_size(ARM64_MAX_VCPUS),
             ARM64_GIC_REDIST_LIMIT);
}

TEST(layout_interrupts)
{
    /* Device SPIs after the UART's; the vGIC implements all of them. */
    CHECK(ARM64_UART_SPI < ARM64_FIRST_DEVICE_SPI);
    CHECK(ARM64_FIRST_DEVICE_SPI <= ARM64_LAST_DEVICE_SPI);
    CHECK_EQ(ARM64_LAST_DEVICE_SPI - ARM64_FIRST_DEVICE_SPI + 1, ARM64_VIRTIO_MMIO_MAX);
    CHECK(ARM64_GIC_SPI_BASE + ARM64_LAST_DEVICE_SPI < ARM64_GIC_NR_IRQS);
    CHECK_EQ(ARM64_GIC_NR_IRQS % 32, 0);
    CHECK(ARM64_GIC_NR_IRQS >= 64 && ARM64_GIC_NR_IRQS <= 1024);
    /* The timer's PPIs are PPIs (0..15 in the device tree's numbering). */
    CHECK(ARM64_TIMER_PPI_SEC_PHYS < 16 && ARM64_TIMER_PPI_PHYS < 16);
    CHECK(ARM64_TIMER_PPI_VIRT < 16 && ARM64_TIMER_PPI_HYP_PHYS < 16);
}

TEST(layout_ram)
{
    struct mem_range r;
    arm64_ram_layout(512 * MiB, &r);
    CHECK_EQ(r.gpa, 0x40000000);
    CHECK_EQ(r.size, 512 * MiB);
    CHECK_EQ(arm64_ram_end(512 * MiB), 0x60000000);
    arm64_ram_layout(CONFIG_MAX_MEM, &r);
    CHECK_EQ(r.gpa + r.size, 0x40000000 + CONFIG_MAX_MEM);
}

TEST(layout_hotplug_window)
{
    static const uint64_t mems[] = {32 * MiB, 512 * MiB, 1 * GiB, 3 * GiB + 4096, 100 * GiB};
    for (size_t i = 0; i < sizeof(mems) / sizeof(mems[0]); i++) {
        uint64_t start, end;
        arm64_hotplug_window(mems[i], &start, &end);
        CHECK_EQ(start, arm64_ram_end(mems[i]));
        CHECK_EQ(end, 1ULL << 48);
        /* Generic code puts each region on HOTPLUG_REGION_ALIGN past the
         * start: that is whole memory blocks of the guest, never boot RAM. */
        uint64_t first = (start + HOTPLUG_REGION_ALIGN - 1) & ~(HOTPLUG_REGION_ALIGN - 1);
        CHECK(first >= arm64_ram_end(mems[i]));
        CHECK_EQ(first % ARM64_GUEST_MEMORY_BLOCK, 0);
        CHECK_EQ(HOTPLUG_REGION_ALIGN % ARM64_GUEST_MEMORY_BLOCK, 0);
    }
    CHECK_EQ(ARM64_GUEST_MEMORY_BLOCK, 128 * MiB);
}

TEST(layout_ipa_bits_needed)
{
    CHECK_EQ(arm64_ipa_bits_needed(2 * GiB), 32);   /* KVM's minimum */
    CHECK_EQ(arm64_ipa_bits_needed(1ULL << 32), 32);
    CHECK_EQ(arm64_ipa_bits_needed((1ULL << 32) + 1), 33);
    CHECK_EQ(arm64_ipa_bits_needed(1ULL << 40), 40);
    CHECK_EQ(arm64_ipa_bits_needed((1ULL << 40) + 4096), 41);
    CHECK_EQ(arm64_ipa_bits_needed(1ULL << 48), 48);
}

TEST(layout_ipa_choose)
{
    unsigned bits = 99;
    char why[320] = "";
    /* 1 GiB of RAM and a 64 GiB region at 2 GiB: ends at 66 GiB, 37 bits. */
    CHECK_EQ(arm64_ipa_choose(66 * GiB, 48, &bits, why, sizeof(why)), 0);
    CHECK_EQ(bits, 37);
    /* A host without KVM_CAP_ARM_VM_IPA_SIZE: VM type 0 (40 bits). */
    bits = 99;
    CHECK_EQ(arm64_ipa_choose(66 * GiB, 0, &bits, why, sizeof(why)), 0);
    CHECK_EQ(bits, 0);
    /* Beyond what the host offers: refused, saying what and why. */
    CHECK_EQ(arm64_ipa_choose((1ULL << 40) + GiB, 40, &bits, why, sizeof(why)), -ENOSPC);
    CHECK_STR_CONTAINS(why, "41-bit");
    CHECK_STR_CONTAINS(why, "offers 40");
    CHECK_STR_CONTAINS(why, "KVM_CAP_ARM_VM_IPA_SIZE");
    CHECK_STR_CONTAINS(why, "--virtio-mem");
    CHECK_EQ(arm64_ipa_choose((1ULL << 40) + GiB, 0, &bits, why, sizeof(why)), -ENOSPC);
    CHECK_STR_CONTAINS(why, "missing");
    /* A small host (36-bit IPA) still runs a small VM. */
    CHECK_EQ(arm64_ipa_choose(4 * GiB, 36, &bits, why, sizeof(why)), 0);
    CHECK_EQ(bits, 32);
    CHECK_EQ(arm64_ipa_choose(64 * GiB + 1, 36, &bits, why, sizeof(why)), -ENOSPC);
}
