/* audit.c — the tamper-evident audit log (DESIGN.md §7): appending events
 * to a hash-chained JSON Lines file, verifying the chain, and printing it.
 *
 * Each line carries "prev", the sha256 of the previous line's bytes, and a
 * "seq" that grows by one. Editing, removing or reordering lines therefore
 * breaks either the chain or the sequence at a precise line, which is what
 * `aegis audit verify` reports.
 *
 * What a pure hash chain cannot see, and so verify cannot either:
 *  - an edit confined to the final line (no later line hashes it);
 *  - lines cut off at a line boundary at the very end (a shorter chain is
 *    still a valid chain), or the whole file emptied;
 *  - lines removed at the start when the first remaining line's seq is not 0
 *    (taken as the continuation of a rotated log, whose "prev" points into
 *    the previous file).
 * Anchoring the last hash elsewhere (the run result, a remote log) closes
 * these; the file alone cannot.
 *
 * Concurrency: several processes may append to one file. Every append takes
 * flock(LOCK_EX) and, if the file changed size since this process last saw
 * it, re-reads the last line under the lock, so the chain stays linear. A
 * struct audit_log is not for sharing between threads, nor across fork():
 * flock belongs to the open file description, which a forked child shares,
 * so parent and child would not exclude each other — a child must call
 * audit_open itself (audit_append refuses otherwise). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "cleanup.h"
#include "error.h"
#include "hash.h"
#include "util.h"

/* The first look at the end of the file; doubled until a whole line fits. */
#define AUDIT_TAIL_WINDOW (64u << 10)
/* No event is larger; a longer last line means the file is not ours. */
#define AUDIT_MAX_LINE (1u << 20)

static const char audit_zero_hash[HASH_HEX_LEN + 1] =
	"0000000000000000000000000000000000000000000000000000000000000000";

/* Keys the log itself writes; event fields may not shadow them. */
static const char *const audit_reserved[] = { "v", "seq", "ts", "type", "prev", NULL };

struct audit_log {
	int wfd;		/* O_APPEND, for the events; also carries the flock */
	int rfd;		/* same file, for reading the last line */
	pid_t pid;		/* who opened it (see the fork note above) */
	off_t known_size;	/* file size for which prev/next_seq are right */
	json_int_t next_seq;
	char prev[HASH_HEX_LEN + 1];
	char path[];		/* for messages */
};

