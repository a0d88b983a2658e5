/* netns.c — the sandbox's network namespace: loopback up, nothing else.
 * No interface leads out, so no host or outside address is reachable.
 *
 * Creating a network namespace is the costliest step of a sandbox start
 * (~0.4 ms here, most of it sysctl registration), so a short-lived helper
 * inside the sandbox makes it while PID 1 builds the root filesystem; PID 1
 * then joins it through the helper's pidfd. With one CPU to run on (a vm
 * guest's single vCPU) nothing runs in parallel and the helper only adds
 * work: under TCG every code path a restored guest runs is translated
 * anew, and the helper's clone3, pidfd, setns, exit and wait are paths
 * the command's start would otherwise not run (~14 ms). PID 1 then makes
 * the namespace itself, at the point where it would have joined, so the
 * steps in between see the same namespaces either way. */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>

#include "../common/error.h"
#include "proxy.h"
#include "sandbox.h"

static int loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = -1;

	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		r = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
	return r;
}

/* The helper: make the namespace, bring lo up, report, and stay alive
 * (holding the namespace) until PID 1 has joined and closes the pipe. */
__attribute__((noreturn)) static void helper(int ready_fd, int release_fd)
{
	int result = 0;
	char c;

	/* The uid change made us non-dumpable; PID 1 must pass the ptrace
	 * access check to join our namespace through the pidfd. */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0 || unshare(CLONE_NEWNET) < 0 || loopback_up() < 0)
		result = errno ? errno : EIO;
	(void)!write(ready_fd, &result, sizeof result);
	(void)!read(release_fd, &c, 1);
	_exit(0);
}

/* One CPU to run on: the helper could not work alongside PID 1. */
static bool one_cpu(void)
{
	cpu_set_t set;

	return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1;
}

int netns_prepare(struct netns_prep *prep, struct aegis_error *err)
{
	int ready[2], release[2];
	struct clone_args args = {
		.flags = CLONE_PIDFD,
		.pidfd = (uint64_t)(uintptr_t)&prep->pidfd,
		.exit_signal = SIGCHLD,
	};

	prep->pid = -1;
	prep->pidfd = prep->ready_fd = prep->release_fd = -1;
	prep->in_place = one_cpu();
	if (prep->in_place)
		return 0;	/* netns_join makes it */
	if (pipe2(ready, O_CLOEXEC) < 0)
		return error_sys(err, "network namespace: pipe");
	if (pipe2(release, O_CLOEXEC) < 0) {
		close(ready[0]);
		close(ready[1]);
		return error_sys(err, "network namespace: pipe");
	}
	prep->pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
	if (prep->pid == 0) {
		close(ready[0]);
		close(release[1]);
		helper(ready[1], release[0]);
	}
	close(ready[1]);
	close(release[0]);
	prep->ready_fd = ready[0];
	prep->release_fd = release[1];
	if (prep->pid < 0)
		return error_sys(err, "network namespace: start helper");
	return 0;
}

int netns_join(struct netns_prep *prep, struct aegis_error *err)
{
	int result = EIO, r = 0;

	if (prep->in_place) {
		if (unshare(CLONE_NEWNET) < 0)
			return error_sys(err, "network namespace: create");
		if (loopback_up() < 0)
			return error_sys(err, "network namespace: bring loopback up");
		return 0;
	}
	if (read(prep->ready_fd, &result, sizeof result) != (ssize_t)sizeof result || result != 0)
		r = error_set(err, AEGIS_E_SETUP, result, "network namespace: create with loopback up");
	else if (setns(prep->pidfd, CLONE_NEWNET) < 0)
		r = error_sys(err, "network namespace: join");
	close(prep->ready_fd);
	close(prep->release_fd);	/* the helper exits */
	close(prep->pidfd);
	while (waitpid(prep->pid, NULL, 0) < 0 && errno == EINTR)
		;
	return r;
}

enum net_mode netns_mode(const struct aegis_policy *policy)
{
	const char *m = policy && policy->net_mode ? policy->net_mode : "none";

	return !strcmp(m, "allow") ? NET_ALLOW : !strcmp(m, "host") ? NET_HOST : NET_NONE;
}

int netns_proxy_listener(struct aegis_error *err)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(PROXY_PORT),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return error_sys(err, "proxy: socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(fd, 128) < 0) {
		error_sys(err, "proxy: listen on 127.0.0.1:%d", PROXY_PORT);
		close(fd);
		return -1;
	}
	return fd;
}
