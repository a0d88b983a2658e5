/* auditrelay.c — a vm run's engine audit events into the host's log as
 * they come.
 *
 * The engine in the guest writes its events to io/audit.jsonl (the io 9p
 * share; a guest write reaches the host file before it returns). An
 * instance lives for days, and `aegis audit` of a running instance must
 * show its current boot (run.start, secret.use, each exec's argv), as it
 * does for the ns backend, whose engine appends to the real log itself.
 * So the host reads the file's new complete lines while the run goes on —
 * on the session's tick, once the guest says the command started, and
 * before an exec's bytes reach its user (ctlproxy.c), so the exec's
 * events are on the chain when its user learns it ended — and appends
 * them with audit_append: the host's chain, sequence and clock. The guest
 * wrote that file: it is read as hostile input (a regular file opened
 * without following a link, lines and bytes bounded, anything that is not
 * one JSON object with a type, or out of the engine's order, dropped and
 * counted). The host proxy's net.connect events are held and go in among
 * the engine's by time, after run.start and before run.end. run.end waits
 * for the run's end: how the guest ended (boot_ms, net_error) is known
 * only then. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/audit.h"
#include "../sandbox/sandbox.h"
#include "vm.h"

/* Per boot: what a guest may put on the host's chain at most. Past it,
 * lines are dropped and counted in run.end ("guest_audit_dropped"). */
#define BYTES_MAX (64u << 20)
#define LINES_MAX (1u << 20)
#define LINE_MAX_BYTES (1u << 20)	/* an exec event with a long argv fits */
/* A net.connect event heard this long ago goes in on a tick even when no
 * engine event after it came (the guest's lines reach the host file at
 * once; the tick reads them within TICK_MS). */
#define NET_LAG_US 1000000

struct auditrelay {
	pthread_mutex_t lock;	/* one appender in this process at a time: flock is per open file */
	struct audit_log *log;
	const struct vm_result *r;	/* how the guest started: run.start's fields */
	int dirfd, fd;		/* the run's io/ and the guest's file in it (-1: not yet) */
	off_t off;		/* bytes of the file read */
	char *line;		/* the incomplete line so far */
	size_t len;
	bool skipping;		/* the current line is over the bound: dropped up to its newline */
	unsigned long lines, dropped;
	bool started;		/* run.start is on the chain */
	json_t *end;		/* the guest's run.end, held for the run's end (NULL: none yet) */
	json_t *net;		/* [{"ts", "event"}], in the order heard */
	size_t net_next;	/* the first not yet in the log */
	char id[64];		/* the run's id, from the engine's run.start */
};

static const char *isolation(bool kvm)
{
	return kvm ? "vm" : "test mode: TCG emulation is not a security boundary";
}

struct auditrelay *auditrelay_new(struct audit_log *log, bool net)
{
	struct auditrelay *a = calloc(1, sizeof *a);

	if (!a)
		return NULL;
	pthread_mutex_init(&a->lock, NULL);
	a->log = log;
	a->dirfd = a->fd = -1;
	a->net = net ? json_array() : NULL;
	if (net && !a->net) {
		auditrelay_free(a);
		return NULL;
	}
	return a;
}

