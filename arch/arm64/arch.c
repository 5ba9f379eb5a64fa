/* arm64 implementation of vmm/arch.h: an in-kernel GICv3 and timer, PSCI
 * for secondary vCPUs, a 16550 UART, the Image boot protocol and a device
 * tree. The pure parts live in layout.c, image.c, boot_plan.c and fdt.c;
 * this file owns the VM's arm64 state and the order things happen in. */
#include "vmm/arch.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "arch/arm64/boot_plan.h"
#include "arch/arm64/fdt.h"
#include "arch/arm64/gic.h"
#include "arch/arm64/layout.h"
#include "arch/arm64/loader.h"
#include "arch/arm64/vcpu.h"
#include "devices/serial_16550.h"
#include "vmm/hotplug/layout.h"
#include "vmm/log.h"
#include "vmm/vm.h"

/* Linux arm64's COMMAND_LINE_SIZE: bootargs beyond it are cut off. */
#define ARM64_CMDLINE_MAX 2048
#define ARM64_RNG_SEED_BYTES 64

struct arm64_vm {
    int gic_fd;
    struct kvm_vcpu_init target;        /* KVM_ARM_PREFERRED_TARGET */
    struct arm64_boot_plan plan;
    uint64_t *mpidr;                    /* per vCPU, as KVM assigned them */
    struct arm64_fdt_mmio_device virtio[VM_MAX_DEVICES];
    unsigned n_virtio;
    struct irq_level uart_irq;
    bool uart_irq_ready;
    struct serial_16550 uart;
    bool uart_ready;
};

const char *arch_default_cmdline(void)
{
    return "console=ttyS0";
}

const char *arch_kernel_format(void)
{
    return "arm64 Image";
}

unsigned arch_max_vcpus(void)
{
    return ARM64_MAX_VCPUS;     /* the redistributor window's, and KVM's GICv3 limit */
}

uint64_t arch_guest_memory_block(void)
{
    return ARM64_GUEST_MEMORY_BLOCK;
}

/* A guest booted with a device tree has no ACPI, so no proximity domain a
 * node_id could name. */
bool arch_virtio_mem_acpi_pxm(void)
{
    return false;
}

int arch_check_config(const struct vm_config *cfg, char *err, size_t errlen)
{
    const char *cmdline = cfg->cmdline ? cfg->cmdline : arch_default_cmdline();
    if (strlen(cmdline) >= ARM64_CMDLINE_MAX) {
        snprintf(err, errlen, "--cmdline: %zu bytes, an arm64 kernel takes at most %d",
                 strlen(cmdline), ARM64_CMDLINE_MAX - 1);
        return -EINVAL;
    }
    /* Linux's virtio-mem driver takes a node only from ACPI (PXM); a guest
     * booted with a device tree puts the memory on node 0 whatever the
     * device says (docs/arm64.md, "NUMA"). A node that cannot be honoured
     * is refused rather than ignored. */
    for (unsigned i = 0; i < cfg->n_virtio_mem; i++) {
        if (cfg->virtio_mem[i].node != 0) {
            snprintf(err, errlen,
                     "--virtio-mem %s: node=%u: an arm64 guest booted with a device tree puts "
                     "virtio-mem memory on node 0 (Linux takes the node only from ACPI), so "
                     "only node=0 is accepted on arm64",
                     cfg->virtio_mem[i].id, cfg->virtio_mem[i].node);
            return -EINVAL;
        }
    }
    return 0;
}

int arch_ram_layout(uint64_t mem_size, struct mem_range *ranges, unsigned max, unsigned *n)
{
    if (max < 1)
        return -EINVAL;
    arm64_ram_layout(mem_size, &ranges[0]);
    *n = 1;
    return 0;
}

void arch_hotplug_window(uint64_t mem_size, uint64_t *start, uint64_t *end)
{
    arm64_hotplug_window(mem_size, start, end);
}

void arch_device_irq_range(uint32_t *first, uint32_t *last)
{
    /* GSIs; KVM's default routing makes GSI n the GIC's SPI n. */
    *first = ARM64_FIRST_DEVICE_SPI;
    *last = ARM64_LAST_DEVICE_SPI;
}

uint64_t arch_device_mmio_base(unsigned index)
{
    return ARM64_VIRTIO_MMIO_BASE + (uint64_t)index * ARM64_VIRTIO_MMIO_STRIDE;
}

