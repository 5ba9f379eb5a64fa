/* arm64 implementation of vmm/arch.h: not written yet. Every entry point
 * fails with a clear message so an arm64 build links and explains itself. */
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
int arch_vm_init(struct vm *vm) { (void)vm; return not_yet(); }
int arch_load_kernel(struct vm *vm) { (void)vm; return not_yet(); }
int arch_describe_devices(struct vm *vm) { (void)vm; return not_yet(); }
int arch_vcpu_init(struct vm *vm, struct vcpu *vcpu) { (void)vm; (void)vcpu; return not_yet(); }
void arch_vcpu_log_state(const struct vcpu *vcpu) { (void)vcpu; }
void arch_vm_destroy(struct vm *vm) { (void)vm; }
