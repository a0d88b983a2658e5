/* guest.c — aegis-guest, PID 1 of a vm-backend sandbox (the initramfs's /init).
 *
 * It mounts the kernel filesystems, loads the few modules the Debian
 * kernel keeps out of its image (virtio, virtio-mmio, virtio_console, 9p,
 * overlay), does the set-up no request changes (setup.c: root, cgroup2,
 * loopback; before the greeting, so a snapshot holds it done), finds the
 * virtio-serial port QEMU names "aegis" and speaks the exec stream
 * (frames.h) with the host over it: HELLO first, then one REQUEST
 * {"spec", "mounts", "clock", "seed"}; then it sets the rest up (setup.c:
 * clock, seed, shares) and runs the engine — aegis_run() on that spec, the same code
 * as the namespace backend's — in a child, relaying its STDOUT/STDERR out
 * and the host's STDIN, STDIN_CLOSE and SIGNAL in, and ends with RESULT
 * (the engine's result or error), STARTED first once it is set up. One run per boot: after RESULT the host
 * ends QEMU; should it not, the guest powers off by itself. Inside the
 * guest the command still gets the engine's namespaces, seccomp, landlock
 * and limits: the VM adds a boundary, it removes none (docs/vm.md). */
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
#include "../../common/specjson.h"
#include "../../sandbox/sandbox.h"
#include "guest.h"
#include "ctl_guest.h"
#include "netmux_guest.h"

#define PORT_NAME "aegis"
#define PORT_WAIT_MS 10000	/* the port appears once the host's control message lands */

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

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
	/* What udev makes on a host and devtmpfs does not: the engine's diff
	 * of changes reads "/dev/fd/3", and scripts use /dev/stdin. */
	if (symlink("/proc/self/fd", "/dev/fd") < 0 || symlink("/proc/self/fd/0", "/dev/stdin") < 0 ||
	    symlink("/proc/self/fd/1", "/dev/stdout") < 0 || symlink("/proc/self/fd/2", "/dev/stderr") < 0)
		fprintf(stderr, "aegis-guest: /dev links: %m\n");
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

/* /sys/class/virtio-ports/vportNpM/name == port → /dev/vportNpM. */
int guest_port_open(const char *port)
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
			if (strcmp(name, port) == 0) {
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
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	int r = text ? frame_send(port, type, text, strlen(text)) : -1;

	free(text);
	json_decref(j);
	return r;
}

static json_t *error_json(const struct aegis_error *err)
{
	return json_pack("{s:{s:i, s:i, s:s}}", "error", "code", (int)err->code, "errno", err->sys_errno,
			 "message", err->msg);
}

struct engine {
	pid_t pid;
	int in, out, err;	/* our ends of its stdin, stdout, stderr; -1 once closed */
	int res;		/* its result, as JSON text, at its exit */
	int started;		/* a byte once the command runs; EOF if it never does */
};

/* spec.on_started in the engine: the sandbox is set up and the command
 * started; PID 1 says STARTED to the host only then (an instance is
 * "running", and its idle clock starts, from that moment). */
static void engine_started(void *arg)
{
	int fd = *(int *)arg;

	(void)!write(fd, "1", 1);
	close(fd);
}

/* In the engine's process: the decoded spec run by aegis_run(), exactly as
 * `aegis run` would, its output on our pipes; the result (or the error) as
 * JSON on res. */
static void __attribute__((noreturn)) engine_main(struct specjson_spec *s, int res, int started)
{
	static int started_fd;
	struct aegis_result r;
	struct aegis_error err = { 0 };
	json_t *out;
	char *text;

	started_fd = started;
	sandbox_in_vm_guest();
	s->spec.backend = AEGIS_BACKEND_NS;	/* in here the engine is the namespace backend */
	s->spec.capture = false;		/* the host captures what STDOUT/STDERR frames bring */
	s->spec.out_fd = s->spec.err_fd = 0;
	s->spec.on_started = engine_started;
	s->spec.on_started_arg = &started_fd;
	if (aegis_run(&s->spec, &r, &err) < 0)
		out = error_json(&err);
	else
		out = json_pack("{s:o}", "result", specjson_from_result(&r));
	text = out ? json_dumps(out, JSON_COMPACT) : NULL;
	if (!text || write(res, text, strlen(text)) != (ssize_t)strlen(text))
		_exit(1);
	_exit(0);
}

