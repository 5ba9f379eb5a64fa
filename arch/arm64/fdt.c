#include "arch/arm64/fdt.h"

#include <errno.h>
#include <libfdt.h>
#include <stdio.h>

#include "arch/arm64/layout.h"

/* libfdt's sequential writer with the first error latched: every later call
 * does nothing, and the builder checks once at the end. */
struct fdt_writer {
    void *fdt;
    int err;
};

static void begin(struct fdt_writer *w, const char *name)
{
    if (!w->err)
        w->err = fdt_begin_node(w->fdt, name);
}

static void begin_at(struct fdt_writer *w, const char *name, uint64_t unit_address)
{
    char node[64];
    snprintf(node, sizeof(node), "%s@%llx", name, (unsigned long long)unit_address);
    begin(w, node);
}

static void end(struct fdt_writer *w)
{
    if (!w->err)
        w->err = fdt_end_node(w->fdt);
}

static void prop_string(struct fdt_writer *w, const char *name, const char *value)
{
    if (!w->err)
        w->err = fdt_property_string(w->fdt, name, value);
}

static void prop_u32(struct fdt_writer *w, const char *name, uint32_t value)
{
    if (!w->err)
        w->err = fdt_property_u32(w->fdt, name, value);
}

static void prop_u64(struct fdt_writer *w, const char *name, uint64_t value)
{
    if (!w->err)
        w->err = fdt_property_u64(w->fdt, name, value);
}

static void prop_empty(struct fdt_writer *w, const char *name)
{
    if (!w->err)
        w->err = fdt_property(w->fdt, name, NULL, 0);
}

static void prop_bytes(struct fdt_writer *w, const char *name, const void *value, size_t len)
{
    if (!w->err)
        w->err = fdt_property(w->fdt, name, value, (int)len);
}

/* reg = <base size> pairs with #address-cells = #size-cells = 2. */
static void prop_reg(struct fdt_writer *w, const uint64_t *pairs, unsigned n_pairs)
{
    fdt64_t cells[8];
    if (n_pairs > 4) {
        w->err = -FDT_ERR_INTERNAL;
        return;
    }
    for (unsigned i = 0; i < 2 * n_pairs; i++)
        cells[i] = cpu_to_fdt64(pairs[i]);
    prop_bytes(w, "reg", cells, 2 * n_pairs * sizeof(cells[0]));
}

/* interrupts = <type number flags> triples for the GIC's 3-cell specifier. */
static void prop_interrupts(struct fdt_writer *w, const uint32_t (*irqs)[3], unsigned n)
{
    fdt32_t cells[12];
    if (n > 4) {
        w->err = -FDT_ERR_INTERNAL;
        return;
    }
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < 3; j++)
            cells[3 * i + j] = cpu_to_fdt32(irqs[i][j]);
    prop_bytes(w, "interrupts", cells, 3 * n * sizeof(cells[0]));
}

static void write_chosen(struct fdt_writer *w, const struct arm64_fdt_desc *d,
                         const char *uart_path)
{
    begin(w, "chosen");
    prop_string(w, "bootargs", d->bootargs);
    prop_string(w, "stdout-path", uart_path);
    if (d->initrd_end > d->initrd_start) {
        /* Linux reads one cell or two; one when the initrd ends below
         * 4 GiB, which every dt-schema version accepts (before 2023 it
         * allowed no other). */
        if (d->initrd_end <= UINT32_MAX) {
            prop_u32(w, "linux,initrd-start", (uint32_t)d->initrd_start);
            prop_u32(w, "linux,initrd-end", (uint32_t)d->initrd_end);
        } else {
            prop_u64(w, "linux,initrd-start", d->initrd_start);
            prop_u64(w, "linux,initrd-end", d->initrd_end);
        }
    }
    if (d->rng_seed_len)
        prop_bytes(w, "rng-seed", d->rng_seed, d->rng_seed_len);
    end(w);
}

static void write_memory(struct fdt_writer *w, const struct arm64_fdt_desc *d)
{
    for (unsigned i = 0; i < d->n_ram; i++) {
        begin_at(w, "memory", d->ram[i].gpa);
        prop_string(w, "device_type", "memory");
        uint64_t reg[2] = {d->ram[i].gpa, d->ram[i].size};
        prop_reg(w, reg, 1);
        end(w);
    }
}

/* A cpu node's reg is its MPIDR's affinity fields: Aff2..Aff0 (bits 23:0)
 * and, with #address-cells = 2, Aff3 (bits 39:32) in the first cell. */
#define MPIDR_AFF3_MASK 0xff00000000ULL
#define MPIDR_AFF2_0_MASK 0xffffffULL

static void write_cpus(struct fdt_writer *w, const struct arm64_fdt_desc *d)
{
    bool two_cells = false;
    for (unsigned i = 0; i < d->n_cpus; i++)
        two_cells = two_cells || (d->mpidr[i] & MPIDR_AFF3_MASK);

    begin(w, "cpus");
    prop_u32(w, "#address-cells", two_cells ? 2 : 1);
    prop_u32(w, "#size-cells", 0);
    for (unsigned i = 0; i < d->n_cpus; i++) {
        uint64_t aff = d->mpidr[i] & (MPIDR_AFF3_MASK | MPIDR_AFF2_0_MASK);
        begin_at(w, "cpu", aff);
        prop_string(w, "device_type", "cpu");
        prop_string(w, "compatible", "arm,arm-v8");
        if (two_cells)
            prop_u64(w, "reg", aff);
        else
            prop_u32(w, "reg", (uint32_t)aff);
        prop_string(w, "enable-method", "psci");
        end(w);
    }
    end(w);
}

