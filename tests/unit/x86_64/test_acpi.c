/* Tests for the AML builder and the x86_64 ACPI tables, including an
 * external check of the generated tables with ACPICA's iasl. */
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch/x86_64/acpi_tables.h"
#include "arch/x86_64/aml.h"
#include "arch/x86_64/layout.h"

#define GPA X86_ACPI_TABLES_ADDR
#define CAP ((size_t)X86_ACPI_TABLES_SIZE)
#define HDR 36

/* ---- little helpers ---- */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

static size_t count_bytes(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    size_t c = 0;
    for (size_t i = 0; m <= n && i <= n - m; i++)
        c += memcmp(hay + i, needle, m) == 0;
    return c;
}

static bool buf_equals(const struct aml_buf *b, const uint8_t *exp, size_t n)
{
    return !b->error && b->len == n && memcmp(b->data, exp, n) == 0;
}

/* ---- building and walking the tables ---- */

struct tables {
    uint8_t *buf;
    size_t used;
    uint64_t rsdp_gpa;
    int ret;
};

static struct tables build(const struct acpi_config *cfg)
{
    struct tables t = { .buf = calloc(1, CAP) };
    t.ret = t.buf ? acpi_build_tables(cfg, t.buf, CAP, GPA, &t.rsdp_gpa, &t.used) : -ENOMEM;
    return t;
}

/* The table at guest address gpa, or NULL unless it lies fully inside the
 * bytes the builder claimed. */
static const uint8_t *table_at(const struct tables *t, uint64_t gpa)
{
    if (gpa < GPA || gpa - GPA > t->used || t->used - (gpa - GPA) < HDR)
        return NULL;
    const uint8_t *p = t->buf + (gpa - GPA);
    uint32_t len = rd32(p + 4);
    if (len < HDR || len > t->used - (gpa - GPA))
        return NULL;
    return p;
}

static const uint8_t *xsdt_of(const struct tables *t)
{
    return table_at(t, rd64(t->buf + 24));
}

static size_t xsdt_entries(const uint8_t *x)
{
    return (rd32(x + 4) - HDR) / 8;
}

/* Looks a table up the way the guest does: XSDT entries, DSDT via FADT. */
static const uint8_t *find_table(const struct tables *t, const char *sig)
{
    if (strcmp(sig, "DSDT") == 0) {
        const uint8_t *fadt = find_table(t, "FACP");
        return fadt ? table_at(t, rd64(fadt + 140)) : NULL;
    }
    const uint8_t *x = xsdt_of(t);
    if (!x)
        return NULL;
    for (size_t i = 0; i < xsdt_entries(x); i++) {
        const uint8_t *p = table_at(t, rd64(x + HDR + 8 * i));
        if (p && memcmp(p, sig, 4) == 0)
            return p;
    }
    return NULL;
}

static const struct acpi_mmio_device three_devs[] = {
    { X86_VIRTIO_MMIO_BASE, X86_VIRTIO_MMIO_STRIDE, 5, 0 },
    { X86_VIRTIO_MMIO_BASE + X86_VIRTIO_MMIO_STRIDE, X86_VIRTIO_MMIO_STRIDE, 6, 1 },
    { 0x200000000ULL, 0x1000, 23, 2 }, /* above 4 GiB: QWordMemory */
};

static const uint32_t four_nodes[] = { 0, 1, 0x12345, 1 };

static const struct acpi_mem_affinity three_mems[] = {
    { 0, 0x80000000ULL, 0, false },
    { X86_4GIB, 0x40000000ULL, 1, false },
    { 0x400000000ULL, 0x80000000ULL, 1, true }, /* virtio-mem style region */
};

static struct acpi_config full_config(void)
{
    return (struct acpi_config){
        .ncpus = 4, .cpu_node = four_nodes,
        .mmio = three_devs, .n_mmio = 3,
        .mem = three_mems, .n_mem = 3,
    };
}

/* ---- RSDP / XSDT / checksums ---- */

TEST(test_rsdp)
{
    struct acpi_config cfg = { .ncpus = 1 };
    struct tables t = build(&cfg);

    CHECK_EQ(t.ret, 0);
    if (t.ret == 0) {
        CHECK_EQ(t.rsdp_gpa, GPA);
        CHECK(memcmp(t.buf, "RSD PTR ", 8) == 0);
        CHECK_EQ(sum8(t.buf, 20), 0);    /* ACPI 1.0 checksum */
        CHECK_EQ(sum8(t.buf, 36), 0);    /* extended checksum */
        CHECK(t.buf[8] != 0 || t.buf[32] != 0);
        CHECK(memcmp(t.buf + 9, "MINVMM", 6) == 0);
        CHECK_EQ(t.buf[15], 2);          /* revision */
        CHECK_EQ(rd32(t.buf + 16), 0);   /* no RSDT */
        CHECK_EQ(rd32(t.buf + 20), 36);  /* length */
        const uint8_t *x = xsdt_of(&t);
        CHECK(x != NULL);
        if (x)
            CHECK(memcmp(x, "XSDT", 4) == 0);
    }
    free(t.buf);
}

