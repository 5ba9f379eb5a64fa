#include <errno.h>
#include <stdlib.h>

#include "arch/x86_64/cpuid.h"
#include "unit.h"

/* A small stand-in for KVM_GET_SUPPORTED_CPUID's answer. */
static struct kvm_cpuid2 *fake_cpuid(unsigned capacity)
{
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + capacity * sizeof(struct kvm_cpuid_entry2));
    struct kvm_cpuid_entry2 e[] = {
        {.function = 0, .eax = 0x1f},
        {.function = 1, .ebx = 0x00000800, .ecx = 0x00000001, .edx = 0},
        {.function = 4, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x21},
        {.function = 4, .index = 3, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x63},
        {.function = 0xb, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX},
        {.function = 0x1f, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX},
        {.function = 0x40000000, .eax = 0x40000001},
        {.function = 0x80000001, .ecx = 0},
        {.function = 0x80000008, .eax = 0x3030, .ecx = 0},
        {.function = 0x8000001e, .eax = 7, .ebx = 0x100, .ecx = 0x103},
    };
    memcpy(c->entries, e, sizeof(e));
    c->nent = sizeof(e) / sizeof(e[0]);
    return c;
}

TEST(leaf1_apic_id_count_and_hypervisor_bit)
{
    struct kvm_cpuid2 *c = fake_cpuid(32);
    CHECK_EQ(x86_cpuid_adjust(c, 32, 3, 4), 0);
    struct kvm_cpuid_entry2 *e = x86_cpuid_find(c, 1, 0);
    CHECK_EQ(e->ebx >> 24, 3);
    CHECK_EQ((e->ebx >> 16) & 0xff, 4);
    CHECK_EQ(e->ebx & 0xffff, 0x0800);      /* CLFLUSH size kept */
    CHECK(e->ecx & (1u << 31));
    CHECK(e->ecx & 1u);                      /* other features kept */
    CHECK(e->edx & (1u << 28));
    free(c);
}

TEST(tsc_deadline_bit)
{
    struct kvm_cpuid2 *c = fake_cpuid(32);
    x86_cpuid_set_tsc_deadline(c, true);
    CHECK(x86_cpuid_find(c, 1, 0)->ecx & (1u << 24));
    CHECK(x86_cpuid_find(c, 1, 0)->ecx & 1u);   /* other features kept */
    x86_cpuid_set_tsc_deadline(c, false);
    CHECK(!(x86_cpuid_find(c, 1, 0)->ecx & (1u << 24)));
    free(c);
}

TEST(single_cpu_has_no_htt)
{
    struct kvm_cpuid2 *c = fake_cpuid(32);
    CHECK_EQ(x86_cpuid_adjust(c, 32, 0, 1), 0);
    CHECK(!(x86_cpuid_find(c, 1, 0)->edx & (1u << 28)));
    CHECK(!(x86_cpuid_find(c, 0x80000001, 0)->ecx & 2u));
    CHECK_EQ(x86_cpuid_find(c, 0x80000008, 0)->ecx & 0xff, 0);
    free(c);
}

TEST(x2apic_topology_levels)
{
    struct kvm_cpuid2 *c = fake_cpuid(32);
    CHECK_EQ(x86_cpuid_adjust(c, 32, 5, 6), 0);
    for (uint32_t leaf = 0xb; leaf <= 0x1f; leaf += 0x14) {
        struct kvm_cpuid_entry2 *smt = x86_cpuid_find(c, leaf, 0);
        struct kvm_cpuid_entry2 *core = x86_cpuid_find(c, leaf, 1);
        struct kvm_cpuid_entry2 *end = x86_cpuid_find(c, leaf, 2);
        CHECK(smt && core && end);
        if (!smt || !core || !end)
            continue;
        CHECK_EQ(smt->ebx, 1);
        CHECK_EQ((smt->ecx >> 8) & 0xff, 1);
        CHECK_EQ(core->eax, 3);              /* 6 CPUs need 3 APIC-id bits */
        CHECK_EQ(core->ebx, 6);
        CHECK_EQ((core->ecx >> 8) & 0xff, 2);
        CHECK_EQ((end->ecx >> 8) & 0xff, 0);
        CHECK_EQ(smt->edx, 5);
        CHECK_EQ(core->edx, 5);
    }
    free(c);
}

TEST(leaf4_core_count_and_sharing)
{
    struct kvm_cpuid2 *c = fake_cpuid(32);
    CHECK_EQ(x86_cpuid_adjust(c, 32, 0, 8), 0);
    struct kvm_cpuid_entry2 *l1 = x86_cpuid_find(c, 4, 0);
    struct kvm_cpuid_entry2 *l3 = x86_cpuid_find(c, 4, 3);
    CHECK_EQ(l1->eax >> 26, 7);
    CHECK_EQ((l1->eax >> 14) & 0xfff, 0);
    CHECK_EQ((l3->eax >> 14) & 0xfff, 7);
    CHECK_EQ(l3->eax & 0x3fff, 0x63);
    free(c);
}

TEST(amd_leaves)
{
    struct kvm_cpuid2 *c = fake_cpuid(32);
    CHECK_EQ(x86_cpuid_adjust(c, 32, 2, 3), 0);
    CHECK(x86_cpuid_find(c, 0x80000001, 0)->ecx & 2u);
    struct kvm_cpuid_entry2 *e = x86_cpuid_find(c, 0x80000008, 0);
    CHECK_EQ(e->ecx & 0xff, 2);
    CHECK_EQ((e->ecx >> 12) & 0xf, 2);
    CHECK_EQ(e->eax, 0x3030);
    e = x86_cpuid_find(c, 0x8000001e, 0);
    CHECK_EQ(e->eax, 2);
    CHECK_EQ(e->ebx & 0xff, 2);
    CHECK_EQ((e->ebx >> 8) & 0xff, 0);
    CHECK_EQ(e->ecx & 0x7ff, 0);
    free(c);
}

TEST(no_room_for_topology_is_an_error)
{
    struct kvm_cpuid2 *c = fake_cpuid(11);
    CHECK_EQ(x86_cpuid_adjust(c, 11, 0, 2), -ENOSPC);
    free(c);
}
