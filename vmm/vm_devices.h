/* The VM's virtio devices: built from the configuration (one virtio-mem
 * device per --virtio-mem, each with its hotplug memory and virtio-mmio
 * transport), started before the vCPUs, stopped after them. */
#ifndef MINIVMM_VM_DEVICES_H
#define MINIVMM_VM_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "devices/virtio_mem.h"
#include "devices/virtio_mmio.h"
#include "vmm/hotplug/mem.h"
#include "vmm/log.h"
#include "vmm/vm.h"

struct vm_virtio_mem {
    struct vm *vm;
    struct virtio_mem dev;
    struct hotplug_mem mem;
    struct virtio_mmio transport;
    bool dev_ready, mem_ready, transport_ready;
    bool error_reported;        /* a guest or host memory error stopped the VM (atomic) */
};

/* After arch_vm_init (the interrupt controller exists), before
 * arch_describe_devices: places and creates the devices, registers them on
 * vm->mmio and lists them in vm->devices. Returns 0 or a negative errno. */
int vm_devices_create(struct vm *vm);

/* Starts each device's thread. */
int vm_devices_start(struct vm *vm);

/* The runtime resize hook: sets requested_size of the virtio-mem device with
 * this ID and interrupts the guest. 0, -ENOENT (no such ID) or -EINVAL, with
 * err set. Thread-safe. */
int vm_virtio_mem_resize(struct vm *vm, const char *id, uint64_t requested, char *err,
                         size_t errlen);

/* Finds a virtio-mem device by ID, or NULL. */
struct vm_virtio_mem *vm_find_virtio_mem(struct vm *vm, const char *id);

/* Stops threads and frees everything; safe on a partly created set. */
void vm_devices_destroy(struct vm *vm);

/* A vCPU's KVM_RUN failed with err (EFAULT, EHWPOISON): the host could not
 * map guest memory the guest touched, at *gpa when the kernel said where
 * (NULL when not). Stops the VM with a line naming the memory (device or
 * boot RAM), the address and the likely cause, and a host_error event;
 * nothing more if the guard already stopped it for that device. */
void vm_memory_fault(struct vm *vm, unsigned vcpu, const uint64_t *gpa, int err);

#endif
