/* What each thread role may ask of the kernel, and why. Names are resolved
 * by libseccomp for the running architecture: each entry lists the system
 * calls that do one job on any of them (poll on x86_64, ppoll on arm64),
 * every one the architecture has is allowed. ioctl is allowed per request
 * number (the arch adds its own, arch_seccomp_ioctls) and madvise per
 * advice, never wholesale. */
#include "vmm/sandbox/seccomp_rules.h"

#include <errno.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <string.h>
#include <termios.h>

#include "vmm/arch.h"
#include "vmm/log.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* One thing a role needs and the system calls that do it: every name the
 * running architecture has is allowed, and each architecture minivmm builds
 * for must have at least one of them, which seccomp_rules_check_arch
 * checks for every list (tests/unit/test_seccomp_rules.c). */
#define MAX_NAMES 3
struct allowed {
    const char *names[MAX_NAMES];
    const char *why;
};

/* Every thread: the C library's own needs and the process's exit paths. */
static const struct allowed common[] = {
    {{"futex"}, "mutexes, condition variables, thread joins"},
    {{"restart_syscall"}, "a call interrupted by a signal resumes"},
    {{"rt_sigreturn"}, "return from the vCPU kick (SIGUSR1) and other handlers"},
    {{"rt_sigprocmask"}, "glibc masks signals around thread exit"},
    {{"exit"}, "thread exit"},
    {{"exit_group"}, "process exit"},
    {{"mmap"}, "malloc arenas and large allocations"},
    {{"munmap"}, "malloc, and thread stacks on exit"},
    {{"mremap"}, "realloc of large buffers"},
    {{"mprotect"}, "malloc arena growth; the memory guard makes refused pages inaccessible"},
    {{"brk"}, "malloc's main heap"},
    {{"write"}, "log lines on stderr, the console on stdout, eventfd signals"},
    {{"clock_gettime"}, "timestamps when the vDSO falls back"},
    /* Without a vDSO-capable clock source (seen in a nested test host) these
     * are real system calls. */
    {{"gettimeofday"}, "the C library's time of day"},
    {{"time", "clock_gettime"}, "time() (clock_gettime where there is no time call: arm64)"},
    {{"clock_getres"}, "the same"},
    {{"clock_nanosleep"}, "short sleeps (API ?wait polling, retries)"},
    {{"nanosleep"}, "short sleeps"},
    {{"sched_yield"}, "lock back-off in the C library"},
    {{"getrandom"}, "glibc seeds malloc's tcache key per thread"},
    {{"getpid"}, "the SIGSYS reporter re-raises the signal on this thread"},
    {{"gettid"}, "the SIGSYS reporter re-raises the signal on this thread"},
    {{"tgkill"}, "the SIGSYS reporter; pthread_kill for the vCPU kick"},
};

/* The main thread builds the VM and, on a guest reboot, builds it again. */
static const struct allowed main_calls[] = {
    {{"read"}, "signalfd, eventfds, kernel and initrd files on a reset"},
    {{"pread64"}, "kernel and initrd files"},
    {{"openat"}, "/dev/kvm, kernel and initrd on a reset; thread names in /proc"},
    {{"close"}, "file descriptors of a torn-down VM"},
    {{"fstat", "newfstatat", "statx"}, "file sizes"},
    {{"lseek"}, "file reads"},
    {{"memfd_create"}, "guest RAM and virtio-mem regions of a rebuilt VM"},
    {{"ftruncate"}, "sizing those memfds"},
    {{"fcntl"}, "sealing memfds, descriptor flags"},
    {{"eventfd2"}, "irqfd, ioeventfd and stop eventfds of a rebuilt VM"},
    {{"signalfd4"}, "SIGINT/SIGTERM/SIGHUP become a readable fd in vm_wait"},
    {{"poll", "ppoll"}, "vm_wait"},
    {{"clone", "clone3"}, "vCPU, device and console threads of a rebuilt VM"},
    {{"set_robust_list"}, "new threads register their robust mutex list"},
    {{"rseq"}, "new threads register restartable sequences"},
    {{"rt_sigaction"}, "the vCPU kick handler is installed on every start"},
    {{"sigaltstack"}, "new threads"},
    {{"unlink", "unlinkat"}, "the API socket file is removed at exit"},
    {{"shutdown"}, "the API server's listening socket at exit"},
    {{"prctl"}, "thread names"},
    /* Threads created after this filter is loaded (those of a VM rebuilt on
     * a guest reboot) inherit it beneath their own, so it must allow what
     * they need; their own filter narrows it again. */
    {{"fallocate"}, "inherited by virtio-mem device and guard threads of a rebuilt VM"},
    {{"userfaultfd"}, "the hotplug memory guard of a rebuilt VM"},
    {{"seccomp"}, "threads started after this filter (console, rebuilt vCPUs and devices) "
                  "stack their own"},
};

