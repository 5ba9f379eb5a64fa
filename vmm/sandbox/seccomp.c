#include "vmm/sandbox/seccomp.h"

#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/sandbox/seccomp_rules.h"

#define NAME_TABLE_SIZE 512

/* Process-wide because a signal handler reads it and threads in devices/
 * cannot reach the VM's config: written once in seccomp_setup, before any
 * other thread exists, read-only afterwards. */
static struct {
    enum seccomp_mode mode;
    char names[NAME_TABLE_SIZE][24];    /* syscall names, resolved ahead of any fault */
} sc = {.mode = SECCOMP_MODE_OFF};

/* Set by each thread when its filter goes in; read by the SIGSYS reporter. */
static __thread const char *thread_role;
static __thread const char *thread_label;

static const char *const role_names[SECCOMP_ROLE_COUNT] = {
    [SECCOMP_ROLE_MAIN] = "main",
    [SECCOMP_ROLE_VCPU] = "vcpu",
    [SECCOMP_ROLE_DEVICE] = "device",
    [SECCOMP_ROLE_GUARD] = "guard",
    [SECCOMP_ROLE_CONSOLE] = "console",
    [SECCOMP_ROLE_API] = "api",
};

const char *seccomp_role_name(enum seccomp_role role)
{
    return role < SECCOMP_ROLE_COUNT ? role_names[role] : "?";
}

static size_t append(char *buf, size_t at, size_t cap, const char *s)
{
    while (*s && at + 1 < cap)
        buf[at++] = *s++;
    return at;
}

static size_t append_num(char *buf, size_t at, size_t cap, long v)
{
    char digits[24];
    int n = 0;
    unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u && n < (int)sizeof(digits));
    if (v < 0 && at + 1 < cap)
        buf[at++] = '-';
    while (n && at + 1 < cap)
        buf[at++] = digits[--n];
    return at;
}

/* Async-signal-safe: only write(2) and the precomputed table. */
static void report_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char msg[256];
    size_t n = 0;
    int nr = si->si_syscall;
    /* Threads that never called seccomp_enter are the API's front door and
     * connection threads, which inherit the API role's filter from the
     * thread that started them. */
    char comm[17] = "?";
    if (!thread_label)
        prctl(PR_GET_NAME, comm, 0, 0, 0);
    n = append(msg, n, sizeof(msg), "minivmm: seccomp: thread '");
    n = append(msg, n, sizeof(msg), thread_label ? thread_label : comm);
    n = append(msg, n, sizeof(msg), "' (role ");
    n = append(msg, n, sizeof(msg), thread_role ? thread_role : "api, inherited");
    n = append(msg, n, sizeof(msg), ") made a forbidden system call: ");
    if (nr >= 0 && nr < NAME_TABLE_SIZE && sc.names[nr][0])
        n = append(msg, n, sizeof(msg), sc.names[nr]);
    else
        n = append(msg, n, sizeof(msg), "unknown");
    n = append(msg, n, sizeof(msg), " (");
    n = append_num(msg, n, sizeof(msg), nr);
    n = append(msg, n, sizeof(msg), ")\n");
    ssize_t w = write(STDERR_FILENO, msg, n);
    (void)w;
    /* Die of this very signal, so the exit status says what happened. */
    signal(sig, SIG_DFL);
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
}

int seccomp_setup(enum seccomp_mode mode)
{
    sc.mode = mode;
    /* glibc reads /etc/localtime on the first gmtime_r/localtime_r of the
     * process; do it now, while every thread may still open files. */
    tzset();
    if (mode == SECCOMP_MODE_OFF)
        return 0;
    for (int nr = 0; nr < NAME_TABLE_SIZE; nr++) {
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        if (name) {
            snprintf(sc.names[nr], sizeof(sc.names[nr]), "%s", name);
            free(name);
        }
    }
    struct sigaction sa = {.sa_sigaction = report_sigsys, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0) {
        log_error("seccomp: installing the SIGSYS reporter: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

static scmp_filter_ctx build(enum seccomp_role role, enum seccomp_mode mode, int *err)
{
    scmp_filter_ctx ctx = seccomp_init(mode == SECCOMP_MODE_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
    if (!ctx) {
        *err = -ENOMEM;
        return NULL;
    }
    *err = seccomp_rules_add(ctx, role);
    if (*err) {
        seccomp_release(ctx);
        return NULL;
    }
    return ctx;
}

int seccomp_rules_count(enum seccomp_role role)
{
    int err;
    scmp_filter_ctx ctx = build(role, SECCOMP_MODE_ON, &err);
    if (!ctx)
        return err;
    seccomp_release(ctx);
    return 0;
}

int seccomp_enter(enum seccomp_role role, const char *thread_name)
{
    thread_role = seccomp_role_name(role);
    thread_label = thread_name;
    if (sc.mode == SECCOMP_MODE_OFF)
        return 0;
    int err;
    scmp_filter_ctx ctx = build(role, sc.mode, &err);
    if (!ctx) {
        log_error("seccomp: building the %s filter: %s", thread_role, strerror(-err));
        return err;
    }
    err = seccomp_load(ctx);
    seccomp_release(ctx);
    if (err) {
        log_error("seccomp: loading the %s filter for %s: %s", thread_role, thread_name,
                  strerror(-err));
        return err;
    }
#ifdef MINIVMM_SECCOMP_TEST_TRIGGER
    /* Test builds only: prove the filter of a role is in force by making a
     * call no role allows. */
    const char *want = getenv("MINIVMM_SECCOMP_TRIGGER");
    if (want && !strcmp(want, thread_role))
        syscall(SYS_kexec_load, 0, 0, NULL, 0);
#endif
    return 0;
}
