/* bare_clone: lower-bound baseline for bench/run.sh.
 *
 * Does the minimum aegis must do: clone() a child into the same namespaces
 * aegis uses (user, pid, mount, net, ipc, uts, cgroup), write its uid/gid map
 * from the parent, let it exec /bin/true, and wait for it. Exits with the
 * child's exit status (1 on any error). No mounts, no seccomp, no cgroups. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024)

static int sync_pipe[2];

static int child_main(void *arg)
{
	char c;
	(void)arg;
	close(sync_pipe[1]);
	/* wait until the parent has written the id maps */
	if (read(sync_pipe[0], &c, 1) != 1)
		_exit(1);
	execl("/bin/true", "true", (char *)NULL);
	_exit(127);
}

static int write_file(pid_t pid, const char *name, const char *data)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, data, strlen(data));
	close(fd);
	return n == (ssize_t)strlen(data) ? 0 : -1;
}

int main(void)
{
	static char stack[STACK_SIZE] __attribute__((aligned(16)));
	char map[64];
	int status;

	if (pipe2(sync_pipe, O_CLOEXEC) < 0) {
		perror("pipe2");
		return 1;
	}
	pid_t pid = clone(child_main, stack + STACK_SIZE,
			  CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET |
			  CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | SIGCHLD,
			  NULL);
	if (pid < 0) {
		perror("clone");
		return 1;
	}
	close(sync_pipe[0]);

	snprintf(map, sizeof(map), "0 %d 1\n", (int)getuid());
	if (write_file(pid, "uid_map", map) < 0 ||
	    write_file(pid, "setgroups", "deny") < 0) {
		perror("uid_map/setgroups");
		kill(pid, SIGKILL);
		return 1;
	}
	snprintf(map, sizeof(map), "0 %d 1\n", (int)getgid());
	if (write_file(pid, "gid_map", map) < 0) {
		perror("gid_map");
		kill(pid, SIGKILL);
		return 1;
	}
	if (write(sync_pipe[1], "x", 1) != 1) {
		perror("write sync");
		kill(pid, SIGKILL);
		return 1;
	}
	close(sync_pipe[1]);

	if (waitpid(pid, &status, 0) < 0) {
		perror("waitpid");
		return 1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
