#include <errno.h>
#include <stdint.h>

#include "devices/virtqueue.h"
#include "unit.h"
#include "vmm/guest_mem.h"

#define RAM_SIZE (1u << 20)
#define DESC_GPA 0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA 0x3000
#define BUF_GPA 0x10000

/* A driver's-eye view of one queue in an in-memory guest. */
struct fx {
    struct guest_mem gm;
    struct virtq q;
    struct virtq_desc *desc;
    struct virtq_avail *avail;
    struct virtq_used *used;
    char err[256];
    struct virtq_buf bufs[8];
    struct virtq_chain chain;
};

static void fx_setup_size(struct fx *f, uint16_t size)
{
    struct mem_range r = {0, RAM_SIZE};
    memset(f, 0, sizeof(*f));
    guest_mem_init(&f->gm, -1);
    CHECK_EQ(guest_mem_add_ram(&f->gm, &r, 1, 0), 0);
    virtq_init(&f->q, 256);
    f->q.size = size;
    f->q.desc_gpa = DESC_GPA;
    f->q.avail_gpa = AVAIL_GPA;
    f->q.used_gpa = USED_GPA;
    CHECK_EQ(virtq_enable(&f->q, &f->gm, f->err, sizeof(f->err)), 0);
    f->desc = guest_mem_ptr(&f->gm, DESC_GPA, 16);
    f->avail = guest_mem_ptr(&f->gm, AVAIL_GPA, 4);
    f->used = guest_mem_ptr(&f->gm, USED_GPA, 4);
}

static void fx_setup(struct fx *f)
{
    fx_setup_size(f, 16);
}

static void set_desc(struct fx *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    f->desc[i] = (struct virtq_desc){.addr = addr, .len = len, .flags = flags, .next = next};
}

/* Makes `head` available as the next chain. */
static void offer(struct fx *f, uint16_t head)
{
    f->avail->ring[f->avail->idx % f->q.size] = head;
    f->avail->idx++;
}

static int pop(struct fx *f, unsigned cap)
{
    f->err[0] = 0;
    return virtq_pop(&f->q, &f->gm, &f->chain, f->bufs, cap, f->err, sizeof(f->err));
}

static void fx_teardown(struct fx *f)
{
    guest_mem_destroy(&f->gm);
}

TEST(good_chain_readable_then_writable)
{
    struct fx f;
    fx_setup(&f);
    uint8_t *req = guest_mem_ptr(&f.gm, BUF_GPA, 24);
    for (unsigned i = 0; i < 24; i++)
        req[i] = (uint8_t)(i + 1);
    set_desc(&f, 3, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 5);
    set_desc(&f, 5, BUF_GPA + 16, 8, VIRTQ_DESC_F_NEXT, 9);
    set_desc(&f, 9, BUF_GPA + 0x1000, 6, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    set_desc(&f, 2, BUF_GPA + 0x2000, 4, VIRTQ_DESC_F_WRITE, 0);
    offer(&f, 3);

    CHECK_EQ(pop(&f, 8), 1);
    CHECK_EQ(f.chain.head, 3);
    CHECK_EQ(f.chain.n_out, 2);
    CHECK_EQ(f.chain.n_in, 2);
    CHECK_EQ(f.chain.out_len, 24);
    CHECK_EQ(f.chain.in_len, 10);
    CHECK(f.chain.bufs == f.bufs);
    CHECK(f.bufs[0].addr == req);
    CHECK(f.bufs[2].addr == guest_mem_ptr(&f.gm, BUF_GPA + 0x1000, 1));

    uint8_t got[32] = {0};
    CHECK_EQ(virtq_chain_read(&f.chain, got, sizeof(got)), 24);
    CHECK_EQ(got[0], 1);
    CHECK_EQ(got[16], 17);
    CHECK_EQ(got[23], 24);
    CHECK_EQ(got[24], 0);
    CHECK_EQ(virtq_chain_read(&f.chain, got, 3), 3);

    const uint8_t resp[12] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
                              0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};
    CHECK_EQ(virtq_chain_write(&f.chain, resp, sizeof(resp)), 10);
    uint8_t *w1 = guest_mem_ptr(&f.gm, BUF_GPA + 0x1000, 8);
    uint8_t *w2 = guest_mem_ptr(&f.gm, BUF_GPA + 0x2000, 8);
    CHECK_EQ(w1[0], 0xa0);
    CHECK_EQ(w1[5], 0xa5);
    CHECK_EQ(w1[6], 0);         /* past the first writable buffer */
    CHECK_EQ(w2[0], 0xa6);
    CHECK_EQ(w2[3], 0xa9);
    CHECK_EQ(w2[4], 0);

    virtq_push(&f.q, f.chain.head, 10);
    CHECK_EQ(f.used->idx, 1);
    CHECK_EQ(f.used->ring[0].id, 3);
    CHECK_EQ(f.used->ring[0].len, 10);
    CHECK_EQ(pop(&f, 8), 0);    /* nothing new */
    fx_teardown(&f);
}

