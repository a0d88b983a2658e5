/* logs.c — GET /v1/instances/NAME/logs: an instance's log (logwriter.h)
 * read back, as one JSON answer or streamed as JSON lines, and followed.
 *
 * Where to start is found from the end, reading backwards, so ?tail= and
 * ?since= cost about what they return, not the size of the log. Then the
 * log is read forwards, file by file. A follower at the end of what is
 * written waits on inotify (and for its client's hangup) and ends once the
 * instance has ended and all is sent: the shim writes exit.json only after
 * the last record is on disk, so "ended, then read to the end" is all. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/logrecord.h"
#include "../common/util.h"
#include "instances.h"
#include "idle.h"
#include "logs.h"
#include "logwriter.h"

#define LOGS_JSON_MAX (4U << 20)	/* stored bytes in one JSON answer: the newest are kept */
#define LOGS_BUF (256U << 10)		/* read buffers: more than the longest record */
#define LOGS_TAIL_MAX 1000000000L
#define FOLLOW_RECHECK_MS 1000		/* a SIGKILLed shim sends no event to wake on */
#define FOLLOW_POLL_MS 250		/* without inotify */

struct query {
	long tail;			/* last N lines of each stream; 0: all */
	bool has_since;
	uint64_t since;			/* unix ns */
	bool want[2];			/* stdout, stderr */
	bool follow, ndjson;
	const char *bad, *why;		/* the parameter at fault */
};

/* A place in the log: file number, offset. Records are ordered by it. */
struct pos {
	uint32_t seq;
	uint64_t off;
};

/* Per stream, the first place whose records are returned. */
struct start {
	struct pos at[2];
	bool truncated;			/* JSON answer: older records left out */
};

static int pos_cmp(struct pos a, struct pos b)
{
	return a.seq != b.seq ? (a.seq < b.seq ? -1 : 1) : a.off < b.off ? -1 : a.off > b.off;
}

static json_t *err_body(const char *code, const char *message, const char *field)
{
	json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message);

	if (field)
		json_object_set_new(e, "field", json_string(field));
	return json_pack("{s:o}", "error", e);
}

static bool boolean(const char *v, bool *out)
{
	if (v && (!strcmp(v, "true") || !strcmp(v, "1")))
		return *out = true;
	if (v && (!strcmp(v, "false") || !strcmp(v, "0")))
		return !(*out = false);
	return false;
}

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct query *q = cls;
	uint64_t n = 0;

	(void)kind;
	if (!strcmp(key, "tail")) {
		if (!value || parse_u64(value, &n) < 0 || n > LOGS_TAIL_MAX)
			q->bad = "tail", q->why = "must be a whole number (0: all)";
		q->tail = (long)n;
	} else if (!strcmp(key, "since")) {
		if (!value || logrecord_time_parse(value, &q->since) < 0)
			q->bad = "since", q->why = "must be unix seconds (1712345678.5) or RFC 3339 (2024-04-05T12:00:00Z)";
		q->has_since = true;
	} else if (!strcmp(key, "follow")) {
		if (!boolean(value, &q->follow))
			q->bad = "follow", q->why = "must be true or false";
	} else if (!strcmp(key, "stdout") || !strcmp(key, "stderr")) {
		if (!boolean(value, &q->want[key[3] == 'e']))
			q->bad = key[3] == 'e' ? "stderr" : "stdout", q->why = "must be true or false";
	} else if (!strcmp(key, "format")) {
		if (!value || (strcmp(value, "json") && strcmp(value, "ndjson")))
			q->bad = "format", q->why = "must be json or ndjson";
		q->ndjson = value && !strcmp(value, "ndjson");
	} else {
		q->bad = key, q->why = "unknown parameter (tail, since, follow, stdout, stderr, format)";
	}
	return q->bad ? MHD_NO : MHD_YES;
}

static void parse_query(struct MHD_Connection *conn, struct query *q)
{
	const char *format;

	memset(q, 0, sizeof *q);
	q->want[0] = q->want[1] = true;
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_arg, q);
	format = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format");
	if (q->bad)
		return;
	if (!q->want[0] && !q->want[1])
		q->bad = "stdout", q->why = "stdout and stderr cannot both be false";
	else if (q->follow && format && !q->ndjson)
		q->bad = "format", q->why = "follow=true streams ndjson";
	q->ndjson |= q->follow;
}

