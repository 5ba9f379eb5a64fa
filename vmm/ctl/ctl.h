/* `minivmm ctl`: a client of a running minivmm's API socket, in the same
 * binary, with human-readable output (or --json). */
#ifndef MINIVMM_CTL_H
#define MINIVMM_CTL_H

/* Exit statuses: 0 done, 1 the API answered an error or is unreachable,
 * 2 usage, 3 a --wait ran out before the guest got there. */
#define CTL_EXIT_TIMEOUT 3

/* argv[0] is "ctl". */
int ctl_main(int argc, char **argv);

#endif