static int audit_flock(int fd, int op)
{
	while (flock(fd, op) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return 0;
}

/* pread exactly len bytes at off; a short file (it shrank) is an error. */
static int audit_pread_all(int fd, char *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Where the chain continues after the file's last line: its hash and seq+1.
 * The file must end with a whole event; anything else (a crash mid-write,
 * foreign content) is refused rather than extended, so that the damage
 * stays visible instead of being buried under new events. */
static int audit_read_tail(struct audit_log *log, off_t size, struct aegis_error *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t window = AUDIT_TAIL_WINDOW, len, start;
	off_t off;
	json_t *ev, *v, *seq;
	json_error_t jerr;

	if (size == 0) {
		log->next_seq = 0;
		memcpy(log->prev, audit_zero_hash, sizeof log->prev);
		log->known_size = 0;
		return 0;
	}
	for (;;) {
		const char *nl;

		off = size > (off_t)window ? size - (off_t)window : 0;
		len = (size_t)(size - off);
		free(buf);
		buf = malloc(len);
		if (!buf)
			return error_set(err, AEGIS_E_SETUP, ENOMEM, "audit log %s", log->path);
		if (audit_pread_all(log->rfd, buf, len, off) < 0)
			return error_sys(err, "audit log %s: read", log->path);
		if (buf[len - 1] != '\n')
			goto incomplete;
		nl = len > 1 ? memrchr(buf, '\n', len - 1) : NULL;
		if (nl) {
			start = (size_t)(nl - buf) + 1;
			break;
		}
		if (off == 0) {
			start = 0;
			break;
		}
		if (window > AUDIT_MAX_LINE)
			return error_set(err, AEGIS_E_INVALID, 0,
					 "audit log %s: last line is longer than %u bytes, not an event",
					 log->path, AUDIT_MAX_LINE);
		window *= 2;
	}
	len -= start + 1;	/* the line without its newline */
	if (len > AUDIT_MAX_LINE)
		return error_set(err, AEGIS_E_INVALID, 0,
				 "audit log %s: last line is longer than %u bytes, not an event",
				 log->path, AUDIT_MAX_LINE);
	ev = json_loadb(buf + start, len, JSON_REJECT_DUPLICATES, &jerr);
	v = json_object_get(ev, "v");
	seq = json_object_get(ev, "seq");
	if (!json_is_object(ev) || !json_is_integer(v) || !json_is_integer(seq) ||
	    json_integer_value(seq) < 0 || json_integer_value(seq) == LLONG_MAX) {
		json_decref(ev);
		goto incomplete;
	}
	if (json_integer_value(v) != AUDIT_SCHEMA) {
		json_int_t got = json_integer_value(v);
		json_decref(ev);
		return error_set(err, AEGIS_E_INVALID, 0,
				 "audit log %s: last event has schema v%" JSON_INTEGER_FORMAT
				 ", this aegis writes v%d", log->path, got, AUDIT_SCHEMA);
	}
	log->next_seq = json_integer_value(seq) + 1;
	json_decref(ev);
	hash_sha256_hex(buf + start, len, log->prev);
	log->known_size = size;
	return 0;

incomplete:
	return error_set(err, AEGIS_E_INVALID, 0,
			 "audit log %s: last line is not a complete event (truncated?)", log->path);
}

int audit_open(const char *path, struct audit_log **out, struct aegis_error *err)
{
	_cleanup_close_ int wfd = -1;
	_cleanup_close_ int rfd = -1;
	_cleanup_free_ struct audit_log *log = NULL;
	struct stat ws, rs;
	int r;

	*out = NULL;
	/* O_NOFOLLOW: a symlink planted at the log path must not redirect our
	 * appends to another file. O_NONBLOCK only so that a FIFO there fails
	 * instead of hanging; it is cleared below. */
	wfd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	if (wfd < 0)
		return error_sys(err, "audit log %s: open", path);
	if (fstat(wfd, &ws) < 0)
		return error_sys(err, "audit log %s: stat", path);
	if (!S_ISREG(ws.st_mode))
		return error_set(err, AEGIS_E_INVALID, 0, "audit log %s: not a regular file", path);
	if (fcntl(wfd, F_SETFL, O_APPEND) < 0)
		return error_sys(err, "audit log %s: fcntl", path);
	/* The write side is append-only, so the tail is read through a second
	 * descriptor; it must be the very same file, not one swapped in since. */
	rfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (rfd < 0)
		return error_sys(err, "audit log %s: open for reading", path);
	if (fstat(rfd, &rs) < 0)
		return error_sys(err, "audit log %s: stat", path);
	if (rs.st_dev != ws.st_dev || rs.st_ino != ws.st_ino)
		return error_set(err, AEGIS_E_INVALID, 0, "audit log %s: file replaced while opening", path);

	log = calloc(1, sizeof *log + strlen(path) + 1);
	if (!log)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "audit log %s", path);
	strcpy(log->path, path);
	log->wfd = wfd;
	log->rfd = rfd;
	log->pid = getpid();

	/* Shared lock: a writer's line is never seen half-written. */
	if (audit_flock(wfd, LOCK_SH) < 0)
		return error_sys(err, "audit log %s: lock", path);
	if (fstat(wfd, &ws) < 0)
		r = error_sys(err, "audit log %s: stat", path);
	else
		r = audit_read_tail(log, ws.st_size, err);
	audit_flock(wfd, LOCK_UN);
	if (r < 0)
		return -1;

	steal_fd(&wfd);
	steal_fd(&rfd);
	*out = steal_pointer(&log);
	return 0;
}

/* "2026-11-30T12:00:00.123456Z": UTC, so logs from different hosts and
 * time zones compare as strings. */
void audit_timestamp(char out[32])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + 19, 32 - 19, ".%06ldZ", ts.tv_nsec / 1000);
}

