/* recover.c — the daemon picks up where the last one stopped, and notices
 * shims that die.
 *
 * The daemon holds no state of its own: everything is in the instances'
 * directories. At start, instances_recover() settles what a killed daemon
 * left half done; then a watcher thread holds a pidfd for every live shim.
 * A pidfd is opened first and the process checked after (its lock and its
 * command line), so a reused pid can never be mistaken for a shim. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon.h"
#include "instances.h"
#include "recover.h"

#define WATCH_MAX 4096
#define SWEEP_MS 1000	/* new shims are looked for at least this often */

struct watched {
	struct live_shim who;
	int pidfd;
};

void daemon_fault(const char *point)
{
	const char *want = getenv("AEGIS_FAULT");

	if (want && !strcmp(want, point)) {
		daemon_log("warn", "fault injection: killing the daemon", "point", point);
		kill(getpid(), SIGKILL);
	}
}

static bool watching(const struct watched *w, int n, const struct live_shim *s)
{
	for (int i = 0; i < n; i++)
		if (w[i].who.pid == s->pid && !strcmp(w[i].who.name, s->name))
			return true;
	return false;
}

/* Add a pidfd for every live shim not yet watched. */
static int sweep(struct watched *w, int n, struct live_shim *live)
{
	int found = instances_live(live, WATCH_MAX);

	for (int i = 0; i < found && n < WATCH_MAX; i++) {
		int fd;
		if (watching(w, n, &live[i]))
			continue;
		fd = (int)syscall(SYS_pidfd_open, live[i].pid, 0);
		if (fd < 0)
			continue;
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (!instances_is_shim(live[i].name, live[i].pid)) {
			close(fd);	/* gone or not ours between the listing and the pidfd */
			continue;
		}
		w[n].who = live[i];
		w[n++].pidfd = fd;
	}
	return n;
}

static void *watch(void *arg)
{
	struct watched *w = calloc(WATCH_MAX, sizeof *w);
	struct live_shim *live = calloc(WATCH_MAX, sizeof *live);
	struct pollfd *p = calloc(WATCH_MAX, sizeof *p);
	int n = 0;

	(void)arg;
	if (!w || !live || !p)
		return NULL;
	for (;;) {
		n = sweep(w, n, live);
		for (int i = 0; i < n; i++)
			p[i] = (struct pollfd){ .fd = w[i].pidfd, .events = POLLIN };
		if (poll(p, (nfds_t)n, SWEEP_MS) < 0 && errno != EINTR)
			continue;
		for (int i = n - 1; i >= 0; i--) {
			if (!p[i].revents)
				continue;
			/* the shim is gone: ended properly, or killed */
			instances_reap(w[i].who.name);
			close(w[i].pidfd);
			w[i] = w[--n];
		}
	}
	return NULL;
}

int recover_start(void)
{
	pthread_attr_t attr;
	pthread_t t;
	int r;

	instances_recover();
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, watch, NULL);
	pthread_attr_destroy(&attr);
	return r == 0 ? 0 : -1;
}
