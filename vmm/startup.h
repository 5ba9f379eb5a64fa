/* When the process reached each step of its startup, for the startup metrics
 * (GET /metrics: minivmm_startup_monotonic_seconds and
 * minivmm_startup_cpu_seconds) and bench/boot --startup, which subtracts the
 * CLOCK_MONOTONIC time it took just before exec. Only the first time counts:
 * a guest reboot does not move them. */
#ifndef MINIVMM_STARTUP_H
#define MINIVMM_STARTUP_H

#include <stdbool.h>
#include <stdio.h>

enum startup_step {
    STARTUP_MAIN,           /* main() entered: libraries loaded, constructors run */
    STARTUP_VM_BUILT,       /* vm_create done: KVM VM, memory, devices, boot plan */
    STARTUP_API_LISTENING,  /* the API socket listens and its threads run */
    STARTUP_PAYLOAD_LOADED, /* kernel and initrd read into guest memory */
    STARTUP_FIRST_KVM_RUN,  /* vCPU 0 is about to enter KVM_RUN for the first time */
    STARTUP_N_STEPS
};

/* Records CLOCK_MONOTONIC and the process's CPU time (every thread, user +
 * system) for step, the first time only. Thread-safe, async-signal-unsafe. */
void startup_mark(enum startup_step step);

/* The recorded time of step, seconds; false if not reached yet. */
bool startup_get(enum startup_step step, double *monotonic_s, double *cpu_s);

/* The metric label of step ("main", "vm_built", ...). */
const char *startup_step_name(enum startup_step step);

/* Both metrics in Prometheus text format, the steps reached so far. */
void startup_metrics(FILE *out);

#endif