TEST(ring_indices_wrap)
{
    struct fx f;
    fx_setup_size(&f, 4);
    set_desc(&f, 1, BUF_GPA, 4, VIRTQ_DESC_F_WRITE, 0);
    /* Start both sides near the 16-bit wrap of the free-running indices. */
    f.avail->idx = 0xfffe;
    f.q.last_avail = 0xfffe;
    f.q.used_idx = 0xfffe;
    for (unsigned i = 0; i < 5; i++) {
        offer(&f, 1);
        CHECK_EQ(pop(&f, 8), 1);
        CHECK_EQ(f.chain.head, 1);
        virtq_push(&f.q, 1, i);
    }
    CHECK_EQ(f.used->idx, 3);   /* 0xfffe + 5 */
    CHECK_EQ(f.used->ring[2].len, 4);   /* idx 2 lands in slot 2 */
    fx_teardown(&f);
}

TEST(zero_length_descriptor_skipped)
{
    struct fx f;
    fx_setup(&f);
    set_desc(&f, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
    set_desc(&f, 1, 0xdead0000, 0, VIRTQ_DESC_F_NEXT, 2);   /* address never checked */
    set_desc(&f, 2, BUF_GPA + 8, 4, VIRTQ_DESC_F_WRITE, 0);
    offer(&f, 0);
    CHECK_EQ(pop(&f, 2), 1);
    CHECK_EQ(f.chain.n_out, 1);
    CHECK_EQ(f.chain.n_in, 1);
    CHECK_EQ(f.chain.in_len, 4);
    fx_teardown(&f);
}

TEST(chain_using_every_descriptor_is_legal)
{
    struct fx f;
    fx_setup_size(&f, 4);
    for (unsigned i = 0; i < 3; i++)
        set_desc(&f, i, BUF_GPA + i * 16, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
    set_desc(&f, 3, BUF_GPA + 64, 16, 0, 0);
    offer(&f, 0);
    CHECK_EQ(pop(&f, 8), 1);
    CHECK_EQ(f.chain.n_out, 4);
    CHECK_EQ(f.chain.out_len, 64);
    fx_teardown(&f);
}

TEST(loop_two_descriptors)
{
    struct fx f;
    fx_setup(&f);
    set_desc(&f, 4, BUF_GPA, 0, VIRTQ_DESC_F_NEXT, 6);     /* zero-length: no cap help */
    set_desc(&f, 6, BUF_GPA, 0, VIRTQ_DESC_F_NEXT, 4);
    offer(&f, 4);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "chain at head 4: more than 16 descriptors");
    CHECK_EQ(f.q.last_avail, 0);
    fx_teardown(&f);
}

TEST(loop_self)
{
    struct fx f;
    fx_setup(&f);
    set_desc(&f, 7, BUF_GPA, 0, VIRTQ_DESC_F_NEXT, 7);
    offer(&f, 7);
    CHECK_EQ(pop(&f, 64), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "loop");
    fx_teardown(&f);
}

TEST(head_index_out_of_range)
{
    struct fx f;
    fx_setup(&f);
    offer(&f, 16);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "head index 16 >= queue size 16");
    fx_teardown(&f);
}

TEST(next_index_out_of_range)
{
    struct fx f;
    fx_setup_size(&f, 256);
    set_desc(&f, 7, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 300);
    offer(&f, 7);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "descriptor 7: next index 300 >= queue size 256");
    fx_teardown(&f);
}

TEST(avail_index_jump)
{
    struct fx f;
    fx_setup(&f);
    set_desc(&f, 0, BUF_GPA, 8, 0, 0);
    f.avail->idx = 17;          /* size 16, nothing consumed yet */
    CHECK_EQ(pop(&f, 8), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "avail index jumped from 0 to 17");
    f.avail->idx = 0xffff;      /* "behind" us is a jump too */
    CHECK_EQ(pop(&f, 8), -EINVAL);
    f.avail->idx = 16;          /* exactly a full ring is fine */
    CHECK_EQ(pop(&f, 8), 1);
    fx_teardown(&f);
}

