#include "vmm/cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/arch.h"
#include "vmm/cli/virtio_mem_opts.h"
#include "vmm/hotplug/layout.h"
#include "vmm/hugepages.h"
#include "vmm/size_parse.h"

/* A printf format: the arch names its kernel format, default command line
 * and vCPU limit. */
static const char usage_format[] =
    "usage: minivmm --kernel PATH [options]\n"
    "       minivmm ctl --api-sock PATH [--json] COMMAND  (see minivmm ctl --help)\n"
    "\n"
    "Boots a Linux guest on KVM with its console on stdin/stdout.\n"
    "\n"
    "  --kernel PATH     guest kernel (%s)\n"
    "  --initrd PATH     initial ramdisk\n"
    "  --cmdline STR     kernel command line (default: \"%s\")\n"
    "  --mem SIZE[,hugepages=thp|off|shmem|2M|1G]\n"
    "                    boot RAM, with K/M/G/T suffix (default 512M, 32M..1T,\n"
    "                    a multiple of 1M). hugepages=thp (default): anonymous\n"
    "                    memory on transparent huge pages where the host's THP\n"
    "                    is on (/sys/kernel/mm/transparent_hugepage/enabled\n"
    "                    always or madvise; base pages where never); off: base\n"
    "                    pages only; shmem: a memfd, huge where the host's\n"
    "                    transparent_hugepage/shmem_enabled allows; 2M|1G: the\n"
    "                    host's hugetlbfs pool, reserved at start\n"
    "  --cpus N          number of vCPUs (default 1, at most %u)\n"
    "  --virtio-mem ID:SIZE[,node=N][,block=SIZE][,slot=SIZE][,requested=SIZE]\n"
    "               [,prealloc=on|off][,guard=on|off][,hugepages=shmem|thp|off|2M|1G]\n"
    "                    a virtio-mem device owning SIZE of hotpluggable memory\n"
    "                    above boot RAM (repeatable, up to 8). An ID 'nodeN' puts\n"
    "                    it on NUMA node N. block: plug granularity (default 2M);\n"
    "                    slot: KVM memslot size, a power of two dividing SIZE, at\n"
    "                    least the block and the guest's 128M memory block\n"
    "                    (default 1G where SIZE allows; docs/virtio-mem.md);\n"
    "                    requested: what the guest plugs at boot (default 0);\n"
    "                    prealloc=on: back blocks when plugged (BUSY if the host\n"
    "                    cannot), else on first touch; guard (default on): the\n"
    "                    host backs only plugged blocks and stops a guest\n"
    "                    touching unplugged ones (needs a userfaultfd;\n"
    "                    guard=off: unenforced);\n"
    "                    hugepages: as for --mem, but default shmem (plugs\n"
    "                    populate faster); shmem and thp give huge pages\n"
    "                    only to blocks of 2M or more; thp|off need guard=off;\n"
    "                    2M|1G need block >= page (docs/virtio-mem.md)\n"
    "  --on-reboot restart|exit\n"
    "                    a guest reboot resets the VM and boots it again (restart,\n"
    "                    the default; virtio-mem memory is unplugged and plugged\n"
    "                    again) or ends minivmm with status 0 (exit)\n"
    "  --api-sock PATH   serve the HTTP/JSON API (docs/api.md) on a Unix socket\n"
    "                    created at PATH with mode 0600; a stale socket there is\n"
    "                    replaced\n"
    "  --seccomp on|log|off\n"
    "                    per-thread system call allowlists (default on: a call\n"
    "                    outside its thread's list ends minivmm; log: the kernel\n"
    "                    logs it and allows it); see docs/security.md\n"
    "  --verbose         log device and exit details to stderr\n"
    "  --help            show this help\n"
    "  --version         show the version\n"
    "\n"
    "On an interactive terminal the console is raw; press Ctrl-A x to quit.\n"
    "Exit status: 0 when the guest powers off or reboots, 1 on a VMM failure,\n"
    "2 for invalid options or unusable kernel/initrd files, 3 when a vCPU\n"
    "thread would not stop.\n";

__attribute__((format(printf, 3, 4)))
static enum cli_result fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return CLI_ERROR;
}

