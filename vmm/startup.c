#include "vmm/startup.h"

#include <time.h>

#include "vmm/clock.h"

struct mark {
    double monotonic_s, cpu_s;
    int state;              /* 0 unset, 1 being written, 2 set (atomic) */
};
static struct mark marks[STARTUP_N_STEPS];

void startup_mark(enum startup_step step)
{
    if ((unsigned)step >= STARTUP_N_STEPS)
        return;
    int unset = 0;
    if (!__atomic_compare_exchange_n(&marks[step].state, &unset, 1, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return;
    marks[step].monotonic_s = clock_seconds(CLOCK_MONOTONIC);
    marks[step].cpu_s = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    __atomic_store_n(&marks[step].state, 2, __ATOMIC_RELEASE);
}

bool startup_get(enum startup_step step, double *monotonic_s, double *cpu_s)
{
    if ((unsigned)step >= STARTUP_N_STEPS ||
        __atomic_load_n(&marks[step].state, __ATOMIC_ACQUIRE) != 2)
        return false;
    *monotonic_s = marks[step].monotonic_s;
    *cpu_s = marks[step].cpu_s;
    return true;
}

const char *startup_step_name(enum startup_step step)
{
    static const char *const names[STARTUP_N_STEPS] = {
        [STARTUP_MAIN] = "main",
        [STARTUP_VM_BUILT] = "vm_built",
        [STARTUP_API_LISTENING] = "api_listening",
        [STARTUP_PAYLOAD_LOADED] = "payload_loaded",
        [STARTUP_FIRST_KVM_RUN] = "first_kvm_run",
    };
    return (unsigned)step < STARTUP_N_STEPS ? names[step] : "?";
}

void startup_metrics(FILE *out)
{
    static const struct {
        const char *name, *help;
        bool cpu;
    } metrics[] = {
        {"minivmm_startup_monotonic_seconds",
         "CLOCK_MONOTONIC time at which minivmm first reached each startup step "
         "(subtract the launcher's CLOCK_MONOTONIC before exec).", false},
        {"minivmm_startup_cpu_seconds",
         "Process CPU time (all threads, user and system, since exec) at each startup step.",
         true},
    };
    for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", metrics[i].name, metrics[i].help,
                metrics[i].name);
        for (int s = 0; s < STARTUP_N_STEPS; s++) {
            double mono, cpu;
            if (startup_get((enum startup_step)s, &mono, &cpu))
                fprintf(out, "%s{step=\"%s\"} %.6f\n", metrics[i].name,
                        startup_step_name((enum startup_step)s), metrics[i].cpu ? cpu : mono);
        }
    }
}
