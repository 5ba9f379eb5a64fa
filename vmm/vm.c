#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "vmm/arch.h"
#include "vmm/clock.h"
#include "vmm/log.h"
#include "vmm/sandbox/seccomp.h"
#include "vmm/startup.h"
#include "vmm/test_hooks.h"
#include "vmm/vm_devices.h"

/* vCPU threads are kicked out of KVM_RUN with this signal; its handler does
 * nothing, the interrupted ioctl returning EINTR is the point. */
#define VCPU_KICK_SIGNAL SIGUSR1

static int kvm_check_cap(struct vm *vm, long cap, const char *name)
{
    int r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);
    if (r <= 0) {
        log_error("this KVM lacks %s, which minivmm requires", name);
        return -ENOTSUP;
    }
    return r;
}

static int open_kvm(struct vm *vm)
{
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        int err = errno;
        log_error("open /dev/kvm: %s%s", strerror(err),
                  err == EACCES ? " (add this user to the kvm group)" : "");
        return -err;
    }
    int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        log_error("KVM_GET_API_VERSION: got %d, need %d", version, KVM_API_VERSION);
        return -ENOTSUP;
    }
    unsigned long type;
    int rc = arch_kvm_vm_type(vm, &type);
    if (rc < 0)
        return rc;
    do {
        vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, type);
    } while (vm->vm_fd < 0 && errno == EINTR);
    if (vm->vm_fd < 0) {
        int err = errno;
        log_error("KVM_CREATE_VM (type 0x%lx): %s", type, strerror(err));
        return -err;
    }
    vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
        log_error("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        return -ENOTSUP;
    }

    static const struct {
        long cap;
        const char *name;
    } required[] = {
        {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
        {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
        {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        int r = kvm_check_cap(vm, required[i].cap, required[i].name);
        if (r < 0)
            return r;
    }
    /* Linux 6.8+: a KVM_RUN that fails with EFAULT says which guest address
     * the host could not map. Optional: without it the error is vaguer. */
    vm->memory_fault_info = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, VM_KVM_CAP_MEMORY_FAULT_INFO) > 0;
    int max_vcpus = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max_vcpus <= 0)
        max_vcpus = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    if (max_vcpus > 0 && vm->cfg->ncpus > (unsigned)max_vcpus) {
        log_error("--cpus %u: this KVM supports at most %d vCPUs", vm->cfg->ncpus, max_vcpus);
        return -EINVAL;
    }
    return 0;
}

static int create_vcpu(struct vm *vm, struct vcpu *vcpu, unsigned index)
{
    vcpu->vm = vm;
    vcpu->index = index;
    vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (vcpu->fd < 0) {
        int err = errno;
        log_error("KVM_CREATE_VCPU %u: %s", index, strerror(err));
        return -err;
    }
    vcpu->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                     vcpu->fd, 0);
    if (vcpu->run == MAP_FAILED) {
        int err = errno;
        vcpu->run = NULL;
        log_error("mmap kvm_run of vCPU %u: %s", index, strerror(err));
        return -err;
    }
    return arch_vcpu_init(vm, vcpu);
}

/* Everything of the VM that a guest reboot rebuilds: KVM, memory, devices,
 * the kernel's boot plan and the vCPUs (vm_load_payload then reads the
 * kernel). */
