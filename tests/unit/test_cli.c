#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"
#include "vmm/arch.h"
#include "vmm/cli/cli.h"
#include "vmm/hotplug/layout.h"

/* A readable file to stand in for kernel and initrd paths. */
static const char *existing_file(void)
{
    return "/proc/self/exe";
}

static enum cli_result parse(struct vm_config *cfg, char *err, size_t err_len, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, err_len);
    argv[argc++] = "minivmm";
    for (char *a; (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    FILE *devnull = fopen("/dev/null", "w");
    enum cli_result r = cli_parse(argc, argv, cfg, err, err_len, devnull);
    fclose(devnull);
    return r;
}

#define EXPECT_ERROR(fragment, ...)                                          \
    do {                                                                     \
        struct vm_config cfg_;                                               \
        char err_[512];                                                      \
        CHECK_EQ(parse(&cfg_, err_, sizeof(err_), __VA_ARGS__, NULL), CLI_ERROR); \
        CHECK_STR_CONTAINS(err_, fragment);                                  \
        CHECK(strchr(err_, '\n') == NULL);                                   \
    } while (0)

TEST(defaults)
{
    struct vm_config cfg;
    char err[512];
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), NULL), CLI_RUN);
    CHECK_EQ(cfg.mem_size, 512ULL << 20);
    CHECK_EQ(cfg.ncpus, 1);
    CHECK(cfg.initrd_path == NULL);
    CHECK(cfg.cmdline == NULL);
}

TEST(all_options_both_spellings)
{
    struct vm_config cfg;
    char err[512];
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--initrd=/proc/self/exe",
                   "--mem", "2G", "--cpus=4", "--cmdline", "console=ttyS0 quiet", "--verbose",
                   NULL),
             CLI_RUN);
    CHECK_EQ(cfg.mem_size, 2ULL << 30);
    CHECK_EQ(cfg.ncpus, 4);
    CHECK(!strcmp(cfg.cmdline, "console=ttyS0 quiet"));
    CHECK(!strcmp(cfg.initrd_path, "/proc/self/exe"));
    CHECK(cfg.verbose);
}

TEST(help_and_version_exit_ok)
{
    struct vm_config cfg;
    char err[512];
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--help", NULL), CLI_EXIT_OK);
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--version", NULL), CLI_EXIT_OK);
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--mem", "bogus", "--help", NULL), CLI_EXIT_OK);
}

TEST(every_bad_value_names_its_option)
{
    const char *k = existing_file();
    EXPECT_ERROR("--kernel: required", "--mem", "1G");
    EXPECT_ERROR("--kernel /nonexistent: No such file", "--kernel", "/nonexistent");
    EXPECT_ERROR("--kernel: empty path", "--kernel", "");
    EXPECT_ERROR("--initrd /nonexistent: No such file", "--kernel", k, "--initrd", "/nonexistent");
    EXPECT_ERROR("--mem: missing value", "--kernel", k, "--mem");
    EXPECT_ERROR("--mem 'lots'", "--kernel", k, "--mem", "lots");
    EXPECT_ERROR("--mem '-1G'", "--kernel", k, "--mem", "-1G");
    EXPECT_ERROR("--mem '1Q'", "--kernel", k, "--mem", "1Q");
    EXPECT_ERROR("--mem 1M: at least 32M", "--kernel", k, "--mem", "1M");
    EXPECT_ERROR("--mem 2T: at most 1T", "--kernel", k, "--mem", "2T");
    EXPECT_ERROR("--mem 33333K: must be a multiple of 1M", "--kernel", k, "--mem", "33333K");
    EXPECT_ERROR("--mem '99999999999999999999G'", "--kernel", k, "--mem", "99999999999999999999G");
    EXPECT_ERROR("--cpus 0: at least one", "--kernel", k, "--cpus", "0");
    char over[16], over_msg[48];
    snprintf(over, sizeof(over), "%u", arch_max_vcpus() + 1);
    snprintf(over_msg, sizeof(over_msg), "--cpus %s: at most %u", over, arch_max_vcpus());
    EXPECT_ERROR(over_msg, "--kernel", k, "--cpus", over);
    EXPECT_ERROR("--cpus 99999999999: at most", "--kernel", k, "--cpus", "99999999999");
    EXPECT_ERROR("--cpus 'two'", "--kernel", k, "--cpus", "two");
    EXPECT_ERROR("--cpus '-1'", "--kernel", k, "--cpus", "-1");
    EXPECT_ERROR("--cpus ''", "--kernel", k, "--cpus", "");
    EXPECT_ERROR("--mem: given more than once", "--kernel", k, "--mem", "1G", "--mem", "2G");
    EXPECT_ERROR("unknown option '--memory'", "--kernel", k, "--memory", "1G");
    EXPECT_ERROR("unknown option '--foo'", "--kernel", k, "--foo=bar");
    EXPECT_ERROR("unexpected argument 'extra'", "--kernel", k, "extra");
}