static const struct allowed vcpu_calls[] = {
    {{"read"}, "nothing reads in the run loop today; eventfd reads in device handlers"},
};

static const struct allowed device_calls[] = {
    {{"read"}, "queue notification and stop eventfds"},
    {{"poll", "ppoll"}, "waiting for queue notifications"},
    {{"fallocate"}, "virtio-mem: punch-hole discard / populate when madvise cannot"},
};

static const struct allowed guard_calls[] = {
    {{"read"}, "userfaultfd messages, the stop eventfd"},
    {{"poll", "ppoll"}, "waiting for faults"},
    {{"fallocate"}, "backing a plugged block of a memfd on first touch"},
};

static const struct allowed console_calls[] = {
    {{"read"}, "stdin, the wake eventfd and the UART's eventfd"},
    {{"poll", "ppoll"}, "stdin, stdout (POLLOUT), the wake eventfd and the UART's eventfd"},
    {{"sendto"}, "guest output when stdout is a socket (send with MSG_DONTWAIT)"},
};

static const struct allowed api_calls[] = {
    {{"accept", "accept4"}, "client connections (accept4: the front door, api/front.c)"},
    {{"epoll_create1"}, "the front door waits on the listening socket and new connections"},
    {{"epoll_ctl"}, "the front door adds and removes connections"},
    {{"epoll_wait", "epoll_pwait"}, "the front door's wait (epoll_pwait: glibc's on arm64)"},
    {{"read"}, "requests, inter-thread eventfds"},
    {{"recvfrom"}, "requests"},
    {{"recvmsg"}, "requests"},
    {{"sendto"}, "responses"},
    {{"sendmsg"}, "responses"},
    {{"writev"}, "responses"},
    {{"close"}, "finished connections"},
    {{"shutdown"}, "finished connections"},
    {{"poll", "ppoll"}, "a connection's thread sees its client hang up"},
    {{"fcntl"}, "non-blocking sockets, and blocking ones for connection threads"},
    {{"setsockopt"}, "a connection's send and receive timeouts"},
    {{"getsockopt"}, "socket errors"},
    {{"eventfd2"}, "the front door's wake-up at stop"},
    {{"clone", "clone3"}, "one thread per connection"},
    {{"set_robust_list"}, "new connection threads"},
    {{"rseq"}, "new connection threads"},
    {{"sigaltstack"}, "new connection threads"},
    {{"fstat", "newfstatat"}, "host memory behind a virtio-mem region (memfd blocks)"},
    {{"mincore"}, "host memory behind a virtio-mem region (anonymous memory)"},
    {{"sched_getaffinity"}, "glibc sizes thread stacks and counts CPUs"},
};

/* Refused with EACCES rather than fatal: jansson opens /dev/urandom to seed
 * its hash tables and copes when it cannot. */
static const struct allowed api_refused[] = {
    {{"openat", "open"}, "opening files"},
};

static const int api_prctl[] = {PR_SET_NAME};   /* connection threads are named */
static const int common_prctl[] = {PR_GET_NAME}; /* the SIGSYS reporter names the thread */

