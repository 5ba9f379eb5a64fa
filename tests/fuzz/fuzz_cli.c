/* The command line: cli_parse (vmm/cli/cli.c) on an argv made of the input's
 * NUL-separated pieces, and under it virtio_mem_opts_parse and size_parse /
 * size_format on each piece. A config cli_parse accepts must satisfy every
 * limit its --help states. Paths are only checked with access()/stat(), so
 * values like --kernel /proc/self/exe cost nothing. */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/arch.h"
#include "vmm/cli/cli.h"
#include "vmm/cli/virtio_mem_opts.h"
#include "vmm/hotplug/layout.h"
#include "vmm/size_parse.h"

#define MAX_ARGS 64

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_mute_log();
    devnull = fopen("/dev/null", "w");      /* --help and --version print here */
    if (!devnull)
        abort();
    return 0;
}

static void check_opts(const struct virtio_mem_opts *o)
{
    uint64_t bs = o->block_size;
    uint64_t memory_block = arch_guest_memory_block();
    uint64_t align = bs > memory_block ? bs : memory_block;
    FUZZ_CHECK(o->id[0] && strlen(o->id) <= CONFIG_VIRTIO_MEM_ID_MAX);
    FUZZ_CHECK(bs >= 4096 && !(bs & (bs - 1)));
    FUZZ_CHECK(o->size && o->size % align == 0);
    FUZZ_CHECK(o->requested <= o->size && o->requested % bs == 0);
    FUZZ_CHECK(o->node < CONFIG_MAX_NUMA_NODES);
}

static void check_config(const struct vm_config *cfg)
{
    FUZZ_CHECK(cfg->kernel_path && cfg->kernel_path[0]);
    FUZZ_CHECK(cfg->mem_size >= CONFIG_MIN_MEM && cfg->mem_size <= CONFIG_MAX_MEM);
    FUZZ_CHECK(cfg->mem_size % (1ULL << 20) == 0);
    FUZZ_CHECK(cfg->ncpus >= 1 && cfg->ncpus <= arch_max_vcpus());
    FUZZ_CHECK(!cfg->cmdline || strlen(cfg->cmdline) < CONFIG_MAX_CMDLINE);
    FUZZ_CHECK(cfg->n_virtio_mem <= CONFIG_MAX_VIRTIO_MEM);
    for (unsigned i = 0; i < cfg->n_virtio_mem; i++) {
        check_opts(&cfg->virtio_mem[i]);
        for (unsigned k = 0; k < i; k++)
            FUZZ_CHECK(strcmp(cfg->virtio_mem[i].id, cfg->virtio_mem[k].id) != 0);
    }
    /* What the VM will do with it must succeed too, and not overlap. */
    struct hotplug_placement place[CONFIG_MAX_VIRTIO_MEM];
    char err[256];
    FUZZ_CHECK(hotplug_layout(cfg, place, err, sizeof(err)) == 0 || cfg->n_virtio_mem == 0);
    for (unsigned i = 0; i < cfg->n_virtio_mem; i++) {
        FUZZ_CHECK(place[i].gpa >= cfg->mem_size);
        FUZZ_CHECK(place[i].size == cfg->virtio_mem[i].size);
        if (i)
            FUZZ_CHECK(place[i].gpa >= place[i - 1].gpa + place[i - 1].size);
    }
}

/* Each piece also goes to the value parsers on its own. */
static void check_piece(const char *s)
{
    uint64_t v, again;
    const char *why = NULL;
    if (size_parse(s, &v, &why) == 0) {
        char buf[32];
        FUZZ_CHECK(size_parse(size_format(v, buf, sizeof(buf)), &again, &why) == 0);
        FUZZ_CHECK(again == v);
    } else {
        FUZZ_CHECK(why && why[0]);
    }
    struct virtio_mem_opts o;
    char err[256] = "";
    if (virtio_mem_opts_parse(s, &o, err, sizeof(err)) == 0)
        check_opts(&o);
    else
        FUZZ_CHECK(err[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private NUL-terminated copy, cut on NUL bytes into argv[1..]. */
    char *buf = malloc(size + 1);
    if (!buf)
        abort();
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 2] = {"minivmm"};
    int argc = 1;
    for (size_t off = 0; off < size && argc <= MAX_ARGS; off += strlen(buf + off) + 1)
        argv[argc++] = buf + off;
    argv[argc] = NULL;

    for (int i = 1; i < argc; i++)
        check_piece(argv[i]);

    struct vm_config cfg;
    char err[512];
    enum cli_result r = cli_parse(argc, argv, &cfg, err, sizeof(err), devnull);
    FUZZ_CHECK(r == CLI_RUN || r == CLI_EXIT_OK || r == CLI_ERROR);
    FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err));
    if (r == CLI_ERROR)
        FUZZ_CHECK(err[0]);
    if (r == CLI_RUN)
        check_config(&cfg);
    free(buf);
    return 0;
}
