#include "vmm/bitmap.h"

/* Consumes the part of [*first, *first + *n) that lies in one word: returns
 * that word's index and sets *mask to the range's bits in it. */
static uint64_t next_word(uint64_t *first, uint64_t *n, uint64_t *mask)
{
    unsigned bit = (unsigned)(*first % 64);
    uint64_t take = 64 - bit < *n ? 64 - bit : *n;
    uint64_t w = *first / 64;
    *mask = (take == 64 ? ~0ULL : (1ULL << take) - 1) << bit;
    *first += take;
    *n -= take;
    return w;
}

uint64_t bitmap_count(const uint64_t *bm, uint64_t first, uint64_t n)
{
    uint64_t count = 0, mask;
    while (n) {
        uint64_t w = next_word(&first, &n, &mask);
        count += (uint64_t)__builtin_popcountll(bm[w] & mask);
    }
    return count;
}

void bitmap_set_range(uint64_t *bm, uint64_t first, uint64_t n)
{
    uint64_t mask;
    while (n) {
        uint64_t w = next_word(&first, &n, &mask);
        bm[w] |= mask;
    }
}

void bitmap_clear_range(uint64_t *bm, uint64_t first, uint64_t n)
{
    uint64_t mask;
    while (n) {
        uint64_t w = next_word(&first, &n, &mask);
        bm[w] &= ~mask;
    }
}

uint64_t bitmap_find_next(const uint64_t *bm, uint64_t nbits, uint64_t from, bool value)
{
    while (from < nbits) {
        uint64_t word = value ? bm[from / 64] : ~bm[from / 64];
        word &= ~0ULL << (from % 64);
        if (word) {
            uint64_t i = (from & ~63ULL) + (uint64_t)__builtin_ctzll(word);
            return i < nbits ? i : nbits;
        }
        from = (from | 63) + 1;
    }
    return nbits;
}
