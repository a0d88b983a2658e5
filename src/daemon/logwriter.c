/* logwriter.c — the shim's log writer: the command's stdout and stderr come
 * in through two pipes (the engine's spec.out_fd / err_fd) and leave as
 * timestamped records (src/common/logrecord.h) in size-rotated files.
 *
 * Two threads, so that the sandbox and the disk wait on each other no more
 * than they must: the reader drains the pipes as fast as they fill, cuts the
 * bytes into records and queues them in memory; the writer appends the queue
 * to the newest file and starts the next one at max_bytes, deleting the
 * oldest beyond LOG_KEEP.
 *
 * A slow or full disk. The queue (LOG_QUEUE_MAX) absorbs a stall. When it is
 * full the reader waits up to LOG_STALL_MS for room — the command meanwhile
 * waits on its pipe, as on a slow terminal — and then drops records until
 * the writer has taken the queue, at most one such wait per stall. A failed
 * write (ENOSPC, EIO) loses its records the same way. Lost bytes are never
 * silent: a "dropped" record marks the place in the log, and the total goes
 * to exit.json. So a stuck disk holds the sandbox back for LOG_STALL_MS,
 * not forever, and the log says what it is missing.
 *
 * The threads run while aegis_run clones the sandbox. clone copies only the
 * calling thread, so these never take a lock the child could need: no
 * malloc, no stdio; all their memory is allocated before they start. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/logrecord.h"
#include "../common/util.h"
#include "logwriter.h"

#define LOG_QUEUE_MAX (2U << 20)	/* formatted records waiting for the disk */
#define LOG_STALL_MS 2000		/* the longest the reader waits for room, once per stall */
#define LOG_PARTIAL_MS 100		/* an unfinished line is written after this long */
#define MARKER_MAX 128

struct lw_stream {
	int fd;				/* read end of the pipe; -1 after EOF */
	char line[LOGRECORD_TEXT_MAX];	/* bytes not yet in a record */
	size_t len;
	uint64_t first_ns;		/* when line[0] came */
	uint64_t dropped;		/* lost to a full queue; its marker is not queued yet */
};

struct logwriter {
	int dirfd;
	uint64_t max_bytes;
	int write_end[2];
	pthread_t reader, writer;

	/* the reader's */
	struct lw_stream in[2];
	uint64_t last_t;		/* records' times never go back, even if the clock does */
	uint64_t reader_lost;
	char rbuf[65536];
	char rec[LOGRECORD_LINE_MAX];

	/* between the two */
	pthread_mutex_t lock;
	pthread_cond_t queued, taken;
	char *queue;
	size_t qlen;
	bool eof;			/* the reader is done: both pipes closed */
	bool stalled;			/* the reader waited its turn: it drops until the queue is taken */

