/* test_util.c — duration and size parsing: the values users type in flags. */
#include <stdint.h>

#include "../../src/common/util.h"
#include "tap.h"

int main(void)
{
	uint64_t v = 0;

	ok(parse_duration_ms("30s", &v) == 0 && v == 30000, "30s is 30000 ms");
	ok(parse_duration_ms("500ms", &v) == 0 && v == 500, "500ms");
	ok(parse_duration_ms("2m", &v) == 0 && v == 120000, "2m");
	ok(parse_duration_ms("1h", &v) == 0 && v == 3600000, "1h");
	ok(parse_duration_ms("7", &v) == 0 && v == 7000, "bare number is seconds");
	ok(parse_duration_ms("", &v) < 0, "empty duration refused");
	ok(parse_duration_ms("-1s", &v) < 0, "negative duration refused");
	ok(parse_duration_ms("10x", &v) < 0, "unknown unit refused");
	ok(parse_duration_ms("s", &v) < 0, "unit without number refused");
	ok(parse_duration_ms("99999999999999999999s", &v) < 0, "overflow refused");
	ok(parse_duration_ms("18446744073709552s", &v) < 0, "overflow after scaling refused");
	ok(parse_size("512m", &v) == 0 && v == 512ULL << 20, "512m");
	ok(parse_size("1g", &v) == 0 && v == 1ULL << 30, "1g");
	ok(parse_size("1G", &v) == 0 && v == 1ULL << 30, "1G");
	ok(parse_size("64k", &v) == 0 && v == 64ULL << 10, "64k");
	ok(parse_size("100", &v) == 0 && v == 100, "bare number is bytes");
	ok(parse_size("1.5g", &v) < 0, "fractions refused");
	ok(parse_size(" 1g", &v) < 0, "leading space refused");
	ok(parse_size("1 g", &v) < 0, "inner space refused");
	ok(parse_size("+1g", &v) < 0, "sign refused");
	ok(parse_u64("42", &v) == 0 && v == 42, "plain integer");
	ok(parse_u64("42k", &v) < 0, "integer with unit refused");
	return tap_done();
}