TEST(huge_pages)
{
    struct vm_config cfg;
    char err[512];
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--mem", "2G,hugepages=1G",
                   "--mem", "1G,hugepages=shmem", NULL),
             CLI_ERROR);     /* --mem twice */
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--mem", "2G,hugepages=1G",
                   "--virtio-mem", "a:4G,hugepages=2M", "--virtio-mem", "b:4G,hugepages=1G",
                   "--virtio-mem", "c:4G,block=1G,hugepages=2M", "--virtio-mem", "d:4G",
                   "--virtio-mem", "e:4G,hugepages=off,guard=off", "--virtio-mem",
                   "f:4G,hugepages=thp,guard=off",
                   "--virtio-mem", "g:4G,hugepages=shmem", NULL),
             CLI_RUN);
    CHECK_EQ(cfg.mem_size, 2ULL << 30);
    CHECK_EQ(cfg.mem_backing.kind, MEM_BACKING_HUGETLB);
    CHECK_EQ(cfg.mem_backing.page_size, 1ULL << 30);
    CHECK_EQ(cfg.virtio_mem[0].backing.kind, MEM_BACKING_HUGETLB);
    CHECK_EQ(cfg.virtio_mem[0].backing.page_size, 2ULL << 20);
    CHECK_EQ(cfg.virtio_mem[0].block_size, 2ULL << 20);
    CHECK_EQ(cfg.virtio_mem[1].backing.page_size, 1ULL << 30);
    CHECK_EQ(cfg.virtio_mem[1].block_size, 1ULL << 30);   /* raised to hold whole pages */
    CHECK_EQ(cfg.virtio_mem[2].block_size, 1ULL << 30);
    /* A region is a shmem memfd unless asked otherwise (boot RAM: thp). */
    CHECK_EQ(cfg.virtio_mem[3].backing.kind, MEM_BACKING_SHMEM);
    CHECK_EQ(cfg.virtio_mem[4].backing.kind, MEM_BACKING_BASE);
    CHECK_EQ(cfg.virtio_mem[4].block_size, 2ULL << 20);
    CHECK_EQ(cfg.virtio_mem[5].backing.kind, MEM_BACKING_THP);
    CHECK_EQ(cfg.virtio_mem[6].backing.kind, MEM_BACKING_SHMEM);
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--mem", "64M", NULL),
             CLI_RUN);
    CHECK_EQ(cfg.mem_backing.kind, MEM_BACKING_THP);
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--mem",
                   "64M,hugepages=shmem", NULL),
             CLI_RUN);
    CHECK_EQ(cfg.mem_backing.kind, MEM_BACKING_SHMEM);
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--mem",
                   "33M,hugepages=off", NULL),
             CLI_RUN);
    CHECK_EQ(cfg.mem_backing.kind, MEM_BACKING_BASE);
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--mem",
                   "64M,hugepages=thp", NULL),
             CLI_RUN);
    CHECK_EQ(cfg.mem_backing.kind, MEM_BACKING_THP);

    const char *k = existing_file();
    /* Anonymous regions only without the guard (virtio_mem_opts.c says why). */
    EXPECT_ERROR("f: hugepages=thp needs guard=off: a guarded region is a memfd", "--kernel", k,
                 "--virtio-mem", "f:4G,hugepages=thp");
    EXPECT_ERROR("e: hugepages=off needs guard=off", "--kernel", k, "--virtio-mem",
                 "e:4G,guard=on,hugepages=off");
    EXPECT_ERROR("--mem 1536M: must be a multiple of the huge page size 1G", "--kernel", k, "--mem",
                 "1536M,hugepages=1G");
    EXPECT_ERROR("--mem 33M: must be a multiple of the huge page size 2M", "--kernel", k, "--mem",
                 "33M,hugepages=2M");
    EXPECT_ERROR("--mem hugepages=3M: a huge page size is a power of two", "--kernel", k,
                 "--mem", "1G,hugepages=3M");
    EXPECT_ERROR("--mem hugepages=4K: a huge page size is a power of two from 64K", "--kernel", k,
                 "--mem", "1G,hugepages=4K");
    EXPECT_ERROR("--mem hugepages=: ", "--kernel", k, "--mem", "1G,hugepages=");
    EXPECT_ERROR("--mem hugepages=on: expected thp, off, shmem or a huge page size", "--kernel", k,
                 "--mem", "1G,hugepages=on");
    EXPECT_ERROR("--mem '1G,huge=2M': expected SIZE[,hugepages=thp|off|shmem|SIZE]", "--kernel", k, "--mem",
                 "1G,huge=2M");
    EXPECT_ERROR("--virtio-mem m: block=2M: smaller than the huge page size 1G", "--kernel", k,
                 "--virtio-mem", "m:4G,block=2M,hugepages=1G");
    EXPECT_ERROR("--virtio-mem m: hugepages=1T: a huge page size is a power of two", "--kernel",
                 k, "--virtio-mem", "m:4G,hugepages=1T");
    EXPECT_ERROR("--virtio-mem m: hugepages=two: ", "--kernel", k, "--virtio-mem",
                 "m:4G,hugepages=two");
    EXPECT_ERROR("--virtio-mem m: size 3G: must be a non-zero multiple of 2G", "--kernel", k,
                 "--virtio-mem", "m:3G,block=2G,hugepages=1G");
}

