/* ACPI tables for a hardware-reduced x86_64 microVM (ACPI 6.5 chapter 5).
 *
 * Layout of the output buffer (each table 16-byte aligned, gaps zeroed):
 *   RSDP | XSDT | FADT | MADT | [SRAT] | DSDT
 * Tables that do not depend on guest addresses (MADT, SRAT, DSDT) are built
 * first in heap buffers; then the layout is fixed, the pointer tables (FADT,
 * XSDT, RSDP) are built, and only once everything succeeded is anything
 * copied into the caller's buffer.
 *
 * Interrupt routing decisions (compared with QEMU microvm, Firecracker and
 * Cloud Hypervisor):
 *  - No Interrupt Source Overrides. With HW_REDUCED_ACPI Linux x86 installs
 *    null_legacy_pic (nr_legacy_irqs() == 0) and skips the PIT/legacy timer
 *    setup (acpi_generic_reduced_hw_init), so there is no ISA IRQ0 timer to
 *    redirect and no default ISA identity map for an ISO to amend. Every
 *    interrupt we use is instead described with explicit trigger/polarity in
 *    a DSDT _CRS, which Linux programs via acpi_register_gsi(). QEMU microvm
 *    only emits ISOs for IRQ0->2 (its own PIT wiring) and level-triggered PCI
 *    IRQs; Firecracker emits none; Cloud Hypervisor's single ISO (4 -> 4,
 *    flags "conforms to bus") restates the default. Our virtio devices
 *    are edge/active-high on GSI == pin, which is what their _CRS says.
 *  - COM1 is described in the DSDT (PNP0501, IO 0x3F8/8, GSI 4 level/high:
 *    the 16550's interrupt is a level, and modelled as one, see
 *    devices/serial_16550.c),
 *    as QEMU microvm (isa-serial, default on), Firecracker and Cloud
 *    Hypervisor all do. It is needed, not decoration: with no legacy IRQs
 *    the hard-coded ISA port table of the 8250 driver has no mapping for
 *    IRQ 4, while the PNP device gets its GSI registered from _CRS. It does
 *    not create a second ttyS: 8250_pnp registers through
 *    serial8250_register_8250_port(), whose serial8250_find_match_or_unused()
 *    first reuses the existing line whose iobase matches (0x3F8 -> ttyS0);
 *    and the PNP probe runs before the legacy ports are registered, which
 *    then skip the line already taken.
 */
#include "arch/x86_64/acpi_tables.h"

#include <errno.h>
#include <string.h>

#include "arch/x86_64/aml.h"
#include "arch/x86_64/layout.h"

#define ACPI_OEM_REVISION     1
#define ACPI_CREATOR_ID       "MVMM"
#define ACPI_CREATOR_REVISION 1
#define ACPI_HYPERVISOR_ID    "MINIVMM " /* FADT Hypervisor Vendor Identity, 8 bytes */

#define SDT_HEADER_LEN   36
#define SDT_LENGTH_OFF   4
#define SDT_CHECKSUM_OFF 9
#define TABLE_ALIGN      16

/* RSDP (ACPI 6.5 section 5.2.5.3). */
#define RSDP_LEN          36
#define RSDP_V1_LEN       20 /* the part covered by the first checksum */
#define RSDP_CHECKSUM_OFF 8
#define RSDP_OEMID_OFF    9
#define RSDP_REV_OFF      15
#define RSDP_LENGTH_OFF   20
#define RSDP_XSDT_OFF     24
#define RSDP_XCHECKSUM_OFF 32
#define RSDP_ALIGN        16 /* guests scan 0xE0000-0xFFFFF on 16-byte steps */

