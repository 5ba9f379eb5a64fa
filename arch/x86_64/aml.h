/* Minimal AML (ACPI Machine Language) bytecode builder: just enough to emit a
 * DSDT describing fixed platform devices. Output follows the ACPI 6.x
 * specification, chapter 20 (AML encoding) and 6.4 (resource descriptors).
 *
 * Everything appends to a growable struct aml_buf. Errors (allocation failure,
 * invalid name, oversized package) never abort: they set the buffer's sticky
 * `error` flag, later appends become no-ops, and the caller checks the flag
 * once at the end. Nested objects (Scope, Device, Package, Buffer) are built
 * bottom-up: the caller fills a body buffer first, then the wrapper prefixes
 * the opcode and the PkgLength, whose size depends on the body length. */
#ifndef MINIVMM_ARCH_X86_64_AML_H
#define MINIVMM_ARCH_X86_64_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool error; /* sticky; set on allocation failure or invalid input */
};

/* A zero-initialised struct aml_buf is a valid empty buffer too. */
void aml_buf_init(struct aml_buf *b);
void aml_buf_free(struct aml_buf *b);
static inline bool aml_buf_ok(const struct aml_buf *b) { return !b->error; }

/* Raw appends (little endian for the multi-byte forms). Used by the AML
 * helpers below and by the ACPI table builder for fixed-layout tables. */
void aml_append_bytes(struct aml_buf *b, const void *p, size_t n);
void aml_append_zeros(struct aml_buf *b, size_t n);
void aml_append_u8(struct aml_buf *b, uint8_t v);
void aml_append_u16(struct aml_buf *b, uint16_t v);
void aml_append_u32(struct aml_buf *b, uint32_t v);
void aml_append_u64(struct aml_buf *b, uint64_t v);
/* Appends src's bytes; an errored src poisons dst. */
void aml_append_buf(struct aml_buf *dst, const struct aml_buf *src);

/* ---- PkgLength (ACPI 6.5 section 20.2.4) ---- */
#define AML_PKGLEN_MAX_BYTES 4
#define AML_PKGLEN_MAX_VALUE 0x0FFFFFFFu

/* Encodes the PkgLength value `pkglen` (which by definition already counts
 * the PkgLength bytes themselves) with the fewest bytes. Returns the number
 * of bytes written to out (1-4), or 0 if pkglen exceeds 28 bits. */
size_t aml_pkglength_encode(uint32_t pkglen, uint8_t out[AML_PKGLEN_MAX_BYTES]);
/* Encodes the PkgLength for a package whose contents after the PkgLength are
 * body_len bytes. Returns the number of bytes written, 0 if too large. */
size_t aml_pkglength_for_body(size_t body_len, uint8_t out[AML_PKGLEN_MAX_BYTES]);

/* ---- Names ----
 * A path is optional "\" (root), then '.'-separated NameSegs of 1-4
 * characters [A-Z_][A-Z0-9_]*, padded with '_' to 4 ("_SB" == "_SB_").
 * The empty path "\" alone denotes the root. */
void aml_namestring(struct aml_buf *b, const char *path);
/* Name(path, <data object>): emits NameOp + NameString; the caller appends
 * exactly one data object next (integer, string, package, buffer...). */
void aml_name(struct aml_buf *b, const char *path);

/* ---- Data objects ---- */
/* Smallest encoding: ZeroOp, OneOp, BytePrefix, WordPrefix, DWordPrefix,
 * QWordPrefix (the latter needs a DSDT revision >= 2). */
void aml_integer(struct aml_buf *b, uint64_t v);
/* String: printable ASCII only (0x01-0x7F per spec, NUL terminated). */
void aml_string(struct aml_buf *b, const char *s);
/* EISAID("PNP0501"): 3 upper-case letters + 4 hex digits packed into a
 * DWord, always DWordPrefix-encoded as iasl does. */
void aml_eisaid(struct aml_buf *b, const char *id);

/* ---- Named/nested objects; body may be empty, never NULL ---- */
void aml_scope(struct aml_buf *out, const char *path, const struct aml_buf *body);
void aml_device(struct aml_buf *out, const char *path, const struct aml_buf *body);
/* Package(n){elems}: elems holds exactly n encoded data objects, n <= 255. */
void aml_package(struct aml_buf *out, uint8_t n, const struct aml_buf *elems);
/* Buffer(){bytes}. */
void aml_buffer(struct aml_buf *out, const void *bytes, size_t n);

/* ---- Resource descriptors (append to a "descs" buffer, then wrap it with
 * aml_resource_template) ---- */
enum aml_rw { AML_READ_ONLY = 0, AML_READ_WRITE = 1 };
enum aml_usage { AML_PRODUCER = 0, AML_CONSUMER = 1 };
enum aml_trigger { AML_LEVEL = 0, AML_EDGE = 1 };
enum aml_polarity { AML_ACTIVE_HIGH = 0, AML_ACTIVE_LOW = 1 };
enum aml_sharing { AML_EXCLUSIVE = 0, AML_SHARED = 1 };

/* Memory32Fixed(rw, base, size): base + size must not exceed 4 GiB. */
void aml_res_memory32_fixed(struct aml_buf *d, uint32_t base, uint32_t size, enum aml_rw rw);
/* QWordMemory(ResourceConsumer, PosDecode, MinFixed, MaxFixed, NonCacheable,
 * rw, 0, base, base + size - 1, 0, size): a fixed window anywhere in the
 * 64-bit space. size must be non-zero and base + size must not overflow. */
void aml_res_qword_memory(struct aml_buf *d, uint64_t base, uint64_t size, enum aml_rw rw);
/* Interrupt(usage, trigger, polarity, sharing) { irqs[0..n-1] }, 1 <= n <= 255. */
void aml_res_ext_irq(struct aml_buf *d, enum aml_usage usage, enum aml_trigger trigger,
                     enum aml_polarity polarity, enum aml_sharing sharing,
                     const uint32_t *irqs, size_t n);
/* IO(Decode16, min, max, align, len). */
void aml_res_io(struct aml_buf *d, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
/* ResourceTemplate(){descs}: a Buffer holding descs + EndTag. The EndTag
 * checksum byte is 0, which the spec defines as "treat as valid" and which
 * is what iasl itself emits. */
void aml_resource_template(struct aml_buf *out, const struct aml_buf *descs);

#endif
