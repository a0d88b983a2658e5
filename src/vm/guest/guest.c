/* guest.c — aegis-guest, PID 1 of a vm-backend sandbox (the initramfs's /init).
 *
 * It mounts the kernel filesystems, loads the few modules the Debian cloud
 * kernel keeps out of its image (virtio, virtio-mmio, virtio_console), finds
 * the virtio-serial port QEMU names "aegis" and speaks the exec stream
 * (frames.h) with the host over it: HELLO first, then one REQUEST, then the
 * command's STDOUT/STDERR and EXIT; the host's STDIN, STDIN_CLOSE and SIGNAL
 * go to the command. One command per boot: after EXIT the host ends QEMU;
 * should it not, the guest powers off by itself. Everything here runs as
 * root inside the guest: the boundary is the VM (docs/vm.md). */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../../common/error.h"
#include "../../common/frames.h"
#include "../../sandbox/sandbox.h"
#include "netmux_guest.h"

#define PORT_NAME "aegis"
#define PORT_WAIT_MS 10000	/* the port appears once the host's control message lands */

/* PID 1 must not exit (the kernel panics): every dead end powers off. */
static void __attribute__((noreturn)) guest_poweroff(const char *why)
{
	if (why)
		fprintf(stderr, "aegis-guest: %s\n", why);
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static void guest_mounts(void)
{
	/* Failures show up later as a missing port; name them now for the console log. */
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		fprintf(stderr, "aegis-guest: mount /proc: %m\n");
	if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		fprintf(stderr, "aegis-guest: mount /sys: %m\n");
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0)
		fprintf(stderr, "aegis-guest: mount /dev: %m\n");
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		fprintf(stderr, "aegis-guest: mount /tmp: %m\n");
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* /modules/N-name.ko in name order: the build script put them in dependency order. */
static void guest_load_modules(void)
{
	char *names[32];
	size_t n = 0;
	DIR *d = opendir("/modules");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) && n < 32)
		if (e->d_name[0] != '.')
			names[n++] = strdup(e->d_name);
	closedir(d);
	qsort(names, n, sizeof *names, name_cmp);
	for (size_t i = 0; i < n; i++) {
		char path[300];
		int fd;

		snprintf(path, sizeof path, "/modules/%s", names[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST))
			fprintf(stderr, "aegis-guest: load %s: %m\n", path);
		if (fd >= 0)
			close(fd);
		free(names[i]);
	}
}

/* /sys/class/virtio-ports/vportNpM/name == "aegis" → /dev/vportNpM. */
static int guest_find_port(void)
{
	for (int waited = 0; waited < PORT_WAIT_MS; waited += 5) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;

		while (d && (e = readdir(d))) {
			char path[300], name[64] = "";
			FILE *f;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
			if ((f = fopen(path, "re"))) {
				if (!fgets(name, sizeof name, f))
					name[0] = '\0';
				fclose(f);
			}
			name[strcspn(name, "\n")] = '\0';
			if (strcmp(name, PORT_NAME) == 0) {
				int fd;

				snprintf(path, sizeof path, "/dev/%s", e->d_name);
				fd = open(path, O_RDWR | O_CLOEXEC);
				if (fd >= 0) {
					closedir(d);
					return fd;
				}
			}
		}
		if (d)
			closedir(d);
		nanosleep(&(struct timespec){ 0, 5 * 1000 * 1000 }, NULL);
	}
	return -1;
}

static int send_json(int port, enum frame_type type, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);
	int r = text ? frame_send(port, type, text, strlen(text)) : -1;

	free(text);
	json_decref(j);
	return r;
}

static char **strv_of(json_t *arr)
{
	size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
	char **v = calloc(n + 1, sizeof *v);

	for (size_t i = 0; v && i < n; i++)
		if (!(v[i] = (char *)json_string_value(json_array_get(arr, i))))
			return free(v), NULL;
	return v;
}

struct child {
	pid_t pid;
	int in, out, err;	/* our ends of its pipes; -1 once closed */
};

/* In the child, last before exec, as the ns backend's spawn.c does it: no
 * core dumps, no capabilities (root in the guest cannot mount, load
 * modules or reach the devices), no_new_privs, then the seccomp allowlist.
 * Any failure stops the command: a security step never degrades. */
static int guest_confine(struct aegis_error *err)
{
	struct rlimit no_core = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &no_core) < 0)
		return error_sys(err, "RLIMIT_CORE");
	if (caps_drop_all(err) < 0)
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return error_sys(err, "no_new_privs");
	return seccomp_apply(err);
}

/* Fork the command in a session of its own (SIGNAL frames go to its group). */
static int guest_spawn(json_t *req, struct child *c)
{
	char **argv = strv_of(json_object_get(req, "argv"));
	char **env = strv_of(json_object_get(req, "env"));
	const char *cwd = json_string_value(json_object_get(req, "cwd"));
	int pin[2], pout[2], perr[2];

	if (!argv || !argv[0] || !env || pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 ||
	    pipe2(perr, O_CLOEXEC) < 0)
		return -1;
	c->pid = fork();
	if (c->pid == 0) {
		struct aegis_error err = { 0 };
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0)
			_exit(127);
		if (cwd && chdir(cwd) < 0) {
			dprintf(2, "aegis: cwd %s: %m\n", cwd);
			_exit(127);
		}
		environ = env;
		if (guest_confine(&err) < 0) {
			dprintf(2, "aegis: guest: %s\n", err.msg);
			_exit(125);
		}
		execvp(argv[0], argv);
		dprintf(2, "aegis: %s: %m\n", argv[0]);
		_exit(errno == ENOENT ? 127 : 126);
	}
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	c->in = pin[1];
	c->out = pout[0];
	c->err = perr[0];
	free(argv);
	free(env);
	return c->pid < 0 ? -1 : 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* One frame from the host: stdin bytes, its end, or a signal. */
