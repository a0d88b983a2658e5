/* ctlproxy.c — the host's end of a vm instance's control channel.
 *
 * An instance's shim listens on control.sock (src/daemon/control.c), where
 * aegisd sends one message per exec or --expose connection: JSON, with a
 * descriptor or without. For an ns instance the engine serves that socket
 * (execserve.c). For a vm instance the engine serving it runs in the guest,
 * so each connection accepted here becomes one netmux stream over the
 * virtio-serial port "aegis-ctl": the message goes first (ctlwire.h), then
 *  - with a descriptor (an exec: the user's stream), the stream carries the
 *    exec's frames between that descriptor and the guest's engine, and the
 *    daemon's connection closes when the exec is over, as with ns;
 *  - without one ({"connect": PORT}), the guest's answer comes back on the
 *    stream, checked (bounded, one JSON object) before aegisd sees it; when
 *    it says a connection came with it, the stream itself is that
 *    connection, handed to aegisd.
 * One message is the host's own and never goes to the guest: aegisd's
 * pause and resume of the instance, {"vm": "stop"} and {"vm": "cont"}
 * (QMP, on QEMU's socket in the run directory); after a cont the guest's
 * clock, which stood while it was stopped, is set to the host's on a
 * stream of its own (ctlwire.h).
 * Here the host opens the streams and the guest serves them: a guest can
 * only answer what was asked, never start anything on the host. What it
 * sends is not trusted: a malformed frame ends the channel (every exec
 * ends, its user told the instance stopped). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/ctlwire.h"
#include "../common/fdpass.h"
#include "../common/frames.h"
#include "../common/netmux.h"
#include "../common/util.h"
#include "vm.h"

#define REQUEST_WAIT_MS 5000	/* aegisd sends its one message at once */
#define ANSWER_WAIT_MS 10000	/* the guest's answer to a connect (aegisd itself waits 5 s) */
#define DRAIN_MS 1500		/* at the end: execs still telling their users how they ended */
#define CLOCK_WAIT_MS 5000	/* the guest's PID 1 sets its clock at once */

struct ctlproxy {
	struct netmux *mux;
	int chan, listen_fd;	/* the port; the shim's control socket (not ours) */
	int mux_listen;		/* dir/ctlmux.sock: each connection to it is a stream */
	int stop_fd;
	pthread_t mux_thread, accept_thread;
	struct sockaddr_un addr;	/* mux_listen's */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned workers;
	bool stopping;		/* the channel is ending: a stream cut now is the instance's end */
	struct auditrelay *audit;	/* NULL: the run keeps no audit */
	char dir[64];		/* QEMU's run directory: its qmp.sock */
	int rc;
	struct aegis_error err;
};

struct worker {
	struct ctlproxy *px;
	int conn;		/* from aegisd */
};

static bool px_stopping(struct ctlproxy *px)
{
	bool s;

	pthread_mutex_lock(&px->lock);
	s = px->stopping;
	pthread_mutex_unlock(&px->lock);
	return s;
}

/* A stream into the guest: a connection the mux takes as a new stream. */
static int stream_open(struct ctlproxy *px)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&px->addr, sizeof px->addr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void answer_error(int conn, const char *why, int e)
{
	json_t *j = json_pack("{s:s, s:i}", "error", why, "errno", e);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	if (text)
		(void)fdpass_send(conn, text, strlen(text), -1);
	free(text);
	json_decref(j);
}

/* The exec's user learns its end as from an ns instance's engine: it did
 * not start (125), or the instance stopped under it (137). A bounded
 * write: a user who stopped reading must not hold the instance's end. */
