/* Word-at-a-time operations on a plain uint64_t bitmap (bit i is bit i % 64
 * of word i / 64), so scanning a 512 Ki-block virtio-mem region, or a
 * 65535-block request, costs a few thousand word operations, not a loop per
 * bit. Callers keep first + n <= the bitmap's size. */
#ifndef MINIVMM_BITMAP_H
#define MINIVMM_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

static inline uint64_t bitmap_words(uint64_t nbits)
{
    return nbits / 64 + (nbits % 64 != 0);
}

/* Set bits in [first, first + n). */
uint64_t bitmap_count(const uint64_t *bm, uint64_t first, uint64_t n);
void bitmap_set_range(uint64_t *bm, uint64_t first, uint64_t n);
void bitmap_clear_range(uint64_t *bm, uint64_t first, uint64_t n);
/* First bit >= from (and < nbits) whose value is `value`, or nbits. */
uint64_t bitmap_find_next(const uint64_t *bm, uint64_t nbits, uint64_t from, bool value);

#endif
