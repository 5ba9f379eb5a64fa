/* The VM: KVM handles, memory, buses, vCPUs and the stop protocol shared by
 * every thread. */
#ifndef MINIVMM_VM_H
#define MINIVMM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "vmm/config.h"
#include "vmm/console_port.h"
#include "vmm/events.h"
#include "vmm/guest_mem.h"
#include "vmm/io_bus.h"

enum vm_stop_reason {
    VM_RUNNING = 0,
    VM_STOP_POWEROFF,       /* guest powered off */
    VM_STOP_REBOOT,         /* guest asked for a reset */
    VM_STOP_SIGNAL,         /* SIGINT/SIGTERM/SIGHUP */
    VM_STOP_USER,           /* console escape Ctrl-A x */
    VM_STOP_ERROR,          /* the VMM failed */
    VM_STOP_API,            /* PUT /vm/actions shutdown */
};

struct vcpu {
    struct vm *vm;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    uint64_t exits;
    char name[16];              /* "vcpu0": thread name, seccomp messages */
};

/* What the guest must be told about (ACPI / device tree): a device's
 * register window and interrupt, or a hotpluggable memory region (which must
 * stay out of the boot memory map but belongs to a NUMA node). */
enum vm_device_kind { VM_DEVICE_VIRTIO_MMIO, VM_DEVICE_HOTPLUG_MEMORY };
struct vm_device_info {
    enum vm_device_kind kind;
    uint64_t mmio_base;         /* VIRTIO_MMIO: registers; HOTPLUG_MEMORY: region */
    uint64_t mmio_size;
    uint32_t irq;               /* VIRTIO_MMIO only */
    uint32_t node;              /* HOTPLUG_MEMORY only */
};
#define VM_MAX_DEVICES 32

struct vm_virtio_mem;
struct hotplug_guard;

/* From Linux 6.8's uapi, absent from older headers. */
#define VM_KVM_CAP_MEMORY_FAULT_INFO 232
#define VM_KVM_EXIT_MEMORY_FAULT 39

struct vm {
    const struct vm_config *cfg;
    int kvm_fd;
    int vm_fd;
    int vcpu_mmap_size;
    bool memory_fault_info;     /* KVM_CAP_MEMORY_FAULT_INFO: EFAULT exits carry the gpa */
    struct guest_mem mem;
    struct io_bus mmio;         /* port I/O, where an arch has it, is the arch's */
    struct vcpu *vcpus;
    unsigned ncpus;
    struct vm_device_info devices[VM_MAX_DEVICES];
    unsigned n_devices;
    struct vm_virtio_mem *virtio_mem;   /* cfg->n_virtio_mem of them (vm_devices.c) */
    unsigned n_virtio_mem;
    struct hotplug_guard *mem_guard;    /* watches every region (vm_devices.c) */
    void *arch;                 /* owned by arch/<arch>/ */
    struct console_port console;        /* the arch's UART (arch_devices_create) */

    /* Kept across guest reboots (vm_reset). Readers outside the VM's own
     * threads (the API) hold control_lock for reading; vm_reset rebuilds
     * the devices under it for writing. */
    pthread_rwlock_t control_lock;
    uint64_t requested_after_reset[CONFIG_MAX_VIRTIO_MEM];  /* per virtio-mem device */
    bool requested_after_reset_valid;

    pthread_mutex_t stop_lock;
    enum vm_stop_reason stop_reason;
    char stop_detail[256];
    int stop_eventfd;           /* readable once a stop was requested */

    /* For the API (vmm/vm_control.c): what happens to the VM, and since when. */
    struct event_bus events;
    int64_t created_ns;         /* CLOCK_MONOTONIC at vm_create */
    int64_t booted_ns;          /* CLOCK_MONOTONIC when the guest last started (atomic) */
    uint64_t reboots;           /* guest resets served */
};

/* Creates the VM, its memory and platform devices, and plans the kernel's
 * boot: everything but the kernel and initrd bytes, which vm_load_payload
 * reads before the first vm_start (main starts the API in between). Returns
 * 0, or a negative errno with the cause logged; *usage_error is set when the
 * user's input (kernel/initrd file) is at fault. */
int vm_create(struct vm *vm, const struct vm_config *cfg, bool *usage_error);

/* Reads the kernel and initrd into guest memory; after vm_create, before
 * the first vm_start. Same returns as vm_create. */
int vm_load_payload(struct vm *vm, bool *usage_error);

/* After vm_wait ended with VM_STOP_REBOOT: takes the reboot (its detail
 * copied out), making the VM running again, unless a stop that ends the VMM
 * came in meanwhile (then false: that stop is the answer). */
bool vm_take_reboot(struct vm *vm, char *detail, size_t len);

/* After vm_take_reboot: a system reset. Tears the VM down and builds it
 * afresh (new KVM VM, boot RAM, devices, kernel and initrd loaded again,
 * vCPUs at their reset state); every virtio-mem block ends up unplugged and
 * its memory returned, requested sizes are kept. Then vm_start again.
 * Returns 0 or a negative errno (logged). */
int vm_reset(struct vm *vm);

/* Starts every vCPU thread. */
int vm_start(struct vm *vm);

/* Asks every thread to stop; the first reason wins, except that every stop
 * that ends the VMM overrides a guest reboot. Safe from any thread. */
__attribute__((format(printf, 3, 4)))
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, const char *fmt, ...);

/* Lock-free: read on every vCPU exit. */
enum vm_stop_reason vm_stop_reason(struct vm *vm);
bool vm_stopping(struct vm *vm);

/* The reason and its one-line detail, read together. */
enum vm_stop_reason vm_stop_info(struct vm *vm, char *detail, size_t len);

/* How long vm_wait waits for a vCPU thread to end after kicking it. */
#define VCPU_JOIN_TIMEOUT_S 5
/* Exit status when a vCPU thread could not be joined: the VM's state is
 * never freed under it; the process ends instead (main.c). */
#define VM_EXIT_VCPU_STUCK 3

/* Blocks until a stop is requested (by the guest, a signal or an error),
 * then joins the vCPUs. Returns the exit status for the process:
 * 0, 1 (VM_STOP_ERROR) or VM_EXIT_VCPU_STUCK. */
int vm_wait(struct vm *vm);

void vm_destroy(struct vm *vm);

/* CLOCK_MONOTONIC in nanoseconds (uptimes). */
static inline int64_t vm_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Runs the vCPU until the VM stops (vmm/vcpu.c); the body of each vCPU
 * thread. Returns 0, or -1 when KVM_RUN itself failed (the VM is stopping
 * with the reason). */
int vcpu_run_loop(struct vcpu *vcpu);

#endif
