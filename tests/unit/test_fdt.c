/* The arm64 guest's device tree (arch/arm64/fdt.c): every node and property
 * of a full machine, decompiled with dtc and compared whole; dtc's checks
 * and a dts -> dtb -> dts round trip; libfdt's view of the references; the
 * variations (Aff3 MPIDRs, an initrd above 4 GiB, nothing optional); and
 * dt-validate (Debian's dt-schema) on the blob. */
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch/arm64/fdt.h"
#include "arch/arm64/layout.h"

#define MiB (1ULL << 20)
#define BLOB_MAX (64 * 1024)

/* ---- a machine to describe ---- */

/* As KVM reports MPIDR_EL1: bit 31 is RES1, vCPU n has Aff0 = n % 16. */
static const uint64_t two_mpidrs[2] = {0x80000000, 0x80000001};
static const struct mem_range ram_512m = {ARM64_RAM_BASE, 512 * MiB};
static const struct arm64_fdt_mmio_device two_virtio[2] = {
    {ARM64_VIRTIO_MMIO_BASE, 0x200, ARM64_FIRST_DEVICE_SPI},
    {ARM64_VIRTIO_MMIO_BASE + ARM64_VIRTIO_MMIO_STRIDE, 0x200, ARM64_FIRST_DEVICE_SPI + 1},
};
static const uint8_t seed16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static struct arm64_fdt_desc full_machine(void)
{
    return (struct arm64_fdt_desc){
        .mpidr = two_mpidrs,
        .n_cpus = 2,
        .ram = &ram_512m,
        .n_ram = 1,
        .gic_dist_base = ARM64_GIC_DIST_BASE,
        .gic_dist_size = ARM64_GIC_DIST_SIZE,
        .gic_redist_base = ARM64_GIC_REDIST_BASE,
        .gic_redist_size = arm64_gic_redist_size(2),
        .uart = {ARM64_UART_BASE, ARM64_UART_SIZE, ARM64_UART_SPI},
        .virtio = two_virtio,
        .n_virtio = 2,
        .bootargs = "console=ttyS0 quiet",
        .initrd_start = 0x5f000000,
        .initrd_end = 0x5f100000,
        .rng_seed = seed16,
        .rng_seed_len = sizeof(seed16),
    };
}