/* The event as one line with its newline, in the documented key order. */
static char *audit_format(struct audit_log *log, const char *type, json_t *fields, size_t *len,
			  struct aegis_error *err)
{
	char ts[32];
	const char *key;
	json_t *val;
	json_t *ev = json_object();
	char *line, *grown;

	if (!ev) {
		error_set(err, AEGIS_E_SETUP, ENOMEM, "audit log %s", log->path);
		return NULL;
	}
	audit_timestamp(ts);
	json_object_set_new(ev, "v", json_integer(AUDIT_SCHEMA));
	json_object_set_new(ev, "seq", json_integer(log->next_seq));
	json_object_set_new(ev, "ts", json_string(ts));
	json_object_set_new(ev, "type", json_string(type));
	if (fields) {
		json_object_foreach(fields, key, val)
			json_object_set(ev, key, val);
	}
	json_object_set_new(ev, "prev", json_string(log->prev));
	/* Compact and ASCII-only: one event is one line, no raw newline can
	 * appear inside it, and the hashed bytes do not depend on a locale. */
	line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(ev);
	if (!line) {
		error_set(err, AEGIS_E_INVALID, 0,
			  "audit log %s: event %s cannot be written as JSON", log->path, type);
		return NULL;
	}
	*len = strlen(line);
	if (*len > AUDIT_MAX_LINE) {
		free(line);
		error_set(err, AEGIS_E_INVALID, 0, "audit log %s: event %s is larger than %u bytes",
			  log->path, type, AUDIT_MAX_LINE);
		return NULL;
	}
	grown = realloc(line, *len + 2);
	if (!grown) {
		free(line);
		error_set(err, AEGIS_E_SETUP, ENOMEM, "audit log %s", log->path);
		return NULL;
	}
	line = grown;
	line[(*len)++] = '\n';
	line[*len] = '\0';
	return line;
}

/* Append under the lock already held. */
static int audit_append_locked(struct audit_log *log, const char *type, json_t *fields,
			       struct aegis_error *err)
{
	_cleanup_free_ char *line = NULL;
	struct stat st;
	size_t len;

	if (fstat(log->wfd, &st) < 0)
		return error_sys(err, "audit log %s: stat", log->path);
	/* Someone else appended (or the file was cut): continue from what is
	 * there now, not from what this process last wrote. */
	if (st.st_size != log->known_size && audit_read_tail(log, st.st_size, err) < 0)
		return -1;
	line = audit_format(log, type, fields, &len, err);
	if (!line)
		return -1;
	if (write_all(log->wfd, line, len) < 0) {
		int saved = errno;
		/* Take a partial line back out (disk full, say): left there it
		 * would make the log refuse every later event. */
		if (ftruncate(log->wfd, st.st_size) < 0)
			log->known_size = -1;
		return error_set(err, AEGIS_E_SETUP, saved, "audit log %s: write", log->path);
	}
	hash_sha256_hex(line, len - 1, log->prev);
	log->next_seq++;
	log->known_size = st.st_size + (off_t)len;
	return 0;
}

int audit_append(struct audit_log *log, const char *type, json_t *fields,
		 struct aegis_error *err)
{
	int r;

	if (!log || !type || !*type) {
		json_decref(fields);
		return error_set(err, AEGIS_E_INVALID, 0, "audit: event without a log or a type");
	}
	if (fields && !json_is_object(fields)) {
		json_decref(fields);
		return error_set(err, AEGIS_E_INVALID, 0, "audit event %s: fields are not an object", type);
	}
	for (size_t i = 0; fields && audit_reserved[i]; i++) {
		if (json_object_get(fields, audit_reserved[i])) {
			json_decref(fields);
			return error_set(err, AEGIS_E_INVALID, 0,
					 "audit event %s: field \"%s\" is reserved for the log",
					 type, audit_reserved[i]);
		}
	}
	if (log->pid != getpid()) {
		json_decref(fields);
		return error_set(err, AEGIS_E_INVALID, 0,
				 "audit log %s: used in a forked child; open it again there", log->path);
	}
	if (audit_flock(log->wfd, LOCK_EX) < 0) {
		json_decref(fields);
		return error_sys(err, "audit log %s: lock", log->path);
	}
	r = audit_append_locked(log, type, fields, err);
	audit_flock(log->wfd, LOCK_UN);
	json_decref(fields);
	return r;
}

