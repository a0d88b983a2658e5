/* supervise.c — the supervisor's side of a run, after clone.
 *
 * One poll loop: the sandbox's PID 1 (pidfd), its sync channel, captured
 * output, signals to forward, and the wall-clock deadline. */
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
#include "sandbox.h"

/* Signals a user sends to `aegis run` that belong to the command. */
static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

static int send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Keep at most spec->capture_max bytes of a stream; read and drop the rest
 * so the command never blocks on a full pipe. Returns 0 at EOF. */
static int capture_read(int fd, struct aegis_stream *s, size_t max)
{
	char buf[65536];
	ssize_t n = read(fd, buf, sizeof buf);

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0)
		return 0;
	if (s->len < max) {
		size_t keep = (size_t)n < max - s->len ? (size_t)n : max - s->len;
		char *grown = realloc(s->data, s->len + keep + 1);
		if (!grown)
			return 0;
		s->data = grown;
		memcpy(s->data + s->len, buf, keep);
		s->len += keep;
		s->data[s->len] = '\0';
		if (keep < (size_t)n)
			s->truncated = true;
	} else {
		s->truncated = true;
	}
	return 1;
}

static void handle_sync(int fd, bool *open, int *status, bool *got_exit, bool *failed,
			struct aegis_error *err)
{
	struct sync_msg msg;
	int r = sync_recv(fd, &msg);

	if (r <= 0) {
		*open = false;
		return;
	}
	if (msg.kind == SYNC_EXIT) {
		*status = msg.wait_status;
		*got_exit = true;
	} else if (msg.kind == SYNC_ERROR && !*failed) {
		*err = msg.err;
		*failed = true;
	}
}

int supervise(pid_t pid, int pidfd, int sync_fd, const struct aegis_spec *spec,
	      struct supervise_io *io, struct aegis_result *res, struct aegis_error *err)
{
	uint64_t start = now_us(), deadline = spec->limits.wall_ms ? start + spec->limits.wall_ms * 1000 : 0;
	bool sync_open = true, exited = false, got_exit = false, failed = false, timed_out = false;
	int status = 0, sigfd;
	sigset_t mask;

	(void)pid;
	sigemptyset(&mask);
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaddset(&mask, forwarded[i]);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		return error_sys(err, "signalfd");

	while (!exited || sync_open || io->out_fd >= 0 || io->err_fd >= 0) {
		struct pollfd p[5] = {
			{ .fd = exited ? -1 : pidfd, .events = POLLIN },
			{ .fd = sync_open ? sync_fd : -1, .events = POLLIN },
			{ .fd = exited ? -1 : sigfd, .events = POLLIN },
			{ .fd = io->out_fd, .events = POLLIN },
			{ .fd = io->err_fd, .events = POLLIN },
		};
		int wait_ms = -1;

		if (deadline && !exited) {
			uint64_t now = now_us();
			if (now >= deadline) {
				if (!timed_out)
					send_signal(pidfd, SIGKILL);
				timed_out = true;
			} else {
				wait_ms = (int)((deadline - now + 999) / 1000);
			}
		}
		if (poll(p, 5, timed_out ? -1 : wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			close(sigfd);
			return error_sys(err, "poll");
		}
		if (p[1].revents)
			handle_sync(sync_fd, &sync_open, &status, &got_exit, &failed, err);
		if (p[2].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si)
				send_signal(pidfd, (int)si.ssi_signo);
		}
		if (p[3].revents && !capture_read(io->out_fd, &res->out, spec->capture_max)) {
			close(io->out_fd);
			io->out_fd = -1;
		}
		if (p[4].revents && !capture_read(io->err_fd, &res->err, spec->capture_max)) {
			close(io->err_fd);
			io->err_fd = -1;
		}
		if (p[0].revents)
			exited = true;	/* PID 1 gone: the whole pid namespace is gone */
	}
	close(sigfd);
	res->wall_us = now_us() - start;

	if (timed_out) {
		res->end = AEGIS_END_TIMEOUT;
		res->exit_code = 124;
		return 0;
	}
	if (failed)
		return -1;
	if (!got_exit)
		return error_set(err, AEGIS_E_SETUP, 0, "sandbox init ended without reporting a status");
	if (WIFSIGNALED(status)) {
		res->end = AEGIS_END_SIGNALED;
		res->term_signal = WTERMSIG(status);
		res->exit_code = 128 + res->term_signal;
	} else {
		res->end = AEGIS_END_EXITED;
		res->exit_code = WEXITSTATUS(status);
	}
	return 0;
}