/* What dtc 1.6 prints for full_machine(): the whole tree, nothing else. */
static const char full_machine_dts[] =
    "/dts-v1/;\n"
    "\n"
    "/ {\n"
    "\tcompatible = \"linux,dummy-virt\";\n"
    "\tmodel = \"minivmm\";\n"
    "\t#address-cells = <0x02>;\n"
    "\t#size-cells = <0x02>;\n"
    "\tinterrupt-parent = <0x01>;\n"
    "\n"
    "\tchosen {\n"
    "\t\tbootargs = \"console=ttyS0 quiet\";\n"
    "\t\tstdout-path = \"/serial@9000000\";\n"
    "\t\tlinux,initrd-start = <0x5f000000>;\n"
    "\t\tlinux,initrd-end = <0x5f100000>;\n"
    "\t\trng-seed = <0x10203 0x4050607 0x8090a0b 0xc0d0e0f>;\n"
    "\t};\n"
    "\n"
    "\taliases {\n"
    "\t\tserial0 = \"/serial@9000000\";\n"
    "\t};\n"
    "\n"
    "\tmemory@40000000 {\n"
    "\t\tdevice_type = \"memory\";\n"
    "\t\treg = <0x00 0x40000000 0x00 0x20000000>;\n"
    "\t};\n"
    "\n"
    "\tcpus {\n"
    "\t\t#address-cells = <0x01>;\n"
    "\t\t#size-cells = <0x00>;\n"
    "\n"
    "\t\tcpu@0 {\n"
    "\t\t\tdevice_type = \"cpu\";\n"
    "\t\t\tcompatible = \"arm,arm-v8\";\n"
    "\t\t\treg = <0x00>;\n"
    "\t\t\tenable-method = \"psci\";\n"
    "\t\t};\n"
    "\n"
    "\t\tcpu@1 {\n"
    "\t\t\tdevice_type = \"cpu\";\n"
    "\t\t\tcompatible = \"arm,arm-v8\";\n"
    "\t\t\treg = <0x01>;\n"
    "\t\t\tenable-method = \"psci\";\n"
    "\t\t};\n"
    "\t};\n"
    "\n"
    "\tpsci {\n"
    "\t\tcompatible = \"arm,psci-0.2\";\n"
    "\t\tmethod = \"hvc\";\n"
    "\t};\n"
    "\n"
    "\ttimer {\n"
    "\t\tcompatible = \"arm,armv8-timer\";\n"
    /* <PPI 13 level>, <PPI 14 level>, <PPI 11 level>, <PPI 10 level> */
    "\t\tinterrupts = <0x01 0x0d 0x04 0x01 0x0e 0x04 0x01 0x0b 0x04 0x01 0x0a 0x04>;\n"
    "\t};\n"
    "\n"
    "\tinterrupt-controller@8000000 {\n"
    "\t\tcompatible = \"arm,gic-v3\";\n"
    "\t\t#interrupt-cells = <0x03>;\n"
    "\t\t#address-cells = <0x00>;\n"
    "\t\tinterrupt-controller;\n"
    /* distributor 64 KiB, redistributors 2 x 128 KiB */
    "\t\treg = <0x00 0x8000000 0x00 0x10000 0x00 0xc000000 0x00 0x40000>;\n"
    "\t\tphandle = <0x01>;\n"
    "\t};\n"
    "\n"
    "\tserial@9000000 {\n"
    "\t\tcompatible = \"ns16550a\";\n"
    "\t\treg = <0x00 0x9000000 0x00 0x1000>;\n"
    "\t\treg-shift = <0x00>;\n"
    "\t\treg-io-width = <0x01>;\n"
    "\t\tclock-frequency = <0x1c2000>;\n"
    /* <SPI 1 level-high> */
    "\t\tinterrupts = <0x00 0x01 0x04>;\n"
    "\t};\n"
    "\n"
    "\tvirtio@a000000 {\n"
    "\t\tcompatible = \"virtio,mmio\";\n"
    "\t\treg = <0x00 0xa000000 0x00 0x200>;\n"
    "\t\tinterrupts = <0x00 0x10 0x01>;\n"
    "\t\tdma-coherent;\n"
    "\t};\n"
    "\n"
    "\tvirtio@a001000 {\n"
    "\t\tcompatible = \"virtio,mmio\";\n"
    "\t\treg = <0x00 0xa001000 0x00 0x200>;\n"
    "\t\tinterrupts = <0x00 0x11 0x01>;\n"
    "\t\tdma-coherent;\n"
    "\t};\n"
    "};\n";

static int build(const struct arm64_fdt_desc *d, uint8_t *blob, size_t *used)
{
    const char *why = NULL;
    int rc = arm64_fdt_build(d, blob, BLOB_MAX, used, &why);
    if (rc)
        fprintf(stderr, "  arm64_fdt_build: %s\n", why ? why : "?");
    return rc;
}

/* ---- running dtc and dt-validate ---- */