TEST(overlong_cmdline)
{
    static char longline[CONFIG_MAX_CMDLINE + 10];
    memset(longline, 'a', sizeof(longline) - 1);
    EXPECT_ERROR("--cmdline: longer than", "--kernel", existing_file(), "--cmdline", longline);
}

/* Runs the real binary: a bad option must print one line to stderr and exit 2. */
static int run_binary(const char *const *args, char *out, size_t out_len)
{
    const char *bin = getenv("MINIVMM_BINARY");
    if (!bin)
        return -1;
    int pipefd[2];
    if (pipe(pipefd) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 2);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        char *argv[16];
        int n = 0;
        argv[n++] = (char *)bin;
        for (; *args; args++)
            argv[n++] = (char *)*args;
        argv[n] = NULL;
        execv(bin, argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < out_len && (r = read(pipefd[0], out + got, out_len - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(binary_exit_status_and_message)
{
    char out[4096];
    if (!getenv("MINIVMM_BINARY")) {
        unit_fail(__FILE__, __LINE__, "MINIVMM_BINARY is not set (run through ctest)");
        return;
    }
    const char *bad_mem[] = {"--kernel", "/proc/self/exe", "--mem", "12Q", NULL};
    CHECK_EQ(run_binary(bad_mem, out, sizeof(out)), 2);
    CHECK_STR_CONTAINS(out, "minivmm: --mem '12Q': unknown size suffix");
    CHECK_EQ(strchr(out, '\n') - out + 1, strlen(out)); /* exactly one line */

    const char *no_kernel[] = {NULL};
    CHECK_EQ(run_binary(no_kernel, out, sizeof(out)), 2);
    CHECK_STR_CONTAINS(out, "--kernel: required");

    const char *not_bzimage[] = {"--kernel", "/etc/hostname", NULL};
    CHECK_EQ(run_binary(not_bzimage, out, sizeof(out)), 2);
    CHECK_STR_CONTAINS(out, "--kernel /etc/hostname");

    const char *help[] = {"--help", NULL};
    CHECK_EQ(run_binary(help, out, sizeof(out)), 0);
    CHECK_STR_CONTAINS(out, "usage: minivmm");

    const char *version[] = {"--version", NULL};
    CHECK_EQ(run_binary(version, out, sizeof(out)), 0);
    CHECK_STR_CONTAINS(out, "minivmm " MINIVMM_VERSION);
}

TEST(virtio_mem_devices)
{
    struct vm_config cfg;
    char err[512];
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--mem", "1G",
                   "--virtio-mem", "node0:64G,requested=4G",
                   "--virtio-mem=node1:2G,guard=off,prealloc=off",
                   "--virtio-mem", "big:1T,node=1,block=1G,prealloc=on,guard=on", NULL),
             CLI_RUN);
    CHECK_EQ(cfg.n_virtio_mem, 3);
    CHECK(!strcmp(cfg.virtio_mem[0].id, "node0"));
    CHECK_EQ(cfg.virtio_mem[0].size, 64ULL << 30);
    CHECK_EQ(cfg.virtio_mem[0].requested, 4ULL << 30);
    CHECK_EQ(cfg.virtio_mem[0].block_size, 2ULL << 20);
    CHECK_EQ(cfg.virtio_mem[0].node, 0);
    CHECK(!cfg.virtio_mem[0].prealloc);
    CHECK_EQ(cfg.virtio_mem[1].node, 1);      /* implied by the ID */
    CHECK_EQ(cfg.virtio_mem[1].requested, 0);
    CHECK_EQ(cfg.virtio_mem[2].node, 1);
    CHECK_EQ(cfg.virtio_mem[2].block_size, 1ULL << 30);
    CHECK(cfg.virtio_mem[2].prealloc);
    CHECK(cfg.virtio_mem[0].guard);           /* on unless turned off */
    CHECK(!cfg.virtio_mem[0].prealloc);       /* guarded, backed on first touch */
    CHECK(!cfg.virtio_mem[1].guard && !cfg.virtio_mem[1].prealloc);
    CHECK(cfg.virtio_mem[2].guard);
}

TEST(virtio_mem_bad_values_name_the_option)
{
    const char *k = existing_file();
    EXPECT_ERROR("--virtio-mem 'node0': expected ID:SIZE", "--kernel", k, "--virtio-mem", "node0");
    EXPECT_ERROR("--virtio-mem ':4G': empty device ID", "--kernel", k, "--virtio-mem", ":4G");
    EXPECT_ERROR("--virtio-mem 'a b': a device ID may use", "--kernel", k, "--virtio-mem",
                 "a b:4G");
    EXPECT_ERROR("device ID longer than 31", "--kernel", k, "--virtio-mem",
                 "abcdefghijabcdefghijabcdefghijab:4G");
    EXPECT_ERROR("--virtio-mem m: size 'lots'", "--kernel", k, "--virtio-mem", "m:lots");
    EXPECT_ERROR("--virtio-mem m: size 0: must be a non-zero multiple of 128M", "--kernel", k,
                 "--virtio-mem", "m:0");
    EXPECT_ERROR("--virtio-mem m: size 100M: must be a non-zero multiple of 128M", "--kernel", k,
                 "--virtio-mem", "m:100M");
    EXPECT_ERROR("--virtio-mem m: block=3M: must be a power of two", "--kernel", k,
                 "--virtio-mem", "m:4G,block=3M");
    EXPECT_ERROR("--virtio-mem m: block=2K: must be a power of two of at least 4K", "--kernel", k,
                 "--virtio-mem", "m:4G,block=2K");
    EXPECT_ERROR("--virtio-mem m: size 1536M: must be a non-zero multiple of 1G", "--kernel", k,
                 "--virtio-mem", "m:1536M,block=1G");
    EXPECT_ERROR("--virtio-mem m: requested=3M: must be a multiple of the block size 2M",
                 "--kernel", k, "--virtio-mem", "m:4G,requested=3M");
    EXPECT_ERROR("--virtio-mem m: requested=8G: larger than the region (4G)", "--kernel", k,
                 "--virtio-mem", "m:4G,requested=8G");
    EXPECT_ERROR("--virtio-mem m: prealloc=yes: expected on or off", "--kernel", k,
                 "--virtio-mem", "m:4G,prealloc=yes");
    EXPECT_ERROR("--virtio-mem m: guard=1: expected on or off", "--kernel", k,
                 "--virtio-mem", "m:4G,guard=1");
    EXPECT_ERROR("--virtio-mem m: unknown key 'size'", "--kernel", k, "--virtio-mem",
                 "m:4G,size=2G");
    EXPECT_ERROR("--virtio-mem m: 'requested': expected key=value", "--kernel", k,
                 "--virtio-mem", "m:4G,requested");
    EXPECT_ERROR("--virtio-mem m: node=64: NUMA nodes are 0..63", "--kernel", k,
                 "--virtio-mem", "m:4G,node=64");
    EXPECT_ERROR("--virtio-mem m: node=x: not a whole number", "--kernel", k, "--virtio-mem",
                 "m:4G,node=x");
    EXPECT_ERROR("--virtio-mem node1: node=2 contradicts the ID", "--kernel", k, "--virtio-mem",
                 "node1:4G,node=2");
    EXPECT_ERROR("--virtio-mem m: the ID is used twice", "--kernel", k, "--virtio-mem", "m:4G",
                 "--virtio-mem", "m:8G");
    EXPECT_ERROR("--virtio-mem m: size 64T does not fit the guest-physical address space",
                 "--kernel", k, "--virtio-mem", "m:64T");
    EXPECT_ERROR("--virtio-mem: at most 8 devices", "--kernel", k, "--virtio-mem", "a:1G",
                 "--virtio-mem", "b:1G", "--virtio-mem", "c:1G", "--virtio-mem", "d:1G",
                 "--virtio-mem", "e:1G", "--virtio-mem", "f:1G", "--virtio-mem", "g:1G",
                 "--virtio-mem", "h:1G", "--virtio-mem", "i:1G");
}

/* slot=SIZE chooses the KVM memslot size; without it the layout's policy
 * (1 GiB where the region allows) stays. */
TEST(virtio_mem_slot_size)
{
    struct vm_config cfg;
    char err[512];
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--mem", "1G",
                   "--virtio-mem", "a:64G,slot=128M", "--virtio-mem", "b:64G,slot=512M",
                   "--virtio-mem", "c:64G,slot=1G", "--virtio-mem", "d:64G,slot=4G",
                   "--virtio-mem", "e:64G", "--virtio-mem", "f:4G,block=256M,slot=256M",
                   "--virtio-mem", "g:1536M,slot=512M", "--virtio-mem", "h:8G,hugepages=1G,slot=2G",
                   NULL),
             CLI_RUN);
    CHECK_EQ(cfg.n_virtio_mem, 8);
    CHECK_EQ(cfg.virtio_mem[0].slot_size, 128ULL << 20);
    CHECK_EQ(cfg.virtio_mem[1].slot_size, 512ULL << 20);
    CHECK_EQ(cfg.virtio_mem[2].slot_size, 1ULL << 30);
    CHECK_EQ(cfg.virtio_mem[3].slot_size, 4ULL << 30);
    CHECK_EQ(cfg.virtio_mem[4].slot_size, 0);           /* not given: the layout chooses */
    CHECK_EQ(cfg.virtio_mem[5].slot_size, 256ULL << 20);
    CHECK_EQ(cfg.virtio_mem[6].slot_size, 512ULL << 20);
    CHECK_EQ(cfg.virtio_mem[7].slot_size, 2ULL << 30);
    struct hotplug_placement p[8];
    CHECK_EQ(hotplug_layout(&cfg, p, err, sizeof(err)), 0);
    CHECK_EQ(p[0].slot_size, 128ULL << 20);
    CHECK_EQ(p[0].n_slots, 512);
    CHECK_EQ(p[1].n_slots, 128);
    CHECK_EQ(p[2].n_slots, 64);
    CHECK_EQ(p[3].n_slots, 16);
    CHECK_EQ(p[4].slot_size, 1ULL << 30);             /* the default policy, unchanged */
    CHECK_EQ(p[4].n_slots, 64);
    CHECK_EQ(p[5].n_slots, 16);
    CHECK_EQ(p[6].n_slots, 3);
    CHECK_EQ(p[7].n_slots, 4);
}

