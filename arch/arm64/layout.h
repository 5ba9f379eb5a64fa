/* arm64 guest physical address map and the pure arithmetic around it. Generic
 * code never includes this; it asks the arch layer through vmm/arch.h. No
 * KVM header here: unit tests build this file on x86_64 too. docs/arm64.md
 * draws the map. */
#ifndef MINIVMM_ARCH_ARM64_LAYOUT_H
#define MINIVMM_ARCH_ARM64_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

/* Everything that is not RAM lives below 1 GiB, as on QEMU's virt machine,
 * so that RAM is one contiguous range and the hotplug window follows it. */
#define ARM64_GIC_DIST_BASE         0x08000000ULL
#define ARM64_GIC_DIST_SIZE         0x00010000ULL   /* GICv3 distributor: 64 KiB */
#define ARM64_UART_BASE             0x09000000ULL   /* 16550A, byte registers */
#define ARM64_UART_SIZE             0x00001000ULL
#define ARM64_VIRTIO_MMIO_BASE      0x0A000000ULL   /* one 4 KiB window per device */
#define ARM64_VIRTIO_MMIO_STRIDE    0x00001000ULL
#define ARM64_VIRTIO_MMIO_MAX       64
#define ARM64_GIC_REDIST_BASE       0x0C000000ULL
/* Two 64 KiB frames (RD_base, SGI_base) per vCPU, contiguous. */
#define ARM64_GIC_REDIST_STRIDE     0x00020000ULL
#define ARM64_GIC_REDIST_LIMIT      0x10000000ULL
/* The redistributor window holds 512 vCPUs, which is also KVM's GICv3 limit
 * (VGIC_V3_MAX_CPUS). */
#define ARM64_MAX_VCPUS \
    ((unsigned)((ARM64_GIC_REDIST_LIMIT - ARM64_GIC_REDIST_BASE) / ARM64_GIC_REDIST_STRIDE))
#define ARM64_RAM_BASE              0x40000000ULL   /* 1 GiB */
/* Linux arm64's memory block with 4 KiB pages (SECTION_SIZE_BITS 27), as
 * Debian's arm64 kernels have it: the unit of hot-added memory. (A 64 KiB
 * page kernel's is 512 MiB; a region sized for 128 MiB blocks wastes up to
 * 384 MiB there.) */
#define ARM64_GUEST_MEMORY_BLOCK    (128ULL << 20)

/* Interrupts. KVM's default irqfd routing sends GSI n to SPI n, i.e. GIC
 * INTID 32 + n (api.rst, KVM_IRQFD: "irqchip.pin + 32 corresponds to the
 * injected SPI ID"); the device tree names SPIs by n. */
#define ARM64_GIC_SPI_BASE          32
#define ARM64_UART_SPI              1
#define ARM64_FIRST_DEVICE_SPI      16
#define ARM64_LAST_DEVICE_SPI       (ARM64_FIRST_DEVICE_SPI + ARM64_VIRTIO_MMIO_MAX - 1)
/* SGIs + PPIs + SPIs the vGIC implements: a multiple of 32 covering them all. */
#define ARM64_GIC_NR_IRQS \
    (((ARM64_GIC_SPI_BASE + ARM64_LAST_DEVICE_SPI + 1) + 31) / 32 * 32)

/* Architected timer PPIs as the device tree numbers them (INTID - 16):
 * secure physical, non-secure physical, virtual, hypervisor physical. */
#define ARM64_TIMER_PPI_SEC_PHYS    13
#define ARM64_TIMER_PPI_PHYS        14
#define ARM64_TIMER_PPI_VIRT        11
#define ARM64_TIMER_PPI_HYP_PHYS    10

/* Linux's arm64 Image protocol: the kernel's base is 2 MiB aligned, the DTB
 * at most 2 MiB and 8-byte aligned, an initrd inside a 1 GiB aligned window
 * of at most 32 GiB that also covers the kernel. */
#define ARM64_KERNEL_ALIGN          (2ULL << 20)
#define ARM64_FDT_MAX_SIZE          (2ULL << 20)
#define ARM64_INITRD_WINDOW_ALIGN   (1ULL << 30)
#define ARM64_INITRD_WINDOW_SIZE    (32ULL << 30)

/* Guest-physical addresses the guest can use at all: Linux arm64 with 4 KiB
 * pages maps 48 bits of physical address. The host's KVM may offer fewer;
 * arm64_ipa_choose says so when the VM is created. */
#define ARM64_GUEST_PA_BITS         48
/* KVM_CREATE_VM type 0 means a 40-bit IPA space; KVM accepts 32 at least. */
#define ARM64_IPA_DEFAULT_BITS      40
#define ARM64_IPA_MIN_BITS          32

/* Boot RAM: one range from ARM64_RAM_BASE. */
void arm64_ram_layout(uint64_t mem_size, struct mem_range *ram);
uint64_t arm64_ram_end(uint64_t mem_size);

/* Free guest-physical space for hotpluggable regions: from the end of boot
 * RAM (generic code aligns each region to 1 GiB) to what the guest can
 * address. */
void arm64_hotplug_window(uint64_t mem_size, uint64_t *start, uint64_t *end);

/* Bytes of redistributor frames for ncpus vCPUs. */
uint64_t arm64_gic_redist_size(unsigned ncpus);

/* Address bits needed so that [0, top) is guest-physical space: at least
 * ARM64_IPA_MIN_BITS. */
unsigned arm64_ipa_bits_needed(uint64_t top);

/* The IPA size to ask KVM for, given the top of everything the VM maps and
 * the host's KVM_CAP_ARM_VM_IPA_SIZE (0: the capability is missing, so only
 * KVM's fixed 40 bits exist). Returns 0 with *bits for
 * KVM_VM_TYPE_ARM_IPA_SIZE (0 when the host has no capability: VM type 0),
 * or -ENOSPC with the reason in why. */
int arm64_ipa_choose(uint64_t top, int host_limit, unsigned *bits, char *why, size_t whylen);

#endif