static void check_all_tables(const struct tables *t, bool with_srat)
{
    const uint8_t *x = xsdt_of(t);
    CHECK(x != NULL);
    if (!x)
        return;
    CHECK_EQ(sum8(x, rd32(x + 4)), 0);
    CHECK_EQ(rd32(x + 4), HDR + 8 * (with_srat ? 3 : 2));
    CHECK_EQ(xsdt_entries(x), with_srat ? 3 : 2);

    static const char *const sigs[] = { "FACP", "APIC", "SRAT" };
    for (size_t i = 0; i < xsdt_entries(x) && i < 3; i++) {
        const uint8_t *p = table_at(t, rd64(x + HDR + 8 * i));
        CHECK(p != NULL);
        if (p)
            CHECK(memcmp(p, sigs[i], 4) == 0);
    }

    static const char *const all[] = { "XSDT", "FACP", "APIC", "SRAT", "DSDT" };
    static const uint8_t revs[] = { 1, 6, 5, 3, 2 };
    for (size_t i = 0; i < 5; i++) {
        const uint8_t *p = strcmp(all[i], "XSDT") ? find_table(t, all[i]) : x;
        if (!with_srat && strcmp(all[i], "SRAT") == 0) {
            CHECK(p == NULL);
            continue;
        }
        CHECK(p != NULL);
        if (!p)
            continue;
        CHECK_EQ(sum8(p, rd32(p + 4)), 0);
        CHECK_EQ(p[8], revs[i]);
        CHECK(memcmp(p + 10, "MINVMM", 6) == 0);
        CHECK(memcmp(p + 16, "MINIVMM ", 8) == 0);
        /* Tables must not overlap the RSDP nor run past the claimed end. */
        CHECK((size_t)(p - t->buf) >= 36);
        CHECK((size_t)(p - t->buf) + rd32(p + 4) <= t->used);
    }
}

TEST(test_table_checksums_and_xsdt)
{
    struct acpi_config cfg = full_config();
    struct tables t = build(&cfg);
    CHECK_EQ(t.ret, 0);
    if (t.ret == 0)
        check_all_tables(&t, true);
    free(t.buf);

    struct acpi_config small = { .ncpus = 1 };
    t = build(&small);
    CHECK_EQ(t.ret, 0);
    if (t.ret == 0)
        check_all_tables(&t, false);
    free(t.buf);
}

/* ---- MADT ---- */

static void check_madt(unsigned ncpus)
{
    struct acpi_config cfg = { .ncpus = ncpus };
    struct tables t = build(&cfg);
    CHECK_EQ(t.ret, 0);
    const uint8_t *m = t.ret == 0 ? find_table(&t, "APIC") : NULL;
    CHECK(m != NULL);
    if (!m) {
        free(t.buf);
        return;
    }
    uint32_t len = rd32(m + 4);
    CHECK_EQ(len, 44 + 8 * ncpus + 12 + 6);
    CHECK_EQ(rd32(m + 36), X86_LAPIC_ADDR);
    CHECK_EQ(rd32(m + 40), 0);

    unsigned lapics = 0, ioapics = 0, nmis = 0, others = 0;
    size_t off = 44;
    while (off + 2 <= len) {
        const uint8_t *e = m + off;
        if (e[1] < 2 || off + e[1] > len)
            break;
        switch (e[0]) {
        case 0:
            CHECK_EQ(e[1], 8);
            CHECK_EQ(e[2], lapics); /* UID */
            CHECK_EQ(e[3], lapics); /* APIC id */
            CHECK_EQ(rd32(e + 4), 1);
            lapics++;
            break;
        case 1:
            CHECK_EQ(e[1], 12);
            CHECK_EQ(e[2], 0);
            CHECK_EQ(rd32(e + 4), X86_IOAPIC_ADDR);
            CHECK_EQ(rd32(e + 8), 0);
            ioapics++;
            break;
        case 4:
            CHECK_EQ(e[1], 6);
            CHECK_EQ(e[2], 0xFF);
            CHECK_EQ(rd16(e + 3), 0);
            CHECK_EQ(e[5], 1); /* LINT1 */
            nmis++;
            break;
        default:
            others++; /* includes type 2, interrupt source overrides */
        }
        off += e[1];
    }
    CHECK_EQ(off, len);
    CHECK_EQ(lapics, ncpus);
    CHECK_EQ(ioapics, 1);
    CHECK_EQ(nmis, 1);
    CHECK_EQ(others, 0);
    free(t.buf);
}

TEST(test_madt_cpu_counts)
{
    check_madt(1);
    check_madt(2);
    check_madt(64);
    check_madt(ACPI_MAX_CPUS);
}

/* ---- FADT ---- */

static void check_gas_io8(const uint8_t *g, uint64_t port)
{
    CHECK_EQ(g[0], 1); /* SystemIO */
    CHECK_EQ(g[1], 8);
    CHECK_EQ(g[2], 0);
    CHECK_EQ(g[3], 1); /* byte access */
    CHECK_EQ(rd64(g + 4), port);
}

