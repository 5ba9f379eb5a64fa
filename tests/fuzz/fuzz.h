/* Shared by the libFuzzer targets: reading structured values off the fuzz
 * input, and the virtio-mem invariants both device-level targets check. */
#ifndef MINIVMM_FUZZ_H
#define MINIVMM_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio_mem.h"
#include "vmm/bitmap.h"

/* The input as a stream of little-endian values; past the end everything
 * reads as zero, so every input is a valid program and the fuzzer never
 * wastes executions on length checks. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline uint64_t fuzz_bytes(struct fuzz_in *in, unsigned len)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < len && in->n; i++, in->p++, in->n--)
        v |= (uint64_t)*in->p << (8 * i);
    return v;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in) { return (uint8_t)fuzz_bytes(in, 1); }
static inline uint16_t fuzz_u16(struct fuzz_in *in) { return (uint16_t)fuzz_bytes(in, 2); }
static inline uint32_t fuzz_u32(struct fuzz_in *in) { return (uint32_t)fuzz_bytes(in, 4); }
static inline uint64_t fuzz_u64(struct fuzz_in *in) { return fuzz_bytes(in, 8); }

/* An invariant broke: abort() so libFuzzer saves the input as a crash. The
 * message goes to fd 2 directly: the stderr stream may be muted (below). */
#define FUZZ_CHECK(cond)                                                                \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            dprintf(STDERR_FILENO, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, \
                    #cond);                                                             \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* The VMM's warnings about a misbehaving guest are the expected output of
 * almost every input, and writing them would cost most of the run's time.
 * glibc lets a program point `stderr` elsewhere: the log goes to /dev/null
 * while fd 2 stays open for libFuzzer's and the sanitizers' reports.
 * MINIVMM_FUZZ_LOG=1 keeps the log (for replaying one input). */
static inline void fuzz_mute_log(void)
{
    const char *keep = getenv("MINIVMM_FUZZ_LOG");
    if (keep && *keep && strcmp(keep, "0") != 0)
        return;
    FILE *null = fopen("/dev/null", "w");
    if (null)
        stderr = null;
}

/* What must hold after every request, resize or reset, whatever the guest
 * and the host asked: the bitmap and plugged_size agree, no bit lies past
 * the region, and the config fields keep their documented bounds. */
static inline void fuzz_check_virtio_mem(struct virtio_mem *m)
{
    pthread_mutex_lock(&m->lock);
    const struct virtio_mem_config *c = &m->cfg;
    uint64_t set = bitmap_count(m->plugged, 0, m->nb_blocks);
    FUZZ_CHECK(c->plugged_size == set * c->block_size);
    FUZZ_CHECK(c->plugged_size <= c->region_size);
    FUZZ_CHECK(c->usable_region_size == c->region_size);
    FUZZ_CHECK(c->requested_size <= c->region_size);
    FUZZ_CHECK(c->requested_size % c->block_size == 0);
    FUZZ_CHECK(m->nb_blocks * c->block_size == c->region_size);
    uint64_t words = bitmap_words(m->nb_blocks);
    if (m->nb_blocks % 64)
        FUZZ_CHECK((m->plugged[words - 1] >> (m->nb_blocks % 64)) == 0);
    pthread_mutex_unlock(&m->lock);
}

#endif
