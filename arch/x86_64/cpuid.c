#include "arch/x86_64/cpuid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/log.h"

#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT (1u << 28)
#define CPUID_80000001_ECX_CMP_LEGACY (1u << 1)

/* x2APIC topology level types (leaf 0xB / 0x1F ECX[15:8]) */
#define TOPO_LEVEL_INVALID 0
#define TOPO_LEVEL_SMT 1
#define TOPO_LEVEL_CORE 2

struct kvm_cpuid2 *x86_supported_cpuid(int kvm_fd, unsigned spare)
{
    for (unsigned nent = 64; nent <= 4096; nent *= 2) {
        struct kvm_cpuid2 *c =
            calloc(1, sizeof(*c) + (nent + spare) * sizeof(struct kvm_cpuid_entry2));
        if (!c)
            return NULL;
        c->nent = nent;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        int err = errno;
        free(c);
        if (err != E2BIG) {
            log_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(err));
            return NULL;
        }
    }
    log_error("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
    return NULL;
}

struct kvm_cpuid_entry2 *x86_cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function,
                                        uint32_t index)
{
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        if (e->function != function)
            continue;
        if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e->index != index)
            continue;
        return e;
    }
    return NULL;
}

void x86_cpuid_set_tsc_deadline(struct kvm_cpuid2 *cpuid, bool on)
{
    struct kvm_cpuid_entry2 *e = x86_cpuid_find(cpuid, 1, 0);
    if (!e)
        return;
    if (on)
        e->ecx |= CPUID_1_ECX_TSC_DEADLINE;
    else
        e->ecx &= ~CPUID_1_ECX_TSC_DEADLINE;
}

/* Bits needed to number n items (the APIC-id field width). */
static unsigned id_bits(unsigned n)
{
    unsigned bits = 0;
    while ((1u << bits) < n)
        bits++;
    return bits;
}

static void remove_function(struct kvm_cpuid2 *cpuid, uint32_t function)
{
    uint32_t out = 0;
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        if (cpuid->entries[i].function != function)
            cpuid->entries[out++] = cpuid->entries[i];
    }
    cpuid->nent = out;
}

/* Leaves 0xB and 0x1F: one thread per core, every vCPU a core of one package. */
static int set_x2apic_topology(struct kvm_cpuid2 *cpuid, unsigned capacity, uint32_t function,
                               unsigned apic_id, unsigned ncpus)
{
    remove_function(cpuid, function);
    if (cpuid->nent + 3 > capacity)
        return -ENOSPC;
    struct kvm_cpuid_entry2 levels[3] = {
        {.function = function, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
         .eax = 0, .ebx = 1, .ecx = TOPO_LEVEL_SMT << 8 | 0, .edx = apic_id},
        {.function = function, .index = 1, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
         .eax = id_bits(ncpus), .ebx = ncpus, .ecx = TOPO_LEVEL_CORE << 8 | 1, .edx = apic_id},
        {.function = function, .index = 2, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
         .eax = 0, .ebx = 0, .ecx = TOPO_LEVEL_INVALID << 8 | 2, .edx = apic_id},
    };
    memcpy(&cpuid->entries[cpuid->nent], levels, sizeof(levels));
    cpuid->nent += 3;
    return 0;
}

int x86_cpuid_adjust(struct kvm_cpuid2 *cpuid, unsigned capacity, unsigned index,
                     unsigned ncpus)
{
    unsigned apic_id = index;
    struct kvm_cpuid_entry2 *e;
    uint32_t max_basic = 0;

    if ((e = x86_cpuid_find(cpuid, 0, 0)))
        max_basic = e->eax;

    if ((e = x86_cpuid_find(cpuid, 1, 0))) {
        e->ebx = (e->ebx & 0x0000ffffu) | (apic_id << 24) | ((ncpus & 0xffu) << 16);
        e->ecx |= CPUID_1_ECX_HYPERVISOR;
        if (ncpus > 1)
            e->edx |= CPUID_1_EDX_HTT;
        else
            e->edx &= ~CPUID_1_EDX_HTT;
    }

    /* Leaf 4 (Intel caches): cores per package, and which caches are shared. */
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        e = &cpuid->entries[i];
        if (e->function != 4 || (e->eax & 0x1f) == 0)
            continue;
        unsigned level = (e->eax >> 5) & 0x7;
        unsigned sharing = level >= 3 ? ncpus - 1 : 0;
        unsigned cores = ncpus - 1 > 63 ? 63 : ncpus - 1;
        e->eax = (e->eax & 0x3fffu) | (sharing & 0xfffu) << 14 | cores << 26;
    }

    if (max_basic >= 0xb) {
        int rc = set_x2apic_topology(cpuid, capacity, 0xb, apic_id, ncpus);
        if (rc)
            return rc;
    }
    if (max_basic >= 0x1f && x86_cpuid_find(cpuid, 0x1f, 0)) {
        int rc = set_x2apic_topology(cpuid, capacity, 0x1f, apic_id, ncpus);
        if (rc)
            return rc;
    }

    /* AMD: core count and APIC-id width, and the extended APIC id. */
    if ((e = x86_cpuid_find(cpuid, 0x80000001, 0))) {
        if (ncpus > 1)
            e->ecx |= CPUID_80000001_ECX_CMP_LEGACY;
        else
            e->ecx &= ~CPUID_80000001_ECX_CMP_LEGACY;
    }
    if ((e = x86_cpuid_find(cpuid, 0x80000008, 0)))
        e->ecx = (e->ecx & ~0xf0ffu) | (id_bits(ncpus) << 12) | ((ncpus - 1) & 0xffu);
    if ((e = x86_cpuid_find(cpuid, 0x8000001e, 0))) {
        e->eax = apic_id;
        e->ebx = (e->ebx & ~0xffffu) | (apic_id & 0xffu);     /* one thread per core */
        e->ecx = e->ecx & ~0x7ffu;                               /* node 0, one node */
    }
    return 0;
}