TEST(test_fadt)
{
    struct acpi_config cfg = full_config();
    struct tables t = build(&cfg);
    CHECK_EQ(t.ret, 0);
    const uint8_t *f = t.ret == 0 ? find_table(&t, "FACP") : NULL;
    CHECK(f != NULL);
    if (f) {
        CHECK_EQ(rd32(f + 4), 276);
        CHECK_EQ(f[8], 6);
        uint32_t flags = rd32(f + 112);
        CHECK(flags & (1u << 20)); /* HW_REDUCED_ACPI */
        CHECK(flags & (1u << 10)); /* RESET_REG_SUP */
        CHECK_EQ(flags, (1u << 20) | (1u << 10) | (1u << 5) | (1u << 4));
        check_gas_io8(f + 116, X86_ACPI_RESET_PORT);
        CHECK_EQ(f[128], X86_ACPI_RESET_VALUE);
        check_gas_io8(f + 244, X86_ACPI_SLEEP_CONTROL_PORT);
        check_gas_io8(f + 256, X86_ACPI_SLEEP_STATUS_PORT);
        uint16_t iapc = rd16(f + 109);
        CHECK_EQ(iapc, (1u << 2) | (1u << 3) | (1u << 5)); /* no VGA, no MSI, no CMOS RTC */
        CHECK_EQ(rd32(f + 36), 0);  /* no FACS */
        CHECK_EQ(rd64(f + 132), 0);
        CHECK_EQ(rd16(f + 46), 0);  /* no SCI */
        uint64_t dsdt = rd64(f + 140);
        CHECK_EQ(rd32(f + 40), dsdt);
        const uint8_t *d = table_at(&t, dsdt);
        CHECK(d != NULL && memcmp(d, "DSDT", 4) == 0);
        CHECK(memcmp(f + 268, "MINIVMM", 7) == 0);
    }
    free(t.buf);
}

/* ---- DSDT ---- */

static void check_dsdt_devices(size_t n, const struct acpi_mmio_device *devs,
                               size_t expect_qword)
{
    struct acpi_config cfg = { .ncpus = 2, .mmio = devs, .n_mmio = n };
    struct tables t = build(&cfg);
    CHECK_EQ(t.ret, 0);
    const uint8_t *d = t.ret == 0 ? find_table(&t, "DSDT") : NULL;
    CHECK(d != NULL);
    if (!d) {
        free(t.buf);
        return;
    }
    size_t len = rd32(d + 4);
    CHECK_EQ(count_bytes(d, len, "LNRO0005", 8), n);
    for (size_t i = 0; i < n; i++) {
        char name[24];
        snprintf(name, sizeof(name), "V%03zX", i);
        CHECK_EQ(count_bytes(d, len, name, 4), 1);
    }
    static const uint8_t qword_hdr[] = { 0x8A, 0x2B, 0x00 };
    static const uint8_t mem32_hdr[] = { 0x86, 0x09, 0x00, 0x01 };
    CHECK_EQ(count_bytes(d, len, qword_hdr, 3), expect_qword);
    CHECK_EQ(count_bytes(d, len, mem32_hdr, 4), n - expect_qword);
    /* COM1: EISAID("PNP0501") and IO(Decode16, 0x3F8, 0x3F8, 1, 8). */
    static const uint8_t pnp0501[] = { 0x0C, 0x41, 0xD0, 0x05, 0x01 };
    static const uint8_t com1_io[] = { 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08 };
    CHECK_EQ(count_bytes(d, len, pnp0501, sizeof(pnp0501)), 1);
    CHECK_EQ(count_bytes(d, len, com1_io, sizeof(com1_io)), 1);
    /* COM1's interrupt is a level: Interrupt(ResourceConsumer, Level,
     * ActiveHigh, Exclusive) {4}, as devices/serial_16550.c drives it. */
    static const uint8_t com1_irq[] = { 0x89, 0x06, 0x00, 0x01, 0x01, 0x04, 0, 0, 0 };
    CHECK_EQ(count_bytes(d, len, com1_irq, sizeof(com1_irq)), 1);
    /* Name(_S5_, Package(4){5, 0, 0, 0}) */
    static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04,
                                  0x0A, 0x05, 0x00, 0x00, 0x00 };
    CHECK_EQ(count_bytes(d, len, s5, sizeof(s5)), 1);
    /* Each device GSI as Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive). */
    for (size_t i = 0; i < n; i++) {
        const uint8_t irq[] = { 0x89, 0x06, 0x00, 0x03, 0x01, (uint8_t)devs[i].gsi, 0, 0, 0 };
        CHECK_EQ(count_bytes(d, len, irq, sizeof(irq)), 1);
    }
    free(t.buf);
}

TEST(test_dsdt_one_device_per_mmio)
{
    struct acpi_mmio_device many[X86_LAST_DEVICE_GSI - X86_FIRST_DEVICE_GSI + 1];
    size_t n_many = sizeof(many) / sizeof(many[0]);
    for (size_t i = 0; i < n_many; i++) {
        many[i] = (struct acpi_mmio_device){
            .base = X86_VIRTIO_MMIO_BASE + i * X86_VIRTIO_MMIO_STRIDE,
            .size = X86_VIRTIO_MMIO_STRIDE,
            .gsi = (uint32_t)(X86_FIRST_DEVICE_GSI + i),
            .uid = (uint32_t)i,
        };
    }
    check_dsdt_devices(0, NULL, 0);
    check_dsdt_devices(1, three_devs, 0);
    check_dsdt_devices(3, three_devs, 1);
    check_dsdt_devices(n_many, many, 0);
}

/* ---- SRAT ---- */

