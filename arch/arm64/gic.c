#include "arch/arm64/gic.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/arm64/layout.h"
#include "vmm/log.h"

/* KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION's value: count in bits 63:52, the
 * base's bits 51:16 in place, flags 15:12 and index 11:0 zero (one region). */
#define REDIST_REGION_COUNT_SHIFT 52

static int set_attr(int gic_fd, uint32_t group, uint64_t attr, const void *value,
                    const char *what)
{
    struct kvm_device_attr a = {.group = group, .attr = attr, .addr = (uint64_t)(uintptr_t)value};
    if (ioctl(gic_fd, KVM_SET_DEVICE_ATTR, &a) < 0) {
        int err = errno;
        log_error("KVM_SET_DEVICE_ATTR vGICv3 %s: %s", what, strerror(err));
        return -err;
    }
    return 0;
}

static bool has_attr(int gic_fd, uint32_t group, uint64_t attr)
{
    struct kvm_device_attr a = {.group = group, .attr = attr};
    return ioctl(gic_fd, KVM_HAS_DEVICE_ATTR, &a) == 0;
}

int arm64_gic_create(int vm_fd, unsigned ncpus)
{
    struct kvm_create_device dev = {.type = KVM_DEV_TYPE_ARM_VGIC_V3};
    if (ioctl(vm_fd, KVM_CREATE_DEVICE, &dev) < 0) {
        int err = errno;
        log_error("KVM_CREATE_DEVICE vGICv3: %s (this host's KVM cannot emulate a GICv3; "
                  "minivmm needs one)", strerror(err));
        return -err;
    }
    int fd = (int)dev.fd;
    uint64_t dist = ARM64_GIC_DIST_BASE;
    int rc = set_attr(fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist,
                      "distributor address");
    if (!rc) {
        /* One region sized for exactly ncpus redistributors, so KVM marks
         * the last one (GICR_TYPER.Last) where the guest's scan must stop.
         * Kernels before 4.18 only know the older attribute, which sizes
         * the region by the vCPUs created. */
        if (has_attr(fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION)) {
            uint64_t region = ((uint64_t)ncpus << REDIST_REGION_COUNT_SHIFT) |
                              ARM64_GIC_REDIST_BASE;
            rc = set_attr(fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION,
                          &region, "redistributor region");
        } else {
            uint64_t redist = ARM64_GIC_REDIST_BASE;
            rc = set_attr(fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist,
                          "redistributor address");
        }
    }
    if (!rc) {
        uint32_t nr_irqs = ARM64_GIC_NR_IRQS;
        rc = set_attr(fd, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs, "number of interrupts");
    }
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

int arm64_gic_init(int gic_fd)
{
    return set_attr(gic_fd, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL,
                    "KVM_DEV_ARM_VGIC_CTRL_INIT");
}