/* FADT revision 6 (ACPI 6.0+, section 5.2.9), field offsets. */
#define FADT_REVISION          6
#define FADT_MINOR_REVISION    5 /* ACPI 6.5 */
#define FADT_LEN               276
#define FADT_DSDT_OFF          40
#define FADT_IAPC_BOOT_ARCH_OFF 109
#define FADT_FLAGS_OFF         112
#define FADT_RESET_REG_OFF     116
#define FADT_RESET_VALUE_OFF   128
#define FADT_MINOR_VERSION_OFF 131
#define FADT_X_DSDT_OFF        140
#define FADT_SLEEP_CONTROL_OFF 244
#define FADT_SLEEP_STATUS_OFF  256
#define FADT_HYPERVISOR_ID_OFF 268

#define FADT_F_PWR_BUTTON      (1u << 4)  /* no fixed-feature power button */
#define FADT_F_SLP_BUTTON      (1u << 5)  /* no fixed-feature sleep button */
#define FADT_F_RESET_REG_SUP   (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)

#define IAPC_VGA_NOT_PRESENT   (1u << 2)
#define IAPC_MSI_NOT_SUPPORTED (1u << 3)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

/* Generic Address Structure. */
#define GAS_LEN           12
#define GAS_SPACE_IO      1
#define GAS_ACCESS_BYTE   1

/* MADT (section 5.2.12). Revision 5 = ACPI 6.3+ (Linux honours the
 * online-capable bit from 5 on; all our CPUs are simply enabled). */
#define MADT_REVISION       5
#define MADT_TYPE_LAPIC     0
#define MADT_TYPE_IOAPIC    1
#define MADT_TYPE_LAPIC_NMI 4
#define MADT_LAPIC_LEN      8
#define MADT_IOAPIC_LEN     12
#define MADT_LAPIC_NMI_LEN  6
#define MADT_LAPIC_ENABLED  1u
#define MADT_ALL_CPUS       0xFF
#define MADT_LINT1          1

/* SRAT (section 5.2.16). */
#define SRAT_REVISION       3
#define SRAT_TYPE_LAPIC     0
#define SRAT_TYPE_MEMORY    1
#define SRAT_LAPIC_LEN      16
#define SRAT_MEMORY_LEN     40
#define SRAT_ENABLED        (1u << 0)
#define SRAT_HOTPLUGGABLE   (1u << 1)

#define DSDT_REVISION       2 /* >= 2: 64-bit integers (QWordConst) */
#define XSDT_REVISION       1

#define S5_SLP_TYP          5 /* Linux writes SLP_TYP << 2 | SLP_EN */

/* Order of the tables in the output buffer (after the RSDP). */
enum { T_XSDT, T_FADT, T_MADT, T_SRAT, T_DSDT, T_COUNT };

/* ---- byte helpers ---- */

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The one place a checksum is computed: rewrites p[csum_off] so that the
 * bytes p[0..len) sum to zero modulo 256. Every SDT and both RSDP checksums
 * go through here. */
static void acpi_fix_checksum(uint8_t *p, size_t len, size_t csum_off)
{
    uint8_t sum = 0;

    p[csum_off] = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    p[csum_off] = (uint8_t)(0x100 - sum);
}

static void sdt_header(struct aml_buf *t, const char sig[4], uint8_t revision)
{
    aml_append_bytes(t, sig, 4);
    aml_append_u32(t, 0); /* length: sdt_finish */
    aml_append_u8(t, revision);
    aml_append_u8(t, 0);  /* checksum: sdt_finish */
    aml_append_bytes(t, ACPI_OEM_ID, 6);
    aml_append_bytes(t, ACPI_OEM_TABLE_ID, 8);
    aml_append_u32(t, ACPI_OEM_REVISION);
    aml_append_bytes(t, ACPI_CREATOR_ID, 4);
    aml_append_u32(t, ACPI_CREATOR_REVISION);
}

/* Stores the final length and checksum; the table must be complete. */
static void sdt_finish(struct aml_buf *t)
{
    if (t->error)
        return;
    if (t->len < SDT_HEADER_LEN || t->len > UINT32_MAX) {
        t->error = true;
        return;
    }
    put_le(t->data + SDT_LENGTH_OFF, t->len, 4);
    acpi_fix_checksum(t->data, t->len, SDT_CHECKSUM_OFF);
}

