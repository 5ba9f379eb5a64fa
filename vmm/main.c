/* minivmm: parse the command line, boot the VM, report why it ended. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/api/server.h"
#include "vmm/cli/cli.h"
#include "vmm/console.h"
#include "vmm/ctl/ctl.h"
#include "vmm/log.h"
#include "vmm/sandbox/seccomp.h"
#include "vmm/startup.h"
#include "vmm/vm.h"

#define EXIT_USAGE 2

/* Signals the main thread turns into a clean stop (via signalfd), plus the
 * vCPU kick signal: blocked before any thread exists so every thread inherits
 * the mask and only the intended thread receives each. */
static void block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* A closed console must not kill the VMM mid-write. */
    signal(SIGPIPE, SIG_IGN);
}

/* glibc's malloc, bounded for a long-lived process with a handful of
 * threads that allocate little. One arena: without the bound every thread
 * that allocates gets an arena of its own (each a 64 MiB reservation with
 * its own free lists); measured, 5 of them held ~520 KiB of RSS after boot,
 * one holds none of that. The hot paths (vCPU exits, virtio requests) do not
 * allocate, so they never contend for it. A fixed mmap threshold: glibc
 * otherwise raises it to the largest block freed so far (up to 32 MiB), and
 * then a big temporary buffer lands in the heap and stays in RSS. */
static void tune_malloc(void)
{
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

/* Threads get 1 MiB stacks unless their creator says otherwise. glibc's
 * default is RLIMIT_STACK, 8 MiB here: an 8 MiB anonymous mapping can hold
 * an aligned 2 MiB transparent huge page, and on a host with THP "always"
 * (Debian's cloud kernels) a thread's first stack touch there was measured
 * to fault in a whole huge page, 2 MiB of RSS for a few KiB used. A
 * mapping smaller than 2 MiB never gets one. The largest array on any of
 * our stacks is 16 KiB. */
#define THREAD_STACK_SIZE (1024 * 1024)

static void tune_threads(void)
{
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        rc = pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE);
        if (rc == 0)
            rc = pthread_setattr_default_np(&attr);
        pthread_attr_destroy(&attr);
    }
    if (rc)
        log_warn("thread stacks: keeping glibc's default size: %s", strerror(rc));
}

/* For the "shutdown" event. */
static const char *stop_reason_word(enum vm_stop_reason reason)
{
    switch (reason) {
    case VM_STOP_POWEROFF: return "poweroff";
    case VM_STOP_REBOOT: return "reboot";
    case VM_STOP_SIGNAL: return "signal";
    case VM_STOP_USER: return "user";
    case VM_STOP_ERROR: return "error";
    case VM_STOP_API: return "api";
    case VM_RUNNING: break;
    }
    return "unknown";
}

/* A vCPU thread could not be joined: nothing it can reach may be freed, so
 * the VM is left as it is and the process ends at once (the kernel reclaims
 * everything). The console is restored already; the API socket goes. */
static _Noreturn void exit_leaving_vm(struct vm *vm, struct api_server *api)
{
    log_error("a vCPU did not stop: exiting without freeing the VM (status %d)",
              VM_EXIT_VCPU_STUCK);
    event_publish(&vm->events, "shutdown", "\"reason\":\"vcpu_stuck\",\"status\":%d",
                  VM_EXIT_VCPU_STUCK);
    event_bus_close(&vm->events);
    api_server_stop(api);
    _exit(VM_EXIT_VCPU_STUCK);
}