/* --mem SIZE[,hugepages=thp|off|PAGE] */
static enum cli_result parse_mem(const char *text, struct vm_config *cfg, char *err,
                                 size_t err_len)
{
    char size_text[64];
    const char *comma = strchr(text, ',');
    size_t len = comma ? (size_t)(comma - text) : strlen(text);
    if (len >= sizeof(size_text))
        return fail(err, err_len, "--mem '%s': too long", text);
    memcpy(size_text, text, len);
    size_text[len] = '\0';

    const char *why;
    if (size_parse(size_text, &cfg->mem_size, &why) != 0)
        return fail(err, err_len, "--mem '%s': %s", size_text, why);
    if (comma) {
        const char *opt = comma + 1;
        if (strncmp(opt, "hugepages=", 10) != 0)
            return fail(err, err_len, "--mem '%s': expected SIZE[,hugepages=thp|off|shmem|SIZE]",
                        text);
        if (hugepages_parse(opt + 10, strlen(opt + 10), &cfg->mem_backing, &why) != 0)
            return fail(err, err_len, "--mem %s: %s", opt, why);
    }
    if (cfg->mem_size < CONFIG_MIN_MEM)
        return fail(err, err_len, "--mem %s: at least 32M is needed to boot Linux", size_text);
    if (cfg->mem_size > CONFIG_MAX_MEM)
        return fail(err, err_len, "--mem %s: at most 1T is supported", size_text);
    if (cfg->mem_size & ((1ULL << 20) - 1))
        return fail(err, err_len, "--mem %s: must be a multiple of 1M", size_text);
    char a[32];
    uint64_t page = hugepages_size(&cfg->mem_backing);
    if (page && cfg->mem_size % page)
        return fail(err, err_len, "--mem %s: must be a multiple of the huge page size %s",
                    size_text, size_format(page, a, sizeof(a)));
    return CLI_RUN;
}

static int parse_cpus(const char *text, unsigned *out)
{
    unsigned long v = 0;
    if (!*text)
        return -EINVAL;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(*p - '0');
        if (v > 100000)
            return -ERANGE;
    }
    *out = (unsigned)v;
    return 0;
}

static enum cli_result check_readable(const char *opt, const char *path, char *err,
                                      size_t err_len)
{
    if (!*path)
        return fail(err, err_len, "%s: empty path", opt);
    if (access(path, R_OK) != 0)
        return fail(err, err_len, "%s %s: %s", opt, path, strerror(errno));
    return CLI_RUN;
}

/* What can be known before starting: the path fits a sockaddr_un, its
 * directory exists, and nothing but a socket is in the way. Whether a socket
 * there is live is the server's check (vmm/api/socket.c). */
