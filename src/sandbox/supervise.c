/* supervise.c — the supervisor's side of a run, after clone.
 *
 * One poll loop: the sandbox's PID 1 (pidfd), its sync channel, the
 * command's stdout and stderr (always through us, so the output limit holds
 * whether output is passed on or captured), signals to forward, and a tick
 * for the limits the kernel does not stop by itself. The first limit hit
 * stops the whole sandbox and becomes the run's typed reason. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/util.h"
#include "execserve.h"
#include "netrelay.h"
#include "proxy.h"
#include "redact.h"
#include "sandbox.h"

#define TICK_MS 25	/* how often pids, CPU and OOM are looked at */

/* Signals a user sends to `aegis run` that belong to the command. */
static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

struct stream {
	int in;			/* read end of the command's pipe, -1 at EOF */
	int out;		/* where it goes: 1 or 2, or -1 when captured */
	int copy;		/* artifacts file, or -1 */
	struct aegis_stream *cap;
	uint64_t seen;		/* bytes the command wrote */
	struct redactor red;	/* injected secrets cut out (red.n: how many) */
};

struct run_state {
	const struct aegis_spec *spec;
	struct artifacts *arts;
	struct run_parts *parts;
	struct proxy *proxy;
	struct netrelay *relay;	/* instead of the proxy: spec.net_upstream */
	struct execserve *exec;	/* spec.control_fd given: execs into the run */
	struct execwatch watch;
	struct cgroup *cg;
	struct aegis_result *res;
	int pidfd;
	const char *limit;	/* first limit hit */
	bool stopped;		/* we killed the sandbox */
	struct thrash_watch thrash;
};

static int send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static void stop_for(struct run_state *st, const char *limit)
{
	if (!st->limit)
		st->limit = limit;
	if (!st->stopped)
		send_signal(st->pidfd, SIGKILL);
	st->stopped = true;
}

static void keep(struct aegis_stream *s, const char *buf, size_t n, size_t max)
{
	size_t room = s->len < max ? max - s->len : 0, take = n < room ? n : room;
	char *grown;

	if (take < n)
		s->truncated = true;
	if (!take || !(grown = realloc(s->data, s->len + take + 1)))
		return;
	s->data = grown;
	memcpy(s->data + s->len, buf, take);
	s->len += take;
	s->data[s->len] = '\0';
}

/* Where a stream's bytes go: the artifacts copy, and the caller or the capture. */
struct sink {
	struct run_state *st;
	struct stream *s;
	bool broken;		/* our reader went away */
};

static void deliver(void *arg, const char *buf, size_t len)
{
	struct sink *k = arg;
	struct stream *s = k->s;

	if (s->copy >= 0 && len)
		(void)write_all(s->copy, buf, len);
	if (s->out < 0)
		keep(s->cap, buf, len, k->st->spec->capture_max);
	else if (len && write_all(s->out, buf, len) < 0 && errno == EPIPE)
		k->broken = true;
}

/* Move one chunk of a stream on. Past the output limit the bytes are read
 * and dropped, so the command never blocks on a full pipe. A run given
 * secrets has their values replaced on the way (redact.c). */
static void pump(struct run_state *st, struct stream *s)
{
	uint64_t limit = st->spec->limits.output_bytes;
	struct sink k = { .st = st, .s = s };
	char buf[65536];
	ssize_t n = read(s->in, buf, sizeof buf);
	size_t pass;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		if (s->red.n)
			redact_feed(&s->red, NULL, 0, true, deliver, &k);
		close(s->in);
		s->in = -1;
		return;
	}
	pass = s->seen >= limit ? 0 : (size_t)(limit - s->seen < (uint64_t)n ? limit - s->seen : (uint64_t)n);
	s->seen += (uint64_t)n;
	if (pass < (size_t)n) {
		s->cap->truncated = true;
		if (!st->limit)
			st->limit = "output_truncated";	/* cut, not stopped */
	}
	if (s->red.n)
		redact_feed(&s->red, buf, pass, false, deliver, &k);
	else
		deliver(&k, buf, pass);
	if (k.broken) {
		/* Our reader went away: so does the command's, as with a plain pipe. */
		close(s->in);
		s->in = -1;
	}
}

/* Out of memory without the OOM killer (thrash.c). The run's usage is
 * read once a window; the rest of its memory files only near the limit. */
static bool thrashing(struct run_state *st, uint64_t now)
{
	uint64_t limit = st->spec->limits.memory_bytes;
	struct memory_sample s = { .at_us = now };

	if (!thrash_due(&st->thrash, now))
		return false;
	s.current = cgroup_memory_current(st->cg);
	if (thrash_near_limit(s.current, limit))
		cgroup_memory_sample(st->cg, &s);
	return thrash_update(&st->thrash, &s, limit);
}