/* KVM_CREATE_VM's type: an IPA size covering boot RAM and every
 * --virtio-mem region, within the host's KVM_CAP_ARM_VM_IPA_SIZE. */
int arch_kvm_vm_type(struct vm *vm, unsigned long *type)
{
    const struct vm_config *cfg = vm->cfg;
    struct hotplug_placement place[CONFIG_MAX_VIRTIO_MEM];
    char reason[320];
    if (hotplug_layout(cfg, place, reason, sizeof(reason)) < 0) {
        log_error("--virtio-mem %s", reason);
        return -ENOSPC;
    }
    uint64_t top = arm64_ram_end(cfg->mem_size);
    for (unsigned i = 0; i < cfg->n_virtio_mem; i++)
        if (place[i].gpa + place[i].size > top)
            top = place[i].gpa + place[i].size;
    int host_limit = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE);
    unsigned bits;
    if (arm64_ipa_choose(top, host_limit > 0 ? host_limit : 0, &bits, reason,
                         sizeof(reason)) < 0) {
        log_error("%s", reason);
        return -ENOSPC;
    }
    *type = KVM_VM_TYPE_ARM_IPA_SIZE(bits);
    return 0;
}

int arch_check_kernel(const struct vm_config *cfg)
{
    struct arm64_image_info image;
    struct arm64_boot_plan plan;
    return arm64_loader_plan(cfg, &image, &plan);
}

int arch_vm_init(struct vm *vm)
{
    struct arm64_vm *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    vm->arch = a;
    a->gic_fd = -1;
    a->mpidr = calloc(vm->cfg->ncpus, sizeof(*a->mpidr));
    if (!a->mpidr)
        return -ENOMEM;

    int rc = arm64_vcpu_target(vm->vm_fd, &a->target);
    if (rc)
        return rc;
    /* A data abort KVM cannot decode comes back as KVM_EXIT_ARM_NISV with
     * its address, instead of KVM_RUN failing with ENOSYS and no address. */
    if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_NISV_TO_USER) > 0) {
        struct kvm_enable_cap cap = {.cap = KVM_CAP_ARM_NISV_TO_USER};
        if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
            rc = -errno;
            log_error("KVM_ENABLE_CAP KVM_CAP_ARM_NISV_TO_USER: %s", strerror(-rc));
            return rc;
        }
    }
    /* The vGIC before the vCPUs: each vCPU gets its redistributor as it is
     * created. Its initialisation waits for the last one. */
    a->gic_fd = arm64_gic_create(vm->vm_fd, vm->cfg->ncpus);
    return a->gic_fd < 0 ? a->gic_fd : 0;
}

int arch_load_kernel(struct vm *vm)
{
    struct arm64_vm *a = vm->arch;
    struct arm64_image_info image;
    return arm64_loader_plan(vm->cfg, &image, &a->plan);
}

int arch_load_payload(struct vm *vm)
{
    const struct arm64_vm *a = vm->arch;
    return arm64_loader_load(vm->cfg, &vm->mem, &a->plan);
}

/* The device tree, at the place arch_load_kernel planned; every vCPU's MPIDR
 * and every device is known by now. */
static int write_fdt(struct vm *vm)
{
    struct arm64_vm *a = vm->arch;
    uint8_t seed[ARM64_RNG_SEED_BYTES];
    size_t seed_len = sizeof(seed);
    if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        log_warn("getrandom: %s: the guest gets no rng-seed", strerror(errno));
        seed_len = 0;
    }
    struct mem_range ram;
    arm64_ram_layout(vm->cfg->mem_size, &ram);
    const struct arm64_boot_plan *p = &a->plan;
    struct arm64_fdt_desc desc = {
        .mpidr = a->mpidr,
        .n_cpus = vm->cfg->ncpus,
        .ram = &ram,
        .n_ram = 1,
        .gic_dist_base = ARM64_GIC_DIST_BASE,
        .gic_dist_size = ARM64_GIC_DIST_SIZE,
        .gic_redist_base = ARM64_GIC_REDIST_BASE,
        .gic_redist_size = arm64_gic_redist_size(vm->cfg->ncpus),
        .uart = {ARM64_UART_BASE, ARM64_UART_SIZE, ARM64_UART_SPI},
        .virtio = a->virtio,
        .n_virtio = a->n_virtio,
        .bootargs = vm->cfg->cmdline ? vm->cfg->cmdline : arch_default_cmdline(),
        .initrd_start = p->initrd_addr,
        .initrd_end = p->initrd_addr + p->initrd_size,
        .rng_seed = seed,
        .rng_seed_len = seed_len,
    };
    void *dst = guest_mem_ptr(&vm->mem, p->fdt_addr, ARM64_FDT_MAX_SIZE);
    if (!dst)
        return -EFAULT;
    size_t used;
    const char *why;
    int rc = arm64_fdt_build(&desc, dst, ARM64_FDT_MAX_SIZE, &used, &why);
    explicit_bzero(seed, sizeof(seed));
    if (rc) {
        log_error("building the device tree: %s", why);
        return rc;
    }
    log_debug("device tree: %zu bytes at 0x%llx", used, (unsigned long long)p->fdt_addr);
    return 0;
}