static void tell_stopped(int user, bool ran)
{
	static const char ran_msg[] = "{\"exit_code\":137,\"error\":{\"code\":\"instance_stopped\","
				      "\"message\":\"the instance stopped while the exec ran\"}}";
	static const char not_msg[] = "{\"exit_code\":125,\"error\":{\"code\":\"instance_stopped\","
				      "\"message\":\"the instance is not running\"}}";
	struct timeval tv = { .tv_sec = 1 };

	setsockopt(user, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (ran)
		frame_send(user, FRAME_EXIT, ran_msg, sizeof ran_msg - 1);
	else
		frame_send(user, FRAME_EXIT, not_msg, sizeof not_msg - 1);
}

/* A request without a descriptor: the guest's answer, checked, to aegisd;
 * the stream itself goes along when the answer says a connection came. */
static void serve_call(struct worker *w, int stream)
{
	const char *why = NULL;
	bool with_fd = false;
	json_t *ans = ctlwire_recv(stream, CTLWIRE_ANSWER_MAX, ANSWER_WAIT_MS, &with_fd, &why);
	char *text = ans ? json_dumps(ans, JSON_COMPACT) : NULL;

	if (!text) {
		answer_error(w->conn, why ? why : "out of memory", ans ? ENOMEM : EIO);
	} else if (with_fd && !json_is_true(json_object_get(ans, "ok"))) {
		answer_error(w->conn, "the guest's answer is malformed", EPROTO);
	} else {
		/* from here the stream carries only the connection's bytes */
		(void)fdpass_send(w->conn, text, strlen(text), with_fd ? stream : -1);
	}
	free(text);
	json_decref(ans);
}

/* The host's clock to the guest's PID 1, which answers whether it took
 * it. 0, or -1 with why. */
static int clock_to_guest(struct ctlproxy *px, char *why, size_t cap)
{
	json_t *msg = ctlwire_clock_now(), *ans = NULL;
	char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	const char *bad = NULL;
	bool with_fd = false;
	int stream = -1;

	if (!text)
		bad = "out of memory";
	else if ((stream = stream_open(px)) < 0 || ctlwire_send(stream, text, strlen(text), false) < 0)
		bad = "the control channel is gone";
	else if ((ans = ctlwire_recv(stream, CTLWIRE_ANSWER_MAX, CLOCK_WAIT_MS, &with_fd, &bad)) &&
		 (with_fd || !json_is_true(json_object_get(ans, "ok"))))
		bad = json_string_value(json_object_get(ans, "error")) ?: "the guest's answer is malformed";
	if (bad)	/* copied before ans goes: bad may be its text (bounded) */
		snprintf(why, cap, "the guest's clock was not set: %s", bad);
	if (stream >= 0)
		close(stream);
	json_decref(ans);
	json_decref(msg);
	free(text);
	return bad ? -1 : 0;
}

/* QMP op ("stop", "cont") on QEMU's socket. A stop is always sent; a cont
 * only when the guest is not running: aegisd's stop of an instance resumes
 * it first whatever its state, and a running guest's clock is right.
 * *changed: the guest was running before a stop, or was not before a
 * cont (the cont was sent). -1 with err. */
static int qmp_op(struct ctlproxy *px, const char *op, bool *changed, struct aegis_error *err)
{
	struct vm_qmp m = { .fd = -1 };
	char path[128], status[64];
	bool cont = !strcmp(op, "cont");
	int rc;

	*changed = false;
	snprintf(path, sizeof path, "%s/qmp.sock", px->dir);
	rc = vm_qmp_open(&m, path, err);
	if (rc == 0 && (rc = vm_qmp_status(&m, status, sizeof status, err)) == 0) {
		bool running = !strcmp(status, "running");

		*changed = cont ? !running : running;
	}
	if (rc == 0 && (!cont || *changed))
		rc = vm_qmp_execute(&m, op, NULL, err);
	vm_qmp_close(&m);
	return rc;
}

/* The op's deadline in aegisd's request ("by_us", CLOCK_MONOTONIC, which
 * both share): past it aegisd has stopped waiting and told its user the
 * guest did not change, so the op is not done, or, done too late (this
 * shim hung or was starved meanwhile), undone. 0 when the request has none
 * (an aegisd from before it). */
static uint64_t vm_deadline(json_t *req, bool *bad)
{
	json_t *by = json_object_get(req, "by_us");

	*bad = json_object_size(req) != (by ? 2u : 1u) || (by && (!json_is_integer(by) || json_integer_value(by) <= 0));
	return by && !*bad ? (uint64_t)json_integer_value(by) : 0;
}

/* aegisd's {"vm": "stop"} or {"vm": "cont"}, with its deadline: QMP here,
 * on the host. The answer is {"ok": true}, with "clock_error" when a cont
 * could not set the guest's clock (the guest runs either way), or
 * {"error", "errno"}. */
static void serve_vm(struct ctlproxy *px, int conn, json_t *req, int user)
{
	const char *op = json_string_value(json_object_get(req, "vm"));
	struct aegis_error err = { 0 }, undo = { 0 };
	bool changed, bad, undone;
	uint64_t by = vm_deadline(req, &bad);
	char why[300];
	json_t *ans;
	char *text;

	if (user >= 0 || bad || !op || (strcmp(op, "stop") && strcmp(op, "cont"))) {
		answer_error(conn, "a vm request is {\"vm\": \"stop\"} or {\"vm\": \"cont\"}, "
			     "with \"by_us\", a positive integer", EINVAL);
		return;
	}
	if (by && now_us() >= by) {
		snprintf(why, sizeof why, "vm: QMP %s: asked too late, aegisd had stopped waiting; not done", op);
		answer_error(conn, why, ETIMEDOUT);
		return;
	}
	if (qmp_op(px, op, &changed, &err) < 0) {
		answer_error(conn, err.msg, err.sys_errno ? err.sys_errno : EIO);
		return;
	}
	if (by && changed && now_us() >= by) {
		undone = qmp_op(px, strcmp(op, "stop") ? "stop" : "cont", &(bool){ false }, &undo) == 0;
		snprintf(why, sizeof why, "vm: QMP %s: done after aegisd had stopped waiting; %s", op,
			 undone ? "undone" : undo.msg);
		answer_error(conn, why, ETIMEDOUT);
		return;
	}
	ans = json_pack("{s:b}", "ok", 1);
	if (!strcmp(op, "cont") && changed && clock_to_guest(px, why, sizeof why) < 0)
		json_object_set_new(ans, "clock_error", json_string(why));
	if ((text = ans ? json_dumps(ans, JSON_COMPACT) : NULL))
		(void)fdpass_send(conn, text, strlen(text), -1);
	free(text);
	json_decref(ans);
}

static void worker_run(struct worker *w)
{
	struct ctlproxy *px = w->px;
	struct pollfd p = { .fd = w->conn, .events = POLLIN };
	char *text = malloc(CTLWIRE_REQUEST_MAX);
	const char *why = NULL;
	json_t *req = NULL;
	ssize_t n = -1;
	int user = -1, stream = -1;

	if (text && poll(&p, 1, REQUEST_WAIT_MS) == 1)
		n = fdpass_recv(w->conn, text, CTLWIRE_REQUEST_MAX, &user);
	if (n <= 0 || !(req = ctlwire_parse_json(text, (size_t)n, &why)))
		goto out;	/* aegisd sees the connection close: no answer */
	if (json_object_get(req, "vm")) {	/* ours, not the guest's */
		serve_vm(px, w->conn, req, user);
		goto out;
	}
	if ((stream = stream_open(px)) < 0 || ctlwire_send(stream, text, (size_t)n, user >= 0) < 0) {
		if (user >= 0)
			tell_stopped(user, false);
		else
			answer_error(w->conn, "the instance is not running", ESRCH);
		goto out;
	}
	if (user < 0) {
		serve_call(w, stream);
		goto out;
	}
	/* an exec: its frames both ways until the guest's engine closes it;
	 * cut by the channel's end instead, the user is told why. The engine
	 * wrote the exec's events before the bytes that say it ended: they
	 * are taken first, so the user finds them on the chain, as with ns */
	ctlwire_relay_each(user, stream, px->audit ? auditrelay_poll_hook : NULL, px->audit);
	if (px_stopping(px))
		tell_stopped(user, true);
out:
	if (stream >= 0)
		close(stream);
	if (user >= 0)
		close(user);
	json_decref(req);
	free(text);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ctlproxy *px = w->px;

	worker_run(w);
	close(w->conn);	/* aegisd's exec ends here */
	free(w);
	pthread_mutex_lock(&px->lock);
	if (--px->workers == 0)
		pthread_cond_broadcast(&px->idle);
	pthread_mutex_unlock(&px->lock);
	return NULL;
}

static void accept_one(struct ctlproxy *px)
{
	int conn = accept4(px->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	struct worker *w;
	pthread_attr_t attr;
	pthread_t t;

	if (conn < 0)
		return;
	if (!peer_is_us_or_root(conn) || !(w = calloc(1, sizeof *w))) {
		close(conn);
		return;
	}
	w->px = px;
	w->conn = conn;
	pthread_mutex_lock(&px->lock);
	px->workers++;
	pthread_mutex_unlock(&px->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	if (pthread_create(&t, &attr, worker_main, w) != 0) {
		pthread_mutex_lock(&px->lock);
		px->workers--;
		pthread_mutex_unlock(&px->lock);
		close(conn);
		free(w);
	}
	pthread_attr_destroy(&attr);
}

static void *accept_main(void *arg)
{
	struct ctlproxy *px = arg;

	for (;;) {
		struct pollfd p[2] = { { px->listen_fd, POLLIN, 0 }, { px->stop_fd, POLLIN, 0 } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents)
			accept_one(px);
	}
	return NULL;
}

static void *mux_main(void *arg)
{
	struct ctlproxy *px = arg;

	px->rc = netmux_run(px->mux, px->mux_listen, px->stop_fd, &px->err);
	if (px->rc < 0)
		fprintf(stderr, "aegis: vm: the control channel ended: %s\n", px->err.msg);
	/* Stopped, or the guest's end is gone or broke the protocol: every
	 * exec still open is told the instance stopped, every stream ends —
	 * those the mux took with it, those it never accepted with the
	 * listener — and later requests find no listener. */
	pthread_mutex_lock(&px->lock);
	px->stopping = true;
	pthread_mutex_unlock(&px->lock);
	netmux_free(px->mux);
	px->mux = NULL;
	close(px->mux_listen);
	px->mux_listen = -1;
	return NULL;
}

static int mux_listener(struct ctlproxy *px, const char *dir, struct aegis_error *err)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	px->addr.sun_family = AF_UNIX;
	snprintf(px->addr.sun_path, sizeof px->addr.sun_path, "%s/ctlmux.sock", dir);
	if (fd < 0)
		return error_sys(err, "vm: control channel: socket");
	unlink(px->addr.sun_path);
	if (bind(fd, (struct sockaddr *)&px->addr, sizeof px->addr) < 0 || listen(fd, 64) < 0) {
		error_sys(err, "vm: control channel: listen on %s", px->addr.sun_path);
		close(fd);
		return -1;
	}
	return fd;
}

int ctlproxy_start(struct ctlproxy **out, int chan, int listen_fd, const char *dir, struct auditrelay *audit,
		   struct aegis_error *err)
{
	struct ctlproxy *px = calloc(1, sizeof *px);
	sigset_t pipe, saved;
	int rc;

	*out = NULL;
	if (!px)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "vm: control channel");
	px->chan = chan;
	px->listen_fd = listen_fd;
	px->audit = audit;
	snprintf(px->dir, sizeof px->dir, "%s", dir);
	pthread_mutex_init(&px->lock, NULL);
	pthread_cond_init(&px->idle, NULL);
	if ((px->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		free(px);
		return error_sys(err, "vm: control channel: eventfd");
	}
	if ((px->mux_listen = mux_listener(px, dir, err)) < 0)
		goto fail;
	if (!(px->mux = netmux_new(chan, NULL, NULL))) {
		error_sys(err, "vm: control channel");
		goto fail;
	}
	/* a user gone mid-exec is an EPIPE for the thread that writes to it */
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, &saved);
	rc = pthread_create(&px->mux_thread, NULL, mux_main, px);
	if (rc == 0 && (rc = pthread_create(&px->accept_thread, NULL, accept_main, px)) != 0) {
		uint64_t one = 1;

		(void)!write(px->stop_fd, &one, sizeof one);
		pthread_join(px->mux_thread, NULL);
	}
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc == 0) {
		*out = px;
		return 0;
	}
	error_set(err, AEGIS_E_SETUP, rc, "vm: control channel: thread");
fail:
	netmux_free(px->mux);
	if (px->mux_listen >= 0)
		close(px->mux_listen);
	if (px->addr.sun_path[0])
		unlink(px->addr.sun_path);
	close(px->stop_fd);
	free(px);
	return -1;
}

void ctlproxy_stop(struct ctlproxy *px)
{
	struct timespec until;
	uint64_t one = 1;

	if (!px)
		return;
	/* The guest's engine ends its execs with their status; a moment for
	 * that to come through before the channel is cut. */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += DRAIN_MS / 1000;
	until.tv_nsec += (DRAIN_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L)
		until.tv_sec++, until.tv_nsec -= 1000000000L;
	pthread_mutex_lock(&px->lock);
	while (px->workers && pthread_cond_timedwait(&px->idle, &px->lock, &until) == 0)
		;
	pthread_mutex_unlock(&px->lock);
	(void)!write(px->stop_fd, &one, sizeof one);
	pthread_join(px->accept_thread, NULL);
	pthread_join(px->mux_thread, NULL);	/* it ends every stream (mux_main) */
	pthread_mutex_lock(&px->lock);
	while (px->workers)
		pthread_cond_wait(&px->idle, &px->lock);
	pthread_mutex_unlock(&px->lock);
	unlink(px->addr.sun_path);
	close(px->stop_fd);
	free(px);
}
