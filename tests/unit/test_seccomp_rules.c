/* The seccomp allowlists on every architecture minivmm builds for: each
 * entry names a system call that architecture has, and the ioctls of the
 * build's arch reach the threads that make them through the filters they
 * inherit (a child process loads the real filters and makes the calls). */
#include <errno.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"
#include "vmm/arch.h"
#include "vmm/sandbox/seccomp.h"
#include "vmm/sandbox/seccomp_rules.h"

TEST(every_entry_names_a_call_of_each_arch)
{
    static const struct {
        uint32_t token;
        const char *name;
    } arches[] = {{SCMP_ARCH_X86_64, "x86_64"}, {SCMP_ARCH_AARCH64, "aarch64"}};
    for (size_t i = 0; i < sizeof(arches) / sizeof(arches[0]); i++) {
        char err[300] = "", msg[400];
        if (seccomp_rules_check_arch(arches[i].token, err, sizeof(err)) != 0) {
            snprintf(msg, sizeof(msg), "%s: %s", arches[i].name, err);
            unit_fail(__FILE__, __LINE__, msg);
        }
    }
}

/* What makes the check above bite: libseccomp knows which calls arm64
 * lacks, so an entry naming only one of them fails there. */
TEST(calls_arm64_lacks_are_known_to_be_missing)
{
    static const char *const x86_only[] = {"poll", "select", "epoll_wait", "open", "unlink",
                                           "time", "pipe", "dup2", "readlink"};
    for (size_t i = 0; i < sizeof(x86_only) / sizeof(x86_only[0]); i++) {
        CHECK(seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, x86_only[i]) >= 0);
        CHECK(seccomp_syscall_resolve_name_arch(SCMP_ARCH_AARCH64, x86_only[i]) < 0);
    }
    CHECK(seccomp_syscall_resolve_name_arch(SCMP_ARCH_AARCH64, "ppoll") >= 0);
}

TEST(every_role_builds)
{
    for (int role = 0; role < SECCOMP_ROLE_COUNT; role++)
        CHECK_EQ(seccomp_rules_count((enum seccomp_role)role), 0);
}

/* In a child: exit status 0 if every request in list gets EBADF on fd -1
 * (the filter let it through to the kernel), 1 if one got another error;
 * a refused one kills the child with SIGSYS. */
static int try_ioctls(const struct seccomp_ioctl *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        errno = 0;
        if (ioctl(-1, list[i].request, 0) != -1 || errno != EBADF) {
            fprintf(stderr, "ioctl 0x%lx (%s): %s\n", list[i].request, list[i].why,
                    strerror(errno));
            return 1;
        }
    }
    return 0;
}

/* Runs body in a child process under seccomp; returns its wait status. */
static int in_child(int (*body)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(body());
    int status = 0;
    CHECK(pid > 0);
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    return status;
}

static const enum seccomp_role started_by_main[] = {
    SECCOMP_ROLE_VCPU, SECCOMP_ROLE_DEVICE, SECCOMP_ROLE_GUARD, SECCOMP_ROLE_CONSOLE,
};

static int main_then_vcpu(void)
{
    if (seccomp_setup(SECCOMP_MODE_ON) || seccomp_enter(SECCOMP_ROLE_MAIN, "main"))
        return 2;
    size_t n;
    const struct seccomp_ioctl *list = arch_seccomp_ioctls(SECCOMP_ROLE_MAIN, &n);
    if (try_ioctls(list, n))
        return 1;
    /* Threads started later inherit the main filter: their arch ioctls
     * must pass it. */
    for (size_t r = 0; r < sizeof(started_by_main) / sizeof(started_by_main[0]); r++) {
        list = arch_seccomp_ioctls(started_by_main[r], &n);
        if (try_ioctls(list, n))
            return 1;
    }
    /* A vCPU thread of a rebuilt VM: its own filter on top of main's. */
    if (seccomp_enter(SECCOMP_ROLE_VCPU, "vcpu0"))
        return 2;
    static const struct seccomp_ioctl run[] = {{KVM_RUN, "running the guest"}};
    list = arch_seccomp_ioctls(SECCOMP_ROLE_VCPU, &n);
    return try_ioctls(list, n) || try_ioctls(run, 1);
}

TEST(arch_ioctls_pass_the_filters_a_thread_inherits)
{
    int status = in_child(main_then_vcpu);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), 0);
}

static int vcpu_creates_a_vm(void)
{
    if (seccomp_setup(SECCOMP_MODE_ON) || seccomp_enter(SECCOMP_ROLE_VCPU, "vcpu0"))
        return 2;
    static const struct seccomp_ioctl create[] = {{KVM_CREATE_VM, "not a vCPU's job"}};
    return try_ioctls(create, 1) ? 1 : 0;
}

/* The check above is not vacuous: an ioctl outside the role is fatal. */
TEST(an_ioctl_outside_the_role_is_fatal)
{
    int status = in_child(vcpu_creates_a_vm);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS);
}