/* ---- validation ---- */

static bool range_ok(uint64_t base, uint64_t size)
{
    return size != 0 && base + (size - 1) >= base;
}

static bool ranges_overlap(uint64_t b1, uint64_t s1, uint64_t b2, uint64_t s2)
{
    return b1 <= b2 + (s2 - 1) && b2 <= b1 + (s1 - 1);
}

static int validate_mmio(const struct acpi_config *cfg)
{
    if (cfg->n_mmio > ACPI_MAX_MMIO_DEVICES || (cfg->n_mmio && !cfg->mmio))
        return -EINVAL;
    for (size_t i = 0; i < cfg->n_mmio; i++) {
        const struct acpi_mmio_device *d = &cfg->mmio[i];
        if (!range_ok(d->base, d->size))
            return -EINVAL;
        /* GSIs below 5 belong to legacy devices (COM1 is 4); the IOAPIC has
         * 24 pins. Each device's interrupt is declared Exclusive. */
        if (d->gsi < X86_FIRST_DEVICE_GSI || d->gsi > X86_LAST_DEVICE_GSI)
            return -EINVAL;
        for (size_t j = 0; j < i; j++) {
            if (cfg->mmio[j].gsi == d->gsi || cfg->mmio[j].uid == d->uid)
                return -EINVAL;
        }
    }
    return 0;
}

static int validate_mem(const struct acpi_config *cfg)
{
    if (cfg->n_mem && !cfg->mem)
        return -EINVAL;
    /* Node assignments without an SRAT would be silently dropped. */
    if (cfg->cpu_node && cfg->n_mem == 0)
        return -EINVAL;
    for (size_t i = 0; i < cfg->n_mem; i++) {
        const struct acpi_mem_affinity *m = &cfg->mem[i];
        if (!range_ok(m->base, m->size))
            return -EINVAL;
        /* Linux rejects the whole SRAT (no NUMA) on overlapping ranges. */
        for (size_t j = 0; j < i; j++) {
            if (ranges_overlap(cfg->mem[j].base, cfg->mem[j].size, m->base, m->size))
                return -EINVAL;
        }
    }
    return 0;
}

static int validate_config(const struct acpi_config *cfg)
{
    if (!cfg || cfg->ncpus == 0 || cfg->ncpus > ACPI_MAX_CPUS)
        return -EINVAL;
    int ret = validate_mmio(cfg);
    return ret ? ret : validate_mem(cfg);
}

/* ---- MADT ---- */

static void build_madt(const struct acpi_config *cfg, struct aml_buf *t)
{
    sdt_header(t, "APIC", MADT_REVISION);
    aml_append_u32(t, (uint32_t)X86_LAPIC_ADDR);
    /* Flags 0: no PCAT_COMPAT, there is no dual-8259 setup to disable. */
    aml_append_u32(t, 0);

    for (unsigned i = 0; i < cfg->ncpus; i++) {
        aml_append_u8(t, MADT_TYPE_LAPIC);
        aml_append_u8(t, MADT_LAPIC_LEN);
        aml_append_u8(t, (uint8_t)i); /* ACPI processor UID */
        aml_append_u8(t, (uint8_t)i); /* APIC id */
        aml_append_u32(t, MADT_LAPIC_ENABLED);
    }

    aml_append_u8(t, MADT_TYPE_IOAPIC);
    aml_append_u8(t, MADT_IOAPIC_LEN);
    aml_append_u8(t, 0); /* IOAPIC id */
    aml_append_u8(t, 0); /* reserved */
    aml_append_u32(t, (uint32_t)X86_IOAPIC_ADDR);
    aml_append_u32(t, 0); /* GSI base */

    /* LINT1 of every LAPIC is the NMI input, as on PC hardware (and what
     * KVM's in-kernel LAPIC models). Flags 0: conforms to bus. */
    aml_append_u8(t, MADT_TYPE_LAPIC_NMI);
    aml_append_u8(t, MADT_LAPIC_NMI_LEN);
    aml_append_u8(t, MADT_ALL_CPUS);
    aml_append_u16(t, 0);
    aml_append_u8(t, MADT_LINT1);

    sdt_finish(t);
}

