/* harness.c — PID 1 inside every sandbox.
 *
 * It starts the command, forwards signals to it, reaps every orphan so no
 * zombie piles up, and when the command ends reports its wait status to the
 * supervisor and exits: the kernel then kills whatever is left in the pid
 * namespace, so nothing outlives the command.
 *
 * It also starts execs: commands the supervisor asks for while the main
 * one runs (`aegis exec`). As PID 1's children they are in every namespace
 * and the cgroup of the sandbox and inherit its seccomp filters (the exec
 * watch included), landlock domain, rlimits and lack of capabilities: an
 * exec gets exactly the main command's confinement, built once. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/error.h"
#include "sandbox.h"

#define DISK_TICK_MS 50

/* Why a command did not start, in its own words. */
static void start_failure(struct aegis_error *err, const char *cmd, const char *cwd, int step, int e)
{
	if (step == LAUNCH_CHDIR)
		error_set(err, AEGIS_E_INVALID, e, "cwd %s", cwd);
	else if (e == ENOENT)
		error_set(err, AEGIS_E_NOTFOUND, 0, "%s: command not found", cmd);
	else
		error_set(err, AEGIS_E_NOEXEC, e, "%s: cannot execute", cmd);
}

__attribute__((noreturn))
static void report_start_failure(const struct sandbox_ctx *ctx, int step, int e)
{
	struct sync_msg msg = { .kind = SYNC_ERROR };

	start_failure(&msg.err, ctx->spec->argv[0], ctx->spec->cwd, step, e);
	sync_send(ctx->sync_fd, &msg);
	_exit(127);
}

/* ext4 refuses writes while some of its blocks are still "available"
 * (its reserve for metadata and delayed allocation: ~600 KiB to ~1 MiB
 * seen at ENOSPC); a sized workspace this close to its end is full. */
#define EXT4_FULL_SLACK (2u << 20)

/* A sized named workspace that was already full when the run started:
 * not this run's doing. Writes there fail (ENOSPC); reading it is no
 * reason to stop the run. */
static bool workspace_full_before;

static bool layer_full(const char *path, bool named)
{
	struct statfs sfs;

	if (statfs(path, &sfs) < 0 || !sfs.f_blocks)
		return false;
	return sfs.f_bavail == 0 ||
	       (named && sfs.f_type == EXT4_SUPER_MAGIC && sfs.f_bavail * (uint64_t)sfs.f_bsize < EXT4_FULL_SLACK);
}

static bool workspace_named(const struct aegis_spec *spec)
{
	return spec->workspace_name && !spec->workspace_overlay;
}

/* The writable layers are size-limited tmpfs (or a named workspace's
 * ext4 image); one this run fills is the disk limit being hit. Checked
 * from inside, where they are mounted. */
static bool disk_full(const struct sandbox_ctx *ctx)
{
	static const char *const layers[] = { "/tmp", "/dev/shm", "/workspace", "/" };
	const struct aegis_spec *spec = ctx->spec;

	for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
		bool named = i == 2 && workspace_named(spec);
		if (i == 2 && ((spec->workspace && !spec->workspace_overlay && !named) || workspace_full_before))
			continue;	/* a host directory: not ours to bound; or full already */
		if (i == 3 && !spec->image_layers)
			continue;	/* the host image's root is read-only */
		if (layer_full(layers[i], named))
			return true;
	}
	return false;
}

/* Execs running beside the command: the supervisor's id, our pid. */
#define EXECS_MAX 64
struct execs {
	uint32_t id[EXECS_MAX];
	pid_t pid[EXECS_MAX];	/* 0: free slot */
};

/* The command's environment with the exec's own entries over it. */
static char **exec_env(char *const *base, char **extra, uint32_t n)
{
	size_t nbase = 0, k = 0;
	char **env;

	while (base[nbase])
		nbase++;
	if (!(env = calloc(nbase + n + 1, sizeof *env)))
		return NULL;
	for (size_t i = 0; i < nbase; i++) {
		size_t name = strcspn(base[i], "=") + 1;
		bool replaced = false;
		for (uint32_t j = 0; j < n && !replaced; j++)
			replaced = strncmp(base[i], extra[j], name) == 0;
		if (!replaced)
			env[k++] = base[i];
	}
	for (uint32_t j = 0; j < n; j++)
		env[k++] = extra[j];
	return env;
}

