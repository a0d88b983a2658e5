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
#include <sys/ioctl.h>
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

/* The exec failed in the child: tell PID 1 at which step and why. */
__attribute__((noreturn)) static void child_failed(int report_fd, int step)
{
	int why[2] = { step, errno };

	(void)!write(report_fd, why, sizeof why);
	_exit(127);
}

__attribute__((noreturn))
static void launch_child(const char *path, const struct launch *l, const sigset_t *mask,
			 uint64_t ignored, int report_fd)
{
	struct kernel_sigaction dfl = { .handler = SIG_DFL };

	for (int sig = 1; sig <= 64; sig++)
		if (ignored & (1ULL << (sig - 1)))
			syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
	if (l->stdio[0] >= 0) {
		/* an exec: its own stdio, session and (with a tty) terminal */
		for (int i = 0; i < 3; i++)
			if (dup2(l->stdio[i], i) < 0)
				child_failed(report_fd, LAUNCH_EXEC);
		for (int i = 0; i < 3; i++)
			if (l->stdio[i] > 2)
				close(l->stdio[i]);
		if (setsid() < 0 || (l->tty && ioctl(0, TIOCSCTTY, 0) < 0))
			child_failed(report_fd, LAUNCH_EXEC);
	}
	if (l->cwd && chdir(l->cwd) < 0)
		child_failed(report_fd, LAUNCH_CHDIR);
	sigprocmask(SIG_SETMASK, mask, NULL);
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	execve(path, l->argv, l->envp);
	child_failed(report_fd, LAUNCH_EXEC);
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

pid_t command_launch(const struct launch *l, const sigset_t *mask, int *err, int *step)
{
	char path[4096];
	uint64_t ignored = ignored_signals();
	int report[2], why[2];
	pid_t pid;

	*step = LAUNCH_EXEC;
	*err = resolve(l->argv[0], l->envp, path, sizeof path);
	if (*err)
		return -1;
	if (pipe2(report, O_CLOEXEC) < 0) {
		*err = errno;
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		close(report[0]);
		launch_child(path, l, mask, ignored, report[1]);
	}
	close(report[1]);
	if (pid < 0) {
		*err = errno;
		close(report[0]);
		return -1;
	}
	/* EOF: the exec happened (close-on-exec); otherwise the step and errno. */
	if (read(report[0], why, sizeof why) == (ssize_t)sizeof why) {
		close(report[0]);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		*step = why[0];
		*err = why[1];
		return -1;
	}
	close(report[0]);
	return pid;
}
