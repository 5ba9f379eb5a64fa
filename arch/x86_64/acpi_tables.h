/* ACPI tables for a hardware-reduced x86_64 guest without firmware: RSDP,
 * XSDT, FADT, MADT, DSDT and optionally SRAT, built into one buffer that the
 * caller copies to guest-physical memory. Pure data in, bytes out: no KVM, no
 * globals, so it is unit-testable and validated with iasl. */
#ifndef MINIVMM_ARCH_X86_64_ACPI_TABLES_H
#define MINIVMM_ARCH_X86_64_ACPI_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A virtio-mmio transport, described in the DSDT as _HID "LNRO0005" with
 * its register window and an edge-triggered, active-high GSI. */
struct acpi_mmio_device {
    uint64_t base;
    uint64_t size; /* > 0 */
    uint32_t gsi;  /* X86_FIRST_DEVICE_GSI..X86_LAST_DEVICE_GSI, unique */
    uint32_t uid;  /* unique among the devices */
};

/* One SRAT Memory Affinity range. */
struct acpi_mem_affinity {
    uint64_t base;
    uint64_t size;     /* > 0; ranges must not overlap */
    uint32_t node;     /* proximity domain */
    bool hotpluggable; /* e.g. a virtio-mem region: ENABLED|HOTPLUGGABLE */
};

struct acpi_config {
    /* vCPU i has APIC id i and ACPI processor UID i; 1..ACPI_MAX_CPUS. */
    unsigned ncpus;
    /* Proximity domain of each vCPU (ncpus entries) for the SRAT; NULL puts
     * every vCPU on node 0. Must be NULL when n_mem == 0. */
    const uint32_t *cpu_node;
    const struct acpi_mmio_device *mmio;
    size_t n_mmio;
    /* n_mem == 0: no SRAT. Otherwise Linux only trusts the SRAT if these
     * ranges cover all boot RAM (e820 RAM); add hotpluggable ranges (virtio-mem)
     * on top, and keep them out of e820. */
    const struct acpi_mem_affinity *mem;
    size_t n_mem;
};

/* APIC id 0xFF is the xAPIC broadcast id, so 255 vCPUs use ids 0..254. */
#define ACPI_MAX_CPUS 255
/* DSDT device names are "V000".."VFFF". */
#define ACPI_MAX_MMIO_DEVICES 4096

#define ACPI_OEM_ID        "MINVMM"   /* 6 chars */
#define ACPI_OEM_TABLE_ID  "MINIVMM " /* 8 chars */

/* Builds all tables into buf[0..cap), to be copied to guest-physical `gpa`
 * (16-byte aligned; everything must lie below 4 GiB so 32-bit pointer fields
 * are exact). The RSDP is at buf[0], so *rsdp_gpa == gpa; pass it to the
 * kernel in boot_params.acpi_rsdp_addr too.
 *
 * Returns 0 and sets *rsdp_gpa and *used (bytes of buf that must be copied),
 * or -EINVAL (bad config/arguments), -ENOSPC (cap too small) or -ENOMEM.
 * On error buf, *rsdp_gpa and *used are left untouched. */
int acpi_build_tables(const struct acpi_config *cfg, uint8_t *buf, size_t cap, uint64_t gpa,
                      uint64_t *rsdp_gpa, size_t *used);

#endif