/* ---- SRAT ---- */

static void srat_cpu(struct aml_buf *t, unsigned apic_id, uint32_t node)
{
    aml_append_u8(t, SRAT_TYPE_LAPIC);
    aml_append_u8(t, SRAT_LAPIC_LEN);
    aml_append_u8(t, (uint8_t)node); /* proximity domain bits 7:0 */
    aml_append_u8(t, (uint8_t)apic_id);
    aml_append_u32(t, SRAT_ENABLED);
    aml_append_u8(t, 0); /* local SAPIC EID */
    aml_append_u8(t, (uint8_t)(node >> 8)); /* proximity domain bits 31:8 */
    aml_append_u8(t, (uint8_t)(node >> 16));
    aml_append_u8(t, (uint8_t)(node >> 24));
    aml_append_u32(t, 0); /* clock domain */
}

static void srat_mem(struct aml_buf *t, const struct acpi_mem_affinity *m)
{
    uint32_t flags = SRAT_ENABLED | (m->hotpluggable ? SRAT_HOTPLUGGABLE : 0);

    aml_append_u8(t, SRAT_TYPE_MEMORY);
    aml_append_u8(t, SRAT_MEMORY_LEN);
    aml_append_u32(t, m->node);
    aml_append_u16(t, 0);       /* reserved */
    aml_append_u64(t, m->base); /* as base low/high dwords */
    aml_append_u64(t, m->size); /* as length low/high dwords */
    aml_append_u32(t, 0);       /* reserved */
    aml_append_u32(t, flags);
    aml_append_u64(t, 0);       /* reserved */
}

static void build_srat(const struct acpi_config *cfg, struct aml_buf *t)
{
    sdt_header(t, "SRAT", SRAT_REVISION);
    aml_append_u32(t, 1); /* reserved, "must be 1" for backward compatibility */
    aml_append_u64(t, 0); /* reserved */
    for (unsigned i = 0; i < cfg->ncpus; i++)
        srat_cpu(t, i, cfg->cpu_node ? cfg->cpu_node[i] : 0);
    for (size_t i = 0; i < cfg->n_mem; i++)
        srat_mem(t, &cfg->mem[i]);
    sdt_finish(t);
}

/* ---- DSDT ---- */

static void dsdt_name_int(struct aml_buf *b, const char *name, uint64_t v)
{
    aml_name(b, name);
    aml_integer(b, v);
}

static void dsdt_name_crs(struct aml_buf *b, const struct aml_buf *descs)
{
    aml_name(b, "_CRS");
    aml_resource_template(b, descs);
}

/* "V000".."VFFF"; index < ACPI_MAX_MMIO_DEVICES was validated. */
static void mmio_device_name(size_t index, char name[5])
{
    static const char hex[] = "0123456789ABCDEF";

    name[0] = 'V';
    name[1] = hex[(index >> 8) & 0xF];
    name[2] = hex[(index >> 4) & 0xF];
    name[3] = hex[index & 0xF];
    name[4] = '\0';
}

