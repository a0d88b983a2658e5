/* session.c — one command in a fresh guest: boot, greet, relay, tear down.
 *
 * The host side of the exec stream over the guest's virtio-serial port:
 * aegis-guest sends HELLO when it is up, we send the REQUEST, then relay
 * stdin and forwarded signals in, stdout and stderr out, until its EXIT,
 * and with --audit takes the engine's events as they come (auditrelay.c).
 * Every way a VM can fail without an EXIT — QEMU not starting, a guest
 * panic, a guest that never greets, QEMU killed — ends as one error line
 * with the reason, and QEMU and its run directory are gone either way. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/ctlwire.h"
#include "../common/error.h"
#include "../common/frames.h"
#include "../common/specjson.h"
#include "../common/util.h"
#include "vm.h"

/* A guest that has not greeted by then is hung (TCG boots take ~1-4 s). */
#define HELLO_MS_DEFAULT 30000
/* With --audit, how often the loop takes the guest's new audit events
 * when nothing else woke it (auditrelay.c): an instance's chain shows its
 * current boot within this. */
#define AUDIT_TICK_MS 250

static int guest_file(char *out, size_t cap, const char *dir, const char *name, struct aegis_error *err)
{
	snprintf(out, cap, "%s/%s", dir, name);
	if (access(out, R_OK) < 0)
		return error_sys(err, "vm: guest file %s (run scripts/vm-guest.sh BUILD_DIR)", out);
	return 0;
}

int vm_guest_find(struct vm_guest *g, struct aegis_error *err)
{
	char dir[4096], rel[4200];
	const char *env = getenv("AEGIS_VM_DIR");
	ssize_t n;

	if (env && *env) {
		snprintf(dir, sizeof dir, "%s", env);
	} else {
		if ((n = readlink("/proc/self/exe", dir, sizeof dir - 4)) < 0)
			return error_sys(err, "vm: /proc/self/exe");
		dir[n] = '\0';
		*strrchr(dir, '/') = '\0';
		strcat(dir, "/vm");
	}
	if (guest_file(g->vmlinux, sizeof g->vmlinux, dir, "vmlinux", err) < 0 ||
	    guest_file(g->initramfs, sizeof g->initramfs, dir, "initramfs.cpio", err) < 0 ||
	    guest_file(rel, sizeof rel, dir, "release", err) < 0)
		return -1;
	if (read_file_at(AT_FDCWD, rel, g->release, sizeof g->release) <= 0)
		return error_sys(err, "vm: read %s", rel);
	g->release[strcspn(g->release, "\n")] = '\0';
	return 0;
}

static uint64_t hello_ms(void)
{
	const char *s = getenv("AEGIS_VM_HELLO_TIMEOUT");	/* tests of the hung-guest path */
	uint64_t v;

	return s && parse_duration_ms(s, &v) == 0 && v ? v : HELLO_MS_DEFAULT;
}

struct session {
	struct vm_qemu q;
	struct vm_opts *o;	/* its shares are prepared anew for each QEMU started */
	struct vm_result *r;
	int sig;		/* signalfd: SIGINT, SIGTERM, SIGHUP, SIGQUIT go to the command;
				 * SIGTSTP pauses the VM */
	int in;			/* our stdin; -1 once its end is sent */
	bool exited;
	uint64_t audit_at;	/* when the guest's audit file was last read (µs) */
	char buf[FRAME_MAX + 1];
};

static int send_json(int fd, enum frame_type type, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	int r = text ? frame_send(fd, type, text, strlen(text)) : (errno = ENOMEM, -1);

	free(text);
	json_decref(j);
	return r;
}

/* Wait for one frame, at most until deadline (µs; 0: none). 1 got one, 0
 * deadline, -1 the channel or QEMU ended first. */
static int recv_until(struct session *s, enum frame_type *type, size_t *len, uint64_t deadline)
{
	for (;;) {
		struct pollfd p[3] = { { s->q.chan, POLLIN, 0 }, { s->q.pidfd, POLLIN, 0 },
				       { s->q.console, POLLIN, 0 } };
		uint64_t now = now_us();
		int ms = deadline ? (now >= deadline ? 0 : (int)((deadline - now + 999) / 1000)) : -1;
		int n = poll(p, 3, ms);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (p[2].revents)
			vm_qemu_console(&s->q);
		if (p[0].revents)
			return frame_recv(s->q.chan, type, s->buf, len) == 1 ? 1 : -1;
		if (p[1].revents)
			return -1;
	}
}