TEST(virtio_mem_bad_slot_sizes_name_the_device)
{
    const char *k = existing_file();
    EXPECT_ERROR("--virtio-mem m: slot=384M: must be a power of two", "--kernel", k,
                 "--virtio-mem", "m:12G,slot=384M");
    EXPECT_ERROR("--virtio-mem m: slot=0: must be a power of two", "--kernel", k,
                 "--virtio-mem", "m:4G,slot=0");
    EXPECT_ERROR("--virtio-mem m: slot=lots", "--kernel", k, "--virtio-mem", "m:4G,slot=lots");
    EXPECT_ERROR("--virtio-mem m: slot=64M: smaller than 128M (the block size 2M and Linux's "
                 "128M memory block)", "--kernel", k, "--virtio-mem", "m:4G,slot=64M");
    EXPECT_ERROR("--virtio-mem m: slot=256M: smaller than 512M (the block size 512M",
                 "--kernel", k, "--virtio-mem", "m:4G,block=512M,slot=256M");
    /* A 1G huge page makes the block 1G: a slot holds whole pages too. */
    EXPECT_ERROR("--virtio-mem m: slot=512M: smaller than 1G (the block size 1G", "--kernel", k,
                 "--virtio-mem", "m:4G,hugepages=1G,slot=512M");
    EXPECT_ERROR("--virtio-mem m: slot=1G: does not divide the region size 1536M", "--kernel", k,
                 "--virtio-mem", "m:1536M,slot=1G");
    EXPECT_ERROR("--virtio-mem m: slot=8G: does not divide the region size 4G", "--kernel", k,
                 "--virtio-mem", "m:4G,slot=8G");
    uint64_t start, end;
    arch_hotplug_window(1ULL << 30, &start, &end);
    if (end - start < (5ULL << 40)) {
        unit_skip("guest-physical window below 5T: no room for a 4T region");
        return;
    }
    /* 4T in 128M slots is 32768 memslots, more than KVM's 32764. */
    EXPECT_ERROR("--virtio-mem m: size 4T needs 32768 KVM memslots of 128M, more than KVM "
                 "offers; a larger slot= helps", "--kernel", k, "--mem", "1G", "--virtio-mem",
                 "m:4T,slot=128M");
}