	/* the writer's */
	char *batch;
	int fd;				/* the newest file, -1 if it could not be opened */
	uint32_t seq;
	uint64_t size;
	uint64_t lost[2];		/* records that failed to reach the disk; marker not written yet */
	uint64_t lost_t;
	uint64_t writer_lost;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int logwriter_max_bytes(uint64_t *out, struct aegis_error *err)
{
	const char *v = getenv(LOG_MAX_BYTES_ENV);

	*out = LOG_MAX_BYTES_DEFAULT;
	if (!v)
		return 0;
	if (parse_size(v, out) < 0 || *out < LOG_MAX_BYTES_MIN || *out > LOG_MAX_BYTES_MAX)
		return error_set(err, AEGIS_E_INVALID, 0, "%s must be a size from 1k to 1g, like 8m (got '%.32s')",
				 LOG_MAX_BYTES_ENV, v);
	return 0;
}

void logwriter_file_name(uint32_t seq, char *out, size_t len)
{
	snprintf(out, len, "output.%08u.jsonl", seq);
}

bool logwriter_file_seq(const char *name, uint32_t *seq)
{
	const char *p = name + 7;
	uint64_t v = 0;

	if (strncmp(name, "output.", 7))
		return false;
	for (; *p >= '0' && *p <= '9'; p++)
		if ((v = v * 10 + (uint64_t)(*p - '0')) > UINT32_MAX)
			return false;
	if (p == name + 7 || strcmp(p, ".jsonl") || v == 0)
		return false;
	*seq = (uint32_t)v;
	return true;
}

/* The newest file's number (0: none yet), and files beyond LOG_KEEP gone. */
static uint32_t newest_file(int dirfd)
{
	DIR *d = opendir_at(dirfd);
	struct dirent *e;
	uint32_t seq, newest = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (logwriter_file_seq(e->d_name, &seq) && seq > newest)
			newest = seq;
	rewinddir(d);
	while ((e = readdir(d)))
		if (logwriter_file_seq(e->d_name, &seq) && (uint64_t)seq + LOG_KEEP < newest)
			unlinkat(dirfd, e->d_name, 0);
	closedir(d);
	return newest;
}

static int open_seq(struct logwriter *lw)
{
	char name[64], last;
	struct stat st;
	int fd;

	logwriter_file_name(lw->seq, name, sizeof name);
	fd = openat(lw->dirfd, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	lw->fd = fd;
	lw->size = (uint64_t)st.st_size;
	/* A shim killed mid-write left half a record: end its line, so it
	 * stays a line of its own that readers skip, not part of ours. */
	if (lw->size) {
		int rfd = openat(lw->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (rfd >= 0 && pread(rfd, &last, 1, st.st_size - 1) == 1 && last != '\n' &&
		    write_all(fd, "\n", 1) == 0)
			lw->size++;
		if (rfd >= 0)
			close(rfd);
	}
	return 0;
}

/* The next file; the one LOG_KEEP before it goes. */
static void rotate(struct logwriter *lw)
{
	char name[64];

	if (lw->fd >= 0)
		close(lw->fd);
	lw->fd = -1;
	lw->size = 0;
	lw->seq++;
	if (lw->seq > LOG_KEEP + 1) {
		logwriter_file_name(lw->seq - LOG_KEEP - 1, name, sizeof name);
		unlinkat(lw->dirfd, name, 0);
	}
	(void)open_seq(lw);	/* a failure is retried by the next append */
}

static int append(struct logwriter *lw, const char *data, size_t n)
{
	if (lw->fd < 0 && open_seq(lw) < 0)
		return -1;
	if (write_all(lw->fd, data, n) < 0) {
		/* no torn record in the file: cut off the part that got written */
		if (ftruncate(lw->fd, (off_t)lw->size) < 0)
			return -1;
		return -1;
	}
	lw->size += n;
	return 0;
}

/* Records that could not be written: counted, for a marker and exit.json. */
static void count_lost(struct logwriter *lw, const char *buf, size_t len)
{
	struct logrecord_meta m;

	for (const char *p = buf, *end = buf + len, *nl; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (logrecord_meta(p, (size_t)(nl - p), &m) < 0)
			continue;
		lw->lost[m.stream] += m.bytes;
		lw->lost_t = m.t;	/* the marker's time: records after it are not older */
		if (!m.dropped)
			lw->writer_lost += m.bytes;	/* a marker's bytes were counted when lost */
	}
}

static void write_lost_markers(struct logwriter *lw)
{
	char marker[MARKER_MAX];

	for (int i = 0; i < 2; i++) {
		size_t n;
		if (!lw->lost[i])
			continue;
		n = logrecord_format_dropped(marker, sizeof marker, lw->lost_t, i, lw->lost[i]);
		if (n && append(lw, marker, n) == 0)
			lw->lost[i] = 0;
	}
}

/* Whole records into the newest file, the next file begun where one would
 * pass max_bytes (a file holds at least one record, however large). */
static void write_batch(struct logwriter *lw, const char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		size_t group = 0;
		write_lost_markers(lw);
		while (off + group < len) {
			const char *p = buf + off + group, *nl = memchr(p, '\n', len - off - group);
			size_t r = (size_t)(nl - p) + 1;	/* the queue holds whole records */
			if (lw->size + group + r > lw->max_bytes && lw->size + group > 0) {
				if (group)
					break;
				rotate(lw);
			}
			group += r;
		}
		if (append(lw, buf + off, group) < 0)
			count_lost(lw, buf + off, group);
		off += group;
	}
}

static void *writer_main(void *arg)
{
	struct logwriter *lw = arg;

	for (;;) {
		char *taken;
		size_t n;
		pthread_mutex_lock(&lw->lock);
		while (!lw->qlen && !lw->eof)
			pthread_cond_wait(&lw->queued, &lw->lock);
		if (!lw->qlen) {
			pthread_mutex_unlock(&lw->lock);
			break;
		}
		taken = lw->queue;
		n = lw->qlen;
		lw->queue = lw->batch;
		lw->batch = taken;
		lw->qlen = 0;
		lw->stalled = false;
		pthread_cond_broadcast(&lw->taken);
		pthread_mutex_unlock(&lw->lock);
		write_batch(lw, taken, n);
	}
	write_lost_markers(lw);
	if (lw->fd >= 0)
		fsync(lw->fd);
	return NULL;
}

/* Queue one formatted record; see the top of the file for a full queue. */
static void queue(struct logwriter *lw, int i, const char *rec, size_t len, size_t bytes, uint64_t t)
{
	struct lw_stream *s = &lw->in[i];
	char marker[MARKER_MAX];
	size_t mlen = 0;

	pthread_mutex_lock(&lw->lock);
	if (s->dropped)
		mlen = logrecord_format_dropped(marker, sizeof marker, t, i, s->dropped);
	if (lw->qlen + mlen + len > LOG_QUEUE_MAX && !lw->stalled) {
		struct timespec deadline;
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += LOG_STALL_MS / 1000;
		deadline.tv_nsec += (LOG_STALL_MS % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		while (lw->qlen + mlen + len > LOG_QUEUE_MAX && !lw->stalled)
			if (pthread_cond_timedwait(&lw->taken, &lw->lock, &deadline) == ETIMEDOUT)
				lw->stalled = true;
	}
	if (lw->qlen + mlen + len <= LOG_QUEUE_MAX) {
		memcpy(lw->queue + lw->qlen, marker, mlen);
		lw->qlen += mlen;
		s->dropped = 0;
		memcpy(lw->queue + lw->qlen, rec, len);
		lw->qlen += len;
		pthread_cond_signal(&lw->queued);
	} else {
		s->dropped += bytes;
		lw->reader_lost += bytes;
	}
	pthread_mutex_unlock(&lw->lock);
}

/* The first n bytes of stream i's line become a record. */
static void emit_record(struct logwriter *lw, int i, size_t n)
{
	struct lw_stream *s = &lw->in[i];
	uint64_t now = now_ns(), t = now > lw->last_t ? now : lw->last_t;
	size_t len;

	lw->last_t = t;
	len = logrecord_format(lw->rec, t, i, s->line, n);
	queue(lw, i, lw->rec, len, n, t);
	memmove(s->line, s->line + n, s->len - n);
	s->len -= n;
	s->first_ns = now;
}

/* Stream i's unfinished line, as far as its characters are whole (all of
 * it at the end of the stream). */
static void emit_partial(struct logwriter *lw, int i, bool all)
{
	struct lw_stream *s = &lw->in[i];
	size_t n = all ? s->len : logrecord_utf8_cut(s->line, s->len);

	if (n)
		emit_record(lw, i, n);
}

/* Before a record of one stream, the other's unfinished line: the log's
 * order is the order in which the bytes came. */
static void emit(struct logwriter *lw, int i, size_t n)
{
	if (lw->in[!i].len)
		emit_partial(lw, !i, false);
	emit_record(lw, i, n);
}

/* The one place where a stream's bytes pass, in order, before they become
 * records. Whatever must see the output as the command wrote it goes here:
 * redaction of secret values, for one, which must hold back a tail that
 * could be the start of a value so that a value split across writes is
 * caught too. */
static void feed(struct logwriter *lw, int i, const char *buf, size_t n)
{
	struct lw_stream *s = &lw->in[i];

	while (n) {
		const char *nl = memchr(buf, '\n', n);
		size_t take = nl ? (size_t)(nl - buf) + 1 : n, room = LOGRECORD_TEXT_MAX - s->len;
		if (take > room)
			take = room;
		if (!s->len)
			s->first_ns = now_ns();
		memcpy(s->line + s->len, buf, take);
		s->len += take;
		buf += take;
		n -= take;
		if (s->line[s->len - 1] == '\n')
			emit(lw, i, s->len);
		else if (s->len == LOGRECORD_TEXT_MAX)
			emit(lw, i, logrecord_utf8_cut(s->line, s->len));
	}
}

static void *reader_main(void *arg)
{
	struct logwriter *lw = arg;
	const uint64_t partial_ns = LOG_PARTIAL_MS * 1000000ULL;

	while (lw->in[0].fd >= 0 || lw->in[1].fd >= 0) {
		struct pollfd p[2];
		uint64_t now = now_ns();
		int timeout = -1;

		for (int i = 0; i < 2; i++) {
			p[i] = (struct pollfd){ .fd = lw->in[i].fd, .events = POLLIN };
			if (lw->in[i].len) {
				uint64_t due = lw->in[i].first_ns + partial_ns;
				int ms = due > now ? (int)((due - now + 999999) / 1000000) : 0;
				timeout = timeout < 0 || ms < timeout ? ms : timeout;
			}
		}
		if (poll(p, 2, timeout) < 0)
			continue;	/* EINTR; and the pipes must be drained whatever happens */
		for (int i = 0; i < 2; i++) {
			ssize_t n;
			if (!p[i].revents)
				continue;
			n = read(lw->in[i].fd, lw->rbuf, sizeof lw->rbuf);
			if (n > 0) {
				feed(lw, i, lw->rbuf, (size_t)n);
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				emit_partial(lw, i, true);
				close(lw->in[i].fd);
				lw->in[i].fd = -1;
			}
		}
		now = now_ns();
		for (int i = 0; i < 2; i++)
			if (lw->in[i].len && now >= lw->in[i].first_ns + partial_ns) {
				/* only a character's first bytes: they have waited long enough too */
				size_t cut = logrecord_utf8_cut(lw->in[i].line, lw->in[i].len);
				emit_record(lw, i, cut ? cut : lw->in[i].len);
			}
	}
	/* output lost at the very end still gets its marker, if it can */
	for (int i = 0; i < 2; i++)
		if (lw->in[i].dropped)
			queue(lw, i, "", 0, 0, lw->last_t);
	pthread_mutex_lock(&lw->lock);
	lw->eof = true;
	pthread_cond_signal(&lw->queued);
	pthread_mutex_unlock(&lw->lock);
	return NULL;
}

static void free_writer(struct logwriter *lw)
{
	for (int i = 0; i < 2; i++) {
		if (lw->in[i].fd >= 0)
			close(lw->in[i].fd);
		if (lw->write_end[i] >= 0)
			close(lw->write_end[i]);
	}
	if (lw->fd >= 0)
		close(lw->fd);
	free(lw->queue);
	free(lw->batch);
	free(lw);
}

int logwriter_start(struct logwriter **out, int dirfd, uint64_t max_bytes, int *out_fd, int *err_fd,
		    struct aegis_error *err)
{
	struct logwriter *lw = calloc(1, sizeof *lw);
	pthread_condattr_t ca;
	sigset_t all, old;
	int p[2], r;

	if (!lw)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "log writer");
	lw->dirfd = dirfd;
	lw->max_bytes = max_bytes;
	lw->fd = lw->in[0].fd = lw->in[1].fd = lw->write_end[0] = lw->write_end[1] = -1;
	if (!(lw->queue = malloc(LOG_QUEUE_MAX)) || !(lw->batch = malloc(LOG_QUEUE_MAX))) {
		free_writer(lw);
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "log writer");
	}
	lw->seq = newest_file(dirfd);
	lw->seq += !lw->seq;
	if (open_seq(lw) < 0) {
		error_sys(err, "open the instance's log");
		free_writer(lw);
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		if (pipe2(p, O_CLOEXEC) < 0 || fcntl(p[0], F_SETFL, O_NONBLOCK) < 0) {
			error_sys(err, "log pipes");
			free_writer(lw);
			return -1;
		}
		lw->in[i].fd = p[0];
		lw->write_end[i] = p[1];
	}
	pthread_mutex_init(&lw->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lw->queued, &ca);
	pthread_cond_init(&lw->taken, &ca);
	pthread_condattr_destroy(&ca);
	/* No signals for these threads: SIGTERM is for the engine to pass to
	 * the command, and a thread taking it would end the shim. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&lw->writer, NULL, writer_main, lw);
	if (r == 0 && (r = pthread_create(&lw->reader, NULL, reader_main, lw)) != 0) {
		pthread_mutex_lock(&lw->lock);
		lw->eof = true;
		pthread_cond_signal(&lw->queued);
		pthread_mutex_unlock(&lw->lock);
		pthread_join(lw->writer, NULL);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		free_writer(lw);
		return error_set(err, AEGIS_E_SETUP, r, "log threads: %s", strerror(r));
	}
	*out_fd = lw->write_end[0];
	*err_fd = lw->write_end[1];
	*out = lw;
	return 0;
}

uint64_t logwriter_finish(struct logwriter *lw)
{
	uint64_t lost;

	/* the last writers of the pipes: their EOF ends the reader, which ends the writer */
	for (int i = 0; i < 2; i++) {
		close(lw->write_end[i]);
		lw->write_end[i] = -1;
	}
	pthread_join(lw->reader, NULL);
	pthread_join(lw->writer, NULL);
	lost = lw->reader_lost + lw->writer_lost;
	pthread_mutex_destroy(&lw->lock);
	pthread_cond_destroy(&lw->queued);
	pthread_cond_destroy(&lw->taken);
	free_writer(lw);
	return lost;
}