/* The QEMU side ended without an EXIT: say why, as one line. */
static int vm_failed(struct session *s, const char *when, struct aegis_error *err)
{
	char why[256];

	vm_qemu_diagnose(&s->q, why, sizeof why);
	return error_set(err, AEGIS_E_SETUP, 0, "vm: %s: %s", when, why);
}

/* No greeting or answer in time: ask QEMU (QMP) what state the machine is
 * in, so the line tells a guest stuck running from a QEMU that stopped it. */
static int session_hung(struct session *s, const char *missing, uint64_t limit, struct aegis_error *err)
{
	struct vm_qmp m = { .fd = -1 };
	struct aegis_error qerr = { 0 };
	char path[128], status[64];

	snprintf(path, sizeof path, "%s/qmp.sock", s->q.dir);
	if (vm_qmp_open(&m, path, &qerr) < 0 || vm_qmp_status(&m, status, sizeof status, &qerr) < 0)
		snprintf(status, sizeof status, "unknown: %s", qerr.msg);
	vm_qmp_close(&m);
	return error_set(err, AEGIS_E_SETUP, ETIMEDOUT,
			 "vm: guest hung: no %s from aegis-guest within %llu ms (QEMU status %s; killed)", missing,
			 (unsigned long long)limit, status);
}

/* The guest's next frame within the hung-guest bound: 0 with it, 1 the
 * run's --timeout (deadline, 0: none) ran out first, -1 err naming what
 * was awaited (what) or how the guest ended (ended). */
static int recv_bounded(struct session *s, uint64_t deadline, const char *what, const char *ended,
			enum frame_type *type, size_t *len, struct aegis_error *err)
{
	uint64_t limit = hello_ms(), hung = now_us() + limit * 1000;
	int r = recv_until(s, type, len, deadline && deadline < hung ? deadline : hung);

	if (r == 0 && deadline && deadline < hung) {
		s->r->end = VM_TIMEOUT;
		s->r->exit_code = 124;
		return 1;
	}
	if (r == 0)
		return session_hung(s, what, limit, err);
	return r < 0 ? vm_failed(s, ended, err) : 0;
}

/* deadline: the run's --timeout (0: none); it ends a boot too. */
static int session_greet(struct session *s, uint64_t deadline, struct aegis_error *err)
{
	enum frame_type type;
	size_t len;
	json_t *j;
	int r = recv_bounded(s, deadline, "greeting", "the guest ended during boot", &type, &len, err);

	if (r != 0)
		return r;
	if (type != FRAME_HELLO || !(j = json_loads(s->buf, 0, NULL)))
		return error_set(err, AEGIS_E_SETUP, EPROTO, "vm: the guest's first frame is no greeting");
	snprintf(s->r->kernel, sizeof s->r->kernel, "%s", json_string_value(json_object_get(j, "kernel")) ?: "");
	json_decref(j);
	return 0;
}

static int session_request(struct session *s, struct aegis_error *err)
{
	json_t *req = vm_request(s->o);
	char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	int r;

	json_decref(req);
	if (!text)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "vm: the request");
	if (strlen(text) > FRAME_MAX) {
		specjson_wipe(text);
		return error_set(err, AEGIS_E_INVALID, E2BIG, "vm: the spec is over %d bytes as JSON", FRAME_MAX);
	}
	r = frame_send(s->q.chan, FRAME_REQUEST, text, strlen(text));
	specjson_wipe(text);	/* it holds the secrets' values */
	return r < 0 ? error_sys(err, "vm: send the request to the guest") : 0;
}

static int result_frame(struct session *s, size_t len);

/* The guest's first answer to the request, bounded like the greeting (a
 * restored guest greeted before its snapshot was taken, so this is where a
 * clone that hangs after the restore is caught): STARTED once it is set up
 * and the engine runs, or RESULT when it refused the request. 0 on, 1 the
 * run's timeout ran out first, -1 err. */