TEST(indirect_rejected)
{
    struct fx f;
    fx_setup(&f);
    set_desc(&f, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
    set_desc(&f, 1, BUF_GPA + 0x100, 32, VIRTQ_DESC_F_INDIRECT, 0);
    offer(&f, 0);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "descriptor 1: INDIRECT");
    fx_teardown(&f);
}

TEST(readable_after_writable_rejected)
{
    struct fx f;
    fx_setup(&f);
    set_desc(&f, 0, BUF_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    set_desc(&f, 1, BUF_GPA + 16, 16, 0, 0);
    offer(&f, 0);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "descriptor 1: device-readable after device-writable");
    /* Also when the writable one was empty. */
    set_desc(&f, 0, BUF_GPA, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    fx_teardown(&f);
}

TEST(buffer_outside_ram)
{
    struct fx f;
    fx_setup(&f);
    set_desc(&f, 0, RAM_SIZE - 8, 16, 0, 0);      /* straddles the end */
    offer(&f, 0);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "descriptor 0: buffer 0xffff8+0x10 is not in guest RAM");
    set_desc(&f, 0, 0x40000000, 16, 0, 0);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    fx_teardown(&f);
}

TEST(buffer_addr_len_overflow)
{
    struct fx f;
    fx_setup(&f);
    set_desc(&f, 0, UINT64_MAX - 7, 0x100, 0, 0);
    offer(&f, 0);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "not in guest RAM");
    set_desc(&f, 0, 0x1000, UINT32_MAX, 0, 0);
    CHECK_EQ(pop(&f, 8), -EINVAL);
    fx_teardown(&f);
}