void auditrelay_free(struct auditrelay *a)
{
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	if (a->dirfd >= 0)
		close(a->dirfd);
	free(a->line);
	json_decref(a->end);
	json_decref(a->net);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

void auditrelay_net_heard(void *arg, const struct proxy_conn_report *c)
{
	struct auditrelay *a = arg;
	char ts[32];

	audit_timestamp(ts);
	pthread_mutex_lock(&a->lock);
	json_array_append_new(a->net, json_pack("{s:s, s:o}", "ts", ts, "event", record_connection_json("", c)));
	pthread_mutex_unlock(&a->lock);
}

/* The held net.connect events up to the time before (NULL: all), into
 * the log with the run's id. The guest's clock is the host's, set by the
 * REQUEST, so the two sets of times compare. */
static void net_flush(struct auditrelay *a, const char *before)
{
	struct aegis_error ignored;

	for (; a->net && a->net_next < json_array_size(a->net); a->net_next++) {
		json_t *e = json_array_get(a->net, a->net_next), *ev;

		if (before && strcmp(json_string_value(json_object_get(e, "ts")), before) > 0)
			break;
		ev = json_deep_copy(json_object_get(e, "event"));
		if (a->id[0])
			json_object_set_new(ev, "id", json_string(a->id));
		else
			json_object_del(ev, "id");
		audit_append(a->log, "net.connect", ev, &ignored);
	}
}

/* run.end's fields from the host: how the guest started and ended. */
static void end_fields(json_t *ev, const struct vm_result *r, unsigned long dropped)
{
	json_object_set_new(ev, "boot_ms", json_real((double)r->boot_us / 1000.0));
	if (r->setup_us)
		json_object_set_new(ev, "guest_setup_ms", json_real((double)r->setup_us / 1000.0));
	vm_start_json(ev, r->start == VM_RESTORE, r->restore_us, r->build_us, r->start_why);
	vm_image_json(ev, r->image_erofs, r->image_build_us);
	if (r->net_error[0])
		json_object_set_new(ev, "net_error", json_string(r->net_error));
	if (dropped)
		json_object_set_new(ev, "guest_audit_dropped", json_integer((json_int_t)dropped));
}

/* One line of the guest's file, under the lock. */
static void take_line(struct auditrelay *a, const char *text, size_t len)
{
	static const char *const reserved[] = { "v", "seq", "ts", "type", "prev", NULL };
	struct aegis_error ignored;
	json_t *ev = json_loadb(text, len, 0, NULL);
	const char *t = json_string_value(json_object_get(ev, "type"));
	const char *ts = json_string_value(json_object_get(ev, "ts"));
	char type[64], when[40];

	/* The engine writes run.start first and run.end last, once each: a
	 * file that does not is the guest's doing, and what breaks that
	 * order is dropped, so the chain brackets every boot once. */
	if (!json_is_object(ev) || !t || strlen(t) >= sizeof type || ++a->lines > LINES_MAX || a->end ||
	    a->started == !strcmp(t, "run.start") /* an event before run.start, or a second run.start */) {
		a->dropped++;
		json_decref(ev);
		return;
	}
	snprintf(type, sizeof type, "%s", t);
	snprintf(when, sizeof when, "%s", ts ? ts : "");
	for (const char *const *k = reserved; *k; k++)
		json_object_del(ev, *k);
	if (!strcmp(type, "run.end")) {	/* waits for the run's end */
		a->end = ev;
		return;
	}
	if (strcmp(type, "run.start")) {
		net_flush(a, when);
	} else {
		const char *id = json_string_value(json_object_get(ev, "id"));

		if (id)
			snprintf(a->id, sizeof a->id, "%s", id);
		a->started = true;
		json_object_set_new(ev, "backend", json_string("vm"));
		json_object_set_new(ev, "accel", json_string(a->r->kvm ? "kvm" : "tcg"));
		json_object_set_new(ev, "isolation", json_string(isolation(a->r->kvm)));
		json_object_set_new(ev, "guest_kernel", json_string(a->r->kernel));
		json_object_set_new(ev, "host_uid", json_integer((json_int_t)getuid()));
		vm_start_json(ev, a->r->start == VM_RESTORE, a->r->restore_us, a->r->build_us, a->r->start_why);
		vm_image_json(ev, a->r->image_erofs, a->r->image_build_us);
	}
	audit_append(a->log, type, ev, &ignored);
}

/* The line so far grows by n bytes, or is dropped once over the bound. */
static void line_add(struct auditrelay *a, const char *p, size_t n)
{
	char *grown;

	if (a->skipping || !n)
		return;
	if (a->len + n > LINE_MAX_BYTES || !(grown = realloc(a->line, a->len + n))) {
		a->skipping = true;
		a->len = 0;
		return;
	}
	memcpy(grown + a->len, p, n);
	a->line = grown;
	a->len += n;
}

static void line_end(struct auditrelay *a)
{
	if (a->skipping)
		a->dropped++;
	else if (a->len)
		take_line(a, a->line, a->len);
	a->skipping = false;
	a->len = 0;
}

/* The file's new bytes, its complete lines taken; final: its last line
 * too, newline or not (the guest is gone). Under the lock. */
static void read_new(struct auditrelay *a, bool final)
{
	char chunk[65536];
	struct stat st;

	if (a->fd < 0 && a->dirfd >= 0) {
		/* the engine makes it at its start: a regular file only (a
		 * link to a host file must not be read) */
		int fd = openat(a->dirfd, "audit.jsonl", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

		if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
			close(fd);
			fd = -1;
			close(a->dirfd);	/* never tried again */
			a->dirfd = -1;
		}
		a->fd = fd;
	}
	while (a->fd >= 0 && a->off < (off_t)BYTES_MAX) {
		size_t want = sizeof chunk < BYTES_MAX - (size_t)a->off ? sizeof chunk : BYTES_MAX - (size_t)a->off;
		ssize_t n = pread(a->fd, chunk, want, a->off);
		const char *p = chunk, *end, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		a->off += n;
		for (end = chunk + n; (nl = memchr(p, '\n', (size_t)(end - p))); p = nl + 1) {
			line_add(a, p, (size_t)(nl - p));
			line_end(a);
		}
		line_add(a, p, (size_t)(end - p));
	}
	if (final && (a->len || a->skipping))
		line_end(a);
	if (final && a->fd >= 0 && fstat(a->fd, &st) == 0 && st.st_size > a->off)
		a->dropped++;	/* past the bytes bound: at least one line not taken */
}

void auditrelay_begin(struct auditrelay *a, const char *dir, const struct vm_result *r)
{
	char path[4200];

	snprintf(path, sizeof path, "%s/io", dir);
	pthread_mutex_lock(&a->lock);
	a->r = r;
	a->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	pthread_mutex_unlock(&a->lock);
}

void auditrelay_poll(struct auditrelay *a)
{
	uint64_t t;
	char before[32];
	struct timespec now;
	struct tm tm;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	read_new(a, false);
	/* net.connect events no engine event came after yet: in, once old
	 * enough that no engine event before them can still be on its way */
	if (a->started && !a->end && a->net && a->net_next < json_array_size(a->net)) {
		clock_gettime(CLOCK_REALTIME, &now);
		t = (uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_nsec / 1000 - NET_LAG_US;
		now.tv_sec = (time_t)(t / 1000000);
		gmtime_r(&now.tv_sec, &tm);
		strftime(before, sizeof before, "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(before + 19, sizeof before - 19, ".%06luZ", (unsigned long)(t % 1000000));
		net_flush(a, before);
	}
	pthread_mutex_unlock(&a->lock);
}

void auditrelay_poll_hook(void *arg)
{
	auditrelay_poll(arg);
}

void auditrelay_end(struct auditrelay *a, const struct vm_result *r, const struct aegis_error *failure)
{
	struct aegis_error ignored;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->r = r;
	read_new(a, true);
	if (!a->started)	/* the run failed before the engine said anything */
		audit_append(a->log, "run.start",
			     json_pack("{s:o, s:s, s:s, s:s, s:s}", "argv", json_array(), "backend", "vm", "accel",
				       r->kvm ? "kvm" : "tcg", "isolation", isolation(r->kvm), "guest_kernel",
				       r->kernel),
			     &ignored);
	a->started = true;
	net_flush(a, NULL);
	if (a->end) {
		end_fields(a->end, r, a->dropped);
		audit_append(a->log, "run.end", a->end, &ignored);	/* takes it */
		a->end = NULL;
	} else {
		json_t *ev = failure ? json_pack("{s:s, s:s}", "end", "error", "error", failure->msg)
				     : json_pack("{s:s, s:i}", "end", "timeout", "exit_code", 124);

		if (r->net_error[0])
			json_object_set_new(ev, "net_error", json_string(r->net_error));
		if (a->dropped)
			json_object_set_new(ev, "guest_audit_dropped", json_integer((json_int_t)a->dropped));
		audit_append(a->log, "run.end", ev, &ignored);
	}
	pthread_mutex_unlock(&a->lock);
}
