/* Fault injection for test builds (cmake -DMINIVMM_TEST_HOOKS=ON, the
 * ASan build of tests/run-all): each hook is driven by an environment
 * variable read when it runs, and compiles to nothing in other builds. */
#ifndef MINIVMM_TEST_HOOKS_H
#define MINIVMM_TEST_HOOKS_H

#ifdef MINIVMM_TEST_HOOKS
/* MINIVMM_TEST_STUCK_VCPU=N: vCPU N's thread, once its run loop ended,
 * does not return for 60 s, as a vCPU stuck in the kernel would not. */
void test_hook_vcpu_returning(unsigned index);
/* MINIVMM_TEST_RESET_DELAY_MS=N: a guest reset waits N ms before taking
 * the control lock, so API requests land in that window. */
void test_hook_before_reset_lock(void);
/* MINIVMM_TEST_GUARD_POPULATE_MS=N: the guard waits N ms before backing a
 * first touch (its lock dropped), so a test can plug and unplug meanwhile. */
void test_hook_guard_populating(void);
/* MINIVMM_TEST_API_WAIT_RECHECK_MS=N: a PATCH ?wait looks at the device
 * every N ms when no event wakes it, instead of `normal`. */
int test_hook_api_wait_recheck_ms(int normal);
#else
static inline void test_hook_vcpu_returning(unsigned index)
{
    (void)index;
}
static inline void test_hook_before_reset_lock(void)
{
}
static inline void test_hook_guard_populating(void)
{
}
static inline int test_hook_api_wait_recheck_ms(int normal)
{
    return normal;
}
#endif

#endif
