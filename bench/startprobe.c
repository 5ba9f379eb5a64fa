/* startprobe: how long a VMM takes from exec until its control socket
 * answers, wall and CPU time; the helper of bench/boot --startup (it runs
 * where the VMM runs, inside the test host too, which has no Python).
 *
 * usage: startprobe --socket PATH --proto http|qmp [--steps] [--timeout S]
 *                   [--child-log FILE] -- COMMAND [ARG...]
 *
 * --child-log FILE: the VMM's stdout and stderr go to FILE, its stdin is
 * /dev/null (else it inherits all three).
 *
 * Takes CLOCK_MONOTONIC, forks and execs COMMAND, then connects to PATH
 * every 100 us until the VMM answers: --proto http sends `GET /vm` and waits
 * for the status line (minivmm's API), --proto qmp waits for QMP's greeting.
 * "ready" is that answer's arrival; its CPU time is the sum of every thread's
 * on-CPU time in /proc/PID/task/TID/schedstat (ns; the 10 ms ticks of
 * /proc/PID/stat are too coarse for this).
 *
 * --steps (minivmm): then polls GET /metrics until it lists the step
 * first_kvm_run and prints every minivmm_startup_monotonic_seconds and
 * minivmm_startup_cpu_seconds step relative to the exec (the VMM records
 * CLOCK_MONOTONIC and its process CPU clock at each step; both clocks are
 * the same here and in the VMM).
 *
 * Then SIGTERM to the VMM and wait for it (SIGKILL after 10 s). Prints one
 * line: STARTPROBE pid=N ready_ms=X ready_cpu_ms=Y [STEP_ms=.. STEP_cpu_ms=..]
 * status=S. Exit status 0 if it measured, 1 otherwise (message on stderr). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Every thread's on-CPU time so far, ms; -1 if unreadable. */
static double cpu_ms(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    double sum = 0;
    bool any = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char f[128];
        snprintf(f, sizeof(f), "/proc/%d/task/%.20s/schedstat", (int)pid, e->d_name);
        FILE *fp = fopen(f, "r");
        if (!fp)
            continue;       /* a thread that just ended */
        unsigned long long ns;
        if (fscanf(fp, "%llu", &ns) == 1) {
            sum += (double)ns / 1e6;
            any = true;
        }
        fclose(fp);
    }
    closedir(d);
    return any ? sum : -1;
}

/* Connects to path; -1 (errno) if nobody listens yet. */
static int connect_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* Sends request (may be NULL), reads until want appears, EOF or cap bytes.
 * Returns the bytes read (NUL-terminated in buf), or -1. */
static ssize_t exchange(int fd, const char *request, const char *want, char *buf, size_t cap)
{
    if (request) {
        size_t len = strlen(request), done = 0;
        while (done < len) {
            ssize_t n = write(fd, request + done, len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return -1;
            done += (size_t)n;
        }
    }
    size_t got = 0;
    buf[0] = '\0';
    while (got + 1 < cap) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (want && strstr(buf, want))
            break;
    }
    return (ssize_t)got;
}

static bool reaped;
static int reaped_status;

/* Whether the VMM has ended (its wait status in *status); reaps it once. */
static bool child_exited(pid_t pid, int *status)
{
    if (!reaped && waitpid(pid, &reaped_status, WNOHANG) == pid)
        reaped = true;
    *status = reaped_status;
    return reaped;
}

static int exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Ends the VMM: SIGTERM, then SIGKILL after 10 s. Its exit status. */
static int stop_child(pid_t pid)
{
    int status;
    if (child_exited(pid, &status))
        return exit_code(status);
    kill(pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        if (child_exited(pid, &status))
            return exit_code(status);
        sleep_us(10000);
    }
    kill(pid, SIGKILL);
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return exit_code(status);
}

/* Prints each minivmm_startup_* sample of metrics relative to exec. Returns
 * true once first_kvm_run is among them. */
