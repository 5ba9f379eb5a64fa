/* AML bytecode builder; see aml.h for the conventions. */
#include "arch/x86_64/aml.h"

#include <stdlib.h>
#include <string.h>

/* Opcodes and prefixes (ACPI 6.5 section 20.3). */
#define AML_ZERO_OP          0x00
#define AML_ONE_OP           0x01
#define AML_NAME_OP          0x08
#define AML_BYTE_PREFIX      0x0A
#define AML_WORD_PREFIX      0x0B
#define AML_DWORD_PREFIX     0x0C
#define AML_STRING_PREFIX    0x0D
#define AML_QWORD_PREFIX     0x0E
#define AML_SCOPE_OP         0x10
#define AML_BUFFER_OP        0x11
#define AML_PACKAGE_OP       0x12
#define AML_DUAL_NAME_PREFIX 0x2E
#define AML_MULTI_NAME_PREFIX 0x2F
#define AML_EXT_OP_PREFIX    0x5B
#define AML_DEVICE_OP        0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR        0x5C /* '\' */
#define AML_NULL_NAME        0x00

/* Resource descriptor tags (ACPI 6.5 section 6.4). */
#define RES_IO_TAG           0x47 /* small item 0x08, length 7 */
#define RES_END_TAG          0x79 /* small item 0x0F, length 1 */
#define RES_MEM32_FIXED_TAG  0x86
#define RES_EXT_IRQ_TAG      0x89
#define RES_QWORD_ADDR_TAG   0x8A

#define NAMESEG_LEN 4
/* Enough for "\" + MultiNamePrefix + count + 16 segments; deeper paths are
 * not something a VMM's DSDT needs. */
#define NAMESTRING_MAX_SEGS 16
#define NAMESTRING_MAX (3 + NAMESTRING_MAX_SEGS * NAMESEG_LEN)

void aml_buf_init(struct aml_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->error = false;
}

void aml_buf_free(struct aml_buf *b)
{
    free(b->data);
    aml_buf_init(b);
}