/* Split an exec's payload: cwd, argv[], env[] (all NUL-terminated). */
static char **exec_strings(char *buf, size_t len, struct exec_wire *w, char **cwd)
{
	char *p = buf + sizeof *w, *end = buf + len;
	char **list;
	size_t n;

	if (len < sizeof *w)
		return NULL;
	memcpy(w, buf, sizeof *w);
	n = (size_t)w->argc + w->envc;
	if (!w->argc || n > SYNC_PAYLOAD_MAX / 2 || !(list = calloc(n + 2, sizeof *list)))
		return NULL;
	for (size_t i = 0; i <= n; i++) {
		char *nul = memchr(p, '\0', (size_t)(end - p));
		if (p >= end || !nul) {
			free(list);
			return NULL;
		}
		if (i == 0)
			*cwd = p;
		else
			list[i - 1 + (i > w->argc)] = p;	/* argv, NULL, env, NULL */
		p = nul + 1;
	}
	return list;
}

/* A terminal from the sandbox's own devpts, so the command's tty has a
 * name in there (tty, ssh, sudo ask for it). The peer is opened through
 * the master (TIOCGPTPEER), not by a path the sandbox could swap. */
static int pty_open(int *master, int *slave)
{
	int unlock = 0;

	*master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		return -1;
	if (ioctl(*master, TIOCSPTLCK, &unlock) < 0 ||
	    (*slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
		int e = errno;
		close(*master);
		*master = -1;
		errno = e;
		return -1;
	}
	return 0;
}

/* A connection to one of the sandbox's own ports, for the daemon's
 * router: made in here, so it can reach nothing but this network
 * namespace's loopback. Loopback answers at once: taken or refused. */
static void guest_connect(const struct sandbox_ctx *ctx, const struct sync_msg *req)
{
	struct sync_msg reply = { .kind = SYNC_CONNECTED, .exec_id = req->exec_id };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)req->wait_status),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = -1;

	if (req->wait_status < 1 || req->wait_status > 65535)
		reply.wait_status = EINVAL;
	else if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		 connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
		reply.wait_status = errno;
	if (!reply.wait_status)
		sync_send_fd(ctx->sync_fd, &reply, fd);
	else
		sync_send(ctx->sync_fd, &reply);
	if (fd >= 0)
		close(fd);
}

