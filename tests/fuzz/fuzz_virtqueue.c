/* The split-virtqueue chain walker (devices/virtqueue.c) against a guest
 * that controls everything: the ring geometry the driver programs, every
 * byte of guest RAM (descriptors, avail ring, buffers), and writes to RAM
 * between pops, as a concurrent driver would make them.
 *
 * Input: header, then 8-byte ops, then the RAM image.
 *   u8 max_size (log2) | u16 size | u32 desc_gpa | u32 avail_gpa | u32 used_gpa
 *   | u8 buffer cap | u8 op count | ops... | RAM bytes (from gpa 0)
 *   op: u8 kind | u8 a | u16 b | u32 c */
#include <errno.h>

#include "devices/virtqueue.h"
#include "tests/fuzz/fuzz.h"
#include "vmm/guest_mem.h"

/* Two regions with a hole between them, so "in RAM" has edges to get wrong. */
#define RAM_A_GPA 0x0ULL
#define RAM_A_SIZE 0x10000ULL
#define RAM_B_GPA 0x20000ULL
#define RAM_B_SIZE 0x1000ULL
#define MAX_BUFS 32

static struct guest_mem gm;
static uint8_t scratch[RAM_A_SIZE + RAM_B_SIZE];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_mute_log();
    const struct mem_range ranges[] = {{RAM_A_GPA, RAM_A_SIZE}, {RAM_B_GPA, RAM_B_SIZE}};
    guest_mem_init(&gm, -1);
    if (guest_mem_add_ram(&gm, ranges, 2, 0) != 0)
        abort();
    return 0;
}

/* A pointer the walker handed out must lie, with its length, in one region. */
static bool in_ram(const void *p, uint64_t len)
{
    for (unsigned i = 0; i < gm.n_regions; i++) {
        const struct guest_mem_region *r = &gm.regions[i];
        const uint8_t *b = p;
        if (b >= r->hva && b < r->hva + r->size && len <= (uint64_t)(r->hva + r->size - b))
            return true;
    }
    return false;
}

static void check_enabled(const struct virtq *q)
{
    FUZZ_CHECK(q->size && q->size <= q->max_size && !(q->size & (q->size - 1)));
    FUZZ_CHECK(in_ram(q->desc, q->size * 16ULL));
    FUZZ_CHECK(in_ram(q->avail, 4 + q->size * 2ULL + 2));
    FUZZ_CHECK(in_ram(q->used, 4 + q->size * 8ULL + 2));
    FUZZ_CHECK((uint8_t *)q->desc == guest_mem_ptr(&gm, q->desc_gpa, q->size * 16ULL));
}

static void check_chain(const struct virtq *q, const struct virtq_chain *ch, unsigned cap)
{
    FUZZ_CHECK(ch->head < q->size);
    FUZZ_CHECK(ch->n_out + ch->n_in <= cap);
    uint64_t out = 0, in = 0;
    for (unsigned i = 0; i < ch->n_out + ch->n_in; i++) {
        FUZZ_CHECK(ch->bufs[i].len > 0);
        FUZZ_CHECK(in_ram(ch->bufs[i].addr, ch->bufs[i].len));
        *(i < ch->n_out ? &out : &in) += ch->bufs[i].len;
    }
    FUZZ_CHECK(out == ch->out_len && in == ch->in_len);
    FUZZ_CHECK(out <= UINT32_MAX && in <= UINT32_MAX);
    /* The copy helpers stop at the part's end and at the caller's length. */
    size_t got = virtq_chain_read(ch, scratch, sizeof(scratch));
    FUZZ_CHECK(got == (out < sizeof(scratch) ? out : sizeof(scratch)));
}