/* The generic ones; each arch adds its own (arch_seccomp_ioctls). */
static const struct seccomp_ioctl main_ioctls[] = {
    {KVM_GET_API_VERSION, "opening KVM"},
    {KVM_CREATE_VM, "a rebuilt VM"},
    {KVM_GET_VCPU_MMAP_SIZE, "kvm_run size"},
    {KVM_CHECK_EXTENSION, "capabilities (memslots, vCPUs)"},
    {KVM_CREATE_VCPU, "vCPUs of a rebuilt VM"},
    {KVM_SET_USER_MEMORY_REGION, "boot RAM memslots"},
    {KVM_IRQFD, "device interrupts (assign and deassign)"},
    {KVM_IRQ_LINE, "inherited by the console thread and the vCPU threads of a rebuilt VM: the UART's level interrupt"},
    {KVM_IOEVENTFD, "queue notifications (assign and deassign)"},
    {TCGETS, "the console's terminal mode around a reset"},
    {TCSETS, "the console's terminal mode around a reset"},
    {TCSETSW, "the console's terminal mode around a reset"},
    {TCSETSF, "the console's terminal mode around a reset"},
    {KVM_RUN, "inherited by the vCPU threads of a rebuilt VM (with the arch's vCPU list)"},
    {UFFDIO_API, "the hotplug memory guard's userfaultfd"},
    {UFFDIO_REGISTER, "the guard watches each virtio-mem region"},
    {_IO(0xAA, 0x00), "USERFAULTFD_IOC_NEW: a userfaultfd from /dev/userfaultfd"},
    {UFFDIO_WAKE, "inherited by the guard thread of a rebuilt VM"},
    {UFFDIO_UNREGISTER, "inherited by device and guard threads of a rebuilt VM (populate_anon)"},
};

static const struct seccomp_ioctl guard_ioctls[] = {
    {UFFDIO_WAKE, "a faulting thread retries once its page is backed or refused"},
    {UFFDIO_UNREGISTER, "anonymous memory leaves the watch while the guard backs it"},
    {UFFDIO_REGISTER, "and rejoins it after"},
};

static const struct seccomp_ioctl vcpu_ioctls[] = {
    {KVM_RUN, "running the guest"},
    {KVM_IRQ_LINE, "the console UART's level interrupt follows its register accesses"},
};

static const struct seccomp_ioctl console_ioctls[] = {
    {KVM_IRQ_LINE, "input raises the console UART's level interrupt"},
};

static const struct seccomp_ioctl device_ioctls[] = {
    {KVM_SET_USER_MEMORY_REGION, "virtio-mem memslots on plug and unplug"},
    {UFFDIO_UNREGISTER, "anonymous memory leaves the guard's watch while a plug backs it"},
    {UFFDIO_REGISTER, "and rejoins it after"},
};

/* Terminal restore on a fatal signal may happen on any thread. */
static const struct seccomp_ioctl crash_ioctls[] = {
    {TCSETS, "a fatal signal restores the terminal from whichever thread it hits"},
};

static const int madvise_common[] = {MADV_DONTNEED};   /* glibc frees thread stacks; malloc_trim after an API burst */
static const int madvise_device[] = {MADV_REMOVE, MADV_POPULATE_WRITE};
static const int madvise_guard[] = {MADV_POPULATE_WRITE};  /* backing anonymous memory */
/* Guest memory of a rebuilt VM: no core dumps, huge pages or not. */
static const int madvise_main[] = {MADV_DONTDUMP, MADV_HUGEPAGE, MADV_NOHUGEPAGE};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Sanitizer builds only: ASan/LSan's runtime stops the world with a ptrace
 * tracer at exit and reads /proc for its reports. Release builds never
 * allow these. */
#ifdef MINIVMM_SANITIZE_BUILD
static const struct allowed sanitizer_calls[] = {
    {{"clone", "clone3"}, "LSan's tracer"},
    {{"ptrace"}, "LSan stops the world"},
    {{"wait4", "waitid"}, "LSan waits for its tracer"},
    {{"prctl"}, "LSan's tracer"},
    {{"openat"}, "sanitizer reports read /proc/self/maps"},
    {{"read"}, "sanitizer reports"},
    {{"close"}, "sanitizer reports"},
    {{"readlink", "readlinkat"}, "sanitizer reports (symbolizer path)"},
    {{"getdents64"}, "LSan lists threads in /proc/self/task"},
    {{"sigaltstack"}, "sanitizer signal stacks"},
    {{"rt_sigaction"}, "sanitizer handlers"},
    {{"fstat", "newfstatat"}, "sanitizer reports"},
    {{"sched_getaffinity"}, "sanitizer runtime"},
    {{"set_robust_list"}, "LSan's tracer"},
    {{"rseq"}, "LSan's tracer"},
    {{"getppid"}, "LSan's tracer"},
    {{"kill"}, "sanitizer exit paths"},
    {{"uname"}, "sanitizer runtime"},
    {{"prlimit64"}, "sanitizer runtime"},
    {{"madvise"}, "sanitizer allocator (any advice)"},
};
#endif