static void dsdt_virtio_mmio(struct aml_buf *scope, size_t index,
                             const struct acpi_mmio_device *d)
{
    struct aml_buf dev, crs;
    char name[5];

    aml_buf_init(&dev);
    aml_buf_init(&crs);
    mmio_device_name(index, name);

    aml_name(&dev, "_HID");
    aml_string(&dev, "LNRO0005");
    dsdt_name_int(&dev, "_UID", d->uid);
    /* Cache-coherent DMA: virtio rings live in ordinary guest RAM. */
    dsdt_name_int(&dev, "_CCA", 1);

    if (d->base + d->size <= X86_4GIB)
        aml_res_memory32_fixed(&crs, (uint32_t)d->base, (uint32_t)d->size, AML_READ_WRITE);
    else
        aml_res_qword_memory(&crs, d->base, d->size, AML_READ_WRITE);
    /* Edge: irqfd injects an edge; level would need a resample eventfd. */
    aml_res_ext_irq(&crs, AML_CONSUMER, AML_EDGE, AML_ACTIVE_HIGH, AML_EXCLUSIVE, &d->gsi, 1);
    dsdt_name_crs(&dev, &crs);

    aml_device(scope, name, &dev);
    aml_buf_free(&crs);
    aml_buf_free(&dev);
}

/* See the file comment for why COM1 is here. */
static void dsdt_com1(struct aml_buf *scope)
{
    struct aml_buf dev, crs;
    const uint32_t gsi = X86_COM1_GSI;

    aml_buf_init(&dev);
    aml_buf_init(&crs);
    aml_name(&dev, "_HID");
    aml_eisaid(&dev, "PNP0501");
    dsdt_name_int(&dev, "_UID", 1);
    aml_res_io(&crs, X86_COM1_PORT, X86_COM1_PORT, 1, 8);
    aml_res_ext_irq(&crs, AML_CONSUMER, AML_LEVEL, AML_ACTIVE_HIGH, AML_EXCLUSIVE, &gsi, 1);
    dsdt_name_crs(&dev, &crs);
    aml_device(scope, "COM1", &dev);
    aml_buf_free(&crs);
    aml_buf_free(&dev);
}

/* Name(_S5, Package(){5, 0, 0, 0}): makes Linux offer ACPI poweroff, which
 * in hardware-reduced mode writes SLP_TYP << 2 | SLP_EN to the FADT's
 * SLEEP_CONTROL_REG. */
static void dsdt_s5(struct aml_buf *b)
{
    struct aml_buf pkg;

    aml_buf_init(&pkg);
    aml_integer(&pkg, S5_SLP_TYP); /* SLP_TYPa */
    aml_integer(&pkg, 0);          /* SLP_TYPb, unused */
    aml_integer(&pkg, 0);          /* reserved */
    aml_integer(&pkg, 0);          /* reserved */
    aml_name(b, "_S5_");
    aml_package(b, 4, &pkg);
    aml_buf_free(&pkg);
}

static void build_dsdt(const struct acpi_config *cfg, struct aml_buf *t)
{
    struct aml_buf sb;

    aml_buf_init(&sb);
    dsdt_com1(&sb);
    for (size_t i = 0; i < cfg->n_mmio; i++)
        dsdt_virtio_mmio(&sb, i, &cfg->mmio[i]);

    sdt_header(t, "DSDT", DSDT_REVISION);
    aml_scope(t, "\\_SB_", &sb);
    dsdt_s5(t);
    aml_buf_free(&sb);
    sdt_finish(t);
}

/* ---- FADT ---- */

static void put_gas_io8(uint8_t *p, uint16_t port)
{
    p[0] = GAS_SPACE_IO;
    p[1] = 8; /* register bit width */
    p[2] = 0; /* bit offset */
    p[3] = GAS_ACCESS_BYTE;
    put_le(p + 4, port, 8);
}

