#include <errno.h>

#include "unit.h"
#include "vmm/size_parse.h"

static uint64_t parse_ok(const char *text)
{
    uint64_t v = 0;
    const char *why = NULL;
    int rc = size_parse(text, &v, &why);
    CHECK_EQ(rc, 0);
    return v;
}

static void parse_bad(const char *text, const char *reason)
{
    uint64_t v = 12345;
    const char *why = NULL;
    CHECK_EQ(size_parse(text, &v, &why), -EINVAL);
    CHECK_STR_CONTAINS(why, reason);
    CHECK_EQ(v, 12345);
}

TEST(plain_numbers_are_bytes)
{
    CHECK_EQ(parse_ok("0"), 0);
    CHECK_EQ(parse_ok("4096"), 4096);
    CHECK_EQ(parse_ok("18446744073709551615"), UINT64_MAX);
}

TEST(binary_suffixes)
{
    CHECK_EQ(parse_ok("64K"), 64ULL << 10);
    CHECK_EQ(parse_ok("512M"), 512ULL << 20);
    CHECK_EQ(parse_ok("2G"), 2ULL << 30);
    CHECK_EQ(parse_ok("1T"), 1ULL << 40);
    CHECK_EQ(parse_ok("2g"), 2ULL << 30);
    CHECK_EQ(parse_ok("2GiB"), 2ULL << 30);
    CHECK_EQ(parse_ok("2GB"), 2ULL << 30);
    CHECK_EQ(parse_ok("16383P"), 16383ULL << 50);
}

TEST(rejects_junk)
{
    parse_bad("", "empty");
    parse_bad("G", "digit");
    parse_bad("-1G", "digit");
    parse_bad(" 1G", "digit");
    parse_bad("0x10", "suffix");
    parse_bad("1.5G", "suffix");
    parse_bad("1X", "suffix");
    parse_bad("1GG", "trailing");
    parse_bad("1Gi", "trailing");
}

TEST(rejects_overflow)
{
    parse_bad("18446744073709551616", "too large");
    parse_bad("16384P", "too large");
    parse_bad("17179869184G", "too large");
    parse_bad("99999999999999999999999", "too large");
}

TEST(format_round_trips)
{
    char buf[32];
    CHECK(!strcmp(size_format(2ULL << 30, buf, sizeof(buf)), "2G"));
    CHECK(!strcmp(size_format(1536ULL << 20, buf, sizeof(buf)), "1536M"));
    CHECK(!strcmp(size_format(4097, buf, sizeof(buf)), "4097"));
    CHECK(!strcmp(size_format(0, buf, sizeof(buf)), "0"));
}
