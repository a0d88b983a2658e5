/* command.c — finding and starting the sandboxed command from PID 1.
 *
 * A plain fork, not vfork: the child must be dumpable while it execs so the
 * supervisor's exec watcher can read the path and argv from its memory (PID
 * 1 itself stays non-dumpable, and a vfork child shares its memory and so its
 * dumpable flag). The exec error comes back through a close-on-exec pipe.
 * Written out rather than posix_spawn because glibc's leaves its internal
 * signals (32, 33) ignored in the child, and ignored signals survive exec. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/util.h"
#include "sandbox.h"

/* The kernel's struct sigaction, for raw rt_sigaction: libc refuses to
 * touch its internal signals, which we must reset all the same. */
struct kernel_sigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	uint64_t mask;
};

__attribute__((noreturn))
static void launch_child(const char *path, char *const *argv, char *const *envp,
			 const sigset_t *mask, uint64_t ignored, int report_fd)
{
	struct kernel_sigaction dfl = { .handler = SIG_DFL };
	int e;

	for (int sig = 1; sig <= 64; sig++)
		if (ignored & (1ULL << (sig - 1)))
			syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
	sigprocmask(SIG_SETMASK, mask, NULL);
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	execve(path, argv, envp);
	e = errno;
	(void)!write(report_fd, &e, sizeof e);
	_exit(127);
}

/* The signals this process ignores: they would be inherited through exec. */
static uint64_t ignored_signals(void)
{
	char buf[2048], *p;

	if (read_file_at(AT_FDCWD, "/proc/self/status", buf, sizeof buf) < 0 ||
	    !(p = strstr(buf, "SigIgn:")))
		return ~0ULL & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
	return strtoull(p + 7, NULL, 16);
}

/* execvp's lookup, against the command's PATH. Returns 0 or an errno. */
static int resolve(const char *cmd, char *const *envp, char *out, size_t len)
{
	const char *path = "/usr/local/bin:/usr/bin:/bin";
	int found_err = ENOENT;

	if (strchr(cmd, '/')) {
		snprintf(out, len, "%s", cmd);
		return 0;
	}
	for (char *const *e = envp; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	while (*path) {
		size_t n = strcspn(path, ":");
		struct stat st;

		snprintf(out, len, "%.*s%s%s", (int)n, path, n ? "/" : "", cmd);
		if (stat(out, &st) == 0) {
			if (S_ISREG(st.st_mode) && access(out, X_OK) == 0)
				return 0;
			found_err = EACCES;	/* keep looking, as execvp does */
		}
		path += n + (path[n] == ':');
	}
	return found_err;
}

pid_t command_start(const struct sandbox_ctx *ctx, const sigset_t *mask, int *err)
{
	char path[4096];
	uint64_t ignored = ignored_signals();
	int report[2], e;
	pid_t pid;

	*err = resolve(ctx->spec->argv[0], ctx->envp, path, sizeof path);
	if (*err)
		return -1;
	if (pipe2(report, O_CLOEXEC) < 0) {
		*err = errno;
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		close(report[0]);
		launch_child(path, ctx->spec->argv, ctx->envp, mask, ignored, report[1]);
	}
	close(report[1]);
	if (pid < 0) {
		*err = errno;
		close(report[0]);
		return -1;
	}
	/* EOF: the exec happened (close-on-exec); four bytes: its errno. */
	if (read(report[0], &e, sizeof e) == (ssize_t)sizeof e) {
		close(report[0]);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		*err = e;
		return -1;
	}
	close(report[0]);
	return pid;
}
