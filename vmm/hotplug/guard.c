#include "vmm/hotplug/guard.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/sandbox/seccomp.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)     /* Linux 6.1's /dev/userfaultfd */
#endif

static int make_uffd(char *err, size_t errlen)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0)
        return fd;
    int sys_err = errno;
    /* Without CAP_SYS_PTRACE (and vm.unprivileged_userfaultfd=0) the system
     * call refuses a descriptor that sees kernel-mode faults, which is what
     * KVM's are; /dev/userfaultfd hands one to whoever may open it. */
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        int dev_err = errno;
        close(dev);
        if (fd >= 0)
            return fd;
        errno = dev_err;
    }
    snprintf(err, errlen,
             "userfaultfd: %s, and /dev/userfaultfd: %s (minivmm needs one to keep unplugged "
             "virtio-mem blocks inaccessible: run it with access to /dev/userfaultfd as to "
             "/dev/kvm, or with vm.unprivileged_userfaultfd=1)",
             strerror(sys_err), strerror(errno));
    return -1;
}

int hotplug_guard_open(struct hotplug_guard *g, char *err, size_t errlen)
{
    memset(g, 0, sizeof(*g));
    g->uffd = g->stop_fd = -1;
    int fd = make_uffd(err, errlen);
    if (fd < 0)
        return -EPERM;
    g->uffd = fd;
    /* The faulting thread's id says whose access it was (Linux 4.14); a
     * kernel without it refuses the feature and leaves the API unset, so
     * asking again without it works. */
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID};
    g->thread_ids = true;
    int rc = ioctl(fd, UFFDIO_API, &api);
    if (rc < 0 && errno == EINVAL) {
        g->thread_ids = false;
        api = (struct uffdio_api){.api = UFFD_API, .features = 0};
        rc = ioctl(fd, UFFDIO_API, &api);
    }
    if (rc < 0) {
        snprintf(err, errlen, "UFFDIO_API: %s", strerror(errno));
        goto fail;
    }
    if (!(api.features & UFFD_FEATURE_MISSING_SHMEM)) {
        snprintf(err, errlen, "this kernel's userfaultfd cannot watch shared memory "
                              "(UFFD_FEATURE_MISSING_SHMEM, Linux 4.11)");
        goto fail;
    }
    g->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g->stop_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    return 0;
fail:
    hotplug_guard_destroy(g);
    return -EINVAL;
}

int hotplug_guard_add(struct hotplug_guard *g, struct hotplug_mem *hm, char *err, size_t errlen)
{
    if (g->n >= CONFIG_MAX_VIRTIO_MEM) {
        snprintf(err, errlen, "more than %d guarded regions", CONFIG_MAX_VIRTIO_MEM);
        return -ENOSPC;
    }
    struct uffdio_register reg = {
        .range = {.start = (uint64_t)(uintptr_t)hm->hva, .len = hm->size},
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(g->uffd, UFFDIO_REGISTER, &reg) < 0) {
        int e = errno;
        snprintf(err, errlen, "UFFDIO_REGISTER of %llu MiB: %s", (unsigned long long)(hm->size >> 20),
                 strerror(e));
        return -e;
    }
    if (!(reg.ioctls & (1ULL << _UFFDIO_WAKE))) {
        snprintf(err, errlen, "UFFDIO_REGISTER: no UFFDIO_WAKE for this memory");
        return -EINVAL;
    }
    g->regions[g->n++] = hm;
    hm->uffd = g->uffd;     /* anonymous memory leaves the watch while it is populated */
    return 0;
}

static void wake(struct hotplug_guard *g, uint64_t start, uint64_t len)
{
    struct uffdio_range r = {.start = start, .len = len};
    if (ioctl(g->uffd, UFFDIO_WAKE, &r) < 0)
        log_error("memory guard: UFFDIO_WAKE at 0x%llx: %s", (unsigned long long)start,
                  strerror(errno));
}

/* The fault cannot be allowed to allocate, and the faulting thread must not
 * wait forever: the page (a whole huge page, if the region has them)
 * becomes inaccessible, so the retried access fails (KVM_RUN returns
 * EFAULT) instead of blocking or allocating. */
static void refuse(struct hotplug_guard *g, uint64_t page, uint64_t page_size)
{
    if (mprotect((void *)(uintptr_t)page, page_size, PROT_NONE) < 0)
        log_error("memory guard: mprotect PROT_NONE at 0x%llx: %s", (unsigned long long)page,
                  strerror(errno));
    wake(g, page, page_size);
}

/* Whether the faulting thread is one of minivmm's (a vCPU in KVM_RUN, a
 * device reading a queue): its access is the guest's doing now. Otherwise
 * it is a kernel worker KVM sent to fetch the page for an async page fault
 * (x86), which may run long after the guest's access. Names the thread in
 * who for the report. */