TEST(test_srat)
{
    struct acpi_config cfg = full_config();
    struct tables t = build(&cfg);
    CHECK_EQ(t.ret, 0);
    const uint8_t *s = t.ret == 0 ? find_table(&t, "SRAT") : NULL;
    CHECK(s != NULL);
    if (s) {
        uint32_t len = rd32(s + 4);
        CHECK_EQ(len, 48 + 16 * 4 + 40 * 3);
        CHECK_EQ(s[8], 3);
        CHECK_EQ(rd32(s + 36), 1);
        size_t off = 48, cpus = 0, mems = 0;
        while (off + 2 <= len && s[off + 1] >= 2 && off + s[off + 1] <= len) {
            const uint8_t *e = s + off;
            if (e[0] == 0) {
                CHECK_EQ(e[1], 16);
                CHECK(cpus < 4);
                uint32_t pxm = e[2] | (uint32_t)e[9] << 8 | (uint32_t)e[10] << 16 |
                               (uint32_t)e[11] << 24;
                CHECK_EQ(e[3], cpus);
                CHECK_EQ(pxm, four_nodes[cpus < 4 ? cpus : 0]);
                CHECK_EQ(rd32(e + 4), 1);
                cpus++;
            } else if (e[0] == 1) {
                CHECK_EQ(e[1], 40);
                CHECK(mems < 3);
                const struct acpi_mem_affinity *m = &three_mems[mems < 3 ? mems : 0];
                CHECK_EQ(rd32(e + 2), m->node);
                CHECK_EQ(rd64(e + 8), m->base);
                CHECK_EQ(rd64(e + 16), m->size);
                CHECK_EQ(rd32(e + 28), m->hotpluggable ? 3 : 1);
                mems++;
            } else {
                CHECK(false);
            }
            off += e[1];
        }
        CHECK_EQ(off, len);
        CHECK_EQ(cpus, 4);
        CHECK_EQ(mems, 3);
    }
    free(t.buf);

    /* cpu_node NULL: every CPU on node 0. */
    cfg.cpu_node = NULL;
    t = build(&cfg);
    s = t.ret == 0 ? find_table(&t, "SRAT") : NULL;
    CHECK(s != NULL);
    for (size_t i = 0; s && i < 4; i++) {
        const uint8_t *e = s + 48 + 16 * i;
        CHECK_EQ(e[0], 0);
        CHECK_EQ(e[2] | e[9] | e[10] | e[11], 0);
    }
    free(t.buf);

    /* No memory affinity: no SRAT at all. */
    struct acpi_config none = { .ncpus = 4, .mmio = three_devs, .n_mmio = 3 };
    t = build(&none);
    CHECK_EQ(t.ret, 0);
    CHECK(t.ret != 0 || find_table(&t, "SRAT") == NULL);
    free(t.buf);
}

/* ---- error paths ---- */

TEST(test_enospc_leaves_buffer_alone)
{
    struct acpi_config cfg = full_config();
    struct tables full = build(&cfg);
    CHECK_EQ(full.ret, 0);
    if (full.ret != 0) {
        free(full.buf);
        return;
    }
    const size_t caps[] = { 0, 1, 35, 36, 37, 100, full.used / 2, full.used - 1 };
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        size_t cap = caps[i];
        uint8_t *buf = malloc(cap + 1);
        CHECK(buf != NULL);
        if (!buf)
            continue;
        memset(buf, 0xA5, cap + 1);
        uint64_t rsdp = 0x1234;
        size_t used = 0x5678;
        CHECK_EQ(acpi_build_tables(&cfg, buf, cap, GPA, &rsdp, &used), -ENOSPC);
        CHECK_EQ(rsdp, 0x1234);
        CHECK_EQ(used, 0x5678);
        size_t touched = 0;
        for (size_t j = 0; j <= cap; j++)
            touched += buf[j] != 0xA5;
        CHECK_EQ(touched, 0);
        free(buf);
    }

    /* Exactly enough room gives the same bytes as a roomy buffer. */
    uint8_t *exact = malloc(full.used);
    uint64_t rsdp;
    size_t used;
    CHECK(exact != NULL);
    if (exact) {
        CHECK_EQ(acpi_build_tables(&cfg, exact, full.used, GPA, &rsdp, &used), 0);
        CHECK_EQ(used, full.used);
        CHECK(memcmp(exact, full.buf, full.used) == 0);
        free(exact);
    }
    free(full.buf);
}

static int try_build(const struct acpi_config *cfg, uint64_t gpa)
{
    static uint8_t buf[X86_ACPI_TABLES_SIZE];
    uint64_t rsdp;
    size_t used;
    return acpi_build_tables(cfg, buf, sizeof(buf), gpa, &rsdp, &used);
}

