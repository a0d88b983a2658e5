/* fuzz_logrecord.c — libFuzzer target for the instance log's parsers: the
 * ?since= times users send, the record scan aegisd runs over log files (a
 * killed shim can leave anything at the end of one), base64 of raw bytes.
 * Properties beyond "no crash": any bytes formatted as a record scan back
 * to their own length, stream and line end, raw decodes to them exactly,
 * and an accepted time re-parses to itself when printed back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/common/logrecord.h"

static char line[LOGRECORD_LINE_MAX + 1];
static unsigned char back[LOGRECORD_LINE_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct logrecord_meta m;
	char *s = malloc(size + 1), when[64];
	size_t n = size < LOGRECORD_TEXT_MAX ? size : LOGRECORD_TEXT_MAX, len;
	uint64_t t, again;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (logrecord_time_parse(s, &t) == 0) {
		logrecord_time_format(t, when, sizeof when);
		if (logrecord_time_parse(when, &again) != 0 || again != t)
			abort();
	}
	(void)logrecord_meta(s, size, &m);
	(void)logrecord_b64_decode(s, size - size % 4, back);
	if (logrecord_utf8_cut(s, size) > size || logrecord_utf8_cut(s, size) + 3 < size)
		abort();

	len = logrecord_format(line, 7, (int)(size & 1), (const char *)data, n);
	if (len > sizeof line || line[len - 1] != '\n' || memchr(line, '\n', len - 1) ||
	    logrecord_meta(line, len - 1, &m) != 0 || m.bytes != n || m.stream != (int)(size & 1) ||
	    m.ends_line != (n && data[n - 1] == '\n'))
		abort();
	line[len] = '\0';	/* formatted records are counted, not terminated */
	{
		const char *raw = strstr(line, ",\"raw\":\"");
		if (raw) {
			const char *end = strchr(raw + 8, '"');
			ssize_t b = logrecord_b64_decode(raw + 8, (size_t)(end - raw - 8), back);
			if (b != (ssize_t)n || memcmp(back, data, n))
				abort();
		}
	}
	free(s);
	return 0;
}
