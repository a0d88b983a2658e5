/* command.c — finding and starting the sandboxed command from PID 1.
 *
 * A vfork-style clone on a small stack: no copy of PID 1's page tables, the
 * parent resumes once the child has exec'd or failed, and the failure's
 * errno comes back through the shared memory. Written out rather than
 * posix_spawn because glibc's leaves its internal signals (32, 33) ignored
 * in the child, and ignored signals survive exec. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

struct launch {
	const char *path;
	char *const *argv;
	char *const *envp;
	const sigset_t *mask;
	uint64_t ignored;	/* signals to put back to default */
	int err;		/* written by the child if exec fails */
};

/* Runs on a borrowed stack in PID 1's memory: no sanitizer bookkeeping. */
__attribute__((no_sanitize_address, no_sanitize_undefined))
static int launch_child(void *arg)
{
	struct launch *l = arg;
	struct kernel_sigaction dfl = { .handler = SIG_DFL };

	for (int sig = 1; sig <= 64; sig++)
		if (l->ignored & (1ULL << (sig - 1)))
			syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
	sigprocmask(SIG_SETMASK, l->mask, NULL);
	execve(l->path, l->argv, l->envp);
	l->err = errno;
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
	static char stack[64 * 1024] __attribute__((aligned(16)));
	char path[4096];
	struct launch l = {
		.path = path, .argv = ctx->spec->argv, .envp = ctx->envp, .mask = mask,
		.ignored = ignored_signals(),
	};
	pid_t pid;

	*err = resolve(ctx->spec->argv[0], ctx->envp, path, sizeof path);
	if (*err)
		return -1;
	pid = clone(launch_child, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &l);
	if (pid < 0) {
		*err = errno;
		return -1;
	}
	if (l.err) {
		/* exec failed: the child has exited; reap it before reporting */
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		*err = l.err;
		return -1;
	}
	return pid;
}
