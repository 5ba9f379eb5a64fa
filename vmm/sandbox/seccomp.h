/* Per-thread seccomp allowlists (libseccomp). Each thread installs the filter
 * of its role as its first act (the main thread once everything it opens at
 * start is open); threads it creates later inherit that filter and stack
 * their own on top, so every role's list must also be allowed by the roles
 * that create it (see vmm/sandbox/seccomp_rules.c). A forbidden call is fatal: the
 * process ends by SIGSYS after one line naming the thread role and the call. */
#ifndef MINIVMM_SECCOMP_H
#define MINIVMM_SECCOMP_H

enum seccomp_mode {
    SECCOMP_MODE_ON,    /* default: forbidden calls are fatal */
    SECCOMP_MODE_LOG,   /* forbidden calls are logged by the kernel (audit) and allowed */
    SECCOMP_MODE_OFF,
};

enum seccomp_role {
    SECCOMP_ROLE_MAIN,      /* builds, waits for and resets the VM */
    SECCOMP_ROLE_VCPU,      /* KVM_RUN and the devices behind its exits (MMIO, x86 port I/O) */
    SECCOMP_ROLE_DEVICE,    /* a virtio device's queue thread */
    SECCOMP_ROLE_CONSOLE,   /* stdin -> UART */
    SECCOMP_ROLE_API,       /* the HTTP server's threads */
    SECCOMP_ROLE_GUARD,     /* the hotplug memory guard (userfaultfd) */
    SECCOMP_ROLE_COUNT,
};

/* An ioctl request a role may make, and why: the generic ones are in
 * vmm/sandbox/seccomp_rules.c, each arch's in arch_seccomp_ioctls. */
struct seccomp_ioctl {
    unsigned long request;
    const char *why;
};

/* Once, in the main thread before any other thread exists: remembers the
 * mode (the only process-wide setting; threads in devices/ cannot reach the
 * VM's config) and installs the SIGSYS reporter. Returns 0 or -errno. */
int seccomp_setup(enum seccomp_mode mode);

/* Installs the calling thread's filter. thread_name is for the fatal
 * message ("vcpu1"); it must outlive the thread. Returns 0 or -errno
 * (logged); with SECCOMP_MODE_OFF it does nothing. */
int seccomp_enter(enum seccomp_role role, const char *thread_name);

const char *seccomp_role_name(enum seccomp_role role);

/* Builds a role's filter without loading it, for tests and `--seccomp`
 * checks. Returns the number of rules, or -errno. */
int seccomp_rules_count(enum seccomp_role role);

#endif