static void build_fadt(uint64_t dsdt_gpa, struct aml_buf *t)
{
    sdt_header(t, "FACP", FADT_REVISION);
    aml_append_zeros(t, FADT_LEN - SDT_HEADER_LEN);
    if (t->error || t->len != FADT_LEN) {
        t->error = true;
        return;
    }
    uint8_t *f = t->data;

    /* No FACS (FIRMWARE_CTRL/X_FIRMWARE_CTRL 0), no SCI, no PM blocks: all
     * of that is fixed hardware, which HW_REDUCED_ACPI says we lack. */
    put_le(f + FADT_DSDT_OFF, dsdt_gpa, 4); /* caller keeps tables < 4 GiB */
    put_le(f + FADT_X_DSDT_OFF, dsdt_gpa, 8);
    put_le(f + FADT_IAPC_BOOT_ARCH_OFF,
           IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED | IAPC_CMOS_RTC_NOT_PRESENT, 2);
    /* The power/sleep button bits mean "no fixed-feature button", so Linux
     * does not register phantom LNXPWRBN/LNXSLPBN devices. */
    put_le(f + FADT_FLAGS_OFF,
           FADT_F_HW_REDUCED_ACPI | FADT_F_RESET_REG_SUP | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON,
           4);
    put_gas_io8(f + FADT_RESET_REG_OFF, X86_ACPI_RESET_PORT);
    f[FADT_RESET_VALUE_OFF] = X86_ACPI_RESET_VALUE;
    f[FADT_MINOR_VERSION_OFF] = FADT_MINOR_REVISION;
    put_gas_io8(f + FADT_SLEEP_CONTROL_OFF, X86_ACPI_SLEEP_CONTROL_PORT);
    put_gas_io8(f + FADT_SLEEP_STATUS_OFF, X86_ACPI_SLEEP_STATUS_PORT);
    memcpy(f + FADT_HYPERVISOR_ID_OFF, ACPI_HYPERVISOR_ID, 8);

    sdt_finish(t);
}

/* ---- XSDT / RSDP ---- */

static void build_xsdt(const uint64_t *entries, size_t n, struct aml_buf *t)
{
    sdt_header(t, "XSDT", XSDT_REVISION);
    for (size_t i = 0; i < n; i++)
        aml_append_u64(t, entries[i]);
    sdt_finish(t);
}

static void build_rsdp(uint64_t xsdt_gpa, uint8_t rsdp[RSDP_LEN])
{
    memset(rsdp, 0, RSDP_LEN);
    memcpy(rsdp, "RSD PTR ", 8);
    memcpy(rsdp + RSDP_OEMID_OFF, ACPI_OEM_ID, 6);
    rsdp[RSDP_REV_OFF] = 2; /* ACPI 2.0+: XSDT, no RSDT (RsdtAddress 0) */
    put_le(rsdp + RSDP_LENGTH_OFF, RSDP_LEN, 4);
    put_le(rsdp + RSDP_XSDT_OFF, xsdt_gpa, 8);
    /* The first checksum covers only the ACPI 1.0 part; the extended one
     * covers all 36 bytes, including the first checksum. */
    acpi_fix_checksum(rsdp, RSDP_V1_LEN, RSDP_CHECKSUM_OFF);
    acpi_fix_checksum(rsdp, RSDP_LEN, RSDP_XCHECKSUM_OFF);
}

/* ---- assembly ---- */

struct acpi_build {
    struct aml_buf t[T_COUNT];
    size_t off[T_COUNT];  /* offset in the output buffer */
    size_t size[T_COUNT]; /* size reserved by the layout */
    bool present[T_COUNT];
    size_t total;
};

static size_t align_up(size_t v)
{
    return (v + TABLE_ALIGN - 1) & ~(size_t)(TABLE_ALIGN - 1);
}

static uint64_t table_gpa(const struct acpi_build *b, uint64_t gpa, int i)
{
    return gpa + b->off[i];
}

/* Places the tables after the RSDP. The XSDT and FADT sizes are known before
 * they are built (fixed entry count / fixed length), which is what lets the
 * pointer tables be built after the layout is fixed. */
