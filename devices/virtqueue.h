/* The split virtqueue (virtio 1.2, 2.7) as a device sees it: validated once
 * when the driver marks the queue ready, then walked one chain at a time by
 * the single chain walker, which checks every index, flag, length and guest
 * address before a device model sees a buffer. */
#ifndef MINIVMM_VIRTQUEUE_H
#define MINIVMM_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u
#define VIRTQ_DESC_F_INDIRECT 4u

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u

/* Ring layouts in guest memory (little endian; x86_64 and arm64 hosts are
 * little endian, which the build asserts). */
struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[];
};

/* One queue. The transport owns it: the driver-visible fields (size, ring
 * addresses) are written through registers while !ready; virtq_enable()
 * validates them and resolves the host pointers. */
struct virtq {
    uint16_t max_size;          /* what the device offers (power of two) */
    uint16_t size;              /* what the driver chose */
    bool ready;
    uint64_t desc_gpa, avail_gpa, used_gpa;

    /* Valid only while ready. */
    struct virtq_desc *desc;
    struct virtq_avail *avail;
    struct virtq_used *used;
    uint16_t last_avail;        /* next avail ring entry to consume */
    uint16_t used_idx;          /* shadow of used->idx */
    uint32_t pushed;            /* used entries added since the last interrupt check */
};

/* One buffer of a chain: a host pointer already checked to cover len bytes
 * of guest RAM. */
struct virtq_buf {
    void *addr;
    uint32_t len;
};

/* A popped chain: device-readable buffers first, then device-writable ones
 * (the spec forbids a readable descriptor after a writable one). */
struct virtq_chain {
    uint16_t head;
    unsigned n_out;             /* readable buffers: bufs[0 .. n_out) */
    unsigned n_in;              /* writable buffers: bufs[n_out .. n_out + n_in) */
    uint64_t out_len, in_len;   /* byte totals of each part */
    struct virtq_buf *bufs;     /* caller's array */
};

void virtq_init(struct virtq *q, uint16_t max_size);

/* Back to the reset state (size = max_size, addresses 0, not ready). */
void virtq_reset(struct virtq *q);

/* The driver set QueueReady = 1: checks size (power of two, 1..max_size),
 * ring alignment (desc 16, avail 2, used 4) and that each whole ring lies in
 * guest RAM, then resolves the host pointers. Returns 0, or -EINVAL with a
 * reason in err (the queue stays not ready). */
int virtq_enable(struct virtq *q, const struct guest_mem *gm, char *err, size_t errlen);

/* Takes the next available chain. Returns 1 with *chain filled, 0 when the
 * driver has made nothing new available, or -EINVAL on a malformed ring or
 * chain (avail index more than size ahead, head or next index >= size, a
 * loop (more hops than size), INDIRECT (not offered), a readable buffer after
 * a writable one, more than cap buffers, a buffer outside guest RAM, a part
 * over 4 GiB); err then says what, and the device should be marked
 * NEEDS_RESET: the queue's state is no longer trustworthy. */
int virtq_pop(struct virtq *q, const struct guest_mem *gm, struct virtq_chain *chain,
              struct virtq_buf *bufs, unsigned cap, char *err, size_t errlen);

/* Returns a chain to the driver with `written` bytes in its writable part. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/* Whether the driver wants an interrupt for what was pushed since the last
 * call (VIRTQ_AVAIL_F_NO_INTERRUPT; no EVENT_IDX). Resets `pushed`. */
bool virtq_should_interrupt(struct virtq *q);

/* Helpers for device models: copy across a chain's readable part / into its
 * writable part, bounded by the buffers. Return the bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *chain, void *dst, size_t len);
size_t virtq_chain_write(const struct virtq_chain *chain, const void *src, size_t len);

#endif
