/* The allowlists, one per thread role (vmm/sandbox/seccomp_rules.c). */
#ifndef MINIVMM_SECCOMP_RULES_H
#define MINIVMM_SECCOMP_RULES_H

#include <seccomp.h>

#include "vmm/sandbox/seccomp.h"

#include <stdint.h>
#include <stddef.h>

/* Adds every rule of role to ctx: the generic lists and the arch's ioctls.
 * Returns 0 or a negative errno (logged). */
int seccomp_rules_add(scmp_filter_ctx ctx, enum seccomp_role role);

/* Checks that every entry of every list names at least one system call of
 * arch (a libseccomp SCMP_ARCH_* token), as seccomp_rules_add needs on that
 * arch. Returns 0, or -ENOENT with the entry in err. */
int seccomp_rules_check_arch(uint32_t arch, char *err, size_t errlen);

#endif
