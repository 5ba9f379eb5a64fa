#include "arch/arm64/vcpu.h"

#include <asm/ptrace.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/log.h"

#define CORE_REG(field) \
    (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | KVM_REG_ARM_CORE_REG(field))

/* System registers by their MRS encoding (op0, op1, CRn, CRm, op2). */
#define REG_MPIDR_EL1 ARM64_SYS_REG(3, 0, 0, 0, 5)
#define REG_ESR_EL1 ARM64_SYS_REG(3, 0, 5, 2, 0)
#define REG_FAR_EL1 ARM64_SYS_REG(3, 0, 6, 0, 0)

#define BOOT_PSTATE (PSR_MODE_EL1h | PSR_D_BIT | PSR_A_BIT | PSR_I_BIT | PSR_F_BIT)

static int set_reg(int vcpu_fd, unsigned index, uint64_t id, uint64_t value, const char *name)
{
    struct kvm_one_reg reg = {.id = id, .addr = (uint64_t)(uintptr_t)&value};
    if (ioctl(vcpu_fd, KVM_SET_ONE_REG, &reg) < 0) {
        int err = errno;
        log_error("KVM_SET_ONE_REG %s vCPU %u: %s", name, index, strerror(err));
        return -err;
    }
    return 0;
}

static int get_reg(int vcpu_fd, unsigned index, uint64_t id, uint64_t *value, const char *name)
{
    struct kvm_one_reg reg = {.id = id, .addr = (uint64_t)(uintptr_t)value};
    if (ioctl(vcpu_fd, KVM_GET_ONE_REG, &reg) < 0) {
        int err = errno;
        log_error("KVM_GET_ONE_REG %s vCPU %u: %s", name, index, strerror(err));
        return -err;
    }
    return 0;
}

int arm64_vcpu_target(int vm_fd, struct kvm_vcpu_init *target)
{
    memset(target, 0, sizeof(*target));
    if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, target) < 0) {
        int err = errno;
        log_error("KVM_ARM_PREFERRED_TARGET: %s", strerror(err));
        return -err;
    }
    if (ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_PSCI_0_2) <= 0) {
        log_error("this KVM lacks KVM_CAP_ARM_PSCI_0_2, which minivmm requires (secondary "
                  "vCPUs start through PSCI CPU_ON)");
        return -ENOTSUP;
    }
    return 0;
}

int arm64_vcpu_init(int vcpu_fd, unsigned index, const struct kvm_vcpu_init *target,
                    uint64_t *mpidr)
{
    struct kvm_vcpu_init init = *target;
    memset(init.features, 0, sizeof(init.features));
    init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
    if (index != 0)
        init.features[0] |= 1u << KVM_ARM_VCPU_POWER_OFF;
    if (ioctl(vcpu_fd, KVM_ARM_VCPU_INIT, &init) < 0) {
        int err = errno;
        log_error("KVM_ARM_VCPU_INIT vCPU %u (target %u): %s", index, init.target,
                  strerror(err));
        return -err;
    }
    return get_reg(vcpu_fd, index, REG_MPIDR_EL1, mpidr, "MPIDR_EL1");
}

int arm64_vcpu_set_boot_regs(int vcpu_fd, unsigned index, uint64_t entry, uint64_t fdt_addr)
{
    /* KVM's reset state is already EL1h with DAIF masked and zeroed
     * registers; the protocol's state is set whole anyway, so it does not
     * depend on that. */
    int rc = set_reg(vcpu_fd, index, CORE_REG(regs.pstate), BOOT_PSTATE, "PSTATE");
    if (!rc)
        rc = set_reg(vcpu_fd, index, CORE_REG(regs.regs[0]), fdt_addr, "x0");
    for (unsigned r = 1; !rc && r <= 3; r++) {
        static const char *names[] = {NULL, "x1", "x2", "x3"};
        rc = set_reg(vcpu_fd, index, CORE_REG(regs.regs[r]), 0, names[r]);
    }
    if (!rc)
        rc = set_reg(vcpu_fd, index, CORE_REG(regs.pc), entry, "PC");
    return rc;
}

void arm64_vcpu_log_state(int vcpu_fd, unsigned index)
{
    static const struct {
        uint64_t id;
        const char *name;
    } regs[] = {
        {CORE_REG(regs.pc), "PC"},
        {CORE_REG(regs.pstate), "PSTATE"},
        {CORE_REG(sp_el1), "SP_EL1"},
        {CORE_REG(elr_el1), "ELR_EL1"},
        {REG_ESR_EL1, "ESR_EL1"},
        {REG_FAR_EL1, "FAR_EL1"},
    };
    for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
        uint64_t v;
        if (get_reg(vcpu_fd, index, regs[i].id, &v, regs[i].name) == 0)
            log_error("vCPU %u: %s = 0x%016llx", index, regs[i].name, (unsigned long long)v);
    }
}
