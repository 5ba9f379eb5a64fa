#include "unit.h"

#include <stdlib.h>

#define UNIT_MAX_TESTS 256

struct unit_test {
    const char *name;
    unit_fn fn;
};

static struct unit_test tests[UNIT_MAX_TESTS];
static int n_tests;
static int current_failures;
static const char *current_skip;

void unit_register(const char *name, unit_fn fn)
{
    if (n_tests == UNIT_MAX_TESTS) {
        fprintf(stderr, "unit: too many tests\n");
        exit(2);
    }
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

void unit_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, expr);
    current_failures++;
}

void unit_skip(const char *why)
{
    current_skip = why;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, skipped = 0;
    const char *only = argc > 1 ? argv[1] : NULL;

    for (int i = 0; i < n_tests; i++) {
        if (only && strcmp(only, tests[i].name) != 0)
            continue;
        current_failures = 0;
        current_skip = NULL;
        tests[i].fn();
        if (current_failures) {
            printf("FAIL %s\n", tests[i].name);
            failed++;
        } else if (current_skip) {
            printf("SKIPPED %s: %s\n", tests[i].name, current_skip);
            skipped++;
        } else {
            printf("ok   %s\n", tests[i].name);
            passed++;
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed)
        return 1;
    /* A misspelt name must not look like a pass. */
    if (only && !passed && !skipped) {
        fprintf(stderr, "no test named '%s' in %s\n", only, argv[0]);
        return 2;
    }
    /* ctest treats 77 as "skipped" when SKIP_RETURN_CODE is set; a file whose every
     * test skipped says so loudly rather than passing silently. */
    if (skipped && !passed)
        return 77;
    return 0;
}