static int vm_build(struct vm *vm, bool *usage_error)
{
    const struct vm_config *cfg = vm->cfg;
    int rc;

    vm->kvm_fd = vm->vm_fd = -1;
    guest_mem_init(&vm->mem, -1);
    io_bus_init(&vm->mmio, "mmio");
    vm->n_devices = 0;
    *usage_error = false;

    rc = arch_check_kernel(cfg);
    if (rc < 0) {
        *usage_error = rc == -ENOEXEC;
        return rc;
    }
    rc = open_kvm(vm);
    if (rc < 0)
        return rc;

    struct mem_range ranges[ARCH_MAX_RAM_RANGES];
    unsigned n_ranges;
    rc = arch_ram_layout(cfg->mem_size, ranges, ARCH_MAX_RAM_RANGES, &n_ranges);
    if (rc < 0)
        return rc;
    vm->mem.vm_fd = vm->vm_fd;
    rc = guest_mem_add_ram(&vm->mem, ranges, n_ranges, &cfg->mem_backing);
    if (rc < 0)
        return rc;

    rc = arch_vm_init(vm);
    if (rc < 0)
        return rc;
    rc = arch_load_kernel(vm);
    if (rc < 0) {
        *usage_error = rc == -ENOEXEC;
        return rc;
    }

    /* Every vCPU exists before any interrupt line is bound: arm64's vGIC
     * is initialised for its final vCPU count (arch_vm_finalize), and
     * KVM_IRQFD waits for that. */
    vm->vcpus = calloc(cfg->ncpus, sizeof(*vm->vcpus));
    if (!vm->vcpus)
        return -ENOMEM;
    for (unsigned i = 0; i < cfg->ncpus; i++) {
        vm->vcpus[i].fd = -1;
        vm->ncpus++;
        rc = create_vcpu(vm, &vm->vcpus[i], i);
        if (rc < 0)
            return rc;
    }
    rc = arch_vm_finalize(vm);
    if (rc < 0)
        return rc;

    rc = arch_devices_create(vm);
    if (rc < 0)
        return rc;
    rc = vm_devices_create(vm);
    if (rc < 0)
        return rc;
    return arch_describe_devices(vm);
}

/* The reverse of vm_build; safe on a partly built VM. */
static void vm_teardown(struct vm *vm)
{
    /* Device threads stop before the memory and irqchip they use go away. */
    vm_devices_destroy(vm);
    arch_vm_destroy(vm);
    for (unsigned i = 0; i < vm->ncpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (v->run)
            munmap(v->run, (size_t)vm->vcpu_mmap_size);
        if (v->fd >= 0)
            close(v->fd);
    }
    free(vm->vcpus);
    vm->vcpus = NULL;
    vm->ncpus = 0;
    guest_mem_destroy(&vm->mem);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    vm->vm_fd = vm->kvm_fd = -1;
    vm->console = (struct console_port){.notify_fd = -1};
}

int vm_create(struct vm *vm, const struct vm_config *cfg, bool *usage_error)
{
    memset(vm, 0, sizeof(*vm));
    vm->cfg = cfg;
    vm->kvm_fd = vm->vm_fd = -1;
    guest_mem_init(&vm->mem, -1);
    pthread_mutex_init(&vm->stop_lock, NULL);
    pthread_rwlock_init(&vm->control_lock, NULL);
    *usage_error = false;
    vm->created_ns = vm->booted_ns = vm_clock_ns();
    int rc = event_bus_init(&vm->events);
    if (rc < 0) {
        log_error("event bus: %s", strerror(-rc));
        vm->stop_eventfd = -1;
        return rc;
    }

    vm->stop_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->stop_eventfd < 0) {
        log_error("eventfd: %s", strerror(errno));
        return -errno;
    }
    return vm_build(vm, usage_error);
}

int vm_load_payload(struct vm *vm, bool *usage_error)
{
    int rc = arch_load_payload(vm);
    *usage_error = rc == -ENOEXEC;
    return rc;
}

int vm_reset(struct vm *vm)
{
    /* A system reset as a power cycle: a fresh KVM VM leaves no stale
     * interrupt controller, vCPU state (on x86 the LAPIC, and MSRs with
     * kvm-clock pointers into the old kernel's memory) or memslot state
     * behind; every virtio-mem block is
     * unplugged because its memory goes away with the old memfd. What the
     * operator asked for survives: requested_size of each device, read under
     * the write lock so that no resize the API answered is lost. */
    test_hook_before_reset_lock();
    pthread_rwlock_wrlock(&vm->control_lock);
    for (unsigned i = 0; i < vm->n_virtio_mem && i < CONFIG_MAX_VIRTIO_MEM; i++) {
        struct virtio_mem_config c;
        virtio_mem_get_config(&vm->virtio_mem[i].dev, &c);
        vm->requested_after_reset[i] = c.requested_size;
        vm->requested_after_reset_valid = true;
    }
    vm_teardown(vm);

    __atomic_add_fetch(&vm->reboots, 1, __ATOMIC_RELAXED);
    bool usage_error;
    int rc = vm_build(vm, &usage_error);
    if (rc == 0)
        rc = vm_load_payload(vm, &usage_error);
    pthread_rwlock_unlock(&vm->control_lock);
    if (rc < 0)
        log_error("rebuilding the VM after the guest's reboot failed");
    return rc;
}

