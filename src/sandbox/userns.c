/* userns.c — who sandbox root is on the host.
 *
 * Sandbox root must never be host root. Run by root, each sandbox gets its
 * own unprivileged host uid (base + the supervisor's pid, unique among live
 * runs), so two sandboxes never share an identity. Run rootless, the only
 * id we may map is our own. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/util.h"
#include "sandbox.h"

#define USERNS_ROOT_BASE 1000000000u	/* far above any login uid or subuid range */

void userns_host_ids(uid_t *uid, gid_t *gid)
{
	if (geteuid() == 0) {
		*uid = USERNS_ROOT_BASE + (uid_t)getpid();
		*gid = USERNS_ROOT_BASE + (gid_t)getpid();
	} else {
		*uid = geteuid();
		*gid = getegid();
	}
}

static int write_map(pid_t pid, const char *file, const char *line, struct aegis_error *err)
{
	char path[64];

	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
	if (write_file_at(AT_FDCWD, path, line, __builtin_strlen(line)) < 0)
		return error_sys(err, "user namespace: write %s", file);
	return 0;
}

int userns_write_maps(pid_t pid, uid_t host_uid, gid_t host_gid, struct aegis_error *err)
{
	char line[64];

	/* setgroups must be denied before an unprivileged gid_map is accepted,
	 * and keeps the sandbox from dropping into supplementary groups. */
	if (write_map(pid, "setgroups", "deny", err) < 0)
		return -1;
	snprintf(line, sizeof line, "0 %u 1\n", (unsigned)host_uid);
	if (write_map(pid, "uid_map", line, err) < 0)
		return -1;
	snprintf(line, sizeof line, "0 %u 1\n", (unsigned)host_gid);
	return write_map(pid, "gid_map", line, err);
}

/* A user namespace that maps from_uid → to_uid, for an idmapped mount:
 * files owned by from_uid on disk appear owned by to_uid (sandbox root). */
int userns_idmap_fd(uid_t from_uid, gid_t from_gid, uid_t to_uid, gid_t to_gid,
		    struct aegis_error *err)
{
	char path[64], line[64], c = 0;
	int ready[2], done[2], fd = -1, status;
	pid_t pid;

	if (pipe2(ready, O_CLOEXEC) < 0)
		return error_sys(err, "idmap: pipe");
	if (pipe2(done, O_CLOEXEC) < 0) {
		close(ready[0]);
		close(ready[1]);
		return error_sys(err, "idmap: pipe");
	}
	pid = fork();
	if (pid == 0) {
		/* Unshare, say so, and live until the parent holds the ns fd. */
		close(ready[0]);
		close(done[1]);
		if (unshare(CLONE_NEWUSER) < 0)
			_exit(1);
		(void)!write(ready[1], &c, 1);
		(void)!read(done[0], &c, 1);
		_exit(0);
	}
	close(ready[1]);
	close(done[0]);
	if (pid < 0) {
		error_sys(err, "idmap: fork");
		goto out;
	}
	if (read(ready[0], &c, 1) != 1) {
		error_set(err, AEGIS_E_SETUP, 0, "idmap: helper could not create a user namespace");
		goto out;
	}
	snprintf(line, sizeof line, "%u %u 1\n", (unsigned)from_uid, (unsigned)to_uid);
	if (write_map(pid, "uid_map", line, err) < 0)
		goto out;
	snprintf(line, sizeof line, "%u %u 1\n", (unsigned)from_gid, (unsigned)to_gid);
	if (write_map(pid, "gid_map", line, err) < 0)
		goto out;
	snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		error_sys(err, "idmap: open %s", path);
out:
	close(ready[0]);
	close(done[1]);
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	return fd;
}
