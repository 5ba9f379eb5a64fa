#ifndef MINIVMM_SIZE_PARSE_H
#define MINIVMM_SIZE_PARSE_H

#include <stdint.h>

/* Parses "512", "64K", "2M", "1G", "1T" (binary multiples; a lone "B" or "iB"
 * after the suffix is accepted) into bytes. Returns 0, or -EINVAL with a reason
 * in *why (static string) for empty input, junk, a negative number, or overflow. */
int size_parse(const char *text, uint64_t *bytes, const char **why);

/* Formats bytes as the largest exact binary unit ("2G", "1536M", "4097").
 * Returns buf. */
char *size_format(uint64_t bytes, char *buf, unsigned buf_len);

#endif