/* ctl: the control socket the engine serves (spec.control_fd), or -1. */
static int engine_start(struct specjson_spec *s, struct engine *e, int ctl)
{
	int pin[2], pout[2], perr[2], pres[2], pstart[2];

	if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0 ||
	    pipe2(pres, O_CLOEXEC) < 0 || pipe2(pstart, O_CLOEXEC) < 0)
		return -1;
	e->pid = fork();
	if (e->pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* out of the way of the dup2s below */
		if ((ctl >= 0 && (ctl = fcntl(ctl, F_DUPFD_CLOEXEC, 64)) < 0) ||
		    (pstart[1] = fcntl(pstart[1], F_DUPFD_CLOEXEC, 64)) < 0)
			_exit(125);
		/* 0, 1, 2, the result pipe (3), the control socket (4) and
		 * the started pipe (5): nothing else of PID 1's, or the command
		 * would never see its stdin end (our write end). */
		if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0 || dup2(pres[1], 3) < 0 ||
		    (ctl >= 0 && dup3(ctl, 4, O_CLOEXEC) < 0) || dup3(pstart[1], 5, O_CLOEXEC) < 0 ||
		    syscall(SYS_close_range, 6, ~0U, 0) < 0)
			_exit(125);
		s->spec.control_fd = ctl >= 0 ? 4 : 0;
		engine_main(s, 3, 5);
	}
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	close(pres[1]);
	close(pstart[1]);
	e->started = pstart[0];
	e->in = pin[1];
	e->out = pout[0];
	e->err = perr[0];
	e->res = pres[0];
	return e->pid < 0 ? -1 : 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* One frame from the host: stdin bytes, its end, a signal for the run
 * (the engine forwards it to the command as `aegis run` does), or the
 * host's clock after a pause. */