int arch_describe_devices(struct vm *vm)
{
    struct arm64_vm *a = vm->arch;
    a->n_virtio = 0;
    /* Hotpluggable regions are left out on purpose: the virtio-mem driver
     * claims its region and fails if boot memory overlaps it. */
    for (unsigned i = 0; i < vm->n_devices; i++) {
        const struct vm_device_info *d = &vm->devices[i];
        if (d->kind == VM_DEVICE_VIRTIO_MMIO)
            a->virtio[a->n_virtio++] = (struct arm64_fdt_mmio_device){
                .base = d->mmio_base, .size = d->mmio_size, .spi = d->irq};
    }
    return write_fdt(vm);
}

/* KVM_IRQ_LINE's irq for an SPI: the GIC's own interrupt ID (32 + n) with
 * the SPI type, unlike irqfd's GSI n (api.rst, KVM_IRQ_LINE on arm64). */
static uint32_t spi_irq_line(uint32_t spi)
{
    return (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (ARM64_GIC_SPI_BASE + spi);
}

static int uart_create(struct vm *vm)
{
    struct arm64_vm *a = vm->arch;
    /* A 16550's interrupt is a level: high while IIR reports a reason. */
    int rc = irq_level_init(&a->uart_irq, vm->vm_fd, spi_irq_line(ARM64_UART_SPI));
    if (rc)
        return rc;
    a->uart_irq_ready = true;
    rc = serial_16550_init(&a->uart, &a->uart_irq);
    if (rc) {
        log_error("uart: %s", strerror(-rc));
        return rc;
    }
    a->uart_ready = true;
    rc = io_bus_register(&vm->mmio, ARM64_UART_BASE, ARM64_UART_SIZE, &serial_16550_io,
                         &a->uart, "uart");
    if (rc)
        return rc;
    vm->console = serial_16550_console_port(&a->uart);
    return 0;
}

/* Once every vCPU exists: the vGIC's initialisation, before which KVM refuses
 * KVM_IRQFD (EAGAIN) and, on a GICv3, KVM_IRQ_LINE (EBUSY). */
int arch_vm_finalize(struct vm *vm)
{
    struct arm64_vm *a = vm->arch;
    return arm64_gic_init(a->gic_fd);
}

int arch_devices_create(struct vm *vm)
{
    return uart_create(vm);
}

int arch_vcpu_init(struct vm *vm, struct vcpu *vcpu)
{
    struct arm64_vm *a = vm->arch;
    int rc = arm64_vcpu_init(vcpu->fd, vcpu->index, &a->target, &a->mpidr[vcpu->index]);
    if (!rc && vcpu->index == 0)
        rc = arm64_vcpu_set_boot_regs(vcpu->fd, 0, a->plan.kernel_entry, a->plan.fdt_addr);
    return rc;
}

void arch_vm_destroy(struct vm *vm)
{
    struct arm64_vm *a = vm->arch;
    if (!a)
        return;
    if (a->uart_ready)
        serial_16550_destroy(&a->uart);
    if (a->uart_irq_ready)
        irq_level_destroy(&a->uart_irq);
    if (a->gic_fd >= 0)
        close(a->gic_fd);
    free(a->mpidr);
    free(a);
    vm->arch = NULL;
    vm->console = (struct console_port){.notify_fd = -1};
}
