/* harness.c — PID 1 inside every sandbox.
 *
 * It starts the command, forwards signals to it, reaps every orphan so no
 * zombie piles up, and when the command ends reports its wait status to the
 * supervisor and exits: the kernel then kills whatever is left in the pid
 * namespace, so nothing outlives the command. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/error.h"
#include "sandbox.h"

#define DISK_TICK_MS 50

/* Tell the supervisor why the command did not start, in its own words. */
static void report_start_failure(const struct sandbox_ctx *ctx, bool in_chdir, int e)
{
	struct sync_msg msg = { .kind = SYNC_ERROR };
	const char *cmd = ctx->spec->argv[0];

	if (in_chdir)
		error_set(&msg.err, AEGIS_E_INVALID, e, "cwd %s", ctx->spec->cwd);
	else if (e == ENOENT)
		error_set(&msg.err, AEGIS_E_NOTFOUND, 0, "%s: command not found", cmd);
	else
		error_set(&msg.err, AEGIS_E_NOEXEC, e, "%s: cannot execute", cmd);
	sync_send(ctx->sync_fd, &msg);
	_exit(127);
}

/* The writable layers are size-limited tmpfs; a full one is the disk
 * limit being hit. Checked from inside, where they are mounted. */
static bool disk_full(const struct sandbox_ctx *ctx)
{
	static const char *const layers[] = { "/tmp", "/dev/shm", "/workspace" };
	struct statfs sfs;

	for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
		if (i == 2 && ctx->spec->workspace && !ctx->spec->workspace_overlay)
			continue;	/* a host directory: not ours to bound */
		if (statfs(layers[i], &sfs) == 0 && sfs.f_blocks && sfs.f_bavail == 0)
			return true;
	}
	return false;
}

void harness_run(const struct sandbox_ctx *ctx)
{
	struct sync_msg msg = { .kind = SYNC_EXIT };
	sigset_t all, old;
	int status = 0, e;
	pid_t cmd;

	/* Non-dumpable: the command cannot read or write our memory or open
	 * /proc/1/exe (the aegis binary) through /proc. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* A namespace's PID 1 drops signals left at their default action, but
	 * a blocked signal is always queued: block them all and take them in
	 * order with sigwaitinfo. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);

	if (chdir(ctx->spec->cwd) < 0)
		report_start_failure(ctx, true, errno);
	/* The command starts with no signal blocked, whatever our caller had
	 * blocked (a daemon's threads block SIGTERM for their own reasons). */
	sigemptyset(&old);
	cmd = command_start(ctx, &old, &e);
	if (cmd < 0)
		report_start_failure(ctx, false, e);

	for (;;) {
		struct timespec tick = { 0, DISK_TICK_MS * 1000000L };
		siginfo_t si;
		int sig = sigtimedwait(&all, &si, &tick);
		pid_t pid;

		if (sig < 0) {
			if (errno == EAGAIN && disk_full(ctx)) {
				struct sync_msg limit = { .kind = SYNC_LIMIT, .limit = "disk_full" };
				sync_send(ctx->sync_fd, &limit);
			}
			continue;
		}
		if (sig != SIGCHLD) {
			kill(cmd, sig);
			continue;
		}
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid == cmd) {
				msg.wait_status = status;
				if (disk_full(ctx))
					strcpy(msg.limit, "disk_full");
				sync_send(ctx->sync_fd, &msg);
				_exit(0);
			}
		}
	}
}
