/* The flattened device tree an arm64 guest boots with, built with libfdt from
 * a plain description of the machine. Pure: no KVM; unit tests build it on
 * x86_64 and decompile the blob with dtc. */
#ifndef MINIVMM_ARCH_ARM64_FDT_H
#define MINIVMM_ARCH_ARM64_FDT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

/* Device tree interrupt specifier flags (include/dt-bindings/interrupt-
 * controller/{arm-gic,irq}.h). The GICv3 binding allows two trigger types:
 * edge rising (1) and level high (4). */
#define ARM64_FDT_GIC_SPI 0
#define ARM64_FDT_GIC_PPI 1
#define ARM64_FDT_IRQ_EDGE_RISING 1
#define ARM64_FDT_IRQ_LEVEL_HIGH 4

/* The GIC's phandle: the root's interrupt-parent points at it. */
#define ARM64_FDT_GIC_PHANDLE 1

/* 16550 input clock the guest divides for its baud rate; the model ignores
 * the divisor, but Linux's 8250 driver refuses a node without a clock. */
#define ARM64_UART_CLOCK_HZ 1843200

struct arm64_fdt_mmio_device {
    uint64_t base;
    uint64_t size;
    uint32_t spi;               /* GIC SPI number (INTID - 32) */
};

struct arm64_fdt_desc {
    const uint64_t *mpidr;      /* one per vCPU, as KVM reports MPIDR_EL1 */
    unsigned n_cpus;
    const struct mem_range *ram;    /* boot RAM only: never hotpluggable regions */
    unsigned n_ram;
    uint64_t gic_dist_base, gic_dist_size;
    uint64_t gic_redist_base, gic_redist_size;
    struct arm64_fdt_mmio_device uart;
    const struct arm64_fdt_mmio_device *virtio;
    unsigned n_virtio;
    const char *bootargs;
    uint64_t initrd_start, initrd_end;  /* equal: no initrd */
    const uint8_t *rng_seed;
    size_t rng_seed_len;
};

/* Writes the blob into buf (at most len bytes). Returns 0 with its size in
 * *used, or a negative errno with the libfdt reason in *why (-ENOSPC: the
 * tree does not fit in len). */
int arm64_fdt_build(const struct arm64_fdt_desc *d, void *buf, size_t len, size_t *used,
                    const char **why);

#endif