int main(int argc, char **argv)
{
    struct vm_config cfg;
    char err[512];

    if (argc > 1 && !strcmp(argv[1], "ctl"))
        return ctl_main(argc - 1, argv + 1);

    startup_mark(STARTUP_MAIN);
    tune_malloc();
    tune_threads();
    switch (cli_parse(argc, argv, &cfg, err, sizeof(err), stdout)) {
    case CLI_EXIT_OK:
        return 0;
    case CLI_ERROR:
        fprintf(stderr, "minivmm: %s\n", err);
        return EXIT_USAGE;
    case CLI_RUN:
        break;
    }
    log_set_verbose(cfg.verbose);
    block_signals();
    if (seccomp_setup(cfg.seccomp) < 0)
        return 1;

    struct vm vm;
    bool usage_error = false;
    int status;
    if (vm_create(&vm, &cfg, &usage_error) < 0) {
        vm_destroy(&vm);
        return usage_error ? EXIT_USAGE : 1;
    }
    startup_mark(STARTUP_VM_BUILT);

    /* The API runs from here to just before vm_destroy: it reads the VM's
     * devices and event bus. */
    struct api_server *api = NULL;
    if (cfg.api_sock && api_server_start(&api, &vm, cfg.api_sock) < 0) {
        vm_destroy(&vm);
        return 1;
    }
    if (api)
        startup_mark(STARTUP_API_LISTENING);

    /* The kernel and initrd are the longest part of the start (megabytes
     * into fresh guest memory): the API answers meanwhile. */
    if (vm_load_payload(&vm, &usage_error) < 0) {
        event_publish(&vm.events, "shutdown", "\"reason\":\"error\",\"status\":%d",
                      usage_error ? EXIT_USAGE : 1);
        event_bus_close(&vm.events);
        api_server_stop(api);
        vm_destroy(&vm);
        return usage_error ? EXIT_USAGE : 1;
    }
    startup_mark(STARTUP_PAYLOAD_LOADED);

    /* Guest output leaves through a non-blocking stdout of its own. */
    struct console_output console_out;
    console_output_open(&console_out, STDOUT_FILENO);

    /* Everything the main thread opens at start is open: from here on it
     * only waits, resets and tears down. */
    if (seccomp_enter(SECCOMP_ROLE_MAIN, "main") < 0) {
        console_output_close(&console_out);
        api_server_stop(api);
        vm_destroy(&vm);
        return 1;
    }

    struct console console;
    for (;;) {
        if (console_start(&console, &vm, &vm.console, STDIN_FILENO, &console_out) < 0) {
            status = 1;
            break;
        }
        /* On failure vm_start has already requested a stop; vm_wait joins what ran. */
        vm_start(&vm);
        status = vm_wait(&vm);
        console_stop(&console);
        if (status == VM_EXIT_VCPU_STUCK)
            exit_leaving_vm(&vm, api);

        char why[sizeof(vm.stop_detail)];
        if (vm_stop_reason(&vm) == VM_STOP_REBOOT && !cfg.exit_on_reboot &&
            vm_take_reboot(&vm, why, sizeof(why))) {
            log_info("%s: resetting the VM", why);
            char detail[sizeof(vm.stop_detail) * 2];
            event_json_escape(why, detail, sizeof(detail));
            event_publish(&vm.events, "reboot", "\"reason\":\"%s\"", detail);
            if (vm_reset(&vm) == 0)
                continue;
            status = 1;
            event_publish(&vm.events, "shutdown", "\"reason\":\"error\",\"status\":%d", status);
            break;
        }
        /* A stop that ends the VMM may have overridden the reboot since
         * vm_wait returned: its status is the one to report. */
        char detail[sizeof(vm.stop_detail)];
        enum vm_stop_reason reason = vm_stop_info(&vm, detail, sizeof(detail));
        status = reason == VM_STOP_ERROR ? 1 : 0;
        if (reason == VM_STOP_ERROR)
            log_error("%s", detail);
        else
            log_info("%s", detail);
        /* Event readers get the last word, then their streams end. */
        event_publish(&vm.events, "shutdown", "\"reason\":\"%s\",\"status\":%d",
                      stop_reason_word(reason), status);
        break;
    }
    event_bus_close(&vm.events);
    api_server_stop(api);
    vm_destroy(&vm);
    console_output_close(&console_out);
    return status;
}