static void kick_handler(int sig)
{
    (void)sig;
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *vcpu = arg;
    snprintf(vcpu->name, sizeof(vcpu->name), "vcpu%u", vcpu->index);
    pthread_setname_np(pthread_self(), vcpu->name);

    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
    if (seccomp_enter(SECCOMP_ROLE_VCPU, vcpu->name) < 0) {
        vm_request_stop(vcpu->vm, VM_STOP_ERROR, "vCPU %u: cannot install its seccomp filter",
                        vcpu->index);
        return NULL;
    }

    if (vcpu->index == 0)
        startup_mark(STARTUP_FIRST_KVM_RUN);
    vcpu_run_loop(vcpu);
    test_hook_vcpu_returning(vcpu->index);
    return NULL;
}

int vm_start(struct vm *vm)
{
    struct sigaction sa = {.sa_handler = kick_handler};
    sigemptyset(&sa.sa_mask);
    if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0) {
        log_error("sigaction SIGUSR1: %s", strerror(errno));
        return -errno;
    }
    __atomic_store_n(&vm->booted_ns, vm_clock_ns(), __ATOMIC_RELAXED);  /* API reads it */
    int drc = vm_devices_start(vm);
    if (drc) {
        vm_request_stop(vm, VM_STOP_ERROR, "could not start the device threads");
        return drc;
    }
    for (unsigned i = 0; i < vm->ncpus; i++) {
        int rc = pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
        if (rc) {
            log_error("starting vCPU %u thread: %s", i, strerror(rc));
            vm_request_stop(vm, VM_STOP_ERROR, "could not start vCPU %u", i);
            return -rc;
        }
        vm->vcpus[i].thread_started = true;
    }
    return 0;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, const char *fmt, ...)
{
    pthread_mutex_lock(&vm->stop_lock);
    /* The first reason stands, except that any stop that ends the VMM
     * (poweroff, signal, Ctrl-A x, API shutdown, error) overrides a guest
     * reboot: a reboot only restarts the guest, so letting it win would lose
     * the stop (and a guest that resets at once, every time, could never be
     * stopped). */
    enum vm_stop_reason was = vm->stop_reason;
    if (was == VM_RUNNING || (was == VM_STOP_REBOOT && reason != VM_STOP_REBOOT)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(vm->stop_detail, sizeof(vm->stop_detail), fmt, ap);
        va_end(ap);
        /* Read without the lock on every vCPU exit (vm_stopping). */
        __atomic_store_n(&vm->stop_reason, reason, __ATOMIC_RELEASE);
        uint64_t one = 1;
        if (write(vm->stop_eventfd, &one, sizeof(one)) < 0)
            log_warn("signalling stop: %s", strerror(errno));
    }
    pthread_mutex_unlock(&vm->stop_lock);
}

enum vm_stop_reason vm_stop_reason(struct vm *vm)
{
    return __atomic_load_n(&vm->stop_reason, __ATOMIC_ACQUIRE);
}

enum vm_stop_reason vm_stop_info(struct vm *vm, char *detail, size_t len)
{
    pthread_mutex_lock(&vm->stop_lock);
    enum vm_stop_reason r = vm->stop_reason;
    snprintf(detail, len, "%s", vm->stop_detail);
    pthread_mutex_unlock(&vm->stop_lock);
    return r;
}

bool vm_stopping(struct vm *vm)
{
    return vm_stop_reason(vm) != VM_RUNNING;
}