static enum cli_result check_api_sock(const char *path, char *err, size_t err_len)
{
    struct sockaddr_un sun;
    if (!*path)
        return fail(err, err_len, "--api-sock: empty path");
    if (strlen(path) >= sizeof(sun.sun_path))
        return fail(err, err_len, "--api-sock: path longer than %zu bytes",
                    sizeof(sun.sun_path) - 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(err, err_len, "--api-sock %s: exists and is not a socket", path);
        return CLI_RUN;
    }
    if (errno != ENOENT)
        return fail(err, err_len, "--api-sock %s: %s", path, strerror(errno));
    char dir[sizeof(sun.sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return CLI_RUN;         /* in the current directory */
    if (slash == dir)
        slash[1] = '\0';        /* "/name": the root */
    else
        *slash = '\0';
    if (stat(dir, &st) != 0)
        return fail(err, err_len, "--api-sock %s: directory %s: %s", path, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fail(err, err_len, "--api-sock %s: %s is not a directory", path, dir);
    return CLI_RUN;
}

struct option_seen {
    const char *name;
    int count;
};

/* Splits "--name=value" / "--name value". Returns the option name length. */
static size_t option_name_len(const char *arg)
{
    const char *eq = strchr(arg, '=');
    return eq ? (size_t)(eq - arg) : strlen(arg);
}

enum cli_result cli_parse(int argc, char *const argv[], struct vm_config *cfg,
                          char *err, size_t err_len, void *out)
{
    struct option_seen seen[] = {
        {"--kernel", 0}, {"--initrd", 0}, {"--cmdline", 0}, {"--mem", 0}, {"--cpus", 0},
        {"--virtio-mem", 0}, {"--on-reboot", 0}, {"--api-sock", 0}, {"--seccomp", 0},
    };
    const char *mem_text = NULL, *cpus_text = NULL;

    *cfg = (struct vm_config){0};
#ifdef MINIVMM_SANITIZE_BUILD
    /* LeakSanitizer stops the world at exit with a ptrace tracer that cannot
     * work under the filters: sanitizer builds run unfiltered unless asked
     * (with ASAN_OPTIONS=detect_leaks=0). Release builds default to on. */
    cfg->seccomp = SECCOMP_MODE_OFF;
#else
    cfg->seccomp = SECCOMP_MODE_ON;
#endif
    err[0] = '\0';

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            fprintf((FILE *)out, usage_format, arch_kernel_format(), arch_default_cmdline(),
                    arch_max_vcpus());
            return CLI_EXIT_OK;
        }
        if (!strcmp(arg, "--version")) {
            fprintf((FILE *)out, "minivmm %s\n", MINIVMM_VERSION);
            return CLI_EXIT_OK;
        }
        if (!strcmp(arg, "--verbose") || !strcmp(arg, "-v")) {
            cfg->verbose = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            return fail(err, err_len, "unexpected argument '%s' (see --help)", arg);

        size_t name_len = option_name_len(arg);
        struct option_seen *opt = NULL;
        for (size_t k = 0; k < sizeof(seen) / sizeof(seen[0]); k++) {
            if (strlen(seen[k].name) == name_len && !strncmp(seen[k].name, arg, name_len))
                opt = &seen[k];
        }
        if (!opt)
            return fail(err, err_len, "unknown option '%.*s' (see --help)", (int)name_len, arg);
        bool repeatable = !strcmp(opt->name, "--virtio-mem");
        if (++opt->count > 1 && !repeatable)
            return fail(err, err_len, "%s: given more than once", opt->name);

        const char *value;
        if (arg[name_len] == '=') {
            value = arg + name_len + 1;
        } else {
            if (i + 1 >= argc)
                return fail(err, err_len, "%s: missing value", opt->name);
            value = argv[++i];
        }

        if (!strcmp(opt->name, "--kernel"))
            cfg->kernel_path = value;
        else if (!strcmp(opt->name, "--initrd"))
            cfg->initrd_path = value;
        else if (!strcmp(opt->name, "--cmdline"))
            cfg->cmdline = value;
        else if (!strcmp(opt->name, "--mem"))
            mem_text = value;
        else if (!strcmp(opt->name, "--cpus"))
            cpus_text = value;
        else if (!strcmp(opt->name, "--on-reboot")) {
            if (!strcmp(value, "exit"))
                cfg->exit_on_reboot = true;
            else if (strcmp(value, "restart") != 0)
                return fail(err, err_len, "--on-reboot '%s': expected restart or exit", value);
        } else if (!strcmp(opt->name, "--seccomp")) {
            if (!strcmp(value, "on"))
                cfg->seccomp = SECCOMP_MODE_ON;
            else if (!strcmp(value, "log"))
                cfg->seccomp = SECCOMP_MODE_LOG;
            else if (!strcmp(value, "off"))
                cfg->seccomp = SECCOMP_MODE_OFF;
            else
                return fail(err, err_len, "--seccomp '%s': expected on, log or off", value);
        } else if (!strcmp(opt->name, "--api-sock")) {
            cfg->api_sock = value;
        } else if (!strcmp(opt->name, "--virtio-mem")) {
            if (cfg->n_virtio_mem == CONFIG_MAX_VIRTIO_MEM)
                return fail(err, err_len, "--virtio-mem: at most %d devices are supported",
                            CONFIG_MAX_VIRTIO_MEM);
            char why[200];
            struct virtio_mem_opts *o = &cfg->virtio_mem[cfg->n_virtio_mem];
            if (virtio_mem_opts_parse(value, o, why, sizeof(why)) != 0)
                return fail(err, err_len, "--virtio-mem %s", why);
            for (unsigned k = 0; k < cfg->n_virtio_mem; k++) {
                if (!strcmp(cfg->virtio_mem[k].id, o->id))
                    return fail(err, err_len, "--virtio-mem %s: the ID is used twice", o->id);
            }
            cfg->n_virtio_mem++;
        }
    }

    if (!cfg->kernel_path)
        return fail(err, err_len, "--kernel: required (see --help)");
    if (check_readable("--kernel", cfg->kernel_path, err, err_len) != CLI_RUN)
        return CLI_ERROR;
    if (cfg->initrd_path && check_readable("--initrd", cfg->initrd_path, err, err_len) != CLI_RUN)
        return CLI_ERROR;

    if (cfg->cmdline && strlen(cfg->cmdline) >= CONFIG_MAX_CMDLINE)
        return fail(err, err_len, "--cmdline: longer than %d bytes", CONFIG_MAX_CMDLINE - 1);

    if (cfg->api_sock && check_api_sock(cfg->api_sock, err, err_len) != CLI_RUN)
        return CLI_ERROR;

    cfg->mem_size = 512ULL << 20;
    if (mem_text && parse_mem(mem_text, cfg, err, err_len) != CLI_RUN)
        return CLI_ERROR;

    cfg->ncpus = 1;
    if (cpus_text) {
        int rc = parse_cpus(cpus_text, &cfg->ncpus);
        if (rc == -EINVAL)
            return fail(err, err_len, "--cpus '%s': not a whole number", cpus_text);
        if (rc == -ERANGE || cfg->ncpus > arch_max_vcpus())
            return fail(err, err_len, "--cpus %s: at most %u vCPUs are supported", cpus_text,
                        arch_max_vcpus());
        if (cfg->ncpus == 0)
            return fail(err, err_len, "--cpus 0: at least one vCPU is needed");
    }

    if (cfg->n_virtio_mem) {
        struct hotplug_placement place[CONFIG_MAX_VIRTIO_MEM];
        char why[200];
        if (hotplug_layout(cfg, place, why, sizeof(why)) != 0)
            return fail(err, err_len, "--virtio-mem %s", why);
    }
    if (arch_check_config(cfg, err, err_len) != 0)
        return CLI_ERROR;
    return CLI_RUN;
}
