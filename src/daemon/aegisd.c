/* aegisd.c — the daemon's entry point: its socket, its HTTP server, and a
 * clean stop.
 *
 * The socket is made the tmux way: a 0700 directory owned by us, and a
 * umask around bind() so the socket is never, even briefly, open to
 * anyone else. Runs in the foreground (service managers, `aegis up`). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <aegis/aegis.h>
#include "../common/error.h"
#include "../common/paths.h"
#include "../common/util.h"
#include "daemon.h"
#include "exec.h"
#include "instances.h"
#include "idle.h"
#include "recover.h"
#include "router.h"
#include "secrets_api.h"
#include "logwriter.h"

void daemon_log(const char *level, const char *msg, const char *key, const char *value)
{
	struct timespec ts;
	struct tm tm;
	char when[40];
	json_t *line;
	char *text;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof when - strlen(when), ".%06ldZ", ts.tv_nsec / 1000);
	line = json_pack("{s:s, s:s, s:s}", "ts", when, "level", level, "msg", msg);
	if (key && value)
		json_object_set_new(line, key, json_string(value));
	if ((text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII))) {
		fprintf(stderr, "%s\n", text);
		free(text);
	}
	json_decref(line);
}

/* Is a daemon already answering on path? */
static bool socket_alive(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	alive = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
	if (fd >= 0)
		close(fd);
	return alive;
}

static int listen_socket(const char *path, struct aegis_error *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char dir[sizeof sun.sun_path];
	mode_t old;
	int fd;

	if (strlen(path) >= sizeof sun.sun_path)
		return error_set(err, AEGIS_E_INVALID, 0, "socket path too long: %s", path);
	snprintf(dir, sizeof dir, "%s", path);
	if (paths_private_dir(dirname(dir), err) < 0)
		return -1;
	if (socket_alive(path))
		return error_set(err, AEGIS_E_INVALID, 0, "aegisd is already running on %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return error_sys(err, "remove stale socket %s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return error_sys(err, "socket");
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	old = umask(0177);	/* 0600 from the first instant */
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		umask(old);
		close(fd);
		return error_sys(err, "bind %s", path);
	}
	umask(old);
	if (listen(fd, API_BACKLOG) < 0) {
		close(fd);
		return error_sys(err, "listen %s", path);
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct aegis_error err = { 0 };
	struct api api = { .started_us = now_us() };
	struct MHD_Daemon *mhd;
	char path[256];
	eventfd_t v;
	sigset_t stop;
	int lfd, stopping;
	const char *cgroup_parent;

	/* request bodies may carry secret values: whatever jansson parsed is
	 * zeroed when freed */
	json_set_alloc_funcs(malloc, secrets_api_wiping_free);
	/* and the daemon never leaves a core dump (or a ptrace door) with
	 * what a request carried in it; its shims exec and start afresh */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });

	char state[4096], self[4096];
	uint64_t log_max;
	ssize_t n;

	if (argc == 3 && !strcmp(argv[1], "--socket"))
		snprintf(path, sizeof path, "%s", argv[2]);
	else if (argc != 1)
		return fprintf(stderr, "usage: aegisd [--socket PATH]\n"), 125;
	else if (paths_socket(path, sizeof path, &err) < 0)
		return daemon_log("error", err.msg, NULL, NULL), 125;
	/* the shims read it from the environment they inherit: a bad value
	 * stops the daemon here, not each instance later */
	if (logwriter_max_bytes(&log_max, &err) < 0)
		return daemon_log("error", err.msg, NULL, NULL), 125;
	/* $AEGIS_CGROUP_PARENT: where instances' cgroups go (a delegated one,
	 * rootless); checked here, not at each create */
	if ((cgroup_parent = getenv("AEGIS_CGROUP_PARENT")) &&
	    (cgroup_parent[0] != '/' || strstr(cgroup_parent, "..") || strlen(cgroup_parent) > 200))
		return daemon_log("error", "AEGIS_CGROUP_PARENT must be an absolute cgroup path without '..'",
				  "value", cgroup_parent), 125;
	/* $AEGIS_BACKEND: what an API create without "backend" gets */
	{
		const char *backend;
		if (paths_default_backend(&backend, &err) < 0)
			return daemon_log("error", err.msg, NULL, NULL), 125;
	}
	/* the shims live next to us, found through /proc before anything can move us */
	n = readlink("/proc/self/exe", self, sizeof self - 1);
	self[n > 0 ? n : 0] = '\0';
	if (paths_state(state, sizeof state, &err) < 0 || paths_private_dir(state, &err) < 0 ||
	    instances_init(state, self, cgroup_parent) < 0)
		return daemon_log("error", err.msg[0] ? err.msg : "cannot set up the state directory", "state",
				  state), 125;
	secrets_api_init(state);
	if (secrets_api_check(&err) < 0)
		return daemon_log("error", err.msg, NULL, NULL), 125;
	/* a descriptor per connection, per watched shim: the soft limit (often
	 * 1024) is below what the caps allow */
	{
		struct rlimit nofile;
		if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
			nofile.rlim_cur = nofile.rlim_max;
			setrlimit(RLIMIT_NOFILE, &nofile);
		}
	}
	/* settle what the last daemon left, then keep an eye on every shim */
	if (recover_start() < 0 || router_start() < 0 || idle_start() < 0)
		return daemon_log("error", "cannot start watching the instances", NULL, NULL), 125;
	/* v1: keep one (empty) freezer cgroup frozen, so pausing an instance
	 * never flips the kernel-wide freezer switch (~1.2 ms a time) */
	aegis_freezer_anchor(cgroup_parent);
	if ((lfd = listen_socket(path, &err)) < 0)
		return daemon_log("error", err.msg, "socket", path), 125;
	api.shutdown_fd = eventfd(0, EFD_CLOEXEC);
	stopping = eventfd(0, EFD_CLOEXEC);
	exec_init(stopping);
	/* SIGINT/SIGTERM: a clean stop, like POST /v1/shutdown */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A thread per connection: a slow request (a delete waiting out its
	 * grace, a streamed exec or log) never holds up anyone else's. */
	mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			       MHD_USE_POLL | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG, 0,
			       NULL, NULL, api_handle, &api,
			       MHD_OPTION_LISTEN_SOCKET, lfd,
			       MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_CONNECTIONS_MAX,
			       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_TIMEOUT_S,
			       MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
			       MHD_OPTION_NOTIFY_COMPLETED, api_request_done, &api,
			       MHD_OPTION_THREAD_STACK_SIZE, (size_t)(256 * 1024),
			       MHD_OPTION_UNESCAPE_CALLBACK, api_unescape, NULL,
			       MHD_OPTION_END);
	if (!mhd || api.shutdown_fd < 0) {
		daemon_log("error", "cannot start the HTTP server", "socket", path);
		unlink(path);
		return 125;
	}
	daemon_log("info", "listening", "socket", path);
	{
		/* wait for a signal or /v1/shutdown, whichever comes first */
		int sfd = signalfd(-1, &stop, SFD_CLOEXEC);
		struct pollfd p[2] = { { .fd = api.shutdown_fd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
		while (poll(p, 2, -1) < 0 && errno == EINTR)
			;
		if (p[0].revents)
			eventfd_read(api.shutdown_fd, &v);
		if (sfd >= 0)
			close(sfd);
	}
	/* streams held open for their shims let go, so the stop does not wait on them */
	eventfd_write(stopping, 1);
	MHD_stop_daemon(mhd);
	unlink(path);
	daemon_log("info", "stopped", "socket", path);
	return 0;
}
