/* arm64 implementation of vmm/arch.h: not written yet. Every entry point
 * that would build a VM fails with a clear message so an arm64 build links
 * and explains itself; the limits and facts the CLI asks for are arm64's
 * (a guest with 4 KiB pages, a GICv3, a device tree without ACPI). */
#include "vmm/arch.h"

#include <errno.h>

#include "vmm/log.h"
#include "vmm/vm.h"

static int not_yet(void)
{
    log_error("arm64 guests are not supported yet (the device tree and GIC setup are "
              "still to be written)");
    return -ENOTSUP;
}

const char *arch_default_cmdline(void)
{
    return "console=ttyS0";
}

const char *arch_kernel_format(void)
{
    return "arm64 Image";
}

/* KVM's GICv3 limit (and KVM_MAX_VCPUS); KVM_CAP_MAX_VCPUS is checked too. */
unsigned arch_max_vcpus(void)
{
    return 512;
}

/* Linux arm64 with 4 KiB pages: SECTION_SIZE_BITS 27. */
uint64_t arch_guest_memory_block(void)
{
    return 128ULL << 20;
}

/* A guest booted with a device tree has no ACPI, so no proximity domains. */
bool arch_virtio_mem_acpi_pxm(void)
{
    return false;
}

int arch_check_config(const struct vm_config *cfg, char *err, size_t errlen)
{
    (void)cfg; (void)err; (void)errlen;
    return 0;
}

int arch_ram_layout(uint64_t mem_size, struct mem_range *ranges, unsigned max, unsigned *n)
{
    (void)mem_size; (void)ranges; (void)max; (void)n;
    return not_yet();
}

void arch_hotplug_window(uint64_t mem_size, uint64_t *start, uint64_t *end)
{
    (void)mem_size;
    *start = *end = 0;
}

void arch_device_irq_range(uint32_t *first, uint32_t *last)
{
    *first = 1;
    *last = 0;
}

uint64_t arch_device_mmio_base(unsigned index)
{
    (void)index;
    return 0;
}

int arch_check_kernel(const struct vm_config *cfg) { (void)cfg; return not_yet(); }

int arch_kvm_vm_type(struct vm *vm, unsigned long *type)
{
    (void)vm;
    *type = 0;
    return not_yet();
}

int arch_vm_init(struct vm *vm) { (void)vm; return not_yet(); }
int arch_load_kernel(struct vm *vm) { (void)vm; return not_yet(); }
int arch_vcpu_init(struct vm *vm, struct vcpu *vcpu) { (void)vm; (void)vcpu; return not_yet(); }
int arch_vm_finalize(struct vm *vm) { (void)vm; return not_yet(); }
int arch_devices_create(struct vm *vm) { (void)vm; return not_yet(); }
int arch_describe_devices(struct vm *vm) { (void)vm; return not_yet(); }

enum arch_exit arch_vcpu_exit(struct vcpu *vcpu, enum vm_stop_reason *reason, char *detail,
                              size_t len)
{
    (void)vcpu; (void)reason; (void)detail; (void)len;
    return ARCH_EXIT_UNKNOWN;
}

bool arch_vcpu_run_error(const struct vcpu *vcpu, int err, char *detail, size_t len)
{
    (void)vcpu; (void)err; (void)detail; (void)len;
    return false;
}

void arch_vcpu_log_state(const struct vcpu *vcpu) { (void)vcpu; }
void arch_vm_destroy(struct vm *vm) { (void)vm; }