static int layout_tables(struct acpi_build *b, size_t cap, uint64_t gpa)
{
    size_t n_xsdt = 0;
    for (int i = T_FADT; i < T_COUNT; i++)
        n_xsdt += b->present[i] && i != T_DSDT; /* DSDT hangs off the FADT */

    b->size[T_XSDT] = SDT_HEADER_LEN + 8 * n_xsdt;
    b->size[T_FADT] = FADT_LEN;
    b->size[T_MADT] = b->t[T_MADT].len;
    b->size[T_SRAT] = b->t[T_SRAT].len;
    b->size[T_DSDT] = b->t[T_DSDT].len;

    size_t pos = RSDP_LEN;
    for (int i = 0; i < T_COUNT; i++) {
        if (!b->present[i])
            continue;
        if (pos > SIZE_MAX - TABLE_ALIGN)
            return -ENOSPC;
        pos = align_up(pos);
        if (b->size[i] > cap || pos > cap - b->size[i])
            return -ENOSPC;
        b->off[i] = pos;
        pos += b->size[i];
    }
    if (pos > X86_4GIB || gpa > X86_4GIB - pos)
        return -EINVAL; /* 32-bit pointer fields could not reach it */
    b->total = pos;
    return 0;
}

static void build_pointer_tables(struct acpi_build *b, uint64_t gpa)
{
    uint64_t entries[T_COUNT];
    size_t n = 0;

    build_fadt(table_gpa(b, gpa, T_DSDT), &b->t[T_FADT]);
    for (int i = T_FADT; i < T_COUNT; i++) {
        if (b->present[i] && i != T_DSDT)
            entries[n++] = table_gpa(b, gpa, i);
    }
    build_xsdt(entries, n, &b->t[T_XSDT]);
}

/* Point of no return: the only place the caller's buffer is written. */
static void copy_out(const struct acpi_build *b, uint8_t *buf, uint64_t gpa)
{
    memset(buf, 0, b->total); /* alignment gaps */
    build_rsdp(table_gpa(b, gpa, T_XSDT), buf);
    for (int i = 0; i < T_COUNT; i++) {
        if (b->present[i])
            memcpy(buf + b->off[i], b->t[i].data, b->t[i].len);
    }
}

static int assemble(const struct acpi_config *cfg, struct acpi_build *b, uint8_t *buf,
                    size_t cap, uint64_t gpa)
{
    for (int i = 0; i < T_COUNT; i++)
        b->present[i] = i != T_SRAT || cfg->n_mem > 0;

    build_madt(cfg, &b->t[T_MADT]);
    if (b->present[T_SRAT])
        build_srat(cfg, &b->t[T_SRAT]);
    build_dsdt(cfg, &b->t[T_DSDT]);
    for (int i = 0; i < T_COUNT; i++) {
        if (b->t[i].error)
            return -ENOMEM; /* inputs were validated: only allocation can fail */
    }

    int ret = layout_tables(b, cap, gpa);
    if (ret)
        return ret;
    build_pointer_tables(b, gpa);
    for (int i = 0; i < T_COUNT; i++) {
        if (b->t[i].error)
            return -ENOMEM;
        /* The layout reserved exactly this much; anything else is a bug
         * that would make tables overlap. */
        if (b->present[i] && b->t[i].len != b->size[i])
            return -EINVAL;
    }

    copy_out(b, buf, gpa);
    return 0;
}

int acpi_build_tables(const struct acpi_config *cfg, uint8_t *buf, size_t cap, uint64_t gpa,
                      uint64_t *rsdp_gpa, size_t *used)
{
    struct acpi_build b;

    if (!buf || !rsdp_gpa || !used || gpa % RSDP_ALIGN != 0)
        return -EINVAL;
    int ret = validate_config(cfg);
    if (ret)
        return ret;
    if (cap < RSDP_LEN)
        return -ENOSPC;

    memset(&b, 0, sizeof(b));
    for (int i = 0; i < T_COUNT; i++)
        aml_buf_init(&b.t[i]);
    ret = assemble(cfg, &b, buf, cap, gpa);
    for (int i = 0; i < T_COUNT; i++)
        aml_buf_free(&b.t[i]);
    if (ret)
        return ret;

    *rsdp_gpa = gpa;
    *used = b.total;
    return 0;
}
