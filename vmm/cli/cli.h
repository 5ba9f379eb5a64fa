#ifndef MINIVMM_CLI_H
#define MINIVMM_CLI_H

#include <stddef.h>

#include "vmm/config.h"

enum cli_result {
    CLI_RUN,        /* config is valid: boot the VM */
    CLI_EXIT_OK,    /* --help or --version was printed */
    CLI_ERROR,      /* err holds a one-line message naming the option */
};

/* Parses argv (argv[0] is the program name) into cfg. Pure apart from file
 * access checks and writing help/version text to `out`; never exits. */
enum cli_result cli_parse(int argc, char *const argv[], struct vm_config *cfg,
                          char *err, size_t err_len, void *out /* FILE * */);

#endif