static bool print_steps(const char *metrics, double t0_ms, bool print)
{
    bool have_run = strstr(metrics, "minivmm_startup_monotonic_seconds{step=\"first_kvm_run\"}");
    if (!print)
        return have_run;
    static const struct {
        const char *metric, *suffix;
        bool relative;
    } kinds[] = {
        {"minivmm_startup_monotonic_seconds{step=\"", "_ms", true},
        {"minivmm_startup_cpu_seconds{step=\"", "_cpu_ms", false},
    };
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        const char *p = metrics;
        size_t plen = strlen(kinds[k].metric);
        while ((p = strstr(p, kinds[k].metric))) {
            p += plen;
            const char *end = strchr(p, '"');
            if (!end || end - p > 40)
                break;
            double v;
            if (sscanf(end, "\"} %lf", &v) == 1)
                printf(" %.*s%s=%.3f", (int)(end - p), p, kinds[k].suffix,
                       kinds[k].relative ? v * 1e3 - t0_ms : v * 1e3);
            p = end;
        }
    }
    return have_run;
}

static int usage(void)
{
    fprintf(stderr, "usage: startprobe --socket PATH --proto http|qmp [--steps] [--timeout S] "
                    "[--child-log FILE] -- COMMAND [ARG...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *proto = NULL, *child_log = NULL;
    bool steps = false;
    double timeout_ms = 60000;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
            sock = argv[++i];
        } else if (!strcmp(argv[i], "--proto") && i + 1 < argc) {
            proto = argv[++i];
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            timeout_ms = atof(argv[++i]) * 1e3;
        } else if (!strcmp(argv[i], "--child-log") && i + 1 < argc) {
            child_log = argv[++i];
        } else if (!strcmp(argv[i], "--steps")) {
            steps = true;
        } else {
            return usage();
        }
    }
    if (!sock || !proto || i >= argc || (strcmp(proto, "http") && strcmp(proto, "qmp")))
        return usage();
    bool http = !strcmp(proto, "http");
    if (steps && !http)
        return usage();

    double t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        perror("startprobe: fork");
        return 1;
    }
    if (pid == 0) {
        if (child_log) {
            int in = open("/dev/null", O_RDONLY);
            int out = open(child_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) {
                perror("startprobe: --child-log");
                _exit(127);
            }
            close(in);
            close(out);
        }
        execvp(argv[i], argv + i);
        fprintf(stderr, "startprobe: exec %s: %s\n", argv[i], strerror(errno));
        _exit(127);
    }

    static char buf[256 * 1024];
    double ready = -1, ready_cpu = -1;
    int status;
    while (now_ms() - t0 < timeout_ms) {
        if (child_exited(pid, &status)) {
            fprintf(stderr, "startprobe: %s exited (status %d) before answering on %s\n",
                    argv[i], exit_code(status), sock);
            return 1;
        }
        int fd = connect_unix(sock);
        if (fd < 0) {
            sleep_us(100);
            continue;
        }
        ssize_t n = exchange(fd, http ? "GET /vm HTTP/1.1\r\nHost: localhost\r\n\r\n" : NULL,
                             http ? "HTTP/1." : "{\"QMP\"", buf, sizeof(buf));
        close(fd);
        if (n > 0 && strstr(buf, http ? "HTTP/1." : "{\"QMP\"")) {
            ready = now_ms() - t0;
            ready_cpu = cpu_ms(pid);
            break;
        }
        sleep_us(100);
    }
    if (ready < 0) {
        fprintf(stderr, "startprobe: no answer on %s within %.0f s\n", sock, timeout_ms / 1e3);
        stop_child(pid);
        return 1;
    }
    printf("STARTPROBE pid=%d ready_ms=%.3f ready_cpu_ms=%.3f", (int)pid, ready, ready_cpu);

    bool ok = true;
    if (steps) {
        ok = false;
        while (now_ms() - t0 < timeout_ms && !child_exited(pid, &status)) {
            int fd = connect_unix(sock);
            ssize_t n = fd < 0 ? -1 : exchange(fd, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n"
                                               "\r\n", NULL, buf, sizeof(buf));
            if (fd >= 0)
                close(fd);
            if (n > 0 && print_steps(buf, t0, false)) {
                print_steps(buf, t0, true);
                ok = true;
                break;
            }
            /* The steps are the VMM's own timestamps, so a slow poll loses
             * nothing; a fast one would load the VMM while it still loads
             * the kernel (the API answers from before that). */
            sleep_us(20000);
        }
        if (!ok)
            fprintf(stderr, "\nstartprobe: GET /metrics never listed first_kvm_run\n");
    }
    printf(" status=%d\n", stop_child(pid));
    return ok ? 0 : 1;
}
