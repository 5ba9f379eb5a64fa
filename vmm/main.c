/* minivmm: parse the command line, boot the VM, report why it ended. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/cli.h"
#include "vmm/console.h"
#include "vmm/ctl.h"
#include "vmm/log.h"
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

int main(int argc, char **argv)
{
    struct vm_config cfg;
    char err[512];

    if (argc > 1 && !strcmp(argv[1], "ctl"))
        return ctl_main(argc - 1, argv + 1);

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

    struct vm vm;
    bool usage_error = false;
    int status;
    if (vm_create(&vm, &cfg, &usage_error) < 0) {
        vm_destroy(&vm);
        return usage_error ? EXIT_USAGE : 1;
    }

    struct console console;
    for (;;) {
        if (console_start(&console, &vm, vm.console_uart, STDIN_FILENO) < 0) {
            vm_destroy(&vm);
            return 1;
        }
        /* On failure vm_start has already requested a stop; vm_wait joins what ran. */
        vm_start(&vm);
        status = vm_wait(&vm);
        console_stop(&console);

        enum vm_stop_reason reason = vm_stop_reason(&vm);
        if (reason == VM_STOP_REBOOT && !cfg.exit_on_reboot) {
            log_info("%s: resetting the VM", vm.stop_detail);
            if (vm_reset(&vm) == 0)
                continue;
            status = 1;
            break;
        }
        if (reason == VM_STOP_ERROR)
            log_error("%s", vm.stop_detail);
        else
            log_info("%s", vm.stop_detail);
        break;
    }
    vm_destroy(&vm);
    return status;
}