/* Every list of system calls, for seccomp_rules_check_arch. */
static const struct {
    const char *role;
    const struct allowed *list;
    size_t n;
} all_lists[] = {
    {"every role", common, N(common)},
    {"main", main_calls, N(main_calls)},
    {"vcpu", vcpu_calls, N(vcpu_calls)},
    {"device", device_calls, N(device_calls)},
    {"guard", guard_calls, N(guard_calls)},
    {"console", console_calls, N(console_calls)},
    {"api", api_calls, N(api_calls)},
    {"api", api_refused, N(api_refused)},
#ifdef MINIVMM_SANITIZE_BUILD
    {"sanitizer", sanitizer_calls, N(sanitizer_calls)},
#endif
};

/* The names' numbers on arch (a libseccomp SCMP_ARCH_* token); *n of them. */
static void resolve(const struct allowed *a, uint32_t arch, int nrs[MAX_NAMES], size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < MAX_NAMES && a->names[i]; i++) {
        int nr = seccomp_syscall_resolve_name_arch(arch, a->names[i]);
        if (nr != __NR_SCMP_ERROR && nr >= 0)
            nrs[(*n)++] = nr;
    }
}

static void format_names(const struct allowed *a, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < MAX_NAMES && a->names[i] && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "", a->names[i]);
}

int seccomp_rules_check_arch(uint32_t arch, char *err, size_t errlen)
{
    for (size_t l = 0; l < N(all_lists); l++) {
        for (size_t i = 0; i < all_lists[l].n; i++) {
            const struct allowed *a = &all_lists[l].list[i];
            int nrs[MAX_NAMES];
            size_t n;
            resolve(a, arch, nrs, &n);
            if (n == 0) {
                char names[128];
                format_names(a, names, sizeof(names));
                snprintf(err, errlen, "%s: none of [%s] (%s) is a system call here",
                         all_lists[l].role, names, a->why);
                return -ENOENT;
            }
        }
    }
    return 0;
}

/* action for syscall nr when argument `arg` equals value. The struct is
 * filled by hand: libseccomp's SCMP_An macros leave a field to the compiler,
 * which clang's -Wmissing-field-initializers refuses. */
static int rule_if(scmp_filter_ctx ctx, uint32_t action, int nr, unsigned arg, scmp_datum_t value)
{
    struct scmp_arg_cmp cmp = {.arg = arg, .op = SCMP_CMP_EQ, .datum_a = value, .datum_b = 0};
    return seccomp_rule_add_array(ctx, action, nr, 1, &cmp);
}

static int add_calls_as(scmp_filter_ctx ctx, uint32_t action, const struct allowed *list,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int nrs[MAX_NAMES];
        size_t have;
        resolve(&list[i], SCMP_ARCH_NATIVE, nrs, &have);
        if (have == 0) {
            /* seccomp_rules_check_arch proves this cannot happen on the
             * architectures minivmm is built for. */
            char names[128];
            format_names(&list[i], names, sizeof(names));
            log_error("seccomp: none of [%s] (%s) is a system call on this architecture",
                      names, list[i].why);
            return -ENOSYS;
        }
        for (size_t k = 0; k < have; k++) {
            int rc = seccomp_rule_add(ctx, action, nrs[k], 0);
            if (rc < 0 && rc != -EEXIST) {
                log_error("seccomp: allowing %s: %s", list[i].names[k], strerror(-rc));
                return rc;
            }
        }
    }
    return 0;
}

static int add_calls(scmp_filter_ctx ctx, const struct allowed *list, size_t n)
{
    return add_calls_as(ctx, SCMP_ACT_ALLOW, list, n);
}

static int add_ioctls(scmp_filter_ctx ctx, const struct seccomp_ioctl *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = rule_if(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, list[i].request);
        if (rc < 0 && rc != -EEXIST) {
            log_error("seccomp: allowing ioctl 0x%lx (%s): %s", list[i].request, list[i].why,
                      strerror(-rc));
            return rc;
        }
    }
    return 0;
}