/* Limits enforced by watching: pids exhaustion, total CPU time, OOM kills. */
static void tick(struct run_state *st)
{
	const struct aegis_limits *l = &st->spec->limits;

	if (cgroup_oom_killed(st->cg) || thrashing(st, now_us()))
		stop_for(st, "oom");
	else if (cgroup_pids_hit(st->cg))
		stop_for(st, "pids");
	else if (l->cpu_ms && cgroup_cpu_usage_us(st->cg) >= l->cpu_ms * 1000)
		stop_for(st, "cpu");
}

static void handle_sync(int fd, bool *open, struct run_state *st, int *status, bool *got_exit,
			bool *failed, struct aegis_error *err)
{
	struct sync_msg msg;
	int passed, r = sync_recv_fd(fd, &msg, &passed);

	if (passed >= 0 && (r <= 0 || (msg.kind != SYNC_LISTENER && msg.kind != SYNC_UPPER &&
					msg.kind != SYNC_PROXY && msg.kind != SYNC_EXEC_STARTED &&
					msg.kind != SYNC_CONNECTED) ||
			    (msg.kind == SYNC_LISTENER && st->watch.fd >= 0))) {
		close(passed);
		passed = -1;
	}
	if (r <= 0) {
		*open = false;
		return;
	}
	switch (msg.kind) {
	case SYNC_LISTENER:
		st->watch.fd = passed;
		break;
	case SYNC_PROXY:
		/* relay mode (spec.net_upstream): the proxy is elsewhere; a plain relay here */
		if (passed >= 0 && st->spec->net_upstream) {
			if (st->relay) {
				close(passed);
			} else if (netrelay_start(&st->relay, passed, st->spec->net_upstream, err) < 0) {
				*failed = true;	/* cut off, as without its proxy: end it */
				send_signal(st->pidfd, SIGKILL);
			}
		} else if (passed >= 0 && !st->proxy && st->parts->rules &&
		    proxy_start(&st->proxy, passed, st->parts->rules, record_connection, st->parts->rec,
				err) < 0) {
			/* without its proxy an allow-mode sandbox is cut off: end it */
			*failed = true;
			send_signal(st->pidfd, SIGKILL);
		}
		break;
	case SYNC_UPPER:
		if (st->arts->upper_fd < 0)
			st->arts->upper_fd = passed;
		else if (passed >= 0)
			close(passed);
		break;
	case SYNC_EXIT:
		*status = msg.wait_status;
		*got_exit = true;
		if (msg.limit[0] && !st->limit)
			st->limit = strcmp(msg.limit, "disk_full") == 0 ? "disk_full" : "unknown";
		break;
	case SYNC_LIMIT:
		stop_for(st, strcmp(msg.limit, "disk_full") == 0 ? "disk_full" : "unknown");
		break;
	case SYNC_EXEC_STARTED:
	case SYNC_EXEC_EXIT:
	case SYNC_CONNECTED:
		if (st->exec)
			execserve_news(st->exec, &msg, passed);
		else if (passed >= 0)
			close(passed);
		break;
	case SYNC_ERROR:
		if (!*failed) {
			*err = msg.err;
			*failed = true;
		}
		break;
	default:
		break;
	}
}

static int result_of(struct run_state *st, bool got_exit, int status, struct aegis_error *err)
{
	struct aegis_result *res = st->res;

	res->limit = st->limit;
	if (st->stopped) {
		/* We stopped the sandbox: the limit is the cause, whatever PID 1 said. */
		res->end = AEGIS_END_LIMIT;
		res->term_signal = SIGKILL;
		res->exit_code = strcmp(st->limit, "timeout") == 0 ? 124 : 128 + SIGKILL;
		if (strcmp(st->limit, "timeout") == 0)
			res->end = AEGIS_END_TIMEOUT;
		return 0;
	}
	if (!got_exit)
		return error_set(err, AEGIS_E_SETUP, 0, "sandbox init ended without reporting a status");
	if (WIFSIGNALED(status)) {
		res->end = AEGIS_END_SIGNALED;
		res->term_signal = WTERMSIG(status);
		res->exit_code = 128 + res->term_signal;
		/* the kernel's OOM killer took the command itself */
		if (res->term_signal == SIGKILL && cgroup_oom_killed(st->cg))
			res->limit = "oom";
	} else {
		res->end = AEGIS_END_EXITED;
		res->exit_code = WEXITSTATUS(status);
	}
	return 0;
}