static void file_name(uint32_t seq, char *out, size_t len)
{
	logwriter_file_name(seq, out, len);
}

static int open_seq(int dirfd, uint32_t seq)
{
	char name[64];

	file_name(seq, name, sizeof name);
	return openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

/* The lowest file number ≥ from (and the highest); false if none. */
static bool files(int dirfd, uint32_t from, uint32_t *lo, uint32_t *hi)
{
	DIR *d = opendir_at(dirfd);
	struct dirent *e;
	uint32_t seq;

	*lo = UINT32_MAX;
	*hi = 0;
	while (d && (e = readdir(d)))
		if (logwriter_file_seq(e->d_name, &seq) && seq >= from) {
			*lo = seq < *lo ? seq : *lo;
			*hi = seq > *hi ? seq : *hi;
		}
	if (d)
		closedir(d);
	return *hi != 0;
}

/* Reading one file backwards, a line at a time. buf[0..cur) is what is
 * left to return, file offset lo on; the byte before lo+cur is '\n'. */
struct back {
	int fd;
	uint64_t lo;
	size_t cur;
	char *buf;
};

static bool back_load(struct back *b)
{
	size_t k = b->lo < LOGS_BUF - b->cur ? (size_t)b->lo : LOGS_BUF - b->cur;

	if (!k)
		return false;
	memmove(b->buf + k, b->buf, b->cur);
	if (pread(b->fd, b->buf, k, (off_t)(b->lo - k)) != (ssize_t)k)
		return false;
	b->lo -= k;
	b->cur += k;
	return true;
}

/* Back to just after the last '\n' in buf[0..cur), reading further back if
 * need be: past a torn last line, or a line too long to be a record. */
static bool back_to_newline(struct back *b)
{
	for (;;) {
		char *nl = b->cur ? memrchr(b->buf, '\n', b->cur) : NULL;
		if (nl) {
			b->cur = (size_t)(nl - b->buf) + 1;
			return true;
		}
		b->cur = 0;
		if (!b->lo || !back_load(b))
			return false;
	}
}

/* The line before the cursor, without its '\n': 1, or 0 at the start. */
static int back_prev(struct back *b, const char **line, size_t *n, uint64_t *off)
{
	for (;;) {
		char *nl;
		if (b->lo + b->cur == 0)
			return 0;
		nl = b->cur > 1 ? memrchr(b->buf, '\n', b->cur - 1) : NULL;
		if (nl || b->lo == 0) {
			size_t start = nl ? (size_t)(nl - b->buf) + 1 : 0;
			*line = b->buf + start;
			*n = b->cur - 1 - start;
			*off = b->lo + start;
			b->cur = start;
			return 1;
		}
		if (b->cur == LOGS_BUF) {
			b->cur--;	/* longer than any record: skip it */
			if (!back_to_newline(b))
				return 0;
			continue;
		}
		if (!back_load(b))
			return 0;
	}
}

/* Where each wanted stream starts: after its last `tail` lines, at the
 * first record not older than `since`, and within `budget` stored bytes
 * (0: none). Records never get older towards the end, so the walk back
 * stops at the first one that is. */
static void find_start(int dirfd, const struct query *q, uint64_t budget, struct start *st, char *buf)
{
	bool done[2] = { !q->want[0], !q->want[1] }, have_later[2] = { false, false };
	struct pos later[2] = { { 0, 0 }, { 0, 0 } };
	long lines[2] = { 0, 0 };
	uint64_t used = 0;
	uint32_t lo, hi;

	memset(st, 0, sizeof *st);	/* from the first record */
	if ((!q->tail && !q->has_since && !budget) || !files(dirfd, 1, &lo, &hi))
		return;
	for (uint32_t seq = hi; seq >= lo && !(done[0] && done[1]); seq--) {
		struct back b = { .fd = open_seq(dirfd, seq), .buf = buf };
		struct logrecord_meta m;
		struct stat sb;
		const char *line;
		uint64_t off;
		size_t n;

		if (b.fd < 0 || fstat(b.fd, &sb) < 0) {
			if (b.fd >= 0)
				close(b.fd);
			break;	/* deleted as we read: older ones are gone too */
		}
		b.lo = (uint64_t)sb.st_size;
		if (!back_to_newline(&b))
			b.lo = b.cur = 0;
		while (!(done[0] && done[1]) && back_prev(&b, &line, &n, &off) == 1) {
			struct pos here = { seq, off }, after = { seq, off + n + 1 };
			int s;
			if (logrecord_meta(line, n, &m) < 0)
				continue;
			s = m.stream;
			if ((q->has_since && m.t < q->since) || (budget && !done[s] && (used += n + 1) > budget)) {
				/* everything before this is out, for every stream */
				st->truncated = !(q->has_since && m.t < q->since);
				for (int i = 0; i < 2; i++)
					if (!done[i])
						st->at[i] = after, done[i] = true;
				break;
			}
			if (done[s])
				continue;
			if (q->tail && !m.dropped && m.ends_line && have_later[s] && ++lines[s] == q->tail) {
				st->at[s] = later[s];	/* the line after this one is the first of the tail */
				done[s] = true;
				continue;
			}
			later[s] = here;
			have_later[s] = true;
		}
		close(b.fd);
	}
}

/* Reading forwards, file by file: the next whole line each time. */
struct fwd {
	int dirfd;
	uint32_t seq;			/* the open file's (or the one to start at) */
	int fd;
	uint64_t off;			/* file offset of buf[0] */
	char *buf;
	size_t start, len;
	bool skipping;			/* inside a line too long to be a record */
	bool last_read;			/* a next file exists: this one is read to its end once more */
	uint32_t next;
};

static void fwd_init(struct fwd *f, int dirfd, const struct start *st, const struct query *q, char *buf)
{
	struct pos from = !q->want[1] ? st->at[0] : !q->want[0] ? st->at[1]
			  : pos_cmp(st->at[0], st->at[1]) <= 0 ? st->at[0] : st->at[1];

	memset(f, 0, sizeof *f);
	f->dirfd = dirfd;
	f->fd = -1;
	f->buf = buf;
	f->seq = from.seq;
	f->off = from.off;
}

/* The first file at or after f->seq, at f->off if it is that very file. */
static bool fwd_open_first(struct fwd *f)
{
	uint32_t lo, hi;

	if (!files(f->dirfd, f->seq ? f->seq : 1, &lo, &hi) || (f->fd = open_seq(f->dirfd, lo)) < 0)
		return false;
	if (lo != f->seq)
		f->off = 0;
	f->seq = lo;
	if (f->off && lseek(f->fd, (off_t)f->off, SEEK_SET) < 0)
		f->off = 0;
	return true;
}

/* Is there a file after ours? The writer never writes to a file again once
 * it has begun the next. If ours was deleted, older ones were too. */
static bool fwd_next_file(struct fwd *f, uint32_t *next)
{
	struct stat st;
	char name[64];
	uint32_t lo, hi;

	if (fstat(f->fd, &st) == 0 && st.st_nlink > 0) {
		file_name(f->seq + 1, name, sizeof name);
		*next = f->seq + 1;
		return faccessat(f->dirfd, name, F_OK, 0) == 0;
	}
	if (!files(f->dirfd, f->seq + 1, &lo, &hi))
		return false;
	*next = lo;
	return true;
}

/* 1 with the next line (no '\n') and its place; 0 at the end of what is
 * written so far; -1 on a read error. */
static int fwd_line(struct fwd *f, const char **line, size_t *n, struct pos *at)
{
	for (;;) {
		char *nl = f->fd >= 0 && f->start < f->len ? memchr(f->buf + f->start, '\n', f->len - f->start)
			   : NULL;
		ssize_t r;

		if (nl) {
			size_t s = f->start;
			f->start = (size_t)(nl - f->buf) + 1;
			if (f->skipping) {
				f->skipping = false;
				continue;
			}
			*line = f->buf + s;
			*n = (size_t)(nl - f->buf) - s;
			*at = (struct pos){ f->seq, f->off + s };
			return 1;
		}
		if (f->fd < 0) {
			if (!fwd_open_first(f))
				return 0;
			continue;
		}
		if (f->start) {
			memmove(f->buf, f->buf + f->start, f->len - f->start);
			f->off += f->start;
			f->len -= f->start;
			f->start = 0;
		}
		if (f->len == LOGS_BUF) {
			f->skipping = true;	/* longer than any record: skip to its end */
			f->off += f->len;
			f->len = 0;
		}
		r = read(f->fd, f->buf + f->len, LOGS_BUF - f->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r > 0) {
			f->len += (size_t)r;
			continue;
		}
		/* the end of this file for now */
		if (!f->last_read) {
			if (!fwd_next_file(f, &f->next))
				return 0;
			f->last_read = true;	/* what was written before the next began */
			continue;
		}
		/* read to its very end: on to the next; a torn line left here is dropped */
		close(f->fd);
		f->fd = -1;
		f->seq = f->next;
		f->off = f->start = f->len = 0;
		f->skipping = f->last_read = false;
	}
}

static bool selected(const struct query *q, const struct start *st, const char *line, size_t n,
		     struct pos at, struct logrecord_meta *m)
{
	return logrecord_meta(line, n, m) == 0 && q->want[m->stream] && pos_cmp(at, st->at[m->stream]) >= 0 &&
	       (!q->has_since || m->t >= q->since);
}

struct text {
	char *data;
	size_t len, cap;
};

static bool text_add(struct text *t, const char *s, size_t n)
{
	if (t->len + n > t->cap) {
		size_t cap = (t->len + n) * 2;
		char *grown = realloc(t->data, cap);
		if (!grown)
			return false;
		t->data = grown;
		t->cap = cap;
	}
	memcpy(t->data + t->len, s, n);
	t->len += n;
	return true;
}

/* The JSON answer: the selected records, and each stream's text whole. */
static unsigned answer_json(int dirfd, const char *name, const struct query *q, json_t **body)
{
	struct text out[2] = { { 0 }, { 0 } };
	struct logrecord_meta m;
	struct start st;
	struct fwd f;
	struct pos at;
	const char *line;
	json_t *lines = json_array(), *rec;
	char *buf = malloc(LOGS_BUF);
	bool ok = buf && lines;
	size_t n;
	int r;

	if (ok) {
		find_start(dirfd, q, LOGS_JSON_MAX, &st, buf);
		fwd_init(&f, dirfd, &st, q, buf);
		while (ok && (r = fwd_line(&f, &line, &n, &at)) == 1) {
			if (!selected(q, &st, line, n, at, &m) || !(rec = json_loadb(line, n, JSON_ALLOW_NUL, NULL)))
				continue;
			if (!m.dropped) {
				json_t *log = json_object_get(rec, "log");
				ok = text_add(&out[m.stream], json_string_value(log), json_string_length(log));
			}
			ok = ok && json_array_append_new(lines, rec) == 0;
		}
		if (f.fd >= 0)
			close(f.fd);
	}
	if (ok)
		*body = json_pack("{s:s, s:o, s:o, s:o, s:b}", "name", name,
				  "stdout", json_stringn(out[0].data ? out[0].data : "", out[0].len),
				  "stderr", json_stringn(out[1].data ? out[1].data : "", out[1].len),
				  "lines", lines, "truncated", st.truncated);
	else
		json_decref(lines);
	free(out[0].data);
	free(out[1].data);
	free(buf);
	if (!ok || !*body) {
		*body = err_body("storage", "cannot read the instance's log", NULL);
		return 500;
	}
	return 200;
}

/* A streamed answer: JSON lines, as stored; followed if asked. */
struct stream {
	struct query q;
	struct start st;
	struct fwd f;
	char dir[4400];
	int dirfd, inotify, client;
	const char *pending;		/* the rest of a line being sent (in f's buffer) */
	size_t pending_len;
	bool ended;			/* the instance had ended when the log was last read to its end */
};

/* Until the log may have grown; -1 when the client has gone. */
static int stream_wait(struct stream *s)
{
	struct pollfd p[2] = { { .fd = s->inotify, .events = POLLIN }, { .fd = s->client, .events = POLLRDHUP } };
	char events[4096];

	if (poll(p, 2, s->inotify >= 0 ? FOLLOW_RECHECK_MS : FOLLOW_POLL_MS) < 0 && errno != EINTR)
		return -1;
	if (p[1].revents)
		return -1;
	if (p[0].revents & POLLIN)
		while (read(s->inotify, events, sizeof events) > 0)
			;
	/* a follower is activity: the instance stays awake while it watches */
	idle_touch(strrchr(s->dir, '/') ? strrchr(s->dir, '/') + 1 : s->dir);
	return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;
	struct logrecord_meta m;
	const char *line;
	struct pos at;
	size_t n = 0, len;
	int r;

	(void)pos;
	for (;;) {
		if (s->pending_len) {
			size_t k = s->pending_len < max - n ? s->pending_len : max - n;
			memcpy(buf + n, s->pending, k);
			n += k;
			s->pending += k;
			s->pending_len -= k;
			if (n == max)
				return (ssize_t)n;
			continue;
		}
		r = fwd_line(&s->f, &line, &len, &at);
		if (r == 1) {
			if (selected(&s->q, &s->st, line, len, at, &m)) {
				s->pending = line;	/* its '\n' follows it in the buffer */
				s->pending_len = len + 1;
			}
			continue;
		}
		if (n)
			return (ssize_t)n;	/* what there is goes out before any wait */
		if (r < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (!s->q.follow || s->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (instance_ended(s->dir)) {
			s->ended = true;	/* one more read to the end, then done */
			continue;
		}
		if (stream_wait(s) < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static void stream_free(void *cls)
{
	struct stream *s = cls;

	if (s->f.fd >= 0)
		close(s->f.fd);
	if (s->inotify >= 0)
		close(s->inotify);
	close(s->dirfd);
	free(s->f.buf);
	free(s);
}

static unsigned answer_stream(struct MHD_Connection *conn, int dirfd, const char *dir, const struct query *q,
			      json_t **body, struct MHD_Response **out)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct stream *s = calloc(1, sizeof *s);
	char *buf = malloc(LOGS_BUF);

	if (!s || !buf || !ci) {
		free(s);
		free(buf);
		close(dirfd);
		return *body = err_body("storage", "out of memory", NULL), 500;
	}
	s->q = *q;
	s->dirfd = dirfd;
	s->client = ci->connect_fd;
	snprintf(s->dir, sizeof s->dir, "%s", dir);
	s->inotify = -1;
	if (q->follow) {
		/* watched before the first read: nothing written after it is missed */
		s->inotify = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
		if (s->inotify >= 0 &&
		    inotify_add_watch(s->inotify, dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF) < 0) {
			close(s->inotify);
			s->inotify = -1;	/* polled instead */
		}
		/* a follower may hear nothing for hours; its hangup is watched instead */
		MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
	}
	find_start(dirfd, q, 0, &s->st, buf);
	fwd_init(&s->f, dirfd, &s->st, q, buf);
	*out = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, stream_read, s, stream_free);
	if (!*out) {
		stream_free(s);
		return *body = err_body("storage", "out of memory", NULL), 500;
	}
	MHD_add_response_header(*out, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
	return 200;
}

unsigned logs_request(struct MHD_Connection *conn, const char *name, json_t **body,
		      struct MHD_Response **stream)
{
	struct query q;
	char dir[4400];
	unsigned status;
	int dirfd;

	*stream = NULL;
	parse_query(conn, &q);
	if (q.bad)
		return *body = err_body("invalid", q.why, q.bad), 400;
	if (!instance_dir(name, dir, sizeof dir) || (dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return *body = err_body("not_found", "no instance of that name", "name"), 404;
	if (q.ndjson)
		return answer_stream(conn, dirfd, dir, &q, body, stream);
	status = answer_json(dirfd, name, &q, body);
	close(dirfd);
	return status;
}