bool vm_take_reboot(struct vm *vm, char *detail, size_t len)
{
    pthread_mutex_lock(&vm->stop_lock);
    bool take = vm->stop_reason == VM_STOP_REBOOT;
    if (take) {
        snprintf(detail, len, "%s", vm->stop_detail);
        /* From here a new stop request (an API shutdown racing this reset)
         * stays set, eventfd included, and ends the next vm_wait at once. */
        __atomic_store_n(&vm->stop_reason, VM_RUNNING, __ATOMIC_RELEASE);
        vm->stop_detail[0] = '\0';
        uint64_t drained;
        while (read(vm->stop_eventfd, &drained, sizeof(drained)) == (ssize_t)sizeof(drained))
            ;
    }
    pthread_mutex_unlock(&vm->stop_lock);
    return take;
}

static void kick_vcpus(struct vm *vm)
{
    for (unsigned i = 0; i < vm->ncpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (!v->thread_started)
            continue;
        /* immediate_exit covers a vCPU that is between its stop check and
         * KVM_RUN when the signal lands. */
        __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        pthread_kill(v->thread, VCPU_KICK_SIGNAL);
    }
}

/* Joins every vCPU thread, kicking them out of KVM_RUN. Returns false if
 * one did not end within VCPU_JOIN_TIMEOUT_S: its kvm_run, fds and the VM
 * state it reaches must then never be freed, so the caller ends the process
 * instead of resetting or destroying the VM. */
static bool join_vcpus(struct vm *vm)
{
    bool all = true;
    for (unsigned i = 0; i < vm->ncpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (!v->thread_started)
            continue;
        for (int attempt = 1;; attempt++) {
            struct timespec deadline = clock_deadline(CLOCK_REALTIME, 100);
            if (pthread_timedjoin_np(v->thread, NULL, &deadline) == 0) {
                v->thread_started = false;
                break;
            }
            if (attempt % 10 == 0 && attempt < VCPU_JOIN_TIMEOUT_S * 10)
                log_warn("vCPU %u has not stopped after %d s; waiting", i, attempt / 10);
            if (attempt == VCPU_JOIN_TIMEOUT_S * 10) {
                log_error("vCPU %u did not stop within %d s; its state cannot be freed while "
                          "it may still run", i, VCPU_JOIN_TIMEOUT_S);
                all = false;
                break;
            }
            kick_vcpus(vm);
        }
    }
    return all;
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
    }
}

static void take_stop_signal(struct vm *vm, int sfd)
{
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        vm_request_stop(vm, VM_STOP_SIGNAL, "stopped by %s", signal_name((int)si.ssi_signo));
}

int vm_wait(struct vm *vm)
{
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    int sfd = signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        log_warn("signalfd: %s (signals will not stop the VM cleanly)", strerror(errno));

    while (!vm_stopping(vm)) {
        struct pollfd fds[2] = {
            {.fd = vm->stop_eventfd, .events = POLLIN},
            {.fd = sfd, .events = POLLIN},
        };
        int n = poll(fds, sfd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno != EINTR) {
            vm_request_stop(vm, VM_STOP_ERROR, "poll: %s", strerror(errno));
            break;
        }
        if (sfd >= 0 && (fds[1].revents & POLLIN))
            take_stop_signal(vm, sfd);
    }
    /* The guest may have asked for its reboot before the loop above ever
     * polled: a signal pending meanwhile is still taken. */
    if (sfd >= 0)
        take_stop_signal(vm, sfd);
    kick_vcpus(vm);
    bool joined = join_vcpus(vm);
    if (sfd >= 0)
        close(sfd);
    if (!joined)
        return VM_EXIT_VCPU_STUCK;
    return vm_stop_reason(vm) == VM_STOP_ERROR ? 1 : 0;
}

void vm_destroy(struct vm *vm)
{
    vm_teardown(vm);
    if (vm->stop_eventfd >= 0)
        close(vm->stop_eventfd);
    vm->stop_eventfd = -1;
    event_bus_close(&vm->events);
    event_bus_destroy(&vm->events);
}
