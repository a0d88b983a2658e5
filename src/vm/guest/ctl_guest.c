/* ctl_guest.c — aegis-guest's end of an instance's control channel.
 *
 * On the host, aegisd's execs and --expose connections for a vm instance
 * reach the shim's control socket; src/vm/ctlproxy.c sends each as one
 * netmux stream over the virtio-serial port "aegis-ctl", the message first
 * (ctlwire.h). Here each stream becomes one connection to the engine's own
 * control socket, which the engine serves exactly as on the host
 * (execserve.c): so an exec in a guest is an exec in the same sandbox as
 * the main command, with all its confinement. The socket is an abstract
 * unix name in the guest's root network namespace: the sandbox has a
 * network namespace of its own and cannot reach it.
 *
 *  - a request with a descriptor (an exec's stream): the engine gets one
 *    end of a socketpair, the stream is relayed to the other until the
 *    engine closes it (the exec is over);
 *  - without ({"connect": PORT}): the engine's answer goes back on the
 *    stream, and the connection that came with it is relayed there;
 *  - the host's clock after a resume ({"clock": ...}): PID 1 sets its own
 *    and answers; the engine never sees it. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../common/ctlwire.h"
#include "../../common/fdpass.h"
#include "../../common/netmux.h"
#include "ctl_guest.h"
#include "guest.h"

#define CTL_ABSTRACT "aegis-guest-control"
#define REQUEST_WAIT_MS 10000	/* the host sends the message with the stream */
#define ANSWER_WAIT_MS 10000	/* the engine's answer to a connect */

struct guest_ctl {
	struct netmux *mux;
	int port;
};

static socklen_t ctl_addr(struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path + 1, CTL_ABSTRACT, strlen(CTL_ABSTRACT));
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(CTL_ABSTRACT));
}

static int engine_connect(void)
{
	struct sockaddr_un sun;
	socklen_t len = ctl_addr(&sun);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void reply_error(int stream, const char *why, int e)
{
	json_t *j = json_pack("{s:s, s:i}", "error", why, "errno", e);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	if (text)
		ctlwire_send(stream, text, strlen(text), false);
	free(text);
	json_decref(j);
}

/* An exec: the engine gets its own end of a socketpair as the user's
 * stream; the host's stream is relayed to ours until the engine is done. */
static void serve_exec(int stream, int conn, const char *text)
{
	int sp[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return;
	if (fdpass_send(conn, text, strlen(text), sp[1]) < 0) {
		close(sp[0]);
		close(sp[1]);
		return;
	}
	close(sp[1]);
	ctlwire_relay(stream, sp[0]);
	close(sp[0]);
}

/* A connect: the engine's answer (with the connection into the sandbox,
 * when it made one) back on the stream, then that connection's bytes. */
static void serve_call(int stream, int conn, const char *text)
{
	char answer[CTLWIRE_ANSWER_MAX];
	struct pollfd p = { .fd = conn, .events = POLLIN };
	ssize_t n = -1;
	int fd = -1;

	if (fdpass_send(conn, text, strlen(text), -1) >= 0 && poll(&p, 1, ANSWER_WAIT_MS) == 1)
		n = fdpass_recv(conn, answer, sizeof answer, &fd);
	if (n <= 0) {
		reply_error(stream, "the sandbox did not answer", EIO);
	} else if (ctlwire_send(stream, answer, (size_t)n, fd >= 0) == 0 && fd >= 0) {
		ctlwire_relay(stream, fd);
	}
	if (fd >= 0)
		close(fd);
}

/* The host's clock after a resume (ctlwire.h): set here, in PID 1, never
 * passed to the engine; the answer says whether it was taken. */
static void serve_clock(int stream, json_t *req)
{
	static const char done[] = "{\"ok\":true}";
	struct aegis_error err = { 0 };

	if (guest_clock_set(req, &err) < 0)
		reply_error(stream, err.msg, err.sys_errno ? err.sys_errno : EINVAL);
	else
		ctlwire_send(stream, done, sizeof done - 1, false);
}

static void *stream_main(void *arg)
{
	int stream = (int)(intptr_t)arg, conn = -1;
	const char *why = NULL;
	bool with_fd = false;
	json_t *req = ctlwire_recv(stream, CTLWIRE_REQUEST_MAX, REQUEST_WAIT_MS, &with_fd, &why);
	char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;

	if (!text)
		fprintf(stderr, "aegis-guest: control stream: %s\n", why ? why : "out of memory");
	else if (!with_fd && json_object_get(req, "clock"))
		serve_clock(stream, req);
	else if ((conn = engine_connect()) < 0)
		reply_error(stream, "the sandbox is not running", ESRCH);
	else if (with_fd)
		serve_exec(stream, conn, text);
	else
		serve_call(stream, conn, text);
	if (conn >= 0)
		close(conn);
	close(stream);
	free(text);
	json_decref(req);
	return NULL;
}

/* A stream from the host: a socketpair, its far end served by a thread of
 * its own (the mux must never block on one stream). */
static int ctl_open(void *arg, unsigned id)
{
	int sp[2];
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	(void)arg;
	(void)id;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return -1;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	rc = pthread_create(&t, &attr, stream_main, (void *)(intptr_t)sp[1]);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	return sp[0];	/* the mux makes it non-blocking */
}

static void *ctl_main(void *arg)
{
	struct guest_ctl *g = arg;
	struct aegis_error err = { 0 };

	if (netmux_run(g->mux, -1, -1, &err) < 0)
		fprintf(stderr, "aegis-guest: control channel: %s\n", err.msg);
	/* the host is gone or broke the protocol: no exec can come any more */
	netmux_free(g->mux);
	close(g->port);
	free(g);
	return NULL;
}

int ctl_guest_prepare(struct guest_ctl **out, int *listen_fd, struct aegis_error *err)
{
	struct sockaddr_un sun;
	socklen_t len = ctl_addr(&sun);
	struct guest_ctl *g;

	*listen_fd = -1;
	if (!(*out = g = calloc(1, sizeof *g)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "control channel");
	g->port = -1;
	if ((*listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(*listen_fd, (struct sockaddr *)&sun, len) < 0 || listen(*listen_fd, 16) < 0) {
		error_sys(err, "control channel: listen");
		goto fail;
	}
	if ((g->port = guest_port_open(CTLWIRE_PORT_NAME)) < 0) {
		error_set(err, AEGIS_E_SETUP, ENOENT, "control channel: no virtio-serial port named %s",
			  CTLWIRE_PORT_NAME);
		goto fail;
	}
	if ((g->mux = netmux_new(g->port, ctl_open, g)))
		return 0;
	error_sys(err, "control channel: mux");
fail:
	if (*listen_fd >= 0)
		close(*listen_fd);
	*listen_fd = -1;
	if (g->port >= 0)
		close(g->port);
	free(g);
	*out = NULL;
	return -1;
}

int ctl_guest_start(struct guest_ctl *g, struct aegis_error *err)
{
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, ctl_main, g);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return 0;
	netmux_free(g->mux);
	close(g->port);
	free(g);
	return error_set(err, AEGIS_E_SETUP, rc, "control channel: thread");
}