static void write_psci(struct fdt_writer *w)
{
    /* KVM's in-kernel PSCI (KVM_ARM_VCPU_PSCI_0_2) answers HVC from EL1;
     * Linux asks PSCI_VERSION itself and uses what 1.x adds. */
    begin(w, "psci");
    prop_string(w, "compatible", "arm,psci-0.2");
    prop_string(w, "method", "hvc");
    end(w);
}

static void write_timer(struct fdt_writer *w)
{
    /* KVM's timers are level-sensitive PPIs; on GICv3 the specifier has no
     * CPU mask. Order per the binding: secure phys, phys, virt, hyp phys. */
    static const uint32_t ppis[4][3] = {
        {ARM64_FDT_GIC_PPI, ARM64_TIMER_PPI_SEC_PHYS, ARM64_FDT_IRQ_LEVEL_HIGH},
        {ARM64_FDT_GIC_PPI, ARM64_TIMER_PPI_PHYS, ARM64_FDT_IRQ_LEVEL_HIGH},
        {ARM64_FDT_GIC_PPI, ARM64_TIMER_PPI_VIRT, ARM64_FDT_IRQ_LEVEL_HIGH},
        {ARM64_FDT_GIC_PPI, ARM64_TIMER_PPI_HYP_PHYS, ARM64_FDT_IRQ_LEVEL_HIGH},
    };
    begin(w, "timer");
    prop_string(w, "compatible", "arm,armv8-timer");
    prop_interrupts(w, ppis, 4);
    end(w);
}

static void write_gic(struct fdt_writer *w, const struct arm64_fdt_desc *d)
{
    begin_at(w, "interrupt-controller", d->gic_dist_base);
    prop_string(w, "compatible", "arm,gic-v3");
    prop_u32(w, "#interrupt-cells", 3);
    /* No children and no interrupt-map: zero address cells (dtc asks every
     * interrupt provider to say). */
    prop_u32(w, "#address-cells", 0);
    prop_empty(w, "interrupt-controller");
    uint64_t reg[4] = {d->gic_dist_base, d->gic_dist_size, d->gic_redist_base,
                       d->gic_redist_size};
    prop_reg(w, reg, 2);
    prop_u32(w, "phandle", ARM64_FDT_GIC_PHANDLE);
    end(w);
}

static void write_uart(struct fdt_writer *w, const struct arm64_fdt_desc *d)
{
    /* The 16550 model's registers are bytes at consecutive addresses:
     * stated explicitly, though they are the binding's defaults. */
    begin_at(w, "serial", d->uart.base);
    prop_string(w, "compatible", "ns16550a");
    uint64_t reg[2] = {d->uart.base, d->uart.size};
    prop_reg(w, reg, 1);
    prop_u32(w, "reg-shift", 0);
    prop_u32(w, "reg-io-width", 1);
    prop_u32(w, "clock-frequency", ARM64_UART_CLOCK_HZ);
    /* Level: the model holds its line (KVM_IRQ_LINE) high while IIR reports
     * a reason, so an interrupt the guest missed comes again at its EOI. */
    const uint32_t irq[1][3] = {{ARM64_FDT_GIC_SPI, d->uart.spi, ARM64_FDT_IRQ_LEVEL_HIGH}};
    prop_interrupts(w, irq, 1);
    end(w);
}

static void write_virtio(struct fdt_writer *w, const struct arm64_fdt_mmio_device *v)
{
    begin_at(w, "virtio", v->base);
    prop_string(w, "compatible", "virtio,mmio");
    uint64_t reg[2] = {v->base, v->size};
    prop_reg(w, reg, 1);
    /* Edge: the line is an irqfd, which KVM pulses (raises and lowers at
     * once); a level-sensitive SPI would lose the pulse. */
    const uint32_t irq[1][3] = {{ARM64_FDT_GIC_SPI, v->spi, ARM64_FDT_IRQ_EDGE_RISING}};
    prop_interrupts(w, irq, 1);
    /* The device reads and writes guest memory through the host's cache
     * coherent mapping: no cache maintenance is needed around DMA. */
    prop_empty(w, "dma-coherent");
    end(w);
}

int arm64_fdt_build(const struct arm64_fdt_desc *d, void *buf, size_t len, size_t *used,
                    const char **why)
{
    struct fdt_writer w = {.fdt = buf};
    char uart_path[48];
    snprintf(uart_path, sizeof(uart_path), "/serial@%llx", (unsigned long long)d->uart.base);

    if (len > INT32_MAX) {
        *why = "buffer too large for libfdt";
        return -EINVAL;
    }
    w.err = fdt_create(buf, (int)len);
    if (!w.err)
        w.err = fdt_finish_reservemap(buf);
    begin(&w, "");
    prop_string(&w, "compatible", "linux,dummy-virt");
    prop_string(&w, "model", "minivmm");
    prop_u32(&w, "#address-cells", 2);
    prop_u32(&w, "#size-cells", 2);
    prop_u32(&w, "interrupt-parent", ARM64_FDT_GIC_PHANDLE);

    write_chosen(&w, d, uart_path);
    begin(&w, "aliases");
    prop_string(&w, "serial0", uart_path);     /* the UART is ttyS0 */
    end(&w);
    write_memory(&w, d);
    write_cpus(&w, d);
    write_psci(&w);
    write_timer(&w);
    write_gic(&w, d);
    write_uart(&w, d);
    for (unsigned i = 0; i < d->n_virtio; i++)
        write_virtio(&w, &d->virtio[i]);
    end(&w);
    if (!w.err)
        w.err = fdt_finish(buf);
    if (w.err) {
        *why = fdt_strerror(w.err);
        return w.err == -FDT_ERR_NOSPACE ? -ENOSPC : -EINVAL;
    }
    *used = fdt_totalsize(buf);
    return 0;
}