TEST(on_reboot)
{
    struct vm_config cfg;
    char err[512];
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), NULL), CLI_RUN);
    CHECK(!cfg.exit_on_reboot);
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--on-reboot", "exit",
                   NULL),
             CLI_RUN);
    CHECK(cfg.exit_on_reboot);
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--on-reboot=restart",
                   NULL),
             CLI_RUN);
    CHECK(!cfg.exit_on_reboot);
    EXPECT_ERROR("--on-reboot 'halt': expected restart or exit", "--kernel", existing_file(),
                 "--on-reboot", "halt");
}

TEST(api_sock)
{
    struct vm_config cfg;
    char err[512];
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), NULL), CLI_RUN);
    CHECK(cfg.api_sock == NULL);
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--api-sock",
                   "/tmp/minivmm-test-cli.sock", NULL),
             CLI_RUN);
    CHECK(!strcmp(cfg.api_sock, "/tmp/minivmm-test-cli.sock"));
    CHECK_EQ(parse(&cfg, err, sizeof(err), "--kernel", existing_file(), "--api-sock=vm.sock",
                   NULL),
             CLI_RUN);

    const char *k = existing_file();
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    EXPECT_ERROR("--api-sock: empty path", "--kernel", k, "--api-sock", "");
    EXPECT_ERROR("--api-sock: path longer than 107 bytes", "--kernel", k, "--api-sock", longpath);
    EXPECT_ERROR("--api-sock /proc/self/exe: exists and is not a socket", "--kernel", k,
                 "--api-sock", "/proc/self/exe");
    EXPECT_ERROR("--api-sock /nonexistent-minivmm/vm.sock: directory /nonexistent-minivmm:",
                 "--kernel", k, "--api-sock", "/nonexistent-minivmm/vm.sock");
    EXPECT_ERROR("--api-sock: given more than once", "--kernel", k, "--api-sock", "a",
                 "--api-sock", "b");
    EXPECT_ERROR("--api-sock: missing value", "--kernel", k, "--api-sock");
}