TEST(too_many_buffers)
{
    struct fx f;
    fx_setup(&f);
    for (unsigned i = 0; i < 3; i++)
        set_desc(&f, i, BUF_GPA + i * 16, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
    set_desc(&f, 3, BUF_GPA + 48, 16, VIRTQ_DESC_F_WRITE, 0);
    offer(&f, 0);
    CHECK_EQ(pop(&f, 3), -EINVAL);
    CHECK_STR_CONTAINS(f.err, "chain at head 0: more than 3 buffers");
    CHECK(f.bufs[3].addr == NULL);      /* never wrote past cap */
    CHECK_EQ(pop(&f, 4), 1);
    fx_teardown(&f);
}

TEST(part_over_4gib_rejected)
{
    /* Two 2 GiB buffers over the same (sparse, untouched) RAM. */
    struct guest_mem gm;
    struct mem_range r = {0, 2ULL << 30};
    guest_mem_init(&gm, -1);
    CHECK_EQ(guest_mem_add_ram(&gm, &r, 1, 0), 0);
    struct virtq q;
    virtq_init(&q, 16);
    q.desc_gpa = DESC_GPA;
    q.avail_gpa = AVAIL_GPA;
    q.used_gpa = USED_GPA;
    char err[200];
    CHECK_EQ(virtq_enable(&q, &gm, err, sizeof(err)), 0);
    struct virtq_desc *d = guest_mem_ptr(&gm, DESC_GPA, 32);
    struct virtq_avail *a = guest_mem_ptr(&gm, AVAIL_GPA, 8);
    d[0] = (struct virtq_desc){
        .addr = 0, .len = 1u << 31, .flags = VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, .next = 1};
    d[1] = (struct virtq_desc){.addr = 0, .len = 1u << 31, .flags = VIRTQ_DESC_F_WRITE};
    a->ring[0] = 0;
    a->idx = 1;
    struct virtq_buf bufs[4];
    struct virtq_chain chain;
    CHECK_EQ(virtq_pop(&q, &gm, &chain, bufs, 4, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "writable part exceeds 4 GiB");
    d[1].len = (1u << 31) - 1;  /* exactly UINT32_MAX in total */
    CHECK_EQ(virtq_pop(&q, &gm, &chain, bufs, 4, err, sizeof(err)), 1);
    CHECK_EQ(chain.in_len, UINT32_MAX);
    guest_mem_destroy(&gm);
}

/* virtq_enable() with one field changed from a good setup. */
static int enable_with(uint16_t size, uint64_t desc, uint64_t avail, uint64_t used, char *err,
                       size_t errlen)
{
    struct guest_mem gm;
    struct mem_range r = {0, RAM_SIZE};
    guest_mem_init(&gm, -1);
    CHECK_EQ(guest_mem_add_ram(&gm, &r, 1, 0), 0);
    struct virtq q;
    virtq_init(&q, 256);
    q.size = size;
    q.desc_gpa = desc;
    q.avail_gpa = avail;
    q.used_gpa = used;
    err[0] = 0;
    int rc = virtq_enable(&q, &gm, err, errlen);
    CHECK_EQ(q.ready, rc == 0);
    if (rc)
        CHECK(q.desc == NULL && q.avail == NULL && q.used == NULL);
    guest_mem_destroy(&gm);
    return rc;
}

TEST(enable_checks_size)
{
    char err[200];
    CHECK_EQ(enable_with(256, DESC_GPA, AVAIL_GPA, USED_GPA, err, sizeof(err)), 0);
    CHECK_EQ(enable_with(1, DESC_GPA, AVAIL_GPA, USED_GPA, err, sizeof(err)), 0);
    CHECK_EQ(enable_with(0, DESC_GPA, AVAIL_GPA, USED_GPA, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "queue size 0 is not a power of two in 1..256");
    CHECK_EQ(enable_with(100, DESC_GPA, AVAIL_GPA, USED_GPA, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "queue size 100");
    CHECK_EQ(enable_with(512, DESC_GPA, AVAIL_GPA, USED_GPA, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "queue size 512");
}

TEST(enable_checks_alignment)
{
    char err[200];
    CHECK_EQ(enable_with(16, DESC_GPA + 8, AVAIL_GPA, USED_GPA, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "descriptor ring at 0x1008 is not 16-byte aligned");
    CHECK_EQ(enable_with(16, DESC_GPA, AVAIL_GPA + 1, USED_GPA, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "available ring at 0x2001 is not 2-byte aligned");
    CHECK_EQ(enable_with(16, DESC_GPA, AVAIL_GPA + 2, USED_GPA + 2, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "used ring at 0x3002 is not 4-byte aligned");
}

TEST(enable_checks_rings_in_ram)
{
    char err[200];
    /* size 16: desc 256 bytes, avail 4+32+2 = 38, used 4+128+2 = 134 */
    CHECK_EQ(enable_with(16, RAM_SIZE - 256, AVAIL_GPA, USED_GPA, err, sizeof(err)), 0);
    CHECK_EQ(enable_with(16, RAM_SIZE - 240, AVAIL_GPA, USED_GPA, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "descriptor ring 0xfff10+0x100 is not in guest RAM");
    CHECK_EQ(enable_with(16, DESC_GPA, RAM_SIZE - 38, USED_GPA, err, sizeof(err)), 0);
    /* Without room for the used_event trailer. */
    CHECK_EQ(enable_with(16, DESC_GPA, RAM_SIZE - 36, USED_GPA, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "available ring");
    CHECK_EQ(enable_with(16, DESC_GPA, AVAIL_GPA, RAM_SIZE - 136, err, sizeof(err)), 0);
    CHECK_EQ(enable_with(16, DESC_GPA, AVAIL_GPA, RAM_SIZE - 132, err, sizeof(err)), -EINVAL);
    CHECK_STR_CONTAINS(err, "used ring");
    CHECK_EQ(enable_with(16, 1ULL << 40, AVAIL_GPA, USED_GPA, err, sizeof(err)), -EINVAL);
    CHECK_EQ(enable_with(16, UINT64_MAX & ~15ULL, AVAIL_GPA, USED_GPA, err, sizeof(err)),
             -EINVAL);
}

TEST(no_interrupt_suppression)
{
    struct fx f;
    fx_setup(&f);
    CHECK(!virtq_should_interrupt(&f.q));      /* nothing pushed */
    set_desc(&f, 0, BUF_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
    offer(&f, 0);
    CHECK_EQ(pop(&f, 8), 1);
    virtq_push(&f.q, 0, 8);
    CHECK(virtq_should_interrupt(&f.q));
    CHECK(!virtq_should_interrupt(&f.q));      /* already reported */

    f.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
    offer(&f, 0);
    CHECK_EQ(pop(&f, 8), 1);
    virtq_push(&f.q, 0, 8);
    CHECK(!virtq_should_interrupt(&f.q));
    CHECK_EQ(f.used->idx, 2);
    fx_teardown(&f);
}

TEST(reset_returns_to_defaults)
{
    struct fx f;
    fx_setup(&f);
    set_desc(&f, 0, BUF_GPA, 8, 0, 0);
    offer(&f, 0);
    CHECK_EQ(pop(&f, 8), 1);
    virtq_reset(&f.q);
    CHECK(!f.q.ready);
    CHECK_EQ(f.q.size, 256);
    CHECK_EQ(f.q.max_size, 256);
    CHECK_EQ(f.q.desc_gpa, 0);
    CHECK_EQ(f.q.last_avail, 0);
    CHECK(f.q.desc == NULL);
    CHECK_EQ(pop(&f, 8), 0);    /* not ready: nothing to walk */
    fx_teardown(&f);
}