static int add_arch_ioctls(scmp_filter_ctx ctx, enum seccomp_role role)
{
    size_t n;
    const struct seccomp_ioctl *list = arch_seccomp_ioctls(role, &n);
    return add_ioctls(ctx, list, n);
}

static int add_madvise(scmp_filter_ctx ctx, const int *advice, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = rule_if(ctx, SCMP_ACT_ALLOW, SCMP_SYS(madvise), 2, (scmp_datum_t)advice[i]);
        if (rc < 0 && rc != -EEXIST)
            return rc;
    }
    return 0;
}

/* Roles whose threads start under the main thread's filter (a rebuilt VM's
 * vCPUs, devices and guard; the console on every start): the main filter
 * must let through the arch's ioctls of each. The API's threads start
 * before it. */
static const enum seccomp_role started_by_main[] = {
    SECCOMP_ROLE_VCPU, SECCOMP_ROLE_DEVICE, SECCOMP_ROLE_GUARD, SECCOMP_ROLE_CONSOLE,
};

int seccomp_rules_add(scmp_filter_ctx ctx, enum seccomp_role role)
{
    int rc = add_calls(ctx, common, N(common));
    if (!rc)
        rc = add_madvise(ctx, madvise_common, N(madvise_common));
    if (!rc)
        rc = add_ioctls(ctx, crash_ioctls, N(crash_ioctls));
    for (size_t i = 0; !rc && i < N(common_prctl); i++)
        rc = rule_if(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 0, (scmp_datum_t)common_prctl[i]);
    if (!rc && role < SECCOMP_ROLE_COUNT)
        rc = add_arch_ioctls(ctx, role);
    if (rc)
        return rc;
    switch (role) {
    case SECCOMP_ROLE_MAIN:
        rc = add_calls(ctx, main_calls, N(main_calls));
        if (!rc)
            rc = add_ioctls(ctx, main_ioctls, N(main_ioctls));
        for (size_t i = 0; !rc && i < N(started_by_main); i++)
            rc = add_arch_ioctls(ctx, started_by_main[i]);
        if (!rc)    /* inherited by device threads of a rebuilt VM, see main_calls */
            rc = add_madvise(ctx, madvise_device, N(madvise_device));
        if (!rc)
            rc = add_madvise(ctx, madvise_main, N(madvise_main));
        break;
    case SECCOMP_ROLE_VCPU:
        rc = add_calls(ctx, vcpu_calls, N(vcpu_calls));
        if (!rc)
            rc = add_ioctls(ctx, vcpu_ioctls, N(vcpu_ioctls));
        break;
    case SECCOMP_ROLE_DEVICE:
        rc = add_calls(ctx, device_calls, N(device_calls));
        if (!rc)
            rc = add_ioctls(ctx, device_ioctls, N(device_ioctls));
        if (!rc)
            rc = add_madvise(ctx, madvise_device, N(madvise_device));
        break;
    case SECCOMP_ROLE_CONSOLE:
        rc = add_calls(ctx, console_calls, N(console_calls));
        if (!rc)
            rc = add_ioctls(ctx, console_ioctls, N(console_ioctls));
        break;
    case SECCOMP_ROLE_GUARD:
        rc = add_calls(ctx, guard_calls, N(guard_calls));
        if (!rc)
            rc = add_ioctls(ctx, guard_ioctls, N(guard_ioctls));
        if (!rc)
            rc = add_madvise(ctx, madvise_guard, N(madvise_guard));
        break;
    case SECCOMP_ROLE_API:
        rc = add_calls(ctx, api_calls, N(api_calls));
        for (size_t i = 0; !rc && i < N(api_prctl); i++)
            rc = rule_if(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 0, (scmp_datum_t)api_prctl[i]);
        if (!rc)
            rc = add_calls_as(ctx, SCMP_ACT_ERRNO(EACCES), api_refused, N(api_refused));
        break;
    default:
        return -EINVAL;
    }
#ifdef MINIVMM_SANITIZE_BUILD
    if (!rc)
        rc = add_calls(ctx, sanitizer_calls, N(sanitizer_calls));
#endif
    return rc;
}
