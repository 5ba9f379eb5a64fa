#include "vmm/size_parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static int unit_shift(char c)
{
    switch (toupper((unsigned char)c)) {
    case 'K': return 10;
    case 'M': return 20;
    case 'G': return 30;
    case 'T': return 40;
    case 'P': return 50;
    default: return -1;
    }
}

int size_parse(const char *text, uint64_t *bytes, const char **why)
{
    const char *p = text;
    uint64_t value = 0;

    if (!text || !*text) {
        *why = "empty size";
        return -EINVAL;
    }
    if (!isdigit((unsigned char)*p)) {
        *why = "a size must start with a digit (e.g. 512M, 2G)";
        return -EINVAL;
    }
    /* Digits by hand: strtoull accepts signs, spaces and hex prefixes, and
     * silently wraps "-1" to a huge value. */
    for (; isdigit((unsigned char)*p); p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (value > (UINT64_MAX - digit) / 10) {
            *why = "size too large";
            return -EINVAL;
        }
        value = value * 10 + digit;
    }
    int shift = 0;
    if (*p) {
        shift = unit_shift(*p);
        if (shift < 0) {
            *why = "unknown size suffix (use K, M, G or T)";
            return -EINVAL;
        }
        p++;
        if (*p == 'i' && p[1] == 'B')
            p += 2;
        else if (*p == 'B' || *p == 'b')
            p++;
        if (*p) {
            *why = "trailing characters after the size suffix";
            return -EINVAL;
        }
    }
    if (shift && value > (UINT64_MAX >> shift)) {
        *why = "size too large";
        return -EINVAL;
    }
    *bytes = value << shift;
    return 0;
}

char *size_format(uint64_t bytes, char *buf, unsigned buf_len)
{
    static const char units[] = "KMGTP";
    int unit = -1;
    uint64_t v = bytes;
    while (v && (v & 1023) == 0 && unit < 4) {
        v >>= 10;
        unit++;
    }
    if (unit < 0)
        snprintf(buf, buf_len, "%llu", (unsigned long long)bytes);
    else
        snprintf(buf, buf_len, "%llu%c", (unsigned long long)v, units[unit]);
    return buf;
}
