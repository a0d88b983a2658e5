/* harness.c — PID 1 inside every sandbox.
 *
 * It starts the command, forwards signals to it, reaps every orphan so no
 * zombie piles up, and when the command ends reports its wait status to the
 * supervisor and exits: the kernel then kills whatever is left in the pid
 * namespace, so nothing outlives the command. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/error.h"
#include "sandbox.h"

/* Why the command never ran, sent up the exec pipe by the forked child. */
struct exec_failure {
	int stage;	/* 0: chdir to cwd, 1: execve */
	int err;
};

static void noop(int sig)
{
	(void)sig;
}

__attribute__((noreturn)) static void start_command(const struct sandbox_ctx *ctx, int report_fd,
						    const sigset_t *oldmask)
{
	const struct aegis_spec *spec = ctx->spec;
	struct exec_failure f = { 0, 0 };

	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigprocmask(SIG_SETMASK, oldmask, NULL);
	if (chdir(spec->cwd) < 0) {
		f.err = errno;
	} else {
		f.stage = 1;
		execvpe(spec->argv[0], spec->argv, ctx->envp);
		f.err = errno;
	}
	(void)!write(report_fd, &f, sizeof f);
	_exit(127);
}

/* Tell the supervisor why the command did not start, in its own words. */
static void report_exec_failure(const struct sandbox_ctx *ctx, const struct exec_failure *f)
{
	struct sync_msg msg = { .kind = SYNC_ERROR };
	const char *cmd = ctx->spec->argv[0];

	if (f->stage == 0)
		error_set(&msg.err, AEGIS_E_INVALID, f->err, "cwd %s", ctx->spec->cwd);
	else if (f->err == ENOENT)
		error_set(&msg.err, AEGIS_E_NOTFOUND, 0, "%s: command not found", cmd);
	else
		error_set(&msg.err, AEGIS_E_NOEXEC, f->err, "%s: cannot execute", cmd);
	sync_send(ctx->sync_fd, &msg);
}

void harness_run(const struct sandbox_ctx *ctx)
{
	struct sync_msg msg = { .kind = SYNC_EXIT };
	struct exec_failure failure;
	sigset_t all, old;
	int report[2], status = 0;
	pid_t cmd;

	/* Non-dumpable: the command cannot read or write our memory or open
	 * /proc/1/exe (the aegis binary) through /proc. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* A handler makes each signal deliverable to a namespace's PID 1;
	 * blocking it lets us take them in order with sigwaitinfo. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, noop);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);

	if (pipe2(report, O_CLOEXEC) < 0) {
		error_sys(&msg.err, "harness: pipe");
		goto fail;
	}
	cmd = fork();
	if (cmd < 0) {
		error_sys(&msg.err, "harness: fork");
		goto fail;
	}
	if (cmd == 0)
		start_command(ctx, report[1], &old);
	close(report[1]);
	/* EOF means exec succeeded (CLOEXEC closed the pipe). */
	if (read(report[0], &failure, sizeof failure) == (ssize_t)sizeof failure) {
		report_exec_failure(ctx, &failure);
		_exit(127);
	}
	close(report[0]);

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);
		pid_t pid;

		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			kill(cmd, sig);
			continue;
		}
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid == cmd) {
				msg.wait_status = status;
				sync_send(ctx->sync_fd, &msg);
				_exit(0);
			}
		}
	}
fail:
	msg.kind = SYNC_ERROR;
	sync_send(ctx->sync_fd, &msg);
	_exit(125);
}