/* dir/name's contents, NUL-terminated; *len (if given) without the NUL. */
static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return false;   /* a truncated path would name another file */
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0, got;
    do {
        if (cap - n < 4096) {
            char *p = realloc(buf, cap + 65536);
            if (!p)
                break;
            buf = p;
            cap += 65536;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
    } while (got > 0);
    fclose(f);
    if (buf)
        buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static bool spill(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return false;   /* a truncated path would name another file */
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char path[4096];
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            (size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < sizeof(path))
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static bool make_dir(char *dir, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, len, "%s/minivmm-fdt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(dir) != NULL;
}

/* dtc -I dtb -O dts of blob: the text, with dtc's own diagnostics required
 * to be empty. */
static char *decompile(const char *dir, const uint8_t *blob, size_t len)
{
    CHECK(spill(dir, "guest.dtb", blob, len));
    char *const argv[] = {"dtc", "-I", "dtb", "-O", "dts", "-o", "guest.dts", "guest.dtb", NULL};
    int rc = unit_run_in(dir, "dtc.log", argv);
    char *log = slurp(dir, "dtc.log", NULL);
    if (rc != 0 || (log && *log))
        fprintf(stderr, "  dtc exited %d:\n%s\n", rc, log ? log : "");
    CHECK_EQ(rc, 0);
    CHECK(log && *log == '\0');         /* no warning from dtc's checks */
    free(log);
    return slurp(dir, "guest.dts", NULL);
}

/* Prints the first line where two texts differ. */
static void show_difference(const char *got, const char *want)
{
    int line = 1;
    const char *g = got, *w = want;
    while (*g && *g == *w) {
        line += *g == '\n';
        g++;
        w++;
    }
    const char *gl = g, *wl = w;
    while (gl > got && gl[-1] != '\n')
        gl--;
    while (wl > want && wl[-1] != '\n')
        wl--;
    fprintf(stderr, "  line %d\n    got:  %.*s\n    want: %.*s\n", line,
            (int)strcspn(gl, "\n"), gl, (int)strcspn(wl, "\n"), wl);
}

static bool need_dtc(void)
{
    /* device-tree-compiler is a declared dependency (tests/deps.sh): its
     * absence fails the test, it does not skip it. */
    if (unit_tool_in_path("dtc"))
        return true;
    unit_fail(__FILE__, __LINE__, "dtc not found in PATH (install device-tree-compiler)");
    return false;
}

/* ---- every node and property ---- */

TEST(fdt_full_machine_every_node_and_property)
{
    if (!need_dtc())
        return;
    static uint8_t blob[BLOB_MAX];
    size_t used = 0;
    struct arm64_fdt_desc d = full_machine();
    CHECK_EQ(build(&d, blob, &used), 0);
    CHECK_EQ(fdt_check_header(blob), 0);
    CHECK_EQ(fdt_totalsize(blob), used);

    char dir[4096];
    CHECK(make_dir(dir, sizeof(dir)));
    char *dts = decompile(dir, blob, used);
    CHECK(dts != NULL);
    if (dts && strcmp(dts, full_machine_dts) != 0) {
        unit_fail(__FILE__, __LINE__, "dtc's decompiled tree is the expected tree");
        show_difference(dts, full_machine_dts);
    }
    free(dts);
    remove_dir(dir);
}

TEST(fdt_dtc_round_trip)
{
    /* dtb -> dts -> dtb -> dts: dtc reads back everything it printed, and
     * the recompiled blob says the same. */
    if (!need_dtc())
        return;
    static uint8_t blob[BLOB_MAX];
    size_t used = 0;
    struct arm64_fdt_desc d = full_machine();
    CHECK_EQ(build(&d, blob, &used), 0);
    char dir[4096];
    CHECK(make_dir(dir, sizeof(dir)));
    char *first = decompile(dir, blob, used);
    char *const compile[] = {"dtc", "-I", "dts", "-O", "dtb", "-o", "again.dtb", "guest.dts",
                             NULL};
    CHECK_EQ(unit_run_in(dir, "compile.log", compile), 0);
    char *log = slurp(dir, "compile.log", NULL);
    CHECK(log && *log == '\0');
    free(log);
    size_t again_len = 0;
    char *again = slurp(dir, "again.dtb", &again_len);
    CHECK(again != NULL);
    char *second = again ? decompile(dir, (const uint8_t *)again, again_len) : NULL;
    CHECK(first && second && strcmp(first, second) == 0);
    free(first);
    free(second);
    free(again);
    remove_dir(dir);
}

/* ---- references, read back with libfdt ---- */

static uint32_t prop_u32(const void *fdt, int node, const char *name)
{
    int len = 0;
    const fdt32_t *p = fdt_getprop(fdt, node, name, &len);
    CHECK(p != NULL && len == 4);
    return p && len == 4 ? fdt32_to_cpu(*p) : 0xdeadbeef;
}

static const char *prop_str(const void *fdt, int node, const char *name)
{
    const char *s = fdt_getprop(fdt, node, name, NULL);
    CHECK(s != NULL);
    return s ? s : "";
}

TEST(fdt_references_resolve)
{
    static uint8_t blob[BLOB_MAX];
    size_t used = 0;
    struct arm64_fdt_desc d = full_machine();
    CHECK_EQ(build(&d, blob, &used), 0);

    /* interrupt-parent names the GIC, which is an interrupt controller with
     * three cells. */
    uint32_t parent = prop_u32(blob, 0, "interrupt-parent");
    int gic = fdt_node_offset_by_phandle(blob, parent);
    CHECK(gic > 0);
    CHECK(fdt_getprop(blob, gic, "interrupt-controller", NULL) != NULL);
    CHECK_EQ(prop_u32(blob, gic, "#interrupt-cells"), 3);
    CHECK_EQ(fdt_node_check_compatible(blob, gic, "arm,gic-v3"), 0);

    /* stdout-path and the serial0 alias are the ns16550a node. */
    int chosen = fdt_path_offset(blob, "/chosen");
    CHECK(chosen > 0);
    int out = fdt_path_offset(blob, prop_str(blob, chosen, "stdout-path"));
    CHECK(out > 0);
    CHECK_EQ(fdt_node_check_compatible(blob, out, "ns16550a"), 0);
    CHECK_EQ(fdt_path_offset(blob, fdt_get_alias(blob, "serial0")), out);

    /* Every CPU is started by PSCI, and a psci node says how. */
    int cpus = fdt_path_offset(blob, "/cpus"), n_cpus = 0, cpu;
    fdt_for_each_subnode(cpu, blob, cpus) {
        CHECK(!strcmp(prop_str(blob, cpu, "enable-method"), "psci"));
        n_cpus++;
    }
    CHECK_EQ(n_cpus, 2);
    int psci = fdt_path_offset(blob, "/psci");
    CHECK(psci > 0);
    CHECK(!strcmp(prop_str(blob, psci, "method"), "hvc"));

    /* The rng seed is the bytes given. */
    int len = 0;
    const void *seed = fdt_getprop(blob, chosen, "rng-seed", &len);
    CHECK(seed && len == (int)sizeof(seed16) && !memcmp(seed, seed16, sizeof(seed16)));
}

TEST(fdt_memory_is_boot_ram_only)
{
    /* Only the ranges given become memory nodes: a hotpluggable region is
     * never passed in, and must never appear (the virtio-mem driver claims
     * its region and fails if boot memory overlaps it). */
    static uint8_t blob[BLOB_MAX];
    size_t used;
    struct arm64_fdt_desc d = full_machine();
    CHECK_EQ(build(&d, blob, &used), 0);
    int n = 0, node;
    fdt_for_each_subnode(node, blob, 0) {
        const char *type = fdt_getprop(blob, node, "device_type", NULL);
        if (type && !strcmp(type, "memory")) {
            int len;
            /* 64-bit cells are only 4-byte aligned in a blob: fdt64_ld. */
            const fdt64_t *reg = fdt_getprop(blob, node, "reg", &len);
            CHECK(reg && len == 16);
            if (reg && len == 16) {
                CHECK_EQ(fdt64_ld(&reg[0]), ARM64_RAM_BASE);
                CHECK_EQ(fdt64_ld(&reg[1]), 512 * MiB);
            }
            n++;
        }
    }
    CHECK_EQ(n, 1);
}

/* ---- variations ---- */

TEST(fdt_cpu_reg_is_the_mpidr_affinity)
{
    /* vCPU 16 has Aff1 = 1 (KVM puts 16 vCPUs per Aff1 cluster); bit 31 is
     * not affinity. */
    static const uint64_t mpidrs[3] = {0x80000000, 0x8000000f, 0x80000100};
    static uint8_t blob[BLOB_MAX];
    size_t used;
    struct arm64_fdt_desc d = full_machine();
    d.mpidr = mpidrs;
    d.n_cpus = 3;
    CHECK_EQ(build(&d, blob, &used), 0);
    CHECK_EQ(prop_u32(blob, fdt_path_offset(blob, "/cpus"), "#address-cells"), 1);
    CHECK_EQ(prop_u32(blob, fdt_path_offset(blob, "/cpus/cpu@f"), "reg"), 0xf);
    CHECK_EQ(prop_u32(blob, fdt_path_offset(blob, "/cpus/cpu@100"), "reg"), 0x100);
}

TEST(fdt_cpu_reg_with_aff3_takes_two_cells)
{
    static const uint64_t mpidrs[2] = {0x80000000, 0x0100000000ULL | 0x80000000};
    static uint8_t blob[BLOB_MAX];
    size_t used;
    struct arm64_fdt_desc d = full_machine();
    d.mpidr = mpidrs;
    CHECK_EQ(build(&d, blob, &used), 0);
    CHECK_EQ(prop_u32(blob, fdt_path_offset(blob, "/cpus"), "#address-cells"), 2);
    int len = 0;
    const fdt32_t *reg = fdt_getprop(blob, fdt_path_offset(blob, "/cpus/cpu@100000000"), "reg",
                                     &len);
    CHECK(reg && len == 8);
    if (reg && len == 8) {
        CHECK_EQ(fdt32_to_cpu(reg[0]), 1);
        CHECK_EQ(fdt32_to_cpu(reg[1]), 0);
    }
    reg = fdt_getprop(blob, fdt_path_offset(blob, "/cpus/cpu@0"), "reg", &len);
    CHECK(reg && len == 8);
}

TEST(fdt_initrd_above_4gib_takes_two_cells)
{
    static uint8_t blob[BLOB_MAX];
    size_t used;
    struct arm64_fdt_desc d = full_machine();
    d.initrd_start = 0x83f000000ULL;
    d.initrd_end = 0x840000000ULL;
    CHECK_EQ(build(&d, blob, &used), 0);
    int chosen = fdt_path_offset(blob, "/chosen"), len = 0;
    const fdt64_t *p = fdt_getprop(blob, chosen, "linux,initrd-start", &len);
    CHECK(p && len == 8 && fdt64_ld(p) == 0x83f000000ULL);
    p = fdt_getprop(blob, chosen, "linux,initrd-end", &len);
    CHECK(p && len == 8 && fdt64_ld(p) == 0x840000000ULL);
}

TEST(fdt_nothing_optional)
{
    /* No initrd, no seed, no virtio device: their properties and nodes are
     * absent, not empty. */
    static uint8_t blob[BLOB_MAX];
    size_t used;
    struct arm64_fdt_desc d = full_machine();
    d.initrd_start = d.initrd_end = 0;
    d.rng_seed_len = 0;
    d.n_virtio = 0;
    CHECK_EQ(build(&d, blob, &used), 0);
    int chosen = fdt_path_offset(blob, "/chosen");
    CHECK(fdt_getprop(blob, chosen, "linux,initrd-start", NULL) == NULL);
    CHECK(fdt_getprop(blob, chosen, "linux,initrd-end", NULL) == NULL);
    CHECK(fdt_getprop(blob, chosen, "rng-seed", NULL) == NULL);
    CHECK_EQ(fdt_node_offset_by_compatible(blob, -1, "virtio,mmio"), -FDT_ERR_NOTFOUND);
    CHECK(!strcmp(prop_str(blob, chosen, "bootargs"), "console=ttyS0 quiet"));
}

TEST(fdt_too_small_a_buffer)
{
    static uint8_t blob[512];
    size_t used = 0;
    const char *why = NULL;
    struct arm64_fdt_desc d = full_machine();
    CHECK_EQ(arm64_fdt_build(&d, blob, sizeof(blob), &used, &why), -ENOSPC);
    CHECK(why != NULL);
}

/* ---- dt-validate ---- */

/* dt-validate prints one line per problem and exits 0 regardless (dt-schema
 * 2022.08), so its output is the verdict. With -m it also lists nodes whose
 * compatible no schema here knows: said, not failed. */
TEST(fdt_dt_validate)
{
    if (!unit_tool_in_path("dt-validate")) {
        unit_skip("dt-validate not found in PATH (Debian package dt-schema): the blob was "
                  "not checked against the devicetree schemas");
        return;
    }
    static uint8_t blob[BLOB_MAX];
    size_t used = 0;
    struct arm64_fdt_desc d = full_machine();
    CHECK_EQ(build(&d, blob, &used), 0);
    char dir[4096];
    CHECK(make_dir(dir, sizeof(dir)));
    CHECK(spill(dir, "guest.dtb", blob, used));

    /* The schemas Linux keeps for its devices (GICv3, the timer, PSCI,
     * 8250, virtio-mmio, the arm cpus) are not part of dt-schema: with
     * MINIVMM_DT_BINDINGS pointing at a kernel tree's
     * Documentation/devicetree/bindings they are processed and used too. */
    const char *bindings = getenv("MINIVMM_DT_BINDINGS");
    int rc;
    if (bindings && *bindings) {
        char *const mk[] = {"dt-mk-schema", "-j", (char *)bindings, NULL};
        CHECK_EQ(unit_run_in(dir, "schema.json", mk), 0);
        char *const argv[] = {"dt-validate", "-s", "schema.json", "guest.dtb", NULL};
        rc = unit_run_in(dir, "validate.log", argv);
    } else {
        char *const argv[] = {"dt-validate", "guest.dtb", NULL};
        rc = unit_run_in(dir, "validate.log", argv);
    }
    char *out = slurp(dir, "validate.log", NULL);
    if (rc != 0 || !out || *out)
        fprintf(stderr, "  dt-validate exited %d:\n%s\n", rc, out ? out : "(no output)");
    CHECK_EQ(rc, 0);
    CHECK(out && *out == '\0');
    free(out);

    char *const unmatched[] = {"dt-validate", "-m", "guest.dtb", NULL};
    if (!bindings && unit_run_in(dir, "unmatched.log", unmatched) == 0) {
        char *list = slurp(dir, "unmatched.log", NULL);
        if (list && *list)
            printf("  dt-validate has no schema for these nodes here (their bindings live "
                   "in Linux's Documentation/devicetree/bindings; set MINIVMM_DT_BINDINGS "
                   "to check them too):\n%s", list);
        free(list);
    }
    remove_dir(dir);
}