static int guest_from_host(int port, struct engine *e)
{
	static char buf[FRAME_MAX + 1];
	enum frame_type type;
	size_t len;
	int r = frame_recv(port, &type, buf, &len);

	if (r <= 0)
		return -1;
	if (type == FRAME_STDIN && e->in >= 0) {
		size_t off = 0;

		while (off < len) {
			ssize_t n = write(e->in, buf + off, len - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close_fd(&e->in);	/* the command closed its stdin */
				break;
			}
			off += (size_t)n;
		}
	} else if (type == FRAME_STDIN_CLOSE) {
		close_fd(&e->in);
	} else if (type == FRAME_CLOCK) {
		json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
		struct aegis_error err = { 0 };

		/* `aegis run` resumed from ^Z: our clock stood while stopped */
		if (guest_clock_set(j, &err) < 0)
			fprintf(stderr, "aegis-guest: clock: %s\n", err.msg);
		json_decref(j);
	} else if (type == FRAME_SIGNAL) {
		json_t *j = json_loads(buf, 0, NULL);
		int sig = (int)json_integer_value(json_object_get(j, "signal"));

		if (sig > 0 && sig < 65)
			kill(e->pid, sig);
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

/* Relay until the engine has exited and both outputs are drained. */
static void guest_serve(int port, struct engine *e, int sfd)
{
	bool exited = false;

	while (!exited || e->out >= 0 || e->err >= 0) {
		struct pollfd p[4] = { { port, POLLIN, 0 }, { e->out, POLLIN, 0 }, { e->err, POLLIN, 0 },
				       { sfd, POLLIN, 0 } };

		if (poll(p, 4, -1) < 0 && errno != EINTR)
			guest_poweroff("poll");
		if (p[0].revents && guest_from_host(port, e) < 0)
			guest_poweroff("the host closed the channel");
		if (p[1].revents)
			guest_relay_out(port, &e->out, FRAME_STDOUT);
		if (p[2].revents)
			guest_relay_out(port, &e->err, FRAME_STDERR);
		if (p[3].revents) {
			struct signalfd_siginfo si;
			int st;
			pid_t pid;

			if (read(sfd, &si, sizeof si) < 0)
				continue;
			/* PID 1 reaps every orphan; only the engine's end counts. */
			while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
				if (pid == e->pid)
					exited = true;
		}
	}
}

/* The engine's JSON from its pipe, as the RESULT frame's payload. */
static void guest_result(int port, struct engine *e)
{
	static char buf[FRAME_MAX + 1];
	size_t len = 0;
	ssize_t n;
	struct aegis_error err = { 0 };

	while (len < FRAME_MAX && (n = read(e->res, buf + len, FRAME_MAX - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	if (len == 0) {
		error_set(&err, AEGIS_E_SETUP, 0, "guest: the engine ended without a result");
		send_json(port, FRAME_RESULT, error_json(&err));
		return;
	}
	frame_send(port, FRAME_RESULT, buf, len);
}

static void __attribute__((noreturn)) guest_refuse(int port, const struct aegis_error *err)
{
	send_json(port, FRAME_RESULT, error_json(err));
	guest_poweroff(NULL);
}

int main(void)
{
	struct utsname u;
	struct engine e = { -1, -1, -1, -1, -1, -1 };
	struct specjson_spec spec;
	struct aegis_error err = { 0 }, prep = { 0 };
	static char buf[FRAME_MAX + 1];
	enum frame_type type;
	size_t len;
	sigset_t chld;
	int port, sfd;
	json_t *req;
	struct guest_net *net = NULL;
	struct guest_ctl *ctl = NULL;
	bool control;
	int ctl_listen = -1;
	bool prepared;
	uint64_t t_req;

	guest_mounts();
	guest_load_modules();
	/* A failure here is told as the answer to the request: the host hears
	 * nothing from a guest before its greeting. */
	prepared = guest_prepare(&prep) == 0;
	if ((port = guest_port_open(PORT_NAME)) < 0)
		guest_poweroff("no virtio-serial port named " PORT_NAME);
	uname(&u);
	if (send_json(port, FRAME_HELLO, json_pack("{s:s, s:s}", "version", FRAMES_VERSION, "kernel", u.release)) < 0)
		guest_poweroff("cannot greet the host");
	/* Here a snapshot may be taken: no 9p share is mounted yet. */
	if (frame_recv(port, &type, buf, &len) <= 0 || type != FRAME_REQUEST ||
	    !(req = json_loads(buf, 0, NULL)))
		guest_poweroff("no request from the host");
	t_req = mono_us();
	explicit_bzero(buf, len);	/* it held the secrets' values */
	if (!prepared)
		guest_refuse(port, &prep);
	if (guest_setup(req, &err) < 0)
		guest_refuse(port, &err);
	if (specjson_to_spec(json_object_get(req, "spec"), &spec, &err) < 0)
		guest_refuse(port, &err);
	control = json_is_true(json_object_get(req, "control"));
	json_decref(req);
	/* an instance: execs and --expose connections come over the port
	 * "aegis-ctl" (ctl_guest.c) to the engine's control socket, made
	 * before the engine starts; its thread after, as the network's */
	if (control && ctl_guest_prepare(&ctl, &ctl_listen, &err) < 0)
		guest_refuse(port, &err);
	/* --net allow: the host's egress proxy answers the guest's
	 * 127.0.0.1:3128 (netmux_guest.c), listening before the engine starts;
	 * the engine relays its sandbox's 127.0.0.1:3128 there (relay mode),
	 * so the rules are checked and audited on the host alone. */
	if (netns_mode(spec.spec.policy) == NET_ALLOW) {
		if (netmux_guest_prepare(&net, &err) < 0)
			guest_refuse(port, &err);
		spec.spec.net_upstream = NETMUX_GUEST_UPSTREAM;
	}
	/* SIGCHLD through a signalfd, so poll() sees the engine's exit. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	sfd = signalfd(-1, &chld, SFD_CLOEXEC);
	if (sfd < 0 || engine_start(&spec, &e, ctl_listen) < 0) {
		error_sys(&err, "guest: start the engine");
		guest_refuse(port, &err);
	}
	specjson_spec_free(&spec);
	if (ctl_listen >= 0)
		close(ctl_listen);	/* the engine's now */
	/* STARTED once the command runs (the engine's on_started), or once
	 * the engine ended without it (its RESULT then says why). The host
	 * bounds the wait for this: a guest restored from a snapshot greeted
	 * long ago, so here is where a hung clone shows. */
	{
		char one;
		while (read(e.started, &one, 1) < 0 && errno == EINTR)
			;
		close_fd(&e.started);
	}
	if (send_json(port, FRAME_STARTED, json_pack("{s:f}", "setup_ms", (double)(mono_us() - t_req) / 1000.0)) < 0)
		guest_poweroff("cannot answer the request");
	if (net && netmux_guest_start(net, &err) < 0)
		fprintf(stderr, "aegis-guest: %s\n", err.msg);	/* the command's connections fail */
	if (ctl && ctl_guest_start(ctl, &err) < 0)
		fprintf(stderr, "aegis-guest: %s\n", err.msg);	/* execs fail: the host tells their users */
	guest_serve(port, &e, sfd);
	guest_result(port, &e);
	guest_poweroff(NULL);
}