static int guest_from_host(int port, struct child *c)
{
	static char buf[FRAME_MAX + 1];
	enum frame_type type;
	size_t len;
	int r = frame_recv(port, &type, buf, &len);

	if (r <= 0)
		return -1;
	if (type == FRAME_STDIN && c->in >= 0) {
		size_t off = 0;

		while (off < len) {
			ssize_t n = write(c->in, buf + off, len - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close_fd(&c->in);	/* the command closed its stdin */
				break;
			}
			off += (size_t)n;
		}
	} else if (type == FRAME_STDIN_CLOSE) {
		close_fd(&c->in);
	} else if (type == FRAME_SIGNAL) {
		json_t *j = json_loads(buf, 0, NULL);
		int sig = (int)json_integer_value(json_object_get(j, "signal"));

		if (sig > 0 && sig < 65)
			kill(-c->pid, sig);
		json_decref(j);
	}
	return 0;
}

static void guest_relay_out(int port, int *fd, enum frame_type type)
{
	char buf[FRAME_MAX];
	ssize_t n = read(*fd, buf, sizeof buf);

	if (n < 0 && errno == EINTR)
		return;
	if (n <= 0 || frame_send(port, type, buf, (size_t)n) < 0)
		close_fd(fd);
}

/* Relay until the command has exited and both its outputs are drained. */
static int guest_serve(int port, struct child *c, int sfd)
{
	int status = 0;
	bool exited = false;

	while (!exited || c->out >= 0 || c->err >= 0) {
		struct pollfd p[4] = { { port, POLLIN, 0 }, { c->out, POLLIN, 0 }, { c->err, POLLIN, 0 },
				       { sfd, POLLIN, 0 } };

		if (poll(p, 4, -1) < 0 && errno != EINTR)
			return -1;
		if (p[0].revents && guest_from_host(port, c) < 0)
			guest_poweroff("the host closed the channel");
		if (p[1].revents)
			guest_relay_out(port, &c->out, FRAME_STDOUT);
		if (p[2].revents)
			guest_relay_out(port, &c->err, FRAME_STDERR);
		if (p[3].revents) {
			struct signalfd_siginfo si;
			int st;
			pid_t pid;

			if (read(sfd, &si, sizeof si) < 0)
				continue;
			/* PID 1 reaps every orphan; only the command's status counts. */
			while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
				if (pid == c->pid) {
					status = st;
					exited = true;
				}
		}
	}
	return status;
}

int main(void)
{
	struct utsname u;
	struct child c = { -1, -1, -1, -1 };
	static char buf[FRAME_MAX + 1];
	enum frame_type type;
	size_t len;
	sigset_t chld;
	int port, sfd, status;
	json_t *req;
	struct aegis_error net_err = { 0 };

	guest_mounts();
	guest_load_modules();
	if ((port = guest_find_port()) < 0)
		guest_poweroff("no virtio-serial port named " PORT_NAME);
	uname(&u);
	if (send_json(port, FRAME_HELLO, json_pack("{s:s, s:s}", "version", FRAMES_VERSION, "kernel", u.release)) < 0)
		guest_poweroff("cannot greet the host");
	if (frame_recv(port, &type, buf, &len) <= 0 || type != FRAME_REQUEST ||
	    !(req = json_loads(buf, 0, NULL)))
		guest_poweroff("no request from the host");
	/* --net allow: 127.0.0.1:3128 leads to the host's egress proxy (netmux_guest.c) */
	if (netmux_guest_start(req, &net_err) < 0) {
		send_json(port, FRAME_EXIT, json_pack("{s:i, s:{s:s, s:s}}", "exit_code", 125, "error", "code",
						      "network_failed", "message", net_err.msg));
		guest_poweroff(net_err.msg);
	}
	/* SIGCHLD through a signalfd, so poll() sees the command's exit. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	sfd = signalfd(-1, &chld, SFD_CLOEXEC);
	if (sfd < 0 || guest_spawn(req, &c) < 0) {
		send_json(port, FRAME_EXIT, json_pack("{s:i, s:{s:s, s:s}}", "exit_code", 127, "error", "code",
						      "spawn_failed", "message", "the guest could not start the command"));
		guest_poweroff(NULL);
	}
	json_decref(req);
	status = guest_serve(port, &c, sfd);
	if (WIFSIGNALED(status))
		send_json(port, FRAME_EXIT, json_pack("{s:i, s:i}", "exit_code", 128 + WTERMSIG(status), "signal",
						      WTERMSIG(status)));
	else
		send_json(port, FRAME_EXIT, json_pack("{s:i, s:n}", "exit_code", WEXITSTATUS(status), "signal"));
	guest_poweroff(NULL);
}