/* Makes room for n more bytes; false (and the error flag) if impossible. */
static bool aml_reserve(struct aml_buf *b, size_t n)
{
    if (b->error)
        return false;
    if (n > SIZE_MAX - b->len) {
        b->error = true;
        return false;
    }
    size_t need = b->len + n;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->error = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void aml_append_bytes(struct aml_buf *b, const void *p, size_t n)
{
    if (n == 0 || !aml_reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void aml_append_zeros(struct aml_buf *b, size_t n)
{
    if (n == 0 || !aml_reserve(b, n))
        return;
    memset(b->data + b->len, 0, n);
    b->len += n;
}

void aml_append_u8(struct aml_buf *b, uint8_t v)
{
    aml_append_bytes(b, &v, 1);
}

/* Byte-wise so the output is little endian whatever the host. */
static void aml_append_le(struct aml_buf *b, uint64_t v, size_t n)
{
    uint8_t tmp[8];
    for (size_t i = 0; i < n; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    aml_append_bytes(b, tmp, n);
}

void aml_append_u16(struct aml_buf *b, uint16_t v) { aml_append_le(b, v, 2); }
void aml_append_u32(struct aml_buf *b, uint32_t v) { aml_append_le(b, v, 4); }
void aml_append_u64(struct aml_buf *b, uint64_t v) { aml_append_le(b, v, 8); }

void aml_append_buf(struct aml_buf *dst, const struct aml_buf *src)
{
    if (src->error) {
        dst->error = true;
        return;
    }
    aml_append_bytes(dst, src->data, src->len);
}

/* ---- PkgLength ---- */

size_t aml_pkglength_encode(uint32_t pkglen, uint8_t out[AML_PKGLEN_MAX_BYTES])
{
    if (pkglen > AML_PKGLEN_MAX_VALUE)
        return 0;
    /* One byte holds 6 bits; each follow byte adds 8 bits on top of the lead
     * byte's low nibble, so 2/3/4 bytes hold 12/20/28 bits. */
    if (pkglen <= 0x3F) {
        out[0] = (uint8_t)pkglen;
        return 1;
    }
    size_t n = pkglen <= 0xFFF ? 2 : pkglen <= 0xFFFFF ? 3 : 4;
    out[0] = (uint8_t)(((n - 1) << 6) | (pkglen & 0x0F));
    for (size_t i = 1; i < n; i++)
        out[i] = (uint8_t)(pkglen >> (4 + 8 * (i - 1)));
    return n;
}

size_t aml_pkglength_for_body(size_t body_len, uint8_t out[AML_PKGLEN_MAX_BYTES])
{
    /* The value counts its own bytes, so try each width in turn: the first
     * whose total fits is the minimal encoding. */
    for (size_t n = 1; n <= AML_PKGLEN_MAX_BYTES; n++) {
        const size_t limit = n == 1 ? 0x3F : ((size_t)1 << (4 + 8 * (n - 1))) - 1;
        if (body_len <= limit - n) {
            size_t got = aml_pkglength_encode((uint32_t)(body_len + n), out);
            return got == n ? n : 0;
        }
    }
    return 0;
}

/* Appends op bytes, PkgLength, head, body: the common shape of every
 * length-prefixed AML object. head/body may be NULL. */
static void aml_wrap(struct aml_buf *out, const uint8_t *op, size_t oplen,
                     const uint8_t *head, size_t head_len, const struct aml_buf *body)
{
    if (body && body->error)
        out->error = true;
    if (out->error)
        return;
    size_t body_len = body ? body->len : 0;
    if (head_len > SIZE_MAX - body_len) {
        out->error = true;
        return;
    }
    uint8_t pkg[AML_PKGLEN_MAX_BYTES];
    size_t pkg_n = aml_pkglength_for_body(head_len + body_len, pkg);
    if (pkg_n == 0) {
        out->error = true;
        return;
    }
    aml_append_bytes(out, op, oplen);
    aml_append_bytes(out, pkg, pkg_n);
    aml_append_bytes(out, head, head_len);
    if (body)
        aml_append_bytes(out, body->data, body->len);
}

/* ---- Names ---- */

static bool nameseg_char_ok(char c, bool lead)
{
    if ((c >= 'A' && c <= 'Z') || c == '_')
        return true;
    return !lead && c >= '0' && c <= '9';
}

/* Parses one segment of up to 4 chars from *p into seg (padded with '_'),
 * advancing *p past it. */
static bool parse_nameseg(const char **p, uint8_t seg[NAMESEG_LEN])
{
    size_t n = 0;
    const char *s = *p;
    while (s[n] && s[n] != '.') {
        if (n == NAMESEG_LEN || !nameseg_char_ok(s[n], n == 0))
            return false;
        seg[n] = (uint8_t)s[n];
        n++;
    }
    if (n == 0)
        return false;
    for (size_t i = n; i < NAMESEG_LEN; i++)
        seg[i] = '_';
    *p = s + n;
    return true;
}

/* Encodes path into out; returns the length, 0 if the path is invalid. */
static size_t encode_namestring(const char *path, uint8_t out[NAMESTRING_MAX])
{
    uint8_t segs[NAMESTRING_MAX_SEGS][NAMESEG_LEN];
    size_t nsegs = 0, len = 0;
    const char *p = path;

    if (!p)
        return 0;
    if (*p == '\\') {
        out[len++] = AML_ROOT_CHAR;
        p++;
    }
    while (*p) {
        if (nsegs == NAMESTRING_MAX_SEGS || !parse_nameseg(&p, segs[nsegs]))
            return 0;
        nsegs++;
        if (*p == '.' && *++p == '\0')
            return 0; /* trailing dot */
    }
    if (nsegs == 0) {
        if (len == 0)
            return 0; /* "" is not a name; "\" is the root */
        out[len++] = AML_NULL_NAME;
        return len;
    }
    if (nsegs == 2) {
        out[len++] = AML_DUAL_NAME_PREFIX;
    } else if (nsegs > 2) {
        out[len++] = AML_MULTI_NAME_PREFIX;
        out[len++] = (uint8_t)nsegs;
    }
    for (size_t i = 0; i < nsegs; i++) {
        memcpy(out + len, segs[i], NAMESEG_LEN);
        len += NAMESEG_LEN;
    }
    return len;
}

void aml_namestring(struct aml_buf *b, const char *path)
{
    uint8_t ns[NAMESTRING_MAX];
    size_t n = encode_namestring(path, ns);
    if (n == 0) {
        b->error = true;
        return;
    }
    aml_append_bytes(b, ns, n);
}

void aml_name(struct aml_buf *b, const char *path)
{
    aml_append_u8(b, AML_NAME_OP);
    aml_namestring(b, path);
}

/* ---- Data objects ---- */

void aml_integer(struct aml_buf *b, uint64_t v)
{
    if (v == 0) {
        aml_append_u8(b, AML_ZERO_OP);
    } else if (v == 1) {
        aml_append_u8(b, AML_ONE_OP);
    } else if (v <= UINT8_MAX) {
        aml_append_u8(b, AML_BYTE_PREFIX);
        aml_append_le(b, v, 1);
    } else if (v <= UINT16_MAX) {
        aml_append_u8(b, AML_WORD_PREFIX);
        aml_append_le(b, v, 2);
    } else if (v <= UINT32_MAX) {
        aml_append_u8(b, AML_DWORD_PREFIX);
        aml_append_le(b, v, 4);
    } else {
        aml_append_u8(b, AML_QWORD_PREFIX);
        aml_append_le(b, v, 8);
    }
}

void aml_string(struct aml_buf *b, const char *s)
{
    if (!s) {
        b->error = true;
        return;
    }
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] > 0x7F) {
            b->error = true;
            return;
        }
    }
    aml_append_u8(b, AML_STRING_PREFIX);
    aml_append_bytes(b, s, n + 1); /* with the NUL terminator */
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void aml_eisaid(struct aml_buf *b, const char *id)
{
    if (!id || strlen(id) != 7) {
        b->error = true;
        return;
    }
    uint32_t v = 0;
    for (int i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z') {
            b->error = true;
            return;
        }
        v = (v << 5) | (uint32_t)(id[i] - 0x40);
    }
    for (int i = 3; i < 7; i++) {
        int h = hex_value(id[i]);
        if (h < 0) {
            b->error = true;
            return;
        }
        v = (v << 4) | (uint32_t)h;
    }
    /* The compressed ID is defined big endian: "PNP" lands in the first two
     * bytes in memory, hence the byte-wise store. */
    const uint8_t bytes[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
                               (uint8_t)(v >> 8), (uint8_t)v };
    aml_append_u8(b, AML_DWORD_PREFIX);
    aml_append_bytes(b, bytes, sizeof(bytes));
}

/* ---- Nested objects ---- */

static void aml_named_block(struct aml_buf *out, const uint8_t *op, size_t oplen,
                            const char *path, const struct aml_buf *body)
{
    uint8_t ns[NAMESTRING_MAX];
    size_t n = encode_namestring(path, ns);
    if (n == 0) {
        out->error = true;
        return;
    }
    aml_wrap(out, op, oplen, ns, n, body);
}

void aml_scope(struct aml_buf *out, const char *path, const struct aml_buf *body)
{
    static const uint8_t op[] = { AML_SCOPE_OP };
    aml_named_block(out, op, sizeof(op), path, body);
}

void aml_device(struct aml_buf *out, const char *path, const struct aml_buf *body)
{
    static const uint8_t op[] = { AML_EXT_OP_PREFIX, AML_DEVICE_OP };
    aml_named_block(out, op, sizeof(op), path, body);
}

void aml_package(struct aml_buf *out, uint8_t n, const struct aml_buf *elems)
{
    static const uint8_t op[] = { AML_PACKAGE_OP };
    aml_wrap(out, op, sizeof(op), &n, 1, elems);
}

void aml_buffer(struct aml_buf *out, const void *bytes, size_t n)
{
    static const uint8_t op[] = { AML_BUFFER_OP };
    struct aml_buf body;

    aml_buf_init(&body);
    aml_integer(&body, n); /* BufferSize */
    aml_append_bytes(&body, bytes, n);
    aml_wrap(out, op, sizeof(op), NULL, 0, &body);
    aml_buf_free(&body);
}

/* ---- Resource descriptors ---- */

/* Large items: tag byte, then a 16-bit length of the data that follows. */
static void res_large_header(struct aml_buf *d, uint8_t tag, uint16_t data_len)
{
    aml_append_u8(d, tag);
    aml_append_u16(d, data_len);
}

void aml_res_memory32_fixed(struct aml_buf *d, uint32_t base, uint32_t size, enum aml_rw rw)
{
    if ((uint64_t)base + size > 0x100000000ULL) {
        d->error = true;
        return;
    }
    res_large_header(d, RES_MEM32_FIXED_TAG, 9);
    aml_append_u8(d, rw == AML_READ_WRITE ? 1 : 0);
    aml_append_u32(d, base);
    aml_append_u32(d, size);
}

void aml_res_qword_memory(struct aml_buf *d, uint64_t base, uint64_t size, enum aml_rw rw)
{
    if (size == 0 || base + (size - 1) < base) {
        d->error = true;
        return;
    }
    /* General flags: bit 0 consumer, bit 2 MinFixed, bit 3 MaxFixed
     * (PosDecode = bit 1 clear). With both fixed and a non-zero length the
     * spec requires max = min + len - 1, i.e. an exact fixed window. */
    const uint8_t general = 0x01 | 0x04 | 0x08;
    /* Type-specific: bit 0 read-write, bits 1-2 NonCacheable (0),
     * bits 3-4 AddressRangeMemory (0). MMIO registers must not be cached. */
    const uint8_t specific = rw == AML_READ_WRITE ? 1 : 0;

    res_large_header(d, RES_QWORD_ADDR_TAG, 43);
    aml_append_u8(d, 0); /* resource type: memory range */
    aml_append_u8(d, general);
    aml_append_u8(d, specific);
    aml_append_u64(d, 0);               /* granularity */
    aml_append_u64(d, base);            /* range minimum */
    aml_append_u64(d, base + size - 1); /* range maximum */
    aml_append_u64(d, 0);               /* translation offset */
    aml_append_u64(d, size);            /* length */
}

void aml_res_ext_irq(struct aml_buf *d, enum aml_usage usage, enum aml_trigger trigger,
                     enum aml_polarity polarity, enum aml_sharing sharing,
                     const uint32_t *irqs, size_t n)
{
    if (!irqs || n == 0 || n > UINT8_MAX) {
        d->error = true;
        return;
    }
    /* Bit 0 consumer, bit 1 edge, bit 2 active-low, bit 3 shared. */
    const uint8_t flags = (uint8_t)((usage == AML_CONSUMER ? 0x01 : 0) |
                                    (trigger == AML_EDGE ? 0x02 : 0) |
                                    (polarity == AML_ACTIVE_LOW ? 0x04 : 0) |
                                    (sharing == AML_SHARED ? 0x08 : 0));

    res_large_header(d, RES_EXT_IRQ_TAG, (uint16_t)(2 + 4 * n));
    aml_append_u8(d, flags);
    aml_append_u8(d, (uint8_t)n);
    for (size_t i = 0; i < n; i++)
        aml_append_u32(d, irqs[i]);
}

void aml_res_io(struct aml_buf *d, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
    if (max < min) {
        d->error = true;
        return;
    }
    aml_append_u8(d, RES_IO_TAG);
    aml_append_u8(d, 1); /* Decode16: the device decodes all 16 address bits */
    aml_append_u16(d, min);
    aml_append_u16(d, max);
    aml_append_u8(d, align);
    aml_append_u8(d, len);
}

void aml_resource_template(struct aml_buf *out, const struct aml_buf *descs)
{
    struct aml_buf body;

    if (descs->error) {
        out->error = true;
        return;
    }
    aml_buf_init(&body);
    aml_append_buf(&body, descs);
    aml_append_u8(&body, RES_END_TAG);
    aml_append_u8(&body, 0); /* checksum 0: "treat as valid" */
    if (body.error)
        out->error = true;
    else
        aml_buffer(out, body.data, body.len);
    aml_buf_free(&body);
}
