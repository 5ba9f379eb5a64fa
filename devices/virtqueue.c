#include "devices/virtqueue.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The rings are read and written in place: only a little-endian host can do
 * that without byte swapping. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "virtqueues need a little-endian host");
_Static_assert(sizeof(struct virtq_desc) == 16, "descriptor layout");
_Static_assert(sizeof(struct virtq_used_elem) == 8, "used element layout");

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

void virtq_init(struct virtq *q, uint16_t max_size)
{
    memset(q, 0, sizeof(*q));
    q->max_size = max_size;
    virtq_reset(q);
}

void virtq_reset(struct virtq *q)
{
    uint16_t max_size = q->max_size;
    memset(q, 0, sizeof(*q));
    q->max_size = max_size;
    q->size = max_size;
}

/* Resolves one ring through the checked door; its byte length comes from a
 * uint16_t size, so the uint64_t arithmetic cannot wrap. */
static void *map_ring(const struct guest_mem *gm, const char *what, uint64_t gpa,
                      uint64_t align, uint64_t len, char *err, size_t errlen)
{
    if (gpa & (align - 1)) {
        fail(err, errlen, "%s ring at 0x%" PRIx64 " is not %" PRIu64 "-byte aligned", what,
             gpa, align);
        return NULL;
    }
    void *p = guest_mem_ptr(gm, gpa, len);
    if (!p)
        fail(err, errlen, "%s ring 0x%" PRIx64 "+0x%" PRIx64 " is not in guest RAM", what, gpa,
             len);
    return p;
}

int virtq_enable(struct virtq *q, const struct guest_mem *gm, char *err, size_t errlen)
{
    uint64_t size = q->size;
    if (size == 0 || size > q->max_size || (size & (size - 1)))
        return fail(err, errlen, "queue size %" PRIu64 " is not a power of two in 1..%u", size,
                    q->max_size);

    /* Each ring includes its 2-byte event trailer (used_event / avail_event):
     * the driver may place it, so it must be RAM even without EVENT_IDX. */
    uint64_t desc_len = size * sizeof(struct virtq_desc);
    uint64_t avail_len = sizeof(struct virtq_avail) + size * sizeof(uint16_t) + 2;
    uint64_t used_len = sizeof(struct virtq_used) + size * sizeof(struct virtq_used_elem) + 2;

    void *desc = map_ring(gm, "descriptor", q->desc_gpa, 16, desc_len, err, errlen);
    if (!desc)
        return -EINVAL;
    void *avail = map_ring(gm, "available", q->avail_gpa, 2, avail_len, err, errlen);
    if (!avail)
        return -EINVAL;
    void *used = map_ring(gm, "used", q->used_gpa, 4, used_len, err, errlen);
    if (!used)
        return -EINVAL;

    q->desc = desc;
    q->avail = avail;
    q->used = used;
    q->last_avail = 0;
    q->used_idx = 0;
    q->pushed = 0;
    q->ready = true;
    return 0;
}

/* The guest may rewrite a descriptor while we walk it: read each field once,
 * into a local, and decide only on the local. */
static struct virtq_desc desc_snapshot(const struct virtq_desc *d)
{
    struct virtq_desc s;
    s.addr = __atomic_load_n(&d->addr, __ATOMIC_RELAXED);
    s.len = __atomic_load_n(&d->len, __ATOMIC_RELAXED);
    s.flags = __atomic_load_n(&d->flags, __ATOMIC_RELAXED);
    s.next = __atomic_load_n(&d->next, __ATOMIC_RELAXED);
    return s;
}

int virtq_pop(struct virtq *q, const struct guest_mem *gm, struct virtq_chain *chain,
              struct virtq_buf *bufs, unsigned cap, char *err, size_t errlen)
{
    if (!q->ready)
        return 0;