static int session_started(struct session *s, uint64_t deadline, struct aegis_error *err)
{
	enum frame_type type;
	size_t len;
	json_t *j;
	int r = recv_bounded(s, deadline, "answer to the request", "the guest ended before the command started",
			     &type, &len, err);

	if (r != 0)
		return r;
	if (type == FRAME_RESULT)
		return result_frame(s, len) < 0 ? error_set(err, AEGIS_E_SETUP, ENOMEM, "vm: the result") : 0;
	if (type != FRAME_STARTED)
		return error_set(err, AEGIS_E_SETUP, EPROTO, "vm: the guest broke the exec stream protocol (killed)");
	/* The guest's own figure: a statistic, never trusted for anything else. */
	if (len && (j = json_loads(s->buf, 0, NULL))) {
		double ms = json_number_value(json_object_get(j, "setup_ms"));

		if (ms > 0 && ms < 3600e3)
			s->r->setup_us = (uint64_t)(ms * 1000.0);
		json_decref(j);
	}
	return 0;
}

static void keep(char **buf, size_t *len, bool *trunc, size_t max, const char *data, size_t n)
{
	char *grown;

	if (*len + n > max) {
		*trunc = true;
		n = max - *len;
	}
	if (!n || !(grown = realloc(*buf, *len + n + 1)))
		return;
	memcpy(grown + *len, data, n);
	*len += n;
	grown[*len] = '\0';
	*buf = grown;
}

static void output(struct session *s, enum frame_type type, size_t len)
{
	struct vm_result *r = s->r;

	if (!s->o->capture)
		write_all(type == FRAME_STDOUT ? s->o->out_fd : s->o->err_fd, s->buf, len);
	else if (type == FRAME_STDOUT)
		keep(&r->out, &r->out_len, &r->out_truncated, s->o->capture_max, s->buf, len);
	else
		keep(&r->err, &r->err_len, &r->err_truncated, s->o->capture_max, s->buf, len);
}

static int result_frame(struct session *s, size_t len)
{
	if (!(s->r->result = strndup(s->buf, len)))
		return -1;
	s->exited = true;
	return 0;
}

/* Our stdin into STDIN frames; its end becomes STDIN_CLOSE. */
static int pump_stdin(struct session *s)
{
	char buf[FRAME_MAX];
	ssize_t n = read(s->in, buf, sizeof buf);

	if (n < 0 && errno == EINTR)
		return 0;
	if (n > 0)
		return frame_send(s->q.chan, FRAME_STDIN, buf, (size_t)n);
	s->in = -1;
	return frame_send(s->q.chan, FRAME_STDIN_CLOSE, NULL, 0);
}

/* ^Z: the whole VM stops (QMP stop: no vCPU runs, the guest's clock with
 * them), then aegis itself; fg or SIGCONT: aegis resumes it (QMP cont) and
 * sets the guest's clock to the host's (it is behind by the time it
 * stood): the frame goes before any stdin that follows, so the command
 * reads the time right from its first input after the pause. */
static int pause_vm(struct session *s, struct aegis_error *err)
{
	if (vm_qmp_once(s->q.dir, "stop", err) < 0)
		return -1;
	raise(SIGSTOP);
	if (vm_qmp_once(s->q.dir, "cont", err) < 0)
		return -1;
	if (send_json(s->q.chan, FRAME_CLOCK, ctlwire_clock_now()) < 0)
		return error_sys(err, "vm: send the clock to the guest");
	return 0;
}

static int forward_signal(struct session *s, struct aegis_error *err)
{
	struct signalfd_siginfo si;

	if (read(s->sig, &si, sizeof si) != sizeof si)
		return 0;
	if (si.ssi_signo == SIGTSTP)
		return pause_vm(s, err);
	send_json(s->q.chan, FRAME_SIGNAL, json_pack("{s:i}", "signal", (int)si.ssi_signo));
	return 0;
}

