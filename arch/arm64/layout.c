#include "arch/arm64/layout.h"

#include <errno.h>
#include <stdio.h>

_Static_assert(ARM64_MAX_VCPUS == 512, "the redistributor window holds 512 vCPUs");
_Static_assert(ARM64_VIRTIO_MMIO_BASE + ARM64_VIRTIO_MMIO_MAX * ARM64_VIRTIO_MMIO_STRIDE <=
                   ARM64_GIC_REDIST_BASE,
               "virtio-mmio windows end before the redistributors");
_Static_assert(ARM64_GIC_REDIST_LIMIT <= ARM64_RAM_BASE, "devices sit below RAM");
_Static_assert(ARM64_GIC_NR_IRQS % 32 == 0 && ARM64_GIC_NR_IRQS <= 1024,
               "KVM_DEV_ARM_VGIC_GRP_NR_IRQS takes multiples of 32 up to 1024");

void arm64_ram_layout(uint64_t mem_size, struct mem_range *ram)
{
    *ram = (struct mem_range){ARM64_RAM_BASE, mem_size};
}

uint64_t arm64_ram_end(uint64_t mem_size)
{
    return ARM64_RAM_BASE + mem_size;
}

void arm64_hotplug_window(uint64_t mem_size, uint64_t *start, uint64_t *end)
{
    *start = arm64_ram_end(mem_size);
    *end = 1ULL << ARM64_GUEST_PA_BITS;
}

uint64_t arm64_gic_redist_size(unsigned ncpus)
{
    return (uint64_t)ncpus * ARM64_GIC_REDIST_STRIDE;
}

unsigned arm64_ipa_bits_needed(uint64_t top)
{
    unsigned bits = ARM64_IPA_MIN_BITS;
    while (top && bits < 64 && (top - 1) >> bits)
        bits++;
    return bits;
}

int arm64_ipa_choose(uint64_t top, int host_limit, unsigned *bits, char *why, size_t whylen)
{
    unsigned need = arm64_ipa_bits_needed(top);
    /* Without KVM_CAP_ARM_VM_IPA_SIZE only type 0 exists: 40 bits. */
    unsigned limit = host_limit > 0 ? (unsigned)host_limit : ARM64_IPA_DEFAULT_BITS;
    if (need > limit) {
        snprintf(why, whylen,
                 "the guest-physical layout reaches 0x%llx and needs %u-bit addresses; this "
                 "host's KVM offers %u (KVM_CAP_ARM_VM_IPA_SIZE%s): lower --mem or the "
                 "--virtio-mem sizes",
                 (unsigned long long)(top - 1), need, limit,
                 host_limit > 0 ? "" : " missing, so KVM's fixed 40 bits");
        return -ENOSPC;
    }
    /* Ask for exactly what is needed: fewer bits can mean fewer stage-2
     * table levels, and a host below 40 bits refuses type 0. */
    *bits = host_limit > 0 ? need : 0;
    return 0;
}
