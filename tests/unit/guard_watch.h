/* A memory guard watching one region, for tests that need the guard's
 * rules (an idle slot, a touch refused) without writing its setup again. */
#ifndef MINIVMM_TEST_GUARD_WATCH_H
#define MINIVMM_TEST_GUARD_WATCH_H

#include <stdio.h>

#include "unit.h"
#include "vmm/hotplug/guard.h"

/* Opens a guard and has it watch hm; starting its thread is the caller's
 * choice. On a host whose userfaultfd cannot see KVM's faults the test
 * fails with the reason printed, and false comes back (nothing to free). */
static inline bool guard_watch(struct hotplug_guard *g, struct hotplug_mem *hm)
{
    char err[320] = "";
    int rc = hotplug_guard_open(g, err, sizeof(err));
    if (rc == 0) {
        rc = hotplug_guard_add(g, hm, err, sizeof(err));
        if (rc)
            hotplug_guard_destroy(g);
    }
    if (rc)
        printf("  %s\n", err);
    CHECK_EQ(rc, 0);
    return rc == 0;
}

#endif
