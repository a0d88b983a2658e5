/* test_logrecord.c — the instance log's record format: what the shim
 * writes, what aegisd scans for --tail/--since, and --since's times. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/common/logrecord.h"
#include "tap.h"

static char line[LOGRECORD_LINE_MAX];

/* Format, then read back both ways: the scan and a real JSON parser. */
static bool round_trip(const char *text, size_t n, bool want_raw)
{
	size_t len = logrecord_format(line, 1712345678123456789ULL, LOGRECORD_STDERR, text, n);
	struct logrecord_meta m;
	json_t *j = json_loadb(line, len - 1, JSON_ALLOW_NUL, NULL);
	json_t *raw = json_object_get(j, "raw");
	unsigned char back[LOGRECORD_TEXT_MAX];
	ssize_t blen;
	bool good;

	good = line[len - 1] == '\n' && !memchr(line, '\n', len - 1) && j &&
	       logrecord_meta(line, len - 1, &m) == 0 && m.t == 1712345678123456789ULL &&
	       m.stream == LOGRECORD_STDERR && m.bytes == n && m.ends_line == (n && text[n - 1] == '\n') &&
	       !m.dropped && (raw != NULL) == want_raw;
	if (good && raw) {
		blen = logrecord_b64_decode(json_string_value(raw), json_string_length(raw), back);
		good = blen == (ssize_t)n && !memcmp(back, text, n);
	} else if (good) {
		json_t *log = json_object_get(j, "log");
		good = json_string_length(log) == n && !memcmp(json_string_value(log), text, n);
	}
	json_decref(j);
	return good;
}

