/* logrecord.c — the log record format (logrecord.h): written by the shim,
 * scanned by aegisd for --tail and --since, decoded by `aegis logs`.
 *
 * Records are formatted and scanned by hand rather than through jansson:
 * the shim's log threads must not allocate (see logwriter.c), and aegisd
 * scans many records to answer --tail, needing only three facts of each. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "logrecord.h"

#define NS_PER_S 1000000000ULL
/* The largest time a JSON integer (int64) holds in ns: year 2262. */
#define SECONDS_MAX 9223372035ULL

const char *const logrecord_stream_names[2] = { "stdout", "stderr" };

/* The length of the valid UTF-8 sequence at s (lead byte ≥ 0x80), or 0:
 * no overlong forms, no surrogates, nothing past U+10FFFF (Unicode 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		lo = c == 0xe0 ? 0xa0 : lo;
		hi = c == 0xed ? 0x9f : hi;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		lo = c == 0xf0 ? 0x90 : lo;
		hi = c == 0xf4 ? 0x8f : hi;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

size_t logrecord_utf8_cut(const char *s, size_t n)
{
	for (size_t back = 1; back <= 3 && back <= n; back++) {
		unsigned char c = (unsigned char)s[n - back];
		size_t need;
		if ((c & 0xc0) == 0x80)
			continue;	/* a continuation byte: its lead is further back */
		need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		return need > back ? n - back : n;
	}
	return n;
}

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t logrecord_b64_encode(const unsigned char *in, size_t n, char *out)
{
	char *p = out;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
			     (i + 2 < n ? in[i + 2] : 0);
		*p++ = b64_alphabet[v >> 18 & 63];
		*p++ = b64_alphabet[v >> 12 & 63];
		*p++ = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
		*p++ = i + 2 < n ? b64_alphabet[v & 63] : '=';
	}
	return (size_t)(p - out);
}

static int b64_value(char c)
{
	const char *at = c ? strchr(b64_alphabet, c) : NULL;

	return at ? (int)(at - b64_alphabet) : -1;
}

ssize_t logrecord_b64_decode(const char *in, size_t n, unsigned char *out)
{
	size_t len = 0;

	if (n % 4)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		bool last = i + 4 == n;
		for (int k = 0; k < 4; k++) {
			v[k] = b64_value(in[i + k]);
			/* padding only at the very end: "xx==" or "xxx=" */
			if (v[k] < 0 && !(last && in[i + k] == '=' && k >= 2 && (k == 3 || in[i + 3] == '=')))
				return -1;
		}
		out[len++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (v[2] >= 0)
			out[len++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (v[2] >= 0 && v[3] >= 0)
			out[len++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
		else if (v[3] >= 0)
			return -1;	/* "xx=x" */
	}
	return (ssize_t)len;
}

size_t logrecord_format(char *out, uint64_t t_ns, int stream, const char *text, size_t n)
{
	const unsigned char *s = (const unsigned char *)text;
	bool exact = true;
	char *p = out;

	p += sprintf(p, "{\"t\":%" PRIu64 ",\"s\":\"%s\",\"log\":\"", t_ns, logrecord_stream_names[stream]);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t len;
		if (c == '"' || c == '\\') {
			*p++ = '\\';
			*p++ = (char)c;
		} else if (c == '\n' || c == '\t' || c == '\r') {
			*p++ = '\\';
			*p++ = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
		} else if (c < 0x20) {
			p += sprintf(p, "\\u%04x", c);
		} else if (c < 0x80) {
			*p++ = (char)c;
		} else if ((len = utf8_seq(s + i, n - i))) {
			memcpy(p, s + i, len);
			p += len;
			i += len;
			continue;
		} else {
			memcpy(p, "\xef\xbf\xbd", 3);	/* U+FFFD; raw keeps the byte */
			p += 3;
			exact = false;
		}
		i++;
	}
	*p++ = '"';
	if (!exact) {
		p += sprintf(p, ",\"raw\":\"");
		p += logrecord_b64_encode(s, n, p);
		*p++ = '"';
	}
	*p++ = '}';
	*p++ = '\n';
	return (size_t)(p - out);
}

size_t logrecord_format_dropped(char *out, size_t cap, uint64_t t_ns, int stream, uint64_t bytes)
{
	int n = snprintf(out, cap, "{\"t\":%" PRIu64 ",\"s\":\"%s\",\"dropped\":%" PRIu64 "}\n", t_ns,
			 logrecord_stream_names[stream], bytes);

	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static bool skip(const char **p, const char *end, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(end - *p) < n || memcmp(*p, lit, n))
		return false;
	*p += n;
	return true;
}

static bool number(const char **p, const char *end, uint64_t *v)
{
	const char *start = *p;

	for (*v = 0; *p < end && **p >= '0' && **p <= '9'; (*p)++) {
		if (*v > (UINT64_MAX - 9) / 10)
			return false;
		*v = *v * 10 + (uint64_t)(**p - '0');
	}
	return *p > start;
}

static int hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v << 4 | d;
	}
	return v;
}