void audit_close(struct audit_log *log)
{
	if (!log)
		return;
	/* Once per log rather than per line: the events of a run reach the
	 * disk together when the run is over. */
	if (log->pid == getpid())
		fdatasync(log->wfd);
	close(log->wfd);
	close(log->rfd);
	free(log);
}

static FILE *audit_fopen(const char *path, struct aegis_error *err)
{
	struct stat st;
	FILE *f = fopen(path, "re");

	if (!f) {
		error_sys(err, "audit log %s", path);
		return NULL;
	}
	if (fstat(fileno(f), &st) < 0) {
		error_sys(err, "audit log %s: stat", path);
		fclose(f);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		error_set(err, AEGIS_E_INVALID, 0, "audit log %s: not a regular file", path);
		fclose(f);
		return NULL;
	}
	return f;
}

static bool audit_is_hex64(const char *s)
{
	if (strlen(s) != HASH_HEX_LEN)
		return false;
	for (; *s; s++) {
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	}
	return true;
}

/* Check one event (line without its newline). On a problem, fill reason
 * and return false. seq and prev carry the state from the line before;
 * first is true for the file's first line. */
static bool audit_check_line(const char *line, size_t len, bool first, json_int_t *seq,
			     const char *prev, char *reason, size_t rsize)
{
	json_error_t jerr;
	json_t *ev, *v, *s, *p, *t, *ts;
	bool good = false;

	if (len == 0) {
		snprintf(reason, rsize, "empty line");
		return false;
	}
	ev = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!ev) {
		snprintf(reason, rsize, "not valid JSON");
		return false;
	}
	v = json_object_get(ev, "v");
	s = json_object_get(ev, "seq");
	p = json_object_get(ev, "prev");
	t = json_object_get(ev, "type");
	ts = json_object_get(ev, "ts");
	if (!json_is_object(ev))
		snprintf(reason, rsize, "not a JSON object");
	else if (!json_is_integer(v))
		snprintf(reason, rsize, "no schema version \"v\"");
	else if (json_integer_value(v) != AUDIT_SCHEMA)
		snprintf(reason, rsize, "unknown schema version %" JSON_INTEGER_FORMAT
			 " (this aegis reads %d)", json_integer_value(v), AUDIT_SCHEMA);
	else if (!json_is_integer(s) || json_integer_value(s) < 0)
		snprintf(reason, rsize, "no valid \"seq\"");
	else if (!json_is_string(t) || !*json_string_value(t))
		snprintf(reason, rsize, "no event \"type\"");
	else if (!json_is_string(ts))
		snprintf(reason, rsize, "no timestamp \"ts\"");
	else if (!json_is_string(p) || !audit_is_hex64(json_string_value(p)))
		snprintf(reason, rsize, "no valid \"prev\" hash");
	else if (!first && json_integer_value(s) > *seq + 1)
		snprintf(reason, rsize, "sequence jumps from %" JSON_INTEGER_FORMAT " to %"
			 JSON_INTEGER_FORMAT ": an event was removed or reordered",
			 *seq, json_integer_value(s));
	else if (!first && json_integer_value(s) <= *seq)
		snprintf(reason, rsize, "sequence goes back from %" JSON_INTEGER_FORMAT " to %"
			 JSON_INTEGER_FORMAT ": events were reordered or repeated",
			 *seq, json_integer_value(s));
	else if (first && json_integer_value(s) == 0 && strcmp(json_string_value(p), audit_zero_hash))
		snprintf(reason, rsize, "first event of the log does not start a chain (\"prev\" is not zero)");
	else if (!first && strcmp(json_string_value(p), prev))
		snprintf(reason, rsize, "hash chain broken: the line before was edited, removed or reordered");
	else {
		*seq = json_integer_value(s);
		good = true;
	}
	json_decref(ev);
	return good;
}