int supervise(pid_t pid, int pidfd, int sync_fd, const struct aegis_spec *spec,
	      struct run_parts *parts, struct supervise_io *io, struct aegis_result *res,
	      struct aegis_error *err)
{
	struct cgroup *cg = parts->cg;
	struct artifacts *arts = parts->arts;
	uint64_t start = now_us(), next_tick = start + TICK_MS * 1000;
	uint64_t deadline = spec->limits.wall_ms ? start + spec->limits.wall_ms * 1000 : 0;
	struct run_state st = { .spec = spec, .arts = arts, .cg = cg, .res = res, .pidfd = pidfd,
				.watch = { .fd = -1, .spec = spec, .rec = parts->rec },
				.parts = parts };
	struct stream streams[2] = {
		{ .in = io->out_fd, .out = spec->capture ? -1 : spec->out_fd ? spec->out_fd : 1,
		  .copy = arts->out_fd, .cap = &res->out },
		{ .in = io->err_fd, .out = spec->capture ? -1 : spec->err_fd ? spec->err_fd : 2,
		  .copy = arts->err_fd, .cap = &res->err },
	};
	bool sync_open = true, exited = false, got_exit = false, failed = false;
	int status = 0, sigfd;
	sigset_t mask;

	(void)pid;
	io->out_fd = io->err_fd = -1;	/* the streams own them now */
	for (int i = 0; i < 2; i++)
		if (redact_init(&streams[i].red, spec->secret_env, spec->secret_files) < 0) {
			redact_free(&streams[0].red);
			redact_free(&streams[1].red);
			close(streams[0].in);
			close(streams[1].in);
			return error_set(err, AEGIS_E_SETUP, ENOMEM, "cannot set up secret redaction");
		}
	sigemptyset(&mask);
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaddset(&mask, forwarded[i]);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		return error_sys(err, "signalfd");
	if (spec->control_fd > 0 && !(st.exec = execserve_new(sync_fd, spec, parts->rec))) {
		close(sigfd);
		return error_sys(err, "exec server");
	}

	while (!exited || sync_open || streams[0].in >= 0 || streams[1].in >= 0) {
		struct pollfd p[7] = {
			{ .fd = exited ? -1 : pidfd, .events = POLLIN },
			{ .fd = sync_open ? sync_fd : -1, .events = POLLIN },
			{ .fd = exited ? -1 : sigfd, .events = POLLIN },
			{ .fd = streams[0].in, .events = POLLIN },
			{ .fd = streams[1].in, .events = POLLIN },
			{ .fd = exited ? -1 : st.watch.fd, .events = POLLIN },
			{ .fd = exited || !st.exec ? -1 : spec->control_fd, .events = POLLIN },
		};
		uint64_t now = now_us(), wake = next_tick;
		int wait_ms;

		if (!exited && deadline && now >= deadline)
			stop_for(&st, "timeout");
		if (!exited && now >= next_tick) {
			tick(&st);
			next_tick = now + TICK_MS * 1000;
		}
		if (deadline && deadline < wake)
			wake = deadline;
		wait_ms = exited || st.stopped ? -1 : (int)((wake > now ? wake - now : 0) + 999) / 1000;
		if (poll(p, 7, wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			close(sigfd);
			return error_sys(err, "poll");
		}
		if (p[1].revents)
			handle_sync(sync_fd, &sync_open, &st, &status, &got_exit, &failed, err);
		if (p[2].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si)
				send_signal(pidfd, (int)si.ssi_signo);
		}
		for (int i = 0; i < 2; i++)
			if (p[3 + i].revents)
				pump(&st, &streams[i]);
		if (p[5].revents & POLLIN) {
			const char *limit = execwatch_handle(&st.watch);
			if (limit)
				stop_for(&st, limit);
		} else if (p[5].revents) {
			/* no process left under the filter: no exec can come, and a
			 * hung-up fd would make poll return at once, forever */
			close(st.watch.fd);
			st.watch.fd = -1;
		}
		if (p[6].revents)
			execserve_accept(st.exec, spec->control_fd);
		if (p[0].revents)
			exited = true;	/* PID 1 gone: the whole pid namespace is gone */
	}
	close(sigfd);
	redact_free(&streams[0].red);
	redact_free(&streams[1].red);
	if (st.exec)
		execserve_end(st.exec);
	if (st.proxy)
		proxy_stop(st.proxy);
	netrelay_stop(st.relay);
	if (st.watch.fd >= 0)
		close(st.watch.fd);
	res->execs = st.watch.count;
	res->wall_us = now_us() - start;
	/* A limit hit in the last moments, before a tick saw it. */
	if (!st.limit && cgroup_oom_killed(cg))
		st.limit = "oom";
	else if (!st.limit && cgroup_pids_hit(cg))
		st.limit = "pids";
	if (failed && !st.stopped)
		return -1;
	return result_of(&st, got_exit, status, err);
}