    /* Acquire pairs with the driver's barrier before it publishes idx: ring
     * entries and descriptors read below are at least that new. */
    uint16_t avail_idx = __atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0)
        return 0;
    if (pending > q->size)
        return fail(err, errlen, "avail index jumped from %u to %u (queue size %u)",
                    q->last_avail, avail_idx, q->size);

    uint16_t slot = q->last_avail & (q->size - 1);
    uint16_t head = __atomic_load_n(&q->avail->ring[slot], __ATOMIC_RELAXED);
    if (head >= q->size)
        return fail(err, errlen, "avail ring entry %u: head index %u >= queue size %u", slot,
                    head, q->size);

    memset(chain, 0, sizeof(*chain));
    chain->head = head;
    chain->bufs = bufs;
    unsigned n = 0;
    bool seen_writable = false;
    uint16_t idx = head;
    for (unsigned hops = 0;; hops++) {
        /* A chain can use every descriptor once, never more. */
        if (hops >= q->size)
            return fail(err, errlen, "chain at head %u: more than %u descriptors (a loop)",
                        head, q->size);
        struct virtq_desc d = desc_snapshot(&q->desc[idx]);
        if (d.flags & VIRTQ_DESC_F_INDIRECT)
            return fail(err, errlen, "descriptor %u: INDIRECT was not offered", idx);
        bool writable = d.flags & VIRTQ_DESC_F_WRITE;
        if (!writable && seen_writable)
            return fail(err, errlen, "descriptor %u: device-readable after device-writable",
                        idx);
        seen_writable |= writable;

        if (d.len) {
            if (n >= cap)
                return fail(err, errlen, "chain at head %u: more than %u buffers", head, cap);
            void *p = guest_mem_ptr(gm, d.addr, d.len);
            if (!p)
                return fail(err, errlen,
                            "descriptor %u: buffer 0x%" PRIx64 "+0x%x is not in guest RAM",
                            idx, d.addr, d.len);
            uint64_t *total = writable ? &chain->in_len : &chain->out_len;
            if (*total + d.len > UINT32_MAX)
                return fail(err, errlen, "chain at head %u: %s part exceeds 4 GiB - 1", head,
                            writable ? "writable" : "readable");
            *total += d.len;
            bufs[n++] = (struct virtq_buf){.addr = p, .len = d.len};
            if (writable)
                chain->n_in++;
            else
                chain->n_out++;
        }

        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        if (d.next >= q->size)
            return fail(err, errlen, "descriptor %u: next index %u >= queue size %u", idx,
                        d.next, q->size);
        idx = d.next;
    }
    q->last_avail++;
    return 1;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
    if (!q->ready)
        return;
    struct virtq_used_elem *e = &q->used->ring[q->used_idx & (q->size - 1)];
    __atomic_store_n(&e->id, head, __ATOMIC_RELAXED);
    __atomic_store_n(&e->len, written, __ATOMIC_RELAXED);
    q->used_idx++;
    /* Release: the element is visible before the index that publishes it. */
    __atomic_store_n(&q->used->idx, q->used_idx, __ATOMIC_RELEASE);
    q->pushed++;
}

bool virtq_should_interrupt(struct virtq *q)
{
    bool any = q->ready && q->pushed;
    q->pushed = 0;
    if (!any)
        return false;
    /* Store (used idx) then load (avail flags) needs a full barrier, or we
     * could read a stale NO_INTERRUPT the driver cleared before it looked at
     * our new used entries, and both sides would wait. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t flags = __atomic_load_n(&q->avail->flags, __ATOMIC_RELAXED);
    return !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

size_t virtq_chain_read(const struct virtq_chain *chain, void *dst, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < chain->n_out && done < len; i++) {
        size_t n = chain->bufs[i].len;
        if (n > len - done)
            n = len - done;
        memcpy((uint8_t *)dst + done, chain->bufs[i].addr, n);
        done += n;
    }
    return done;
}

size_t virtq_chain_write(const struct virtq_chain *chain, const void *src, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < chain->n_in && done < len; i++) {
        const struct virtq_buf *b = &chain->bufs[chain->n_out + i];
        size_t n = b->len;
        if (n > len - done)
            n = len - done;
        memcpy(b->addr, (const uint8_t *)src + done, n);
        done += n;
    }
    return done;
}