TEST(test_einval)
{
    struct acpi_config cfg = { .ncpus = 1 };
    uint8_t buf[64];
    uint64_t rsdp;
    size_t used;

    CHECK_EQ(try_build(NULL, GPA), -EINVAL);
    CHECK_EQ(acpi_build_tables(&cfg, NULL, 64, GPA, &rsdp, &used), -EINVAL);
    CHECK_EQ(acpi_build_tables(&cfg, buf, sizeof(buf), GPA, NULL, &used), -EINVAL);
    CHECK_EQ(acpi_build_tables(&cfg, buf, sizeof(buf), GPA, &rsdp, NULL), -EINVAL);
    CHECK_EQ(try_build(&cfg, GPA + 8), -EINVAL);        /* misaligned */
    CHECK_EQ(try_build(&cfg, X86_4GIB - 0x100), -EINVAL); /* would cross 4 GiB */
    CHECK_EQ(try_build(&cfg, GPA), 0);

    cfg.ncpus = 0;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    cfg.ncpus = ACPI_MAX_CPUS + 1;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    cfg.ncpus = 2;

    struct acpi_mmio_device d[2] = { three_devs[0], three_devs[1] };
    cfg.mmio = d;
    cfg.n_mmio = 2;
    CHECK_EQ(try_build(&cfg, GPA), 0);
    d[1].gsi = X86_COM1_GSI;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    d[1].gsi = X86_LAST_DEVICE_GSI + 1;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    d[1].gsi = d[0].gsi; /* both Exclusive */
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    d[1] = three_devs[1];
    d[1].uid = d[0].uid;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    d[1] = three_devs[1];
    d[1].size = 0;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    d[1] = three_devs[1];
    d[1].base = UINT64_MAX - 0xFFF;
    d[1].size = 0x2000;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    d[1] = three_devs[1];
    cfg.mmio = NULL;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    cfg.mmio = d;
    cfg.n_mmio = ACPI_MAX_MMIO_DEVICES + 1;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    cfg.n_mmio = 2;

    struct acpi_mem_affinity m[2] = { three_mems[0], three_mems[1] };
    cfg.mem = m;
    cfg.n_mem = 2;
    CHECK_EQ(try_build(&cfg, GPA), 0);
    m[1].base = m[0].base + m[0].size - 1; /* one byte of overlap */
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    m[1] = three_mems[1];
    m[1].size = 0;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    m[1] = three_mems[1];
    cfg.mem = NULL;
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
    cfg.mem = m;

    static const uint32_t nodes[2] = { 0, 1 };
    cfg.cpu_node = nodes;
    CHECK_EQ(try_build(&cfg, GPA), 0);
    cfg.n_mem = 0; /* node assignment without an SRAT */
    CHECK_EQ(try_build(&cfg, GPA), -EINVAL);
}

/* ---- AML encodings ---- */

static size_t decode_pkglength(const uint8_t *p, uint32_t *value)
{
    size_t n = (size_t)(p[0] >> 6) + 1;
    if (n == 1) {
        *value = p[0] & 0x3F;
        return 1;
    }
    uint32_t v = p[0] & 0x0F;
    for (size_t i = 1; i < n; i++)
        v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
    *value = v;
    return n;
}

static void check_pkglength(uint32_t value, size_t n, const uint8_t *exp)
{
    uint8_t out[AML_PKGLEN_MAX_BYTES];
    size_t got = aml_pkglength_encode(value, out);
    CHECK_EQ(got, n);
    if (got == n && n)
        CHECK(memcmp(out, exp, n) == 0);
}

static void check_body(size_t body_len, size_t n)
{
    uint8_t out[AML_PKGLEN_MAX_BYTES];
    uint32_t v = 0;
    CHECK_EQ(aml_pkglength_for_body(body_len, out), n);
    CHECK_EQ(decode_pkglength(out, &v), n);
    CHECK_EQ(v, body_len + n);
}

TEST(test_aml_pkglength_boundaries)
{
    /* Raw PkgLength values at the 1/2/3/4-byte boundaries. */
    check_pkglength(63, 1, (const uint8_t[]){ 0x3F });
    check_pkglength(64, 2, (const uint8_t[]){ 0x40, 0x04 });
    check_pkglength(4095, 2, (const uint8_t[]){ 0x4F, 0xFF });
    check_pkglength(4096, 3, (const uint8_t[]){ 0x80, 0x00, 0x01 });
    check_pkglength(0xFFFFF, 3, (const uint8_t[]){ 0x8F, 0xFF, 0xFF });
    check_pkglength(0x100000, 4, (const uint8_t[]){ 0xC0, 0x00, 0x00, 0x01 });
    check_pkglength(0xFFFFFFF, 4, (const uint8_t[]){ 0xCF, 0xFF, 0xFF, 0xFF });
    check_pkglength(0x10000000, 0, NULL);

    /* Bodies of 63/64/4095/4096 bytes, and the exact points where the
     * length (which counts its own bytes) tips into the next width. */
    check_body(62, 1);   /* 63 total */
    check_body(63, 2);
    check_body(64, 2);
    check_body(4093, 2); /* 4095 total */
    check_body(4094, 3);
    check_body(4095, 3);
    check_body(4096, 3);
    check_body(0xFFFFC, 3);
    check_body(0xFFFFD, 4);
    check_body(0x0FFFFFFB, 4);
    uint8_t out[AML_PKGLEN_MAX_BYTES];
    CHECK_EQ(aml_pkglength_for_body(0x0FFFFFFC, out), 0);

    /* Through a real Scope: opcode, PkgLength, NameSeg, body. */
    const size_t bodies[] = { 0, 58, 59, 63, 64, 4089, 4090, 4095, 4096, 70000 };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct aml_buf body, out_buf;
        aml_buf_init(&body);
        aml_buf_init(&out_buf);
        aml_append_zeros(&body, bodies[i]);
        aml_scope(&out_buf, "ABCD", &body);
        CHECK(aml_buf_ok(&out_buf));
        if (aml_buf_ok(&out_buf) && out_buf.len > 2) {
            uint32_t v = 0;
            size_t n = decode_pkglength(out_buf.data + 1, &v);
            CHECK_EQ(out_buf.data[0], 0x10);
            CHECK_EQ(v, out_buf.len - 1);
            CHECK_EQ(out_buf.len, 1 + n + 4 + bodies[i]);
            CHECK(memcmp(out_buf.data + 1 + n, "ABCD", 4) == 0);
            uint8_t minimal[AML_PKGLEN_MAX_BYTES];
            CHECK_EQ(n, aml_pkglength_for_body(4 + bodies[i], minimal));
        }
        aml_buf_free(&body);
        aml_buf_free(&out_buf);
    }
}

