/* daemon.c — `aegis up`, `aegis down`, `aegis status`: start, stop and ask
 * the daemon, as a client of its API and nothing else.
 *
 * `up` starts aegisd behind a lock file next to the socket, so two clients
 * racing to start it start one; it is detached (own session, stdio to its
 * log) so it outlives the shell that asked. */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/httpc.h"
#include "../common/paths.h"
#include "../common/util.h"
#include "cli.h"

#define UP_WAIT_MS 5000

/* Is a daemon listening on sock? A connection it accepts says so even
 * when it is too busy to answer a health request (starting a second one
 * then would only fail); a full backlog (EAGAIN) says so too. */
static bool listening(const char *sock)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	bool there;

	if (fd < 0 || strlen(sock) >= sizeof sun.sun_path) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	memcpy(sun.sun_path, sock, strlen(sock) + 1);
	there = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 || errno == EAGAIN;
	close(fd);
	return there;
}


/* Start aegisd in a session of its own, reparented away from us; its pid
 * (or -1), so a daemon that gives up at once is noticed at once. */
static pid_t spawn_detached(const char *bin, const char *sock, const char *log)
{
	pid_t pid, daemon_pid = -1;
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if ((pid = fork()) == 0) {
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		setsid();
		if ((pid = fork()) != 0) {
			(void)!write(p[1], &pid, sizeof pid);
			_exit(0);
		}
		if (null < 0 || out < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(125);
		execl(bin, "aegisd", "--socket", sock, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	if (pid > 0) {
		if (read(p[0], &daemon_pid, sizeof daemon_pid) != sizeof daemon_pid)
			daemon_pid = -1;
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	close(p[0]);
	return daemon_pid;
}

/* Why a daemon that exited gave up: the message of its log's last line. */
static void last_log_message(const char *log, char *out, size_t len)
{
	char line[1024] = "", buf[1024];
	FILE *f = fopen(log, "re");
	json_t *j;

	snprintf(out, len, "see %s", log);
	if (!f)
		return;
	while (fgets(buf, sizeof buf, f))
		memcpy(line, buf, sizeof line);
	fclose(f);
	if ((j = json_loads(line, 0, NULL)) && json_string_value(json_object_get(j, "msg")))
		snprintf(out, len, "%s", json_string_value(json_object_get(j, "msg")));
	json_decref(j);
}

/* aegisd, aegis-image: next to this program (build dir or bindir). */
int cli_sibling(const char *program, char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n < 0)
		return -1;
	self[n] = '\0';
	return (size_t)snprintf(out, len, "%s/%s", dirname(self), program) < len ? 0 : -1;
}

/* Make sure aegisd answers on sock, starting it if needed: 0, or -1 with
 * err (for callers that report errors their own way, as aegis mcp does). */
int daemon_start(const char *sock, struct aegis_error *err)
{
	char dir[256], lock[300], log[300], bin[PATH_MAX];
	uint64_t deadline;
	int lfd;

	if (listening(sock))
		return 0;
	snprintf(dir, sizeof dir, "%s", sock);
	if (paths_private_dir(dirname(dir), err) < 0)
		return -1;
	snprintf(lock, sizeof lock, "%s/aegisd.lock", dir);
	snprintf(log, sizeof log, "%s/aegisd.log", dir);
	if ((lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0 || flock(lfd, LOCK_EX) < 0) {
		error_sys(err, "up: cannot lock %s", lock);
		if (lfd >= 0)
			close(lfd);
		return -1;
	}
	if (!listening(sock)) {	/* nobody started it while we waited for the lock */
		if (cli_sibling("aegisd", bin, sizeof bin) < 0 || access(bin, X_OK) < 0) {
			close(lfd);
			return error_set(err, AEGIS_E_SETUP, 0, "up: aegisd not found next to this program (%s)", bin);
		}
		pid_t pid = spawn_detached(bin, sock, log);
		for (deadline = now_us() + UP_WAIT_MS * 1000ULL; !listening(sock); usleep(5000)) {
			if (pid > 0 && kill(pid, 0) < 0 && errno == ESRCH && !listening(sock)) {
				char why[200];
				close(lfd);
				last_log_message(log, why, sizeof why);
				return error_set(err, AEGIS_E_SETUP, 0, "up: aegisd exited: %s", why);
			}
			if (now_us() > deadline) {
				close(lfd);
				return error_set(err, AEGIS_E_SETUP, 0, "up: aegisd did not come up within %d ms (see %s)",
						 UP_WAIT_MS, log);
			}
		}
	}
	close(lfd);
	return 0;
}

/* The same for the CLI: 0, or the exit status after a one-line error. */
int daemon_ensure(const char *sock)
{
	struct aegis_error err = { 0 };

	return daemon_start(sock, &err) < 0 ? cli_usage_error("%s", err.msg) : 0;
}

int cmd_up(int argc, char **argv)
{
	struct aegis_error err = { 0 };
	char sock[256];
	int r;

	(void)argv;
	if (argc != 1)
		return cli_usage_error("up: takes no arguments");
	if (paths_socket(sock, sizeof sock, &err) < 0)
		return cli_fail(&err);
	if ((r = daemon_ensure(sock)) != 0)
		return r;
	printf("aegisd is running (%s)\n", sock);
	return 0;
}

int cmd_down(int argc, char **argv)
{
	struct aegis_error err = { 0 };
	struct httpc_response r;
	char sock[256];
	uint64_t deadline;

	(void)argv;
	if (argc != 1)
		return cli_usage_error("down: takes no arguments");
	if (paths_socket(sock, sizeof sock, &err) < 0)
		return cli_fail(&err);
	if (!listening(sock))
		return printf("aegisd is not running\n"), 0;
	/* asked; its answer may not come (it is stopping): wait for it to go all the same */
	if (httpc_request(sock, "POST", "/v1/shutdown", NULL, &r, &err) == 0)
		httpc_response_free(&r);
	for (deadline = now_us() + UP_WAIT_MS * 1000ULL; access(sock, F_OK) == 0; usleep(5000))
		if (now_us() > deadline)
			return cli_usage_error("down: aegisd did not stop within %d ms", UP_WAIT_MS);
	printf("aegisd stopped\n");
	return 0;
}

int cmd_status(int argc, char **argv)
{
	struct aegis_error err = { 0 };
	struct httpc_response r;
	bool json = argc == 2 && !strcmp(argv[1], "--json");
	char sock[256];
	json_t *s, *h;

	if (argc > 2 || (argc == 2 && !json))
		return cli_usage_error("status: unknown argument '%s' (usage: aegis status [--json])", argv[argc - 1]);
	if (paths_socket(sock, sizeof sock, &err) < 0)
		return cli_fail(&err);
	if (httpc_request(sock, "GET", "/v1/status", NULL, &r, &err) < 0) {
		fprintf(stderr, "aegis: aegisd is not running (%s); `aegis up` starts it\n", sock);
		return 1;
	}
	if (json || r.status != 200 || !(s = json_loads(r.body, 0, NULL))) {
		printf("%s\n", r.body);
		httpc_response_free(&r);
		return r.status == 200 ? 0 : 1;
	}
	h = json_object_get(s, "host");
	printf("aegisd %s (api %s), up %.1f s, socket %s\n", json_string_value(json_object_get(s, "version")),
	       json_string_value(json_object_get(s, "api")), json_real_value(json_object_get(s, "uptime_s")), sock);
	{
		json_t *counts = json_object_get(s, "instances"), *n;
		const char *state, *sep = " (";
		printf("  instances          %lld", (long long)json_integer_value(json_object_get(counts, "total")));
		json_object_foreach(counts, state, n)
			if (strcmp(state, "total")) {
				printf("%s%lld %s", sep, (long long)json_integer_value(n), state);
				sep = ", ";
			}
		printf("%s\n", *sep == ',' ? ")" : "");
	}
	printf("  host               cgroup %s%s, landlock ABI %lld, seccomp user notification %s\n",
	       json_string_value(json_object_get(h, "cgroup")),
	       json_is_true(json_object_get(h, "cgroup_writable")) ? "" : " (not writable)",
	       (long long)json_integer_value(json_object_get(h, "landlock_abi")),
	       json_is_true(json_object_get(h, "seccomp_notify")) ? "yes" : "no");
	json_decref(s);
	httpc_response_free(&r);
	return 0;
}