/* One request from the supervisor: start an exec, signal one, or connect. */
static bool exec_request(const struct sandbox_ctx *ctx, struct execs *x, const sigset_t *mask)
{
	static char buf[SYNC_PAYLOAD_MAX + 1];
	struct sync_msg msg, reply = { .kind = SYNC_EXEC_STARTED };
	struct launch l = { .stdio = { -1, -1, -1 } };
	struct exec_wire w;
	char **list = NULL, **env = NULL, *cwd = NULL;
	int fds[SYNC_FDS_MAX], slot = -1, e, step, master = -1;
	int r = sync_recvv(ctx->sync_fd, &msg, buf, sizeof buf, fds);
	pid_t pid;

	if (r <= 0)
		return r == 0 ? false : errno == EPROTO;
	for (int i = 0; i < EXECS_MAX; i++)
		if (x->pid[i] ? x->id[i] == msg.exec_id : slot < 0)
			slot = i;
	if (msg.kind == SYNC_CONNECT) {
		guest_connect(ctx, &msg);
		goto out;
	}
	if (msg.kind == SYNC_EXEC_SIGNAL) {
		/* its process group: what a terminal's ^C reaches */
		if (slot >= 0 && x->pid[slot])
			kill(-x->pid[slot], msg.wait_status);
		goto out;
	}
	if (msg.kind != SYNC_EXEC)
		goto out;
	reply.exec_id = msg.exec_id;
	if (!(list = exec_strings(buf, msg.payload_len, &w, &cwd)) ||
	    !(env = exec_env(ctx->envp, list + w.argc + 1, w.envc)) ||
	    (!w.tty && (fds[0] < 0 || fds[1] < 0 || fds[2] < 0))) {
		error_set(&reply.err, AEGIS_E_INVALID, 0, "malformed exec request");
	} else if (slot < 0 || x->pid[slot]) {
		error_set(&reply.err, AEGIS_E_SETUP, 0, "too many execs at once (%d)", EXECS_MAX);
	} else if (w.tty && pty_open(&master, fds) < 0) {
		error_set(&reply.err, AEGIS_E_SETUP, errno, "cannot make a terminal in the sandbox");
	} else {
		if (w.tty)
			fds[1] = fds[2] = fds[0];
		l = (struct launch){ .argv = list, .envp = env, .cwd = cwd, .tty = w.tty != 0,
				     .stdio = { fds[0], fds[1], fds[2] } };
		pid = command_launch(&l, mask, &e, &step);
		if (pid < 0) {
			start_failure(&reply.err, list[0], cwd, step, e);
		} else {
			x->pid[slot] = pid;
			x->id[slot] = msg.exec_id;
		}
		if (w.tty)
			fds[1] = fds[2] = -1;	/* one descriptor, closed once below */
	}
	if (reply.err.code)
		reply.wait_status = -1;
	/* a terminal's master side goes to the supervisor, which relays it */
	if (master >= 0 && !reply.err.code)
		sync_send_fd(ctx->sync_fd, &reply, master);
	else
		sync_send(ctx->sync_fd, &reply);
	if (master >= 0)
		close(master);
out:
	for (int i = 0; i < SYNC_FDS_MAX; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(list);
	free(env);
	return true;
}

/* An exec ended: tell the supervisor which and how. */
static void exec_reaped(const struct sandbox_ctx *ctx, struct execs *x, pid_t pid, int status)
{
	for (int i = 0; i < EXECS_MAX; i++)
		if (x->pid[i] == pid) {
			struct sync_msg msg = { .kind = SYNC_EXEC_EXIT, .exec_id = x->id[i],
						.wait_status = status };
			x->pid[i] = 0;
			sync_send(ctx->sync_fd, &msg);
		}
}

void harness_run(const struct sandbox_ctx *ctx)
{
	struct sync_msg msg = { .kind = SYNC_EXIT };
	struct launch main_cmd = { .argv = ctx->spec->argv, .envp = ctx->envp, .stdio = { -1, -1, -1 } };
	static struct execs execs;
	sigset_t all, none;
	int status = 0, e, step, sfd;
	bool requests = true;
	pid_t cmd;

	/* Non-dumpable: the command cannot read or write our memory or open
	 * /proc/1/exe (the aegis binary) through /proc. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* A namespace's PID 1 drops signals left at their default action, but
	 * a blocked signal is always queued: block them all and read them,
	 * in order, from a signalfd beside the supervisor's requests. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	sfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		report_start_failure(ctx, LAUNCH_EXEC, errno);

	if (chdir(ctx->spec->cwd) < 0)
		report_start_failure(ctx, LAUNCH_CHDIR, errno);
	/* Commands start with no signal blocked, whatever our caller had
	 * blocked (a daemon's threads block SIGTERM for their own reasons). */
	sigemptyset(&none);
	workspace_full_before = workspace_named(ctx->spec) && layer_full("/workspace", true);
	cmd = command_launch(&main_cmd, &none, &e, &step);
	if (cmd < 0)
		report_start_failure(ctx, step, e);

	for (;;) {
		struct pollfd p[2] = { { .fd = sfd, .events = POLLIN },
				       { .fd = requests ? ctx->sync_fd : -1, .events = POLLIN } };
		struct signalfd_siginfo si;
		int n = poll(p, 2, DISK_TICK_MS);
		pid_t pid;

		if (n == 0 && disk_full(ctx)) {
			struct sync_msg limit = { .kind = SYNC_LIMIT, .limit = "disk_full" };
			sync_send(ctx->sync_fd, &limit);
		}
		if (n <= 0)
			continue;
		if (p[1].revents)
			requests = exec_request(ctx, &execs, &none);
		while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
			if (si.ssi_signo != SIGCHLD) {
				kill(cmd, (int)si.ssi_signo);
				continue;
			}
			while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
				if (pid != cmd) {
					exec_reaped(ctx, &execs, pid, status);
					continue;
				}
				msg.wait_status = status;
				if (disk_full(ctx))
					strcpy(msg.limit, "disk_full");
				sync_send(ctx->sync_fd, &msg);
				_exit(0);
			}
		}
	}
}
