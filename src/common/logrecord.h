/* logrecord.h — one record of an instance's log: the on-disk format, which is
 * also what `GET /v1/instances/NAME/logs` streams.
 *
 * A log is JSON lines (docs/api/openapi.json, LogRecord), one record a line:
 *
 *   {"t":1712345678123456789,"s":"stdout","log":"listening on :80\n"}
 *
 *   t        unix time in ns when the record's last byte was read; never
 *            decreases within a log, so --since can stop at the first older one
 *   s        "stdout" or "stderr"
 *   log      the text. A record that ends a line ends with "\n"; one that
 *            does not is continued by the next record of the same stream (a
 *            line is split at LOGRECORD_TEXT_MAX bytes, or when it stays
 *            unfinished for a moment, so a prompt is seen)
 *   raw      only when the bytes are not valid UTF-8: base64 of the exact
 *            bytes; "log" then has U+FFFD for each bad byte
 *   dropped  instead of "log": this many bytes of the stream were lost here
 *            (the disk could not keep up, or was full). Never silent.
 *
 * Concatenating a stream's records (raw where present, else log) gives the
 * stream back byte for byte. */
#ifndef AEGIS_COMMON_LOGRECORD_H
#define AEGIS_COMMON_LOGRECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LOGRECORD_TEXT_MAX 16384	/* bytes of output in one record (Docker's 16 KiB) */
/* The longest formatted record: every byte escaped as \u00XX, plus raw. */
#define LOGRECORD_LINE_MAX (LOGRECORD_TEXT_MAX * 6 + (LOGRECORD_TEXT_MAX + 2) / 3 * 4 + 128)

enum logrecord_stream { LOGRECORD_STDOUT, LOGRECORD_STDERR };

extern const char *const logrecord_stream_names[2];	/* "stdout", "stderr" */

/* Format one record of n ≤ LOGRECORD_TEXT_MAX bytes into out (room for
 * LOGRECORD_LINE_MAX), newline included. Returns its length. */
size_t logrecord_format(char *out, uint64_t t_ns, int stream, const char *text, size_t n);
/* The marker for bytes that were lost (see "dropped" above). */
size_t logrecord_format_dropped(char *out, size_t cap, uint64_t t_ns, int stream, uint64_t bytes);

/* What readers need of a stored line without building a JSON object. */
struct logrecord_meta {
	uint64_t t;
	int stream;
	bool ends_line;		/* the text ends with a newline */
	uint64_t bytes;		/* bytes of output it carries (or lost, for a marker) */
	bool dropped;		/* a marker record */
};
/* 0, or -1 when the line (without its '\n') is not a record: a torn write
 * left by a killed shim, which readers skip. */
int logrecord_meta(const char *line, size_t len, struct logrecord_meta *m);

/* The length of the longest prefix of s[0..n) that does not end inside a
 * UTF-8 sequence still being written: where a split keeps characters whole. */
size_t logrecord_utf8_cut(const char *s, size_t n);

/* Standard base64 with padding. encode: out needs (n + 2) / 3 * 4 bytes.
 * decode: out needs n / 4 * 3 bytes; -1 on anything that is not base64. */
size_t logrecord_b64_encode(const unsigned char *in, size_t n, char *out);
ssize_t logrecord_b64_decode(const char *in, size_t n, unsigned char *out);

/* A point in time for --since: unix seconds with an optional fraction
 * ("1712345678", "1712345678.25") or RFC 3339 ("2024-04-05T12:00:00Z",
 * "2024-04-05T14:00:00.5+02:00"). -1 for anything else or before 1970. */
int logrecord_time_parse(const char *s, uint64_t *unix_ns);
/* RFC 3339 in UTC with nanoseconds: 2024-04-05T12:00:00.000000000Z */
void logrecord_time_format(uint64_t unix_ns, char *out, size_t len);

#endif
