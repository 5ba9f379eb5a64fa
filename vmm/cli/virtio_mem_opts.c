#include "vmm/cli/virtio_mem_opts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "vmm/arch.h"
#include "vmm/hugepages.h"
#include "vmm/size_parse.h"

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static int parse_node(const char *text, size_t len, unsigned *node)
{
    unsigned long v = 0;
    if (len == 0 || len > 4)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(text[i] - '0');
    }
    if (v >= CONFIG_MAX_NUMA_NODES)
        return -ERANGE;
    *node = (unsigned)v;
    return 0;
}

/* Parses a size held in text[0..len) (not NUL-terminated). */
static int parse_size_n(const char *text, size_t len, uint64_t *out, const char **why)
{
    char buf[64];
    if (len >= sizeof(buf)) {
        *why = "too long";
        return -EINVAL;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    return size_parse(buf, out, why);
}

/* "nodeN" names its NUMA node. */
static bool id_names_node(const char *id, unsigned *node)
{
    if (strncmp(id, "node", 4) != 0 || !id[4])
        return false;
    return parse_node(id + 4, strlen(id + 4), node) == 0;
}

int virtio_mem_opts_parse(const char *text, struct virtio_mem_opts *o, char *err, size_t errlen)
{
    /* The guard is on unless turned off: the host's bound on its memory must
     * not depend on the guest's manners (docs/virtio-mem.md). */
    *o = (struct virtio_mem_opts){.block_size = CONFIG_VIRTIO_MEM_DEFAULT_BLOCK, .guard = true,
                                  .backing = {.kind = MEM_BACKING_SHMEM}};

    const char *colon = strchr(text, ':');
    if (!colon)
        return fail(err, errlen, "'%s': expected ID:SIZE[,node=N][,block=SIZE][,slot=SIZE]"
                    "[,requested=SIZE]"
                    "[,prealloc=on|off][,guard=on|off][,hugepages=shmem|thp|off|SIZE]", text);
    size_t id_len = (size_t)(colon - text);
    if (id_len == 0)
        return fail(err, errlen, "'%s': empty device ID", text);
    if (id_len > CONFIG_VIRTIO_MEM_ID_MAX)
        return fail(err, errlen, "'%s': device ID longer than %d characters", text,
                    CONFIG_VIRTIO_MEM_ID_MAX);
    for (size_t i = 0; i < id_len; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return fail(err, errlen, "'%.*s': a device ID may use letters, digits, '-' and '_'",
                        (int)id_len, text);
    }
    memcpy(o->id, text, id_len);
    o->id[id_len] = '\0';

    bool node_given = false, block_given = false;
    const char *p = colon + 1;
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    const char *why;
    if (parse_size_n(p, len, &o->size, &why) != 0)
        return fail(err, errlen, "%s: size '%.*s': %s", o->id, (int)len, p, why);

    while (comma) {
        p = comma + 1;
        comma = strchr(p, ',');
        len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq)
            return fail(err, errlen, "%s: '%.*s': expected key=value", o->id, (int)len, p);
        size_t key_len = (size_t)(eq - p);
        const char *val = eq + 1;
        size_t val_len = len - key_len - 1;

#define KEY_IS(k) (key_len == strlen(k) && !strncmp(p, k, key_len))
        if (KEY_IS("node")) {
            int rc = parse_node(val, val_len, &o->node);
            if (rc == -ERANGE)
                return fail(err, errlen, "%s: node=%.*s: NUMA nodes are 0..%d", o->id,
                            (int)val_len, val, CONFIG_MAX_NUMA_NODES - 1);
            if (rc)
                return fail(err, errlen, "%s: node=%.*s: not a whole number", o->id,
                            (int)val_len, val);
            node_given = true;
        } else if (KEY_IS("block")) {
            if (parse_size_n(val, val_len, &o->block_size, &why) != 0)
                return fail(err, errlen, "%s: block=%.*s: %s", o->id, (int)val_len, val, why);
            block_given = true;
        } else if (KEY_IS("slot")) {
            if (parse_size_n(val, val_len, &o->slot_size, &why) != 0)
                return fail(err, errlen, "%s: slot=%.*s: %s", o->id, (int)val_len, val, why);
            if (o->slot_size == 0)
                return fail(err, errlen, "%s: slot=0: must be a power of two", o->id);
        } else if (KEY_IS("hugepages")) {
            if (hugepages_parse(val, val_len, &o->backing, &why) != 0)
                return fail(err, errlen, "%s: hugepages=%.*s: %s", o->id, (int)val_len, val,
                            why);
        } else if (KEY_IS("requested")) {
            if (parse_size_n(val, val_len, &o->requested, &why) != 0)
                return fail(err, errlen, "%s: requested=%.*s: %s", o->id, (int)val_len, val,
                            why);
        } else if (KEY_IS("prealloc") || KEY_IS("guard")) {
            bool *flag = KEY_IS("prealloc") ? &o->prealloc : &o->guard;
            if (val_len == 2 && !strncmp(val, "on", 2))
                *flag = true;
            else if (val_len == 3 && !strncmp(val, "off", 3))
                *flag = false;
            else
                return fail(err, errlen, "%s: %.*s=%.*s: expected on or off", o->id,
                            (int)key_len, p, (int)val_len, val);
        } else {
            return fail(err, errlen,
                        "%s: unknown key '%.*s' (node, block, slot, requested, prealloc, "
                        "guard, hugepages)",
                        o->id, (int)key_len, p);
        }
#undef KEY_IS
    }

    /* The guard watches the region through a userfaultfd and backs a block
     * being plugged outside that watch. Anonymous memory can only be backed
     * through the mapping, so the range leaves the watch and rejoins it, and
     * on Linux 6.1 (Debian 12) the mapping stays split at every such range:
     * one more mapping per plug, a count a guest plugging block by block
     * drives toward vm.max_map_count (measured: 4 plugs, 5 mappings). A
     * memfd is backed through the file and stays one mapping. */
    if (o->guard && (o->backing.kind == MEM_BACKING_THP || o->backing.kind == MEM_BACKING_BASE))
        return fail(err, errlen, "%s: hugepages=%s needs guard=off: a guarded region is a memfd "
                    "(hugepages=shmem, the default, or a hugetlbfs page size such as 2M)", o->id,
                    o->backing.kind == MEM_BACKING_THP ? "thp" : "off");

    unsigned id_node;
    if (id_names_node(o->id, &id_node)) {
        if (node_given && id_node != o->node)
            return fail(err, errlen, "%s: node=%u contradicts the ID, which names node %u", o->id,
                        o->node, id_node);
        o->node = id_node;
    }

    char a[32], b[32];
    if (!is_pow2(o->block_size) || o->block_size < 4096)
        return fail(err, errlen, "%s: block=%s: must be a power of two of at least 4K", o->id,
                    size_format(o->block_size, a, sizeof(a)));
    /* A block is plugged, backed and discarded whole, and a huge page cannot
     * be split between a plugged and an unplugged block. */
    uint64_t page = hugepages_size(&o->backing);
    if (page > o->block_size) {
        if (block_given)
            return fail(err, errlen, "%s: block=%s: smaller than the huge page size %s; a block "
                        "must hold whole pages", o->id, size_format(o->block_size, a, sizeof(a)),
                        size_format(page, b, sizeof(b)));
        o->block_size = page;
    }
    uint64_t memory_block = arch_guest_memory_block();
    uint64_t align = o->block_size > memory_block ? o->block_size : memory_block;
    char c[32], d[32];
    if (o->size == 0 || o->size % align)
        return fail(err, errlen,
                    "%s: size %s: must be a non-zero multiple of %s (the block size and "
                    "Linux's %s memory block)",
                    o->id, size_format(o->size, a, sizeof(a)), size_format(align, b, sizeof(b)),
                    size_format(memory_block, c, sizeof(c)));
    if (o->slot_size) {
        /* A memslot holds whole blocks (a block is plugged and backed in
         * one piece) and whole guest memory blocks (the guest adds memory
         * in those), and the region is cut into slots with no remainder
         * (hotplug/mem.c); how many slots KVM can take is the layout's
         * check, which sees every device. */
        if (!is_pow2(o->slot_size))
            return fail(err, errlen, "%s: slot=%s: must be a power of two", o->id,
                        size_format(o->slot_size, a, sizeof(a)));
        if (o->slot_size < align)
            return fail(err, errlen, "%s: slot=%s: smaller than %s (the block size %s and "
                        "Linux's %s memory block)", o->id,
                        size_format(o->slot_size, a, sizeof(a)), size_format(align, b, sizeof(b)),
                        size_format(o->block_size, c, sizeof(c)),
                        size_format(memory_block, d, sizeof(d)));
        if (o->size % o->slot_size)
            return fail(err, errlen, "%s: slot=%s: does not divide the region size %s", o->id,
                        size_format(o->slot_size, a, sizeof(a)),
                        size_format(o->size, b, sizeof(b)));
    }
    if (o->requested % o->block_size)
        return fail(err, errlen, "%s: requested=%s: must be a multiple of the block size %s",
                    o->id, size_format(o->requested, a, sizeof(a)),
                    size_format(o->block_size, b, sizeof(b)));
    if (o->requested > o->size)
        return fail(err, errlen, "%s: requested=%s: larger than the region (%s)", o->id,
                    size_format(o->requested, a, sizeof(a)), size_format(o->size, b, sizeof(b)));
    return 0;
}
