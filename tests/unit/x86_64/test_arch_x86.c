/* What x86_64 tells generic code through vmm/arch.h: its limits, its exits
 * (port I/O on its own bus, a triple fault is a reboot, HLT a poweroff,
 * system events left to the generic meaning) and its seccomp ioctls. The
 * exits are fed through a kvm_run in plain memory; no KVM is needed. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>

#include "arch/x86_64/layout.h"
#include "arch/x86_64/x86_vm.h"
#include "unit.h"
#include "vmm/arch.h"

TEST(limits_and_facts)
{
    CHECK_EQ(arch_max_vcpus(), 255);                /* 8-bit xAPIC ids, 0xff broadcast */
    CHECK_EQ(arch_guest_memory_block(), 128ULL << 20);
    CHECK(arch_virtio_mem_acpi_pxm());              /* the SRAT names every node */
    CHECK_STR_CONTAINS(arch_kernel_format(), "bzImage");
    unsigned long type = 99;
    CHECK_EQ(arch_kvm_vm_type(NULL, &type), 0);
    CHECK_EQ(type, 0);
    char err[64] = "";
    struct vm_config cfg = {.ncpus = 1, .n_virtio_mem = 1, .virtio_mem = {{.node = 3}}};
    CHECK_EQ(arch_check_config(&cfg, err, sizeof(err)), 0);
}

static bool has_ioctl(enum seccomp_role role, unsigned long request)
{
    size_t n;
    const struct seccomp_ioctl *list = arch_seccomp_ioctls(role, &n);
    for (size_t i = 0; i < n; i++)
        if (list[i].request == request)
            return true;
    return false;
}

TEST(seccomp_ioctls_are_the_ones_x86_code_makes)
{
    static const unsigned long main_needs[] = {
        KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_CREATE_IRQCHIP,
        KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_GET_SREGS, KVM_SET_SREGS, KVM_SET_REGS,
        KVM_SET_MSRS, KVM_SET_FPU, KVM_GET_LAPIC, KVM_SET_LAPIC,
    };
    for (size_t i = 0; i < sizeof(main_needs) / sizeof(main_needs[0]); i++)
        CHECK(has_ioctl(SECCOMP_ROLE_MAIN, main_needs[i]));
    CHECK(has_ioctl(SECCOMP_ROLE_VCPU, KVM_GET_REGS));
    CHECK(has_ioctl(SECCOMP_ROLE_VCPU, KVM_GET_SREGS));
    CHECK(has_ioctl(SECCOMP_ROLE_VCPU, KVM_GET_VCPU_EVENTS));
    CHECK(!has_ioctl(SECCOMP_ROLE_VCPU, KVM_SET_MSRS));     /* a vCPU thread only reads */
    size_t n = 1;
    arch_seccomp_ioctls(SECCOMP_ROLE_API, &n);
    CHECK_EQ(n, 0);
}

struct port_recorder {
    uint64_t offset;
    uint8_t value;
    int writes, reads;
};

static void rec_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
    struct port_recorder *r = opaque;
    r->reads++;
    r->offset = offset;
    memset(data, 0x42, len);
}

static void rec_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
    struct port_recorder *r = opaque;
    r->writes++;
    r->offset = offset;
    r->value = data[len - 1];
}

static const struct io_handler rec_ops = {.read = rec_read, .write = rec_write};

struct exit_fixture {
    struct vm vm;
    struct x86_vm x;
    struct vcpu vcpu;
    union {
        struct kvm_run run;
        uint8_t page[4096];     /* port I/O data lives after the structure */
    } mem;
};

static void fixture_init(struct exit_fixture *f)
{
    memset(f, 0, sizeof(*f));
    io_bus_init(&f->x.pio, "pio");
    f->vm.arch = &f->x;
    f->vcpu.vm = &f->vm;
    f->vcpu.index = 1;
    f->vcpu.fd = -1;
    f->vcpu.run = &f->mem.run;
}

static enum arch_exit run_exit(struct exit_fixture *f, uint32_t reason, enum vm_stop_reason *why,
                               char *detail, size_t len)
{
    f->mem.run.exit_reason = reason;
    *why = VM_RUNNING;
    detail[0] = '\0';
    return arch_vcpu_exit(&f->vcpu, why, detail, len);
}

TEST(port_io_goes_to_the_arch_bus)
{
    struct exit_fixture *f = calloc(1, sizeof(*f));
    fixture_init(f);
    struct port_recorder rec = {0};
    CHECK_EQ(io_bus_register(&f->x.pio, X86_COM1_PORT, 8, &rec_ops, &rec, "rec"), 0);

    /* "rep outsb" of three bytes to COM1 + 1: three writes, in order. */
    struct kvm_run *run = &f->mem.run;
    run->io.direction = KVM_EXIT_IO_OUT;
    run->io.size = 1;
    run->io.port = X86_COM1_PORT + 1;
    run->io.count = 3;
    run->io.data_offset = sizeof(*run);
    f->mem.page[sizeof(*run)] = 'a';
    f->mem.page[sizeof(*run) + 1] = 'b';
    f->mem.page[sizeof(*run) + 2] = 'c';
    enum vm_stop_reason why;
    char detail[128];
    CHECK_EQ(run_exit(f, KVM_EXIT_IO, &why, detail, sizeof(detail)), ARCH_EXIT_RESUME);
    CHECK_EQ(rec.writes, 3);
    CHECK_EQ(rec.offset, 1);
    CHECK_EQ(rec.value, 'c');

    run->io.direction = KVM_EXIT_IO_IN;
    run->io.count = 1;
    run->io.size = 2;
    CHECK_EQ(run_exit(f, KVM_EXIT_IO, &why, detail, sizeof(detail)), ARCH_EXIT_RESUME);
    CHECK_EQ(rec.reads, 1);
    CHECK_EQ(f->mem.page[sizeof(*run)], 0x42);

    /* Nobody at the port: served (all-ones), the vCPU runs on. */
    run->io.port = 0x80;
    CHECK_EQ(run_exit(f, KVM_EXIT_IO, &why, detail, sizeof(detail)), ARCH_EXIT_RESUME);
    CHECK_EQ(why, VM_RUNNING);
    free(f);
}

TEST(triple_fault_reboots_hlt_powers_off)
{
    struct exit_fixture *f = calloc(1, sizeof(*f));
    fixture_init(f);
    enum vm_stop_reason why;
    char detail[128];
    /* The state dump fails on fd -1 and says so; it is never fatal. */
    CHECK_EQ(run_exit(f, KVM_EXIT_SHUTDOWN, &why, detail, sizeof(detail)), ARCH_EXIT_STOP);
    CHECK_EQ(why, VM_STOP_REBOOT);
    CHECK_STR_CONTAINS(detail, "triple fault on vCPU 1");
    CHECK_EQ(run_exit(f, KVM_EXIT_HLT, &why, detail, sizeof(detail)), ARCH_EXIT_STOP);
    CHECK_EQ(why, VM_STOP_POWEROFF);
    CHECK_STR_CONTAINS(detail, "guest halted (vCPU 1)");
    /* System events keep the meaning the KVM API gives them everywhere. */
    CHECK_EQ(run_exit(f, KVM_EXIT_SYSTEM_EVENT, &why, detail, sizeof(detail)),
             ARCH_EXIT_UNKNOWN);
    CHECK_EQ(run_exit(f, KVM_EXIT_DEBUG, &why, detail, sizeof(detail)), ARCH_EXIT_UNKNOWN);
    CHECK(!arch_vcpu_run_error(&f->vcpu, ENOSYS, detail, sizeof(detail)));
    free(f);
}
