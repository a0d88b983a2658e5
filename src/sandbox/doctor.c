/* doctor.c — what this host supports, for `aegis doctor` and for choosing
 * modes. Every probe is the real operation, not a guess from versions. */
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/util.h"
#include "sandbox.h"

static bool userns_works(void)
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET) == 0 ? 0 : 1);
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool filesystem_known(const char *name)
{
	char buf[4096], needle[64];

	if (read_file_at(AT_FDCWD, "/proc/filesystems", buf, sizeof buf) < 0)
		return false;
	snprintf(needle, sizeof needle, "\t%s\n", name);
	return strstr(buf, needle) != NULL;
}

void aegis_doctor(struct aegis_host *host)
{
	char buf[32];
	unsigned action = SECCOMP_RET_USER_NOTIF;
	long abi;

	memset(host, 0, sizeof *host);
	host->rootless = geteuid() != 0;
	host->userns = userns_works();
	if (read_file_at(AT_FDCWD, "/proc/sys/user/max_user_namespaces", buf, sizeof buf) > 0)
		host->max_user_namespaces = atoi(buf);
	switch (cgroup_version()) {
	case 2: host->cgroup_version = "v2"; break;
	case 1: host->cgroup_version = "v1"; break;
	default: host->cgroup_version = "none"; break;
	}
	host->cgroup_writable = cgroup_can_create(NULL, host->cgroup_controllers,
						  sizeof host->cgroup_controllers);
	abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	host->landlock_abi = abi > 0 ? (int)abi : 0;
	host->seccomp_filter = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 &&
			       syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &(unsigned){ SECCOMP_RET_ERRNO }) == 0;
	host->seccomp_notify = syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0;
	host->overlayfs = filesystem_known("overlay");
	/* mount_setattr exists (EBADF for a bad fd rather than ENOSYS). */
	host->idmapped_mounts = syscall(SYS_mount_setattr, -1, "", 0, NULL, 0) < 0 && errno != ENOSYS;
}