int audit_verify(const char *path, struct audit_report *report, struct aegis_error *err)
{
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	json_int_t seq = -1;
	char prev[HASH_HEX_LEN + 1];
	FILE *f;
	int r = 0;

	memset(report, 0, sizeof *report);
	f = audit_fopen(path, err);
	if (!f)
		return -1;
	errno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		size_t len = (size_t)n;

		report->events++;
		if (len == 0 || line[len - 1] != '\n') {
			snprintf(report->reason, sizeof report->reason, "incomplete last line (truncated)");
			r = 1;
			break;
		}
		len--;
		if (!audit_check_line(line, len, report->events == 1, &seq, prev,
				      report->reason, sizeof report->reason)) {
			r = 1;
			break;
		}
		hash_sha256_hex(line, len, prev);
		errno = 0;
	}
	if (r == 1)
		report->bad_line = report->events;
	else if (ferror(f))
		r = error_set(err, AEGIS_E_SETUP, errno ? errno : EIO, "audit log %s: read", path);
	fclose(f);
	return r;
}

/* A string as it is, if that is unambiguous and harmless on a terminal;
 * otherwise JSON-quoted, so an event cannot forge lines or send escape
 * sequences to the reader's terminal. */
static void audit_show_string(FILE *out, const char *s)
{
	bool plain = *s != '\0';
	json_t *j;
	char *d;

	for (const char *c = s; plain && *c; c++)
		plain = *c > ' ' && *c < 0x7f && *c != '"';
	if (plain) {
		fputs(s, out);
		return;
	}
	j = json_string(s);
	d = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
	fputs(d ? d : "\"?\"", out);
	free(d);
	json_decref(j);
}

static void audit_show_value(FILE *out, json_t *val)
{
	char *d;

	if (json_is_string(val)) {
		audit_show_string(out, json_string_value(val));
		return;
	}
	d = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	fputs(d ? d : "?", out);
	free(d);
}

/* "HH:MM:SS.mmm" (UTC, as logged) from the event's RFC 3339 "ts". */
static void audit_show_time(FILE *out, json_t *ts)
{
	const char *s = json_string_value(ts);
	unsigned h, m, sec, frac;
	int tail = 0;

	if (s && strlen(s) >= 23 &&
	    sscanf(s, "%*4u-%*2u-%*2uT%2u:%2u:%2u.%3u%n", &h, &m, &sec, &frac, &tail) == 4 && tail == 23)
		fprintf(out, "%02u:%02u:%02u.%03u", h, m, sec, frac);
	else
		fputs("??:??:??.???", out);
}

int audit_show(const char *path, FILE *out, struct aegis_error *err)
{
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	FILE *f = audit_fopen(path, err);
	int r = 0;

	if (!f)
		return -1;
	errno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		size_t len = (size_t)n;
		const char *key, *sep;
		json_t *ev, *val;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		ev = json_loadb(line, len, 0, NULL);
		if (!json_is_object(ev)) {
			fprintf(out, "?? unparseable line %zu\n", lineno);
			json_decref(ev);
			continue;
		}
		audit_show_time(out, json_object_get(ev, "ts"));
		fputs("  ", out);
		val = json_object_get(ev, "type");
		if (json_is_string(val))
			audit_show_string(out, json_string_value(val));
		else
			fputs("?", out);
		sep = "  ";
		json_object_foreach(ev, key, val) {
			size_t i;

			for (i = 0; audit_reserved[i] && strcmp(key, audit_reserved[i]); i++)
				;
			if (audit_reserved[i])
				continue;
			fputs(sep, out);
			sep = " ";
			audit_show_string(out, key);
			fputc('=', out);
			audit_show_value(out, val);
		}
		fputc('\n', out);
		json_decref(ev);
		errno = 0;
	}
	if (ferror(f))
		r = error_set(err, AEGIS_E_SETUP, errno ? errno : EIO, "audit log %s: read", path);
	fclose(f);
	if (r == 0 && (fflush(out) != 0 || ferror(out)))
		r = error_sys(err, "audit log %s: writing the timeline", path);
	return r;
}
