/* execwatch.c — every execve in the sandbox, seen from outside it.
 *
 * PID 1 installs a seccomp filter that turns execve/execveat into user
 * notifications and hands the listener to the supervisor. For each one we
 * read the path and argv from the caller's memory, count it against the
 * execs limit, check the policy's argv rules, record it, and answer: run or
 * EPERM. The answer "run" (SECCOMP_USER_NOTIF_FLAG_CONTINUE) is subject to
 * a race with threads that rewrite the argv afterwards, so binaries are
 * refused by the kernel (landlock, hidden paths), never only here. */
#include <errno.h>
#include <fnmatch.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/audit.h"
#include "sandbox.h"

#define ARG_MAX_COUNT 256	/* argv entries recorded */
#define STR_MAX 4096		/* bytes of one string */
#define PAGE 4096u

/* Copy a NUL-terminated string out of another process, page by page so a
 * string ending just before an unmapped page is still read. */
static int read_remote_string(pid_t pid, uint64_t addr, char *out, size_t cap)
{
	size_t got = 0;

	while (got + 1 < cap) {
		size_t chunk = PAGE - (size_t)((addr + got) % PAGE);
		struct iovec local, remote;
		ssize_t n;
		char *nul;

		if (chunk > cap - 1 - got)
			chunk = cap - 1 - got;
		local = (struct iovec){ out + got, chunk };
		remote = (struct iovec){ (void *)(uintptr_t)(addr + got), chunk };
		n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
		if (n <= 0)
			return -1;
		if ((nul = memchr(out + got, '\0', (size_t)n)))
			return (int)(nul - out);
		got += (size_t)n;
	}
	out[got] = '\0';
	return (int)got;	/* cut at cap */
}

static int read_remote_ptrs(pid_t pid, uint64_t addr, uint64_t *ptrs, int max)
{
	for (int i = 0; i < max; i++) {
		struct iovec local = { &ptrs[i], sizeof ptrs[i] };
		struct iovec remote = { (void *)(uintptr_t)(addr + (uint64_t)i * 8), 8 };
		if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != 8)
			return -1;
		if (!ptrs[i])
			return i;
	}
	return max;
}

/* "git push" matches argv {"git", "push", ...} and {"/usr/bin/git", "push"}. */
static bool argv_rule_matches(const char *rule, char **argv, int argc)
{
	char words[256], *save = NULL, *w;
	int i = 0;

	snprintf(words, sizeof words, "%s", rule);
	for (w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save), i++) {
		const char *arg;
		if (i >= argc)
			return false;
		arg = argv[i];
		if (i == 0 && !strchr(w, '/') && strrchr(arg, '/'))
			arg = strrchr(arg, '/') + 1;
		if (strcmp(w, arg) != 0)
			return false;
	}
	return i > 0;
}

/* The policy rule that refuses this exec, or NULL. */
static const char *refusing_rule(const struct aegis_policy *p, const char *path, char **argv,
				 int argc, char *buf, size_t len)
{
	if (!p)
		return NULL;
	for (char **r = p->argv_deny; r && *r; r++)
		if (argv_rule_matches(*r, argv, argc))
			return snprintf(buf, len, "commands.argv_deny: %s", *r), buf;
	for (char **r = p->cmd_deny; r && *r && path[0] == '/'; r++)
		if (fnmatch(*r, path, FNM_PATHNAME) == 0)
			return snprintf(buf, len, "commands.deny: %s", *r), buf;
	if (p->cmd_allow && path[0] == '/') {
		for (char **r = p->cmd_allow; *r; r++)
			if (fnmatch(*r, path, FNM_PATHNAME) == 0)
				return NULL;
		return snprintf(buf, len, "commands.allow: %s is not listed", path), buf;
	}
	return NULL;
}

const char *execwatch_handle(struct execwatch *w)
{
	struct seccomp_notif req = { 0 };
	struct seccomp_notif_resp resp = { 0 };
	uint64_t ptrs[ARG_MAX_COUNT + 1], path_addr, argv_addr;
	char path[STR_MAX], *argv[ARG_MAX_COUNT], rulebuf[300];
	const char *rule = NULL, *limit = NULL;
	int argc = 0, n;

	if (ioctl(w->fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
		return NULL;	/* the caller died meanwhile */
	w->count++;
	path_addr = req.data.nr == __NR_execveat ? req.data.args[1] : req.data.args[0];
	argv_addr = req.data.nr == __NR_execveat ? req.data.args[2] : req.data.args[1];
	if (read_remote_string((pid_t)req.pid, path_addr, path, sizeof path) < 0)
		snprintf(path, sizeof path, "?");
	n = argv_addr ? read_remote_ptrs((pid_t)req.pid, argv_addr, ptrs, ARG_MAX_COUNT) : 0;
	for (int i = 0; i < n; i++) {
		char s[STR_MAX];
		if (read_remote_string((pid_t)req.pid, ptrs[i], s, sizeof s) < 0 || !(argv[argc] = strdup(s)))
			break;
		argc++;
	}
	/* Only answer for the process that asked, not a recycled pid. */
	if (ioctl(w->fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) == 0) {
		if (w->spec->limits.execs && w->count > w->spec->limits.execs) {
			rule = "limits.execs";
			limit = "execs";
		} else {
			rule = refusing_rule(w->spec->policy, path, argv, argc, rulebuf, sizeof rulebuf);
		}
		resp.id = req.id;
		if (rule)
			resp.error = -EPERM;
		else
			resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
		/* Over the execs limit the caller gets no answer at all: the
		 * supervisor stops the sandbox while it waits, so nothing in it
		 * runs on past the limit. */
		if (!limit)
			ioctl(w->fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
		record_exec(w->rec, (int)req.pid, path, argv, argc, rule);
	}
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	return limit;
}
