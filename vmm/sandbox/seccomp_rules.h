/* The allowlists, one per thread role (vmm/sandbox/seccomp_rules.c). */
#ifndef MINIVMM_SECCOMP_RULES_H
#define MINIVMM_SECCOMP_RULES_H

#include <seccomp.h>

#include "vmm/sandbox/seccomp.h"

/* Adds every rule of role to ctx. Returns 0 or a negative errno. */
int seccomp_rules_add(scmp_filter_ctx ctx, enum seccomp_role role);

#endif
