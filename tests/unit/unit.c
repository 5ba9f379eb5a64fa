#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

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

bool unit_tool_in_path(const char *tool)
{
    const char *path = getenv("PATH");
    char *copy = path ? strdup(path) : NULL, *save = NULL;
    bool found = false;
    for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char exe[4096];
        if ((size_t)snprintf(exe, sizeof(exe), "%s/%s", dir, tool) < sizeof(exe))
            found = access(exe, X_OK) == 0;
    }
    free(copy);
    return found;
}

int unit_run_in(const char *dir, const char *log, char *const argv[])
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = chdir(dir) == 0 ? open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
        if (fd < 0)
            _exit(126);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool unit_smaps_range(const void *p, unsigned long long len, struct unit_smaps *out)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return false;
    unsigned long long lo = (unsigned long long)(uintptr_t)p, hi = lo + len;
    char line[512];
    bool in = false;
    memset(out, 0, sizeof(*out));
    while (fgets(line, sizeof(line), f)) {
        unsigned long long s, e, kb;
        char dash;
        if (sscanf(line, "%llx%c%llx ", &s, &dash, &e) == 3 && dash == '-') {
            in = s < hi && e > lo;
            out->vmas += in;
        } else if (in && sscanf(line, "Rss: %llu kB", &kb) == 1) {
            out->rss += kb << 10;
        } else if (in && sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) {
            out->anon_huge += kb << 10;
        }
    }
    fclose(f);
    return true;
}

bool unit_thp_enabled(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f)
        return false;
    char line[128] = "";
    bool on = fgets(line, sizeof(line), f) && !strstr(line, "[never]");
    fclose(f);
    return on;
}
