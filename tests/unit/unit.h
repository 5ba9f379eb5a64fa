/* Tiny unit-test harness: CHECK records a failure and continues, so one run
 * reports every broken expectation; main() in unit.c runs the registered tests. */
#ifndef MINIVMM_TESTS_UNIT_H
#define MINIVMM_TESTS_UNIT_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef void (*unit_fn)(void);
void unit_register(const char *name, unit_fn fn);
void unit_fail(const char *file, int line, const char *expr);
/* Marks the running test as skipped (with a loud reason) instead of passed. */
void unit_skip(const char *why);

/* Whether an executable named tool is on $PATH (tests that drive dtc, iasl
 * or dt-validate skip loudly without it). */
bool unit_tool_in_path(const char *tool);
/* Runs argv (searched on $PATH) in dir with its stdout and stderr into
 * dir/log; the exit status, or -1 when it did not exit normally. */
int unit_run_in(const char *dir, const char *log, char *const argv[]);

/* What /proc/self/smaps says about the mappings inside [p, p + len): how
 * many VMAs, and their Rss and AnonHugePages in bytes. False if unreadable. */
struct unit_smaps {
    unsigned vmas;
    unsigned long long rss, anon_huge;
};
bool unit_smaps_range(const void *p, unsigned long long len, struct unit_smaps *out);
/* Whether anonymous memory advised MADV_HUGEPAGE gets transparent huge
 * pages here (/sys/kernel/mm/transparent_hugepage/enabled is not "never"). */
bool unit_thp_enabled(void);

#define TEST(name)                                                        \
    static void name(void);                                               \
    __attribute__((constructor)) static void register_##name(void)        \
    {                                                                     \
        unit_register(#name, name);                                       \
    }                                                                     \
    static void name(void)

#define CHECK(expr)                                                       \
    do {                                                                  \
        if (!(expr))                                                      \
            unit_fail(__FILE__, __LINE__, #expr);                         \
    } while (0)

#define CHECK_EQ(a, b)                                                    \
    do {                                                                  \
        unsigned long long va_ = (unsigned long long)(a);                 \
        unsigned long long vb_ = (unsigned long long)(b);                 \
        if (va_ != vb_) {                                                 \
            char msg_[1024];                                               \
            snprintf(msg_, sizeof(msg_), "%s == %s (0x%llx != 0x%llx)",   \
                     #a, #b, va_, vb_);                                   \
            unit_fail(__FILE__, __LINE__, msg_);                          \
        }                                                                 \
    } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                              \
    do {                                                                  \
        const char *h_ = (haystack);                                      \
        if (!h_ || !strstr(h_, (needle))) {                               \
            char msg_[600];                                               \
            snprintf(msg_, sizeof(msg_), "'%.300s' contains '%.200s'",    \
                     h_ ? h_ : "(null)", (needle));                       \
            unit_fail(__FILE__, __LINE__, msg_);                          \
        }                                                                 \
    } while (0)

#endif