static void check_int(uint64_t v, const uint8_t *exp, size_t n)
{
    struct aml_buf b;
    aml_buf_init(&b);
    aml_integer(&b, v);
    CHECK(buf_equals(&b, exp, n));
    aml_buf_free(&b);
}

TEST(test_aml_integers)
{
    check_int(0, (const uint8_t[]){ 0x00 }, 1);
    check_int(1, (const uint8_t[]){ 0x01 }, 1);
    check_int(2, (const uint8_t[]){ 0x0A, 0x02 }, 2);
    check_int(0xFF, (const uint8_t[]){ 0x0A, 0xFF }, 2);
    check_int(0x100, (const uint8_t[]){ 0x0B, 0x00, 0x01 }, 3);
    check_int(0xFFFF, (const uint8_t[]){ 0x0B, 0xFF, 0xFF }, 3);
    check_int(0x10000, (const uint8_t[]){ 0x0C, 0x00, 0x00, 0x01, 0x00 }, 5);
    check_int(0xFFFFFFFF, (const uint8_t[]){ 0x0C, 0xFF, 0xFF, 0xFF, 0xFF }, 5);
    check_int(0x100000000ULL,
              (const uint8_t[]){ 0x0E, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00 }, 9);
    check_int(0x0123456789ABCDEFULL,
              (const uint8_t[]){ 0x0E, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01 }, 9);
    check_int(UINT64_MAX,
              (const uint8_t[]){ 0x0E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, 9);
}

static void check_name(const char *path, const uint8_t *exp, size_t n)
{
    struct aml_buf b;
    aml_buf_init(&b);
    aml_namestring(&b, path);
    if (exp)
        CHECK(buf_equals(&b, exp, n));
    else
        CHECK(!aml_buf_ok(&b));
    aml_buf_free(&b);
}

TEST(test_aml_names_strings_eisaid)
{
    check_name("_SB_", (const uint8_t *)"_SB_", 4);
    check_name("_SB", (const uint8_t *)"_SB_", 4);
    check_name("\\_SB_", (const uint8_t *)"\\_SB_", 5);
    check_name("\\", (const uint8_t[]){ 0x5C, 0x00 }, 2);
    check_name("\\_SB_.V000", (const uint8_t *)"\\\x2E_SB_V000", 10);
    check_name("A.B.C", (const uint8_t *)"\x2F\x03"
                                         "A___B___C___", 14);
    check_name("", NULL, 0);
    check_name("abcd", NULL, 0);
    check_name("TOOLONG", NULL, 0);
    check_name("1ABC", NULL, 0);
    check_name("A..B", NULL, 0);
    check_name("A.", NULL, 0);
    check_name(NULL, NULL, 0);

    struct aml_buf b;
    aml_buf_init(&b);
    aml_name(&b, "_S5");
    aml_string(&b, "LNRO0005");
    CHECK(buf_equals(&b, (const uint8_t *)"\x08_S5_\x0DLNRO0005", 15));
    aml_buf_free(&b);

    aml_eisaid(&b, "PNP0501");
    CHECK(buf_equals(&b, (const uint8_t[]){ 0x0C, 0x41, 0xD0, 0x05, 0x01 }, 5));
    aml_buf_free(&b);
    aml_eisaid(&b, "PNP0A03");
    CHECK(buf_equals(&b, (const uint8_t[]){ 0x0C, 0x41, 0xD0, 0x0A, 0x03 }, 5));
    aml_buf_free(&b);
    aml_eisaid(&b, "pnp0501");
    CHECK(!aml_buf_ok(&b));
    aml_buf_free(&b);
    aml_eisaid(&b, "PNP050");
    CHECK(!aml_buf_ok(&b));
    aml_buf_free(&b);
    aml_string(&b, "caf\xC3\xA9");
    CHECK(!aml_buf_ok(&b));
    aml_buf_free(&b);
}

TEST(test_aml_objects_and_resources)
{
    struct aml_buf b, body, descs;
    aml_buf_init(&b);
    aml_buf_init(&body);
    aml_buf_init(&descs);

    aml_integer(&body, 5);
    aml_integer(&body, 0);
    aml_integer(&body, 0);
    aml_integer(&body, 0);
    aml_package(&b, 4, &body);
    CHECK(buf_equals(&b, (const uint8_t[]){ 0x12, 0x07, 0x04, 0x0A, 0x05, 0, 0, 0 }, 8));
    aml_buf_free(&b);
    aml_buf_free(&body);

    aml_name(&body, "_UID");
    aml_integer(&body, 0);
    aml_device(&b, "V000", &body);
    CHECK(buf_equals(&b, (const uint8_t *)"\x5B\x82\x0BV000\x08_UID\x00", 13));
    aml_buf_free(&b);
    aml_buf_free(&body);

    aml_res_memory32_fixed(&b, 0xD0000000, 0x1000, AML_READ_WRITE);
    CHECK(buf_equals(&b, (const uint8_t[]){ 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0,
                                            0x00, 0x10, 0x00, 0x00 }, 12));
    aml_buf_free(&b);
    aml_res_memory32_fixed(&b, 0xFFFFF000, 0x2000, AML_READ_WRITE); /* crosses 4 GiB */
    CHECK(!aml_buf_ok(&b));
    aml_buf_free(&b);

    aml_res_qword_memory(&b, 0x200000000ULL, 0x1000, AML_READ_WRITE);
    CHECK_EQ(b.len, 46);
    if (b.len == 46) {
        CHECK(memcmp(b.data, (const uint8_t[]){ 0x8A, 0x2B, 0x00, 0x00, 0x0D, 0x01 }, 6) == 0);
        CHECK_EQ(rd64(b.data + 6), 0);
        CHECK_EQ(rd64(b.data + 14), 0x200000000ULL);
        CHECK_EQ(rd64(b.data + 22), 0x200000FFFULL);
        CHECK_EQ(rd64(b.data + 30), 0);
        CHECK_EQ(rd64(b.data + 38), 0x1000);
    }
    aml_buf_free(&b);
    aml_res_qword_memory(&b, 0x1000, 0, AML_READ_WRITE);
    CHECK(!aml_buf_ok(&b));
    aml_buf_free(&b);

    const uint32_t one = 5, two[2] = { 9, 10 };
    aml_res_ext_irq(&b, AML_CONSUMER, AML_EDGE, AML_ACTIVE_HIGH, AML_EXCLUSIVE, &one, 1);
    CHECK(buf_equals(&b, (const uint8_t[]){ 0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0, 0, 0 }, 9));
    aml_buf_free(&b);
    aml_res_ext_irq(&b, AML_PRODUCER, AML_LEVEL, AML_ACTIVE_LOW, AML_SHARED, two, 2);
    CHECK(buf_equals(&b, (const uint8_t[]){ 0x89, 0x0A, 0x00, 0x0C, 0x02, 0x09, 0, 0, 0,
                                            0x0A, 0, 0, 0 }, 13));
    aml_buf_free(&b);
    aml_res_ext_irq(&b, AML_CONSUMER, AML_EDGE, AML_ACTIVE_HIGH, AML_EXCLUSIVE, &one, 0);
    CHECK(!aml_buf_ok(&b));
    aml_buf_free(&b);

    aml_res_io(&b, 0x3F8, 0x3F8, 1, 8);
    CHECK(buf_equals(&b, (const uint8_t[]){ 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08 }, 8));
    aml_buf_free(&b);

    aml_res_memory32_fixed(&descs, 0xD0000000, 0x1000, AML_READ_WRITE);
    aml_resource_template(&b, &descs);
    /* BufferOp, PkgLength 17, BufferSize 14, descriptor, EndTag + checksum 0. */
    CHECK_EQ(b.len, 18);
    if (b.len == 18) {
        CHECK(memcmp(b.data, (const uint8_t[]){ 0x11, 0x11, 0x0A, 0x0E, 0x86 }, 5) == 0);
        CHECK(memcmp(b.data + 16, (const uint8_t[]){ 0x79, 0x00 }, 2) == 0);
    }
    aml_buf_free(&b);
    aml_buf_free(&descs);
}

TEST(test_aml_errors_are_sticky)
{
    struct aml_buf b, body;
    aml_buf_init(&b);
    aml_buf_init(&body);

    aml_namestring(&body, "bad name");
    CHECK(!aml_buf_ok(&body));
    size_t len = body.len;
    aml_append_u32(&body, 0x12345678);
    CHECK_EQ(body.len, len); /* later appends are ignored */

    aml_device(&b, "DEV0", &body); /* a poisoned body poisons the parent */
    CHECK(!aml_buf_ok(&b));
    aml_buf_free(&b);
    aml_resource_template(&b, &body);
    CHECK(!aml_buf_ok(&b));
    aml_buf_free(&b);
    aml_buf_free(&body);
    CHECK(aml_buf_ok(&body)); /* free re-initialises */
}

/* ---- iasl ---- */


static char *read_text(const char *dir, const char *name)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            char *p = realloc(text, cap + 65536);
            if (!p)
                break;
            text = p;
            cap += 65536;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (text)
        text[len] = '\0';
    return text;
}