static void setup(struct virtq *q, uint16_t max, uint16_t size, uint64_t d, uint64_t a,
                  uint64_t u)
{
    virtq_init(q, max);
    q->size = size;
    q->desc_gpa = d;
    q->avail_gpa = a;
    q->used_gpa = u;
    char err[160] = "";
    if (virtq_enable(q, &gm, err, sizeof(err)) == 0)
        check_enabled(q);
    else
        FUZZ_CHECK(!q->ready && err[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint16_t max = (uint16_t)(1u << (fuzz_u8(&in) % 16));
    uint16_t qsize = fuzz_u16(&in);
    uint64_t d = fuzz_u32(&in), a = fuzz_u32(&in), u = fuzz_u32(&in);
    unsigned cap = fuzz_u8(&in) % (MAX_BUFS + 1);
    unsigned n_ops = fuzz_u8(&in);
    struct fuzz_in ops = {in.p, in.n < n_ops * 8u ? in.n : n_ops * 8u};
    in.p += ops.n;
    in.n -= ops.n;

    /* RAM image: what is left of the input, the rest zero. */
    for (unsigned i = 0; i < gm.n_regions; i++)
        memset(gm.regions[i].hva, 0, gm.regions[i].size);
    size_t to_a = in.n < RAM_A_SIZE ? in.n : RAM_A_SIZE;
    memcpy(gm.regions[0].hva, in.p, to_a);
    size_t to_b = in.n - to_a < RAM_B_SIZE ? in.n - to_a : RAM_B_SIZE;
    memcpy(gm.regions[1].hva, in.p + to_a, to_b);

    struct virtq q;
    setup(&q, max, qsize, d, a, u);
    uint16_t held = 0;
    bool holding = false;
    while (ops.n) {
        uint8_t kind = fuzz_u8(&ops), arg_a = fuzz_u8(&ops);
        uint16_t arg_b = fuzz_u16(&ops);
        uint32_t arg_c = fuzz_u32(&ops);
        switch (kind % 6) {
        case 0:         /* pop, serve, push: what a device model does */
        case 1: {       /* pop and hold (answered later, out of order) */
            struct virtq_buf bufs[MAX_BUFS];
            struct virtq_chain ch;
            char err[160] = "";
            uint16_t before = q.last_avail;
            int rc = virtq_pop(&q, &gm, &ch, bufs, cap, err, sizeof(err));
            FUZZ_CHECK(rc >= -EINVAL && rc <= 1);
            if (rc < 0) {
                FUZZ_CHECK(err[0] && q.last_avail == before);
                break;
            }
            FUZZ_CHECK(q.last_avail == (uint16_t)(before + rc));
            if (rc == 0)
                break;
            check_chain(&q, &ch, cap);
            if (kind % 6 == 1) {
                held = ch.head;
                holding = true;
                break;
            }
            memset(scratch, arg_a, arg_c % sizeof(scratch));
            size_t put = virtq_chain_write(&ch, scratch, arg_c % sizeof(scratch));
            FUZZ_CHECK(put <= ch.in_len && put <= arg_c % sizeof(scratch));
            virtq_push(&q, ch.head, (uint32_t)put);
            FUZZ_CHECK(__atomic_load_n(&q.used->idx, __ATOMIC_RELAXED) == q.used_idx);
            break;
        }
        case 2:         /* push whatever head the op names, or the held one */
            virtq_push(&q, holding ? held : arg_b, arg_c);
            holding = false;
            if (q.ready)
                FUZZ_CHECK(__atomic_load_n(&q.used->idx, __ATOMIC_RELAXED) == q.used_idx);
            break;
        case 3: {       /* the guest writes RAM meanwhile (avail idx, a descriptor) */
            uint64_t gpa = arg_b | (uint64_t)(arg_a & 0x3) << 16;
            guest_mem_write(&gm, gpa, &arg_c, arg_a & 0x4 ? 4 : 2);
            break;
        }
        case 4:
            virtq_should_interrupt(&q);
            FUZZ_CHECK(q.pushed == 0);
            break;
        case 5:         /* driver reset and a new setup: new size, same rings */
            setup(&q, max, arg_b, d, a, u);
            holding = false;
            break;
        }
    }
    return 0;
}