/* The exact shape logrecord_format writes; anything else is not a record. */
int logrecord_meta(const char *line, size_t len, struct logrecord_meta *m)
{
	const char *p = line, *end = line + len;

	memset(m, 0, sizeof *m);
	if (!skip(&p, end, "{\"t\":") || !number(&p, end, &m->t) || !skip(&p, end, ",\"s\":\""))
		return -1;
	if (skip(&p, end, "stdout\""))
		m->stream = LOGRECORD_STDOUT;
	else if (skip(&p, end, "stderr\""))
		m->stream = LOGRECORD_STDERR;
	else
		return -1;
	if (skip(&p, end, ",\"dropped\":")) {
		m->dropped = true;
		return number(&p, end, &m->bytes) && end - p == 1 && *p == '}' ? 0 : -1;
	}
	if (!skip(&p, end, ",\"log\":\""))
		return -1;
	while (p < end && *p != '"') {
		if (*p != '\\') {
			/* a UTF-8 byte of the text as it is */
			m->ends_line = false;
			m->bytes++;
			p++;
		} else if (end - p >= 6 && p[1] == 'u') {
			int cp = hex4(p + 2);
			if (cp < 0)
				return -1;
			m->bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
			m->ends_line = cp == '\n';
			p += 6;
		} else if (end - p >= 2 && strchr("\"\\/bfnrt", p[1])) {
			m->ends_line = p[1] == 'n';
			m->bytes++;
			p += 2;
		} else {
			return -1;
		}
	}
	if (!skip(&p, end, "\""))
		return -1;
	if (skip(&p, end, ",\"raw\":\"")) {
		const char *start = p;
		size_t n;
		while (p < end && *p != '"')
			p++;
		n = (size_t)(p - start);
		if (!skip(&p, end, "\"") || n % 4)
			return -1;
		/* raw is authoritative: the text's length, padding excluded */
		m->bytes = n / 4 * 3 - (n && start[n - 1] == '=') - (n > 1 && start[n - 2] == '=');
	}
	return end - p == 1 && *p == '}' ? 0 : -1;
}

static bool digits(const char **p, int n, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return false;
		*v = *v * 10 + (unsigned)(**p - '0');
	}
	return true;
}

/* ".123456789..." → ns (digits past the ninth are read and ignored). */
static bool fraction(const char **p, uint64_t *ns)
{
	uint64_t scale = NS_PER_S / 10;
	const char *start;

	*ns = 0;
	if (**p != '.')
		return true;
	start = ++*p;
	for (; **p >= '0' && **p <= '9'; (*p)++, scale /= 10)
		*ns += (uint64_t)(**p - '0') * scale;
	return *p > start;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static unsigned month_days(unsigned y, unsigned m)
{
	static const unsigned days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

static int rfc3339(const char *p, uint64_t *out)
{
	unsigned y, mo, d, h, mi, s, oh = 0, om = 0;
	int64_t secs, sign = 0;
	uint64_t ns;

	if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' || !digits(&p, 2, &d))
		return -1;
	if (*p != 'T' && *p != 't' && *p != ' ')	/* RFC 3339 lets a space stand for T */
		return -1;
	p++;
	if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' || !digits(&p, 2, &s) ||
	    !fraction(&p, &ns))
		return -1;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
			return -1;
	} else {
		return -1;
	}
	/* second 60: a leap second, which RFC 3339 allows */
	if (*p || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || s > 60)
		return -1;
	secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - sign * (oh * 3600 + om * 60);
	if (secs < 0 || (uint64_t)secs > SECONDS_MAX)
		return -1;
	*out = (uint64_t)secs * NS_PER_S + ns;
	return 0;
}

int logrecord_time_parse(const char *s, uint64_t *unix_ns)
{
	const char *p = s;
	uint64_t secs, ns;

	if (!s || !*s)
		return -1;
	/* unix seconds: digits, then at most a fraction */
	if (number(&p, p + strlen(p), &secs) && (*p == '.' || !*p)) {
		if (!fraction(&p, &ns) || *p || secs > SECONDS_MAX)
			return -1;
		*unix_ns = secs * NS_PER_S + ns;
		return 0;
	}
	return rfc3339(s, unix_ns);
}

void logrecord_time_format(uint64_t unix_ns, char *out, size_t len)
{
	time_t secs = (time_t)(unix_ns / NS_PER_S);
	struct tm tm;
	size_t n;

	gmtime_r(&secs, &tm);
	n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, len - n, ".%09uZ", (unsigned)(unix_ns % NS_PER_S));
}