static bool write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return false;
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char path[4096];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < sizeof(path))
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Fails the test (printing the text) if it carries any diagnostic. */
static void check_clean(const char *what, const char *text)
{
    static const char *const bad[] = { "Error", "Warning", "Incorrect", "Invalid", "****" };
    CHECK(text != NULL);
    for (size_t i = 0; text && i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (strstr(text, bad[i])) {
            fprintf(stderr, "  iasl output for %s contains '%s':\n%s\n", what, bad[i], text);
            unit_fail(__FILE__, __LINE__, "iasl output is clean");
        }
    }
}

static void iasl_disassemble_one(const char *dir, const char *table)
{
    char dat[32], log[32], dsl[32];
    snprintf(dat, sizeof(dat), "%s.dat", table);
    snprintf(log, sizeof(log), "%s.log", table);
    snprintf(dsl, sizeof(dsl), "%s.dsl", table);
    char *const argv[] = { "iasl", "-d", dat, NULL };
    int rc = unit_run_in(dir, log, argv);
    char *out = read_text(dir, log);
    if (rc != 0)
        fprintf(stderr, "  iasl -d %s exited %d:\n%s\n", dat, rc, out ? out : "");
    CHECK_EQ(rc, 0);
    check_clean(log, out);
    free(out);
    char *text = read_text(dir, dsl);
    check_clean(dsl, text);
    if (text)
        CHECK_STR_CONTAINS(text, "Signature");
    free(text);
}