static int session_relay(struct session *s, uint64_t deadline, struct aegis_error *err)
{
	while (!s->exited) {
		struct pollfd p[5] = { { s->q.chan, POLLIN, 0 }, { s->q.pidfd, POLLIN, 0 }, { s->sig, POLLIN, 0 },
				       { s->q.console, POLLIN, 0 }, { s->in, POLLIN, 0 } };
		uint64_t now = now_us();
		int ms = deadline ? (now >= deadline ? 0 : (int)((deadline - now + 999) / 1000)) : -1;
		int n;
		enum frame_type type;
		size_t len;

		if (s->o->audit && (ms < 0 || ms > AUDIT_TICK_MS))
			ms = AUDIT_TICK_MS;
		n = poll(p, s->in >= 0 ? 5 : 4, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return error_sys(err, "vm: poll");
		/* at most once a tick, however much output comes */
		if (s->o->audit && (now = now_us()) - s->audit_at >= AUDIT_TICK_MS * 1000ULL) {
			auditrelay_poll(s->o->audit);
			s->audit_at = now;
		}
		if (n == 0 && (!deadline || now_us() < deadline))
			continue;	/* the audit tick */
		if (n == 0) {
			s->r->end = VM_TIMEOUT;
			s->r->exit_code = 124;
			return 0;
		}
		if (p[3].revents)
			vm_qemu_console(&s->q);
		if (p[0].revents) {
			int got = frame_recv(s->q.chan, &type, s->buf, &len);

			if (got == 1 && (type == FRAME_STDOUT || type == FRAME_STDERR))
				output(s, type, len);
			else if (got == 1 && type == FRAME_RESULT && result_frame(s, len) < 0)
				return error_set(err, AEGIS_E_SETUP, ENOMEM, "vm: the result");
			else if (got == 1 && type == FRAME_RESULT)
				continue;
			else if (got == 1 || (got < 0 && errno == EPROTO))	/* vm_run kills it */
				return error_set(err, AEGIS_E_SETUP, EPROTO,
						 "vm: the guest broke the exec stream protocol (killed)");
			else
				return vm_failed(s, "the guest ended while the command ran", err);
			continue;
		}
		if (p[1].revents)
			return vm_failed(s, "the guest ended while the command ran", err);
		if (p[2].revents && forward_signal(s, err) < 0)
			return -1;
		if (s->in >= 0 && p[4].revents && pump_stdin(s) < 0)
			return error_sys(err, "vm: send stdin to the guest");
	}
	return 0;
}

static bool debug_on(void)
{
	const char *v = getenv("AEGIS_DEBUG");

	return v && *v && strcmp(v, "0");
}

/* Why this run boots cold although snapshots are on: in the result, and
 * on stderr with AEGIS_DEBUG. */
static void cold_because(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cold_because(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->r->start_why, sizeof s->r->start_why, fmt, ap);
	va_end(ap);
	if (debug_on())
		fprintf(stderr, "aegis: debug: vm: cold boot: %s\n", s->r->start_why);
}

/* After vm_qemu_stop: a struct vm_qemu to start again. */
static void qemu_reset(struct vm_qemu *q)
{
	memset(q, 0, sizeof *q);
	q->pid = q->pidfd = q->chan = q->console = q->lock = q->net = q->ctl = -1;
}

/* Boot from nothing: QEMU with anonymous RAM, then the greeting. 0 up, 1
 * the run's timeout ran out during the boot, -1 err. */
static int session_cold(struct session *s, const struct vm_guest *g, uint64_t deadline, struct aegis_error *err)
{
	uint64_t t0 = now_us();
	int r;

	s->r->start = VM_COLD;
	if (vm_qemu_start(&s->q, g, s->o, NULL, err) < 0 || (r = session_greet(s, deadline, err)) < 0)
		return -1;
	s->r->boot_us = now_us() - t0;
	return r;
}

/* Under the lock: boot a template with its RAM in the build's file, wait
 * for the greeting, save it, seal it. 0 built, 1 the run's timeout ran out
 * meanwhile, -1 err. Nothing of a failed build stays. */
static int session_build(struct session *s, struct vm_snapshot *snap, const struct vm_guest *g, uint64_t deadline,
			 struct aegis_error *err)
{
	char build[4200], ram[4300];
	struct vm_boot boot = { .ram_file = ram, .ram_shared = true };
	uint64_t t0 = now_us();
	int r;

	vm_snapshot_drop(snap);
	if ((r = vm_snapshot_begin(snap, build, sizeof build, ram, sizeof ram, err)) == 0 &&
	    (r = vm_qemu_start(&s->q, g, s->o, &boot, err)) == 0 && (r = session_greet(s, deadline, err)) == 0 &&
	    (r = vm_snapshot_save(&s->q, build, err)) == 0)
		r = vm_snapshot_commit(snap, build, s->r->kernel, err);
	vm_qemu_stop(&s->q);
	qemu_reset(&s->q);
	if (r != 0)
		vm_snapshot_abort(build);
	s->r->build_us = now_us() - t0;
	return r;
}

/* A snapshot for this run, built if there is none: 1 ready, 0 none to use
 * (why said: the run boots cold), 2 the run's timeout ran out while
 * building. */
static int session_snapshot(struct session *s, struct vm_snapshot *snap, const struct vm_guest *g, bool kvm,
			    uint64_t deadline)
{
	struct aegis_error lerr = { 0 };
	char why[256];
	int v, built = 0;

	if (vm_snapshot_init(snap, g, s->o, kvm, why, sizeof why) < 0)
		return cold_because(s, "snapshots unusable: %s", why), 0;
	if ((v = vm_snapshot_valid(snap, why, sizeof why)) != 0)
		return v > 0 ? 1 : (cold_because(s, "%s", why), 0);
	/* Two first runs at once: the second waits here and finds it built. */
	if (vm_snapshot_lock(snap, &lerr) < 0)
		return cold_because(s, "snapshots unusable: %s", lerr.msg), 0;
	if ((v = vm_snapshot_valid(snap, why, sizeof why)) == 0) {
		struct aegis_error berr = { 0 };

		if (debug_on())
			fprintf(stderr, "aegis: debug: vm: building a snapshot: %s\n", why);
		built = session_build(s, snap, g, deadline, &berr);
		if (built == 0)	/* as any run would find it: checked, its RAM file's inode noted */
			v = vm_snapshot_valid(snap, why, sizeof why);
		else if (built < 0)
			snprintf(why, sizeof why, "snapshot build failed: %s", berr.msg);
	}
	vm_snapshot_unlock(snap);
	if (built > 0)
		return 2;
	if (v <= 0)
		cold_because(s, "%s", why);
	return v > 0;
}

/* Why QEMU ended, or false when it still runs (it gets a moment to end:
 * a QEMU killed outright closes its sockets a little before it is a
 * zombie whose pidfd polls readable). */
static bool qemu_ended(struct vm_qemu *q, char *why, size_t cap)
{
	if (q->pid > 0 && poll(&(struct pollfd){ q->pidfd, POLLIN, 0 }, 1, 1000) <= 0)
		return false;
	vm_qemu_diagnose(q, why, cap);
	return true;
}

/* A clone: QEMU with the snapshot's RAM mapped privately, its state
 * loaded, running. 0 up; 1 the snapshot failed us (dropped: boot cold);
 * -1 err (QEMU was killed: not the snapshot's fault, nothing retried). */
static int session_restore(struct session *s, struct vm_snapshot *snap, const struct vm_guest *g,
			   struct aegis_error *err)
{
	char ram[4300], why[256];
	struct vm_boot boot = { .ram_file = ram, .incoming = true };
	struct aegis_error lerr = { 0 }, kerr = { 0 };
	uint64_t t0 = now_us();

	vm_snapshot_ram(snap, ram, sizeof ram);
	s->r->start = VM_RESTORE;
	if (vm_qemu_start(&s->q, g, s->o, &boot, &lerr) == 0 && vm_snapshot_load(&s->q, snap, &lerr) == 0) {
		s->r->restore_us = s->r->boot_us = now_us() - t0;
		snprintf(s->r->kernel, sizeof s->r->kernel, "%s", snap->kernel);
		return 0;
	}
	if (s->q.status_known && WIFSIGNALED(s->q.status))
		return error_set(err, AEGIS_E_SETUP, 0, "vm: restore from the snapshot: %s", lerr.msg);
	if (!s->q.status_known && qemu_ended(&s->q, why, sizeof why) && WIFSIGNALED(s->q.status))
		return error_set(err, AEGIS_E_SETUP, 0, "vm: restore from the snapshot: %s", why);
	vm_qemu_stop(&s->q);
	qemu_reset(&s->q);
	s->r->start = VM_COLD;
	if (vm_snapshot_lock(snap, &kerr) < 0)	/* drop only under the lock: a build may be live */
		return cold_because(s, "restore failed (snapshot kept: %s): %s", kerr.msg, lerr.msg), 1;
	vm_snapshot_drop(snap);
	vm_snapshot_unlock(snap);
	cold_because(s, "snapshot dropped: restore failed: %s", lerr.msg);
	return 1;
}

/* Up to the point where the guest waits for its request: restored from a
 * snapshot when there is one (built on first need), else booted cold. 0
 * up, 1 the run's timeout ran out first, -1 err. */
static int session_start(struct session *s, const struct vm_guest *g, uint64_t deadline, struct aegis_error *err)
{
	struct vm_snapshot snap;
	char why[256];
	bool kvm;
	int r;

	if (!vm_snapshot_enabled())
		return cold_because(s, "AEGIS_VM_SNAPSHOT=0"), session_cold(s, g, deadline, err);
	if (vm_accel(&kvm, why, sizeof why) < 0)	/* the cold boot says it as an error */
		return session_cold(s, g, deadline, err);
	if ((r = session_snapshot(s, &snap, g, kvm, deadline)) == 2) {
		s->r->end = VM_TIMEOUT;
		s->r->exit_code = 124;
		return 1;
	}
	if (r == 1 && (r = session_restore(s, &snap, g, err)) <= 0)
		return r;
	return session_cold(s, g, deadline, err);
}

int vm_run(struct vm_opts *o, struct vm_result *r, struct aegis_error *err)
{
	struct session s = { .o = o, .r = r, .sig = -1, .in = 0 };
	struct netproxy *net = NULL;
	struct ctlproxy *ctl = NULL;
	struct vm_guest g;
	sigset_t fwd, old;
	uint64_t t0 = now_us();
	uint64_t deadline = o->timeout_ms ? t0 + o->timeout_ms * 1000 : 0;
	int rc = -1, up;

	memset(r, 0, sizeof *r);
	r->image_erofs = o->slot_image_fd >= 0;
	r->image_build_us = o->image_build_us;
	qemu_reset(&s.q);
	if (vm_guest_find(&g, err) < 0)
		return -1;
	sigemptyset(&fwd);
	sigaddset(&fwd, SIGINT), sigaddset(&fwd, SIGTERM), sigaddset(&fwd, SIGHUP), sigaddset(&fwd, SIGQUIT);
	sigaddset(&fwd, SIGTSTP);
	sigprocmask(SIG_BLOCK, &fwd, &old);
	if ((s.sig = signalfd(-1, &fwd, SFD_CLOEXEC)) < 0) {
		error_sys(err, "vm: signalfd");
		goto out;
	}
	if ((up = session_start(&s, &g, deadline, err)) < 0)
		goto out;
	if (o->net_rules && netproxy_start(&net, s.q.net, s.q.dir, o->net_rules, o->net_report, o->net_report_arg,
					   err) < 0)
		goto out;
	r->kvm = s.q.kvm;
	if (up == 0 && o->audit)	/* r now says how the guest started: run.start's fields */
		auditrelay_begin(o->audit, s.q.dir, r);
	/* an instance's execs and --expose connections (the guest's engine
	 * serves them once it runs: until then they wait on the port) */
	if (up == 0 && o->spec->control_fd > 0 &&
	    ctlproxy_start(&ctl, s.q.ctl, o->spec->control_fd, s.q.dir, o->audit, err) < 0)
		goto out;
	if (up > 0) {	/* --timeout ran out during the boot */
		rc = 0;
		goto out;
	}
	if (session_request(&s, err) < 0 || (up = session_started(&s, deadline, err)) < 0)
		goto out;
	/* STARTED, not a RESULT refusing the request: the command runs, and
	 * its run.start (secret.use, ...) is on the chain before anyone is
	 * told it runs */
	auditrelay_poll(o->audit);
	if (up == 0 && !r->result && o->spec->on_started)
		o->spec->on_started(o->spec->on_started_arg);
	rc = up > 0 ? 0 : session_relay(&s, deadline, err);
out:
	ctlproxy_stop(ctl);	/* before QEMU goes: the guest's last exec statuses get through */
	netproxy_stop(net, r->net_error, sizeof r->net_error);	/* an early end: the caller records why */
	/* the guest's file opened (if it is there) before its directory goes:
	 * the backend's auditrelay_end reads the rest of it */
	auditrelay_poll(o->audit);
	vm_qemu_stop(&s.q);	/* the command is done (or failed): nothing in the guest outlives it */
	r->wall_us = now_us() - t0;
	if (s.sig >= 0)
		close(s.sig);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return rc;
}

void vm_result_free(struct vm_result *r)
{
	free(r->out);
	free(r->err);
	free(r->result);
	r->out = r->err = r->result = NULL;
}