int main(void)
{
	struct logrecord_meta m;
	char buf[200], big[LOGRECORD_TEXT_MAX];
	unsigned char bytes[256], back[256];
	uint64_t t;
	size_t n;

	ok(round_trip("hello\n", 6, false), "a line");
	ok(round_trip("no newline", 10, false), "part of a line");
	ok(round_trip("", 0, false), "empty");
	ok(round_trip("q\"b\\s/\t\r\x01\x1f\x7f\n", 12, false), "escapes and control characters");
	ok(round_trip("nul\0inside\n", 11, false), "NUL is text, kept exactly");
	ok(round_trip("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n", 15, false), "UTF-8 kept as it is");
	ok(round_trip("\xff\xfe\n", 3, true), "bad bytes: raw has them");
	ok(round_trip("\xc0\xaf", 2, true), "overlong form is not UTF-8");
	ok(round_trip("\xed\xa0\x80", 3, true), "surrogate is not UTF-8");
	ok(round_trip("\xf4\x90\x80\x80", 4, true), "past U+10FFFF is not UTF-8");
	ok(round_trip("\xe2\x82", 2, true), "a cut sequence is not UTF-8");
	memset(big, '\x01', sizeof big);
	ok(round_trip(big, sizeof big, false), "the largest record, all escaped, fits");
	memset(big, '\xff', sizeof big);
	ok(round_trip(big, sizeof big, true), "the largest record, all bad bytes, fits");

	n = logrecord_format_dropped(buf, sizeof buf, 5, LOGRECORD_STDOUT, 1234);
	ok(n && logrecord_meta(buf, n - 1, &m) == 0 && m.dropped && m.bytes == 1234 && m.t == 5 &&
	   m.stream == LOGRECORD_STDOUT, "a dropped marker");
	ok(logrecord_meta("{\"t\":1,\"s\":\"stdout\",\"log\":\"ab", 30, &m) < 0, "a torn record is not one");
	ok(logrecord_meta("{\"t\":1,\"s\":\"other\",\"log\":\"\"}", 29, &m) < 0, "unknown stream");
	ok(logrecord_meta("garbage", 7, &m) < 0, "garbage");
	ok(logrecord_meta("{\"t\":99999999999999999999,\"s\":\"stdout\",\"log\":\"\"}", 50, &m) < 0,
	   "time overflow");
	ok(logrecord_meta("{\"t\":1,\"s\":\"stdout\",\"log\":\"a\\\\n\"}", 33, &m) == 0 && !m.ends_line &&
	   m.bytes == 3, "an escaped backslash then n is not a newline");

	ok(logrecord_utf8_cut("ab\xe2\x82", 4) == 2, "cut before an unfinished character");
	ok(logrecord_utf8_cut("ab\xe2\x82\xac", 5) == 5, "a finished character stays");
	ok(logrecord_utf8_cut("ab\xf0\x9f\x98", 5) == 2, "four-byte character unfinished");
	ok(logrecord_utf8_cut("abc", 3) == 3, "ASCII");

	for (int i = 0; i < 256; i++)
		bytes[i] = (unsigned char)i;
	for (size_t len = 0; len <= 5; len++) {
		n = logrecord_b64_encode(bytes + 250, len, buf);
		ok(logrecord_b64_decode(buf, n, back) == (ssize_t)len && !memcmp(back, bytes + 250, len),
		   "base64 round trip, %zu bytes", len);
	}
	ok(logrecord_b64_decode("abc", 3, back) < 0, "base64: length not a multiple of 4");
	ok(logrecord_b64_decode("a=bc", 4, back) < 0, "base64: padding inside");
	ok(logrecord_b64_decode("ab=c", 4, back) < 0, "base64: padding then data");
	ok(logrecord_b64_decode("ab==abcd", 8, back) < 0, "base64: padding before the end");
	ok(logrecord_b64_decode("ab!d", 4, back) < 0, "base64: bad character");

	ok(logrecord_time_parse("1712345678", &t) == 0 && t == 1712345678000000000ULL, "unix seconds");
	ok(logrecord_time_parse("1712345678.25", &t) == 0 && t == 1712345678250000000ULL, "with a fraction");
	ok(logrecord_time_parse("0.000000001999", &t) == 0 && t == 1, "digits past ns are ignored");
	ok(logrecord_time_parse("2024-04-05T12:00:00Z", &t) == 0 && t == 1712318400000000000ULL, "RFC 3339");
	ok(logrecord_time_parse("2024-04-05t12:00:00.5z", &t) == 0 && t == 1712318400500000000ULL,
	   "RFC 3339, lower case, fraction");
	ok(logrecord_time_parse("2024-04-05T14:00:00+02:00", &t) == 0 && t == 1712318400000000000ULL,
	   "RFC 3339 with an offset");
	ok(logrecord_time_parse("2024-04-05 09:30:00-02:30", &t) == 0 && t == 1712318400000000000ULL,
	   "space for T, negative offset");
	ok(logrecord_time_parse("2024-02-29T00:00:00Z", &t) == 0, "a leap day");
	ok(logrecord_time_parse("2023-02-29T00:00:00Z", &t) < 0, "not a leap year");
	ok(logrecord_time_parse("2024-04-05T12:00:00", &t) < 0, "no zone");
	ok(logrecord_time_parse("2024-04-05T24:00:00Z", &t) < 0, "hour 24");
	ok(logrecord_time_parse("1969-12-31T23:59:59Z", &t) < 0, "before 1970");
	ok(logrecord_time_parse("1970-01-01T01:00:00+02:00", &t) < 0, "before 1970 by its offset");
	ok(logrecord_time_parse("-5", &t) < 0 && logrecord_time_parse("", &t) < 0 &&
	   logrecord_time_parse("5.", &t) < 0 && logrecord_time_parse(".5", &t) < 0 &&
	   logrecord_time_parse("5s", &t) < 0 && logrecord_time_parse("1e9", &t) < 0, "not times");
	ok(logrecord_time_parse("99999999999", &t) < 0, "past what a JSON integer holds in ns");

	logrecord_time_format(1712318400000000001ULL, buf, sizeof buf);
	ok(!strcmp(buf, "2024-04-05T12:00:00.000000001Z"), "formatted: %s", buf);
	ok(logrecord_time_parse(buf, &t) == 0 && t == 1712318400000000001ULL, "and parsed back");
	return tap_done();
}