/* iasl cannot load a bare RSDP ("Loading an RSDP is not supported" in
 * ACPICA's acfileio.c), so it is checked through iasl's data table compiler
 * instead: the same fields with zeroed checksums must compile to our exact
 * bytes, since the compiler fills in both checksums itself. */
static void iasl_check_rsdp(const char *dir, const uint8_t *rsdp)
{
    char src[1024];
    snprintf(src, sizeof(src),
             "[0008]          Signature : \"RSD PTR \"\n"
             "[0001]           Checksum : 00\n"
             "[0006]             Oem ID : \"%.6s\"\n"
             "[0001]           Revision : %02X\n"
             "[0004]       RSDT Address : %08X\n"
             "[0004]             Length : %08X\n"
             "[0008]       XSDT Address : %016llX\n"
             "[0001]  Extended Checksum : 00\n"
             "[0003]           Reserved : 000000\n",
             (const char *)rsdp + 9, rsdp[15], rd32(rsdp + 16), rd32(rsdp + 20),
             (unsigned long long)rd64(rsdp + 24));
    CHECK(write_file(dir, "rsdp.asl", src, strlen(src)));
    char *const argv[] = { "iasl", "rsdp.asl", NULL };
    int rc = unit_run_in(dir, "rsdp.log", argv);
    char *out = read_text(dir, "rsdp.log");
    CHECK_EQ(rc, 0);
    CHECK_STR_CONTAINS(out, "Compilation successful. 0 Errors, 0 Warnings");
    free(out);
    char *bin = read_text(dir, "rsdp.aml");
    CHECK(bin != NULL);
    if (bin)
        CHECK(memcmp(bin, rsdp, 36) == 0);
    free(bin);
}

static void iasl_check_config(const char *dir, const struct acpi_config *cfg, bool srat)
{
    struct tables t = build(cfg);
    CHECK_EQ(t.ret, 0);
    if (t.ret != 0) {
        free(t.buf);
        return;
    }
    static const char *const sigs[] = { "XSDT", "FACP", "APIC", "SRAT", "DSDT" };
    static const char *const files[] = { "xsdt", "facp", "apic", "srat", "dsdt" };
    for (size_t i = 0; i < 5; i++) {
        if (!srat && i == 3)
            continue;
        const uint8_t *p = i == 0 ? xsdt_of(&t) : find_table(&t, sigs[i]);
        CHECK(p != NULL);
        char dat[32];
        snprintf(dat, sizeof(dat), "%s.dat", files[i]);
        CHECK(p && write_file(dir, dat, p, rd32(p + 4)));
        iasl_disassemble_one(dir, files[i]);
    }
    iasl_check_rsdp(dir, t.buf);

    /* All tables in one run, then the DSDT text. */
    char *const all_srat[] = { "iasl", "-d", "dsdt.dat", "facp.dat", "apic.dat",
                               "xsdt.dat", "srat.dat", NULL };
    char *const all_nosrat[] = { "iasl", "-d", "dsdt.dat", "facp.dat", "apic.dat",
                                 "xsdt.dat", NULL };
    int rc = unit_run_in(dir, "all.log", srat ? all_srat : all_nosrat);
    CHECK_EQ(rc, 0);
    char *out = read_text(dir, "all.log");
    check_clean("all.log", out);
    free(out);
    char *dsl = read_text(dir, "dsdt.dsl");
    check_clean("dsdt.dsl", dsl);
    CHECK_STR_CONTAINS(dsl, "_S5");
    CHECK_STR_CONTAINS(dsl, "PNP0501");
    for (size_t i = 0; dsl && i < cfg->n_mmio; i++) {
        CHECK_STR_CONTAINS(dsl, "LNRO0005");
        char name[32];
        snprintf(name, sizeof(name), "Device (V%03zX)", i);
        CHECK_STR_CONTAINS(dsl, name);
    }
    free(dsl);

    /* The disassembly must compile back without complaint: catches AML that
     * parses but is semantically off (e.g. inconsistent QWordMemory ranges). */
    char *const recompile[] = { "iasl", "-p", "dsdt_rt", "dsdt.dsl", NULL };
    rc = unit_run_in(dir, "recompile.log", recompile);
    out = read_text(dir, "recompile.log");
    CHECK_EQ(rc, 0);
    CHECK_STR_CONTAINS(out, "Compilation successful. 0 Errors, 0 Warnings");
    free(out);
    free(t.buf);
}

TEST(test_iasl_accepts_tables)
{
    /* acpica-tools is a declared project dependency: missing iasl is a
     * failure, not a skip. */
    if (!unit_tool_in_path("iasl")) {
        unit_fail(__FILE__, __LINE__, "iasl not found in PATH (install acpica-tools)");
        return;
    }
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/minivmm-acpi-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);

    struct acpi_config full = full_config();
    iasl_check_config(dir, &full, true);
    remove_tree(dir);

    CHECK(mkdir(dir, 0700) == 0);
    struct acpi_config minimal = { .ncpus = 1 };
    iasl_check_config(dir, &minimal, false);
    remove_tree(dir);
}