static bool thread_is_ours(const struct hotplug_guard *g, uint32_t tid, char *who, size_t len)
{
    if (!g->thread_ids || !tid) {
        snprintf(who, len, "a thread this kernel does not name");
        return true;
    }
    /* Signal 0 to a thread of this process: it exists, or ESRCH. */
    if (syscall(SYS_tgkill, getpid(), (pid_t)tid, 0) == 0) {
        snprintf(who, len, "minivmm thread %u", tid);
        return true;
    }
    snprintf(who, len, "kernel thread %u, not minivmm's (KVM fetching the page for an async "
             "page fault)", tid);
    return false;
}

/* One fault at host address hva: backed, or refused and reported. */
static void handle_fault(struct hotplug_guard *g, uint64_t hva, bool write, uint32_t tid)
{
    for (unsigned i = 0; i < g->n; i++) {
        struct hotplug_mem *hm = g->regions[i];
        uint64_t base = (uint64_t)(uintptr_t)hm->hva;
        if (hva < base || hva - base >= hm->size)
            continue;
        uint64_t page = hva & ~(hm->page_size - 1);
        uint64_t offset = page - base;
        char who[128];
        bool ours = thread_is_ours(g, tid, who, sizeof(who));
        int rc = ours ? hotplug_mem_fault(hm, offset) : hotplug_mem_fault_late(hm, offset);
        if (rc == 0) {
            /* Backed: every waiter on this page (and its neighbours in the
             * chunk, which share the new memory) may retry. */
            wake(g, page, hm->page_size);
            return;
        }
        if (rc == 1) {
            /* A late fetch of a page the guest has unplugged since: the
             * page is inaccessible now, so the retried fetch fails. */
            log_debug("%s: a kernel worker's late fetch at 0x%llx refused (the block is "
                      "unplugged)", hm->name, (unsigned long long)(hm->gpa + offset));
            wake(g, page, hm->page_size);
            return;
        }
        if (rc == -EFAULT) {
            if (g->on_violation)
                g->on_violation(g->opaque, hm, hm->gpa + (hva - base), write, who);
        } else if (g->on_host_failure) {
            g->on_host_failure(g->opaque, hm, hm->gpa + (hva - base), -rc);
        }
        refuse(g, page, hm->page_size);
        return;
    }
    log_error("memory guard: fault at 0x%llx outside every region", (unsigned long long)hva);
    refuse(g, hva & ~4095ULL, 4096);
}

static void serve(struct hotplug_guard *g)
{
    struct uffd_msg msgs[16];
    ssize_t n = read(g->uffd, msgs, sizeof(msgs));
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            log_error("memory guard: reading userfaultfd: %s", strerror(errno));
        return;
    }
    for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
        if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
            continue;
        handle_fault(g, msgs[i].arg.pagefault.address,
                     msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE,
                     g->thread_ids ? msgs[i].arg.pagefault.feat.ptid : 0);
    }
}

static void *guard_thread(void *arg)
{
    struct hotplug_guard *g = arg;
    /* If the filter cannot be installed the guard must still serve: vCPUs
     * touching new plugged memory wait for it. The failure is logged. */
    seccomp_enter(SECCOMP_ROLE_GUARD, "mem-guard");
    struct pollfd fds[2] = {{.fd = g->uffd, .events = POLLIN}, {.fd = g->stop_fd, .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("memory guard: poll: %s", strerror(errno));
            break;
        }
        if (fds[1].revents)
            break;
        if (fds[0].revents & POLLIN)
            serve(g);
        if (fds[0].revents & (POLLERR | POLLHUP)) {
            log_error("memory guard: userfaultfd closed under it");
            break;
        }
    }
    return NULL;
}

int hotplug_guard_start(struct hotplug_guard *g)
{
    int rc = pthread_create(&g->thread, NULL, guard_thread, g);
    if (rc) {
        log_error("memory guard: starting its thread: %s", strerror(rc));
        return -rc;
    }
    pthread_setname_np(g->thread, "mem-guard");
    g->running = true;
    return 0;
}

void hotplug_guard_destroy(struct hotplug_guard *g)
{
    if (g->running) {
        uint64_t one = 1;
        if (write(g->stop_fd, &one, sizeof(one)) < 0)
            log_error("memory guard: stopping: %s", strerror(errno));
        pthread_join(g->thread, NULL);
        g->running = false;
    }
    for (unsigned i = 0; i < g->n; i++)
        g->regions[i]->uffd = -1;
    if (g->uffd >= 0)
        close(g->uffd);
    if (g->stop_fd >= 0)
        close(g->stop_fd);
    g->uffd = g->stop_fd = -1;
    g->n = 0;
}
