/* netrelay.c — allow mode's plain relay to an upstream proxy (netrelay.h).
 *
 * One accept thread and one detached thread per connection, each moving
 * bytes both ways with common/relay.c (splice, half-close kept) until both
 * sides are done or netrelay_stop. Every wait also watches one eventfd
 * that netrelay_stop writes, so stopping takes milliseconds; the stop
 * waits for the connection threads to leave before freeing anything. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/relay.h"
#include "../common/util.h"
#include "netrelay.h"

#define NETRELAY_IDLE_AFTER_EOF_MS 60000	/* one side done, the other silent: end */

struct netrelay {
	int listen_fd, stop_fd;
	struct sockaddr_storage up;
	socklen_t up_len;
	pthread_t accept_thread;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	size_t active;			/* connection threads alive */
};

struct netrelay_conn {
	struct netrelay *r;
	int client;
};

int netrelay_parse(const char *upstream, struct sockaddr_storage *out, socklen_t *len, struct aegis_error *err)
{
	char host[64];
	const char *colon = upstream ? strrchr(upstream, ':') : NULL;
	unsigned long port;
	char *end;

	memset(out, 0, sizeof *out);
	if (!colon || (size_t)(colon - upstream) >= sizeof host)
		return error_set(err, AEGIS_E_INVALID, 0, "net relay: '%s' is not ADDRESS:PORT", upstream ? upstream : "");
	port = strtoul(colon + 1, &end, 10);
	if (*end || !port || port > 65535)
		return error_set(err, AEGIS_E_INVALID, 0, "net relay: bad port in '%s'", upstream);
	snprintf(host, sizeof host, "%.*s", (int)(colon - upstream), upstream);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;

		host[strlen(host) - 1] = '\0';
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof *in6;
		if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) == 1)
			return 0;
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)out;

		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*len = sizeof *in;
		if (inet_pton(AF_INET, host, &in->sin_addr) == 1)
			return 0;
	}
	return error_set(err, AEGIS_E_INVALID, 0, "net relay: '%s' is no numeric address", upstream);
}

/* A non-blocking connection to the upstream within the timeout; -1 when
 * it cannot be had or we are stopping. */
static int netrelay_connect(struct netrelay *r)
{
	int fd = socket(r->up.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), soerr = 0;
	socklen_t sl = sizeof soerr;
	struct pollfd p[2];

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&r->up, r->up_len) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	p[0] = (struct pollfd){ fd, POLLOUT, 0 };
	p[1] = (struct pollfd){ r->stop_fd, POLLIN, 0 };
	while (poll(p, 2, NETRELAY_CONNECT_TIMEOUT_MS) < 0)
		if (errno != EINTR)
			goto fail;
	if (p[0].revents && !p[1].revents && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && !soerr)
		return fd;
fail:
	close(fd);
	return -1;
}

static void *netrelay_conn_main(void *arg)
{
	struct netrelay_conn *c = arg;
	struct netrelay *r = c->r;
	uint64_t up = 0, down = 0;
	struct relay_flow c2u = { .count = &up, .pipe = { -1, -1 } }, u2c = { .count = &down, .pipe = { -1, -1 } };
	int upstream = netrelay_connect(r);

	/* no upstream: the client's connection is closed, as a refusal */
	if (upstream >= 0 && relay_flow_open(&c2u) == 0 && relay_flow_open(&u2c) == 0) {
		const int fds[2] = { c->client, upstream };

		relay_run(fds, &c2u, &u2c, r->stop_fd, NETRELAY_IDLE_AFTER_EOF_MS);
	}
	relay_flow_close(&c2u);
	relay_flow_close(&u2c);
	if (upstream >= 0)
		close(upstream);
	close(c->client);
	free(c);
	pthread_mutex_lock(&r->lock);
	r->active--;
	pthread_cond_signal(&r->idle);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static void netrelay_accept_one(struct netrelay *r, pthread_attr_t *attr)
{
	int fd = accept4(r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct netrelay_conn *c;
	pthread_t t;

	if (fd < 0)
		return;
	pthread_mutex_lock(&r->lock);
	if (r->active >= NETRELAY_MAX_CONCURRENT || !(c = malloc(sizeof *c))) {
		pthread_mutex_unlock(&r->lock);
		close(fd);	/* over the bound: refused at once, not queued */
		return;
	}
	*c = (struct netrelay_conn){ r, fd };
	if (pthread_create(&t, attr, netrelay_conn_main, c) != 0) {
		pthread_mutex_unlock(&r->lock);
		close(fd);
		free(c);
		return;
	}
	r->active++;
	pthread_mutex_unlock(&r->lock);
}

static void *netrelay_accept_main(void *arg)
{
	struct netrelay *r = arg;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		struct pollfd p[2] = { { r->listen_fd, POLLIN, 0 }, { r->stop_fd, POLLIN, 0 } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents)
			netrelay_accept_one(r, &attr);
	}
	pthread_attr_destroy(&attr);
	return NULL;
}

int netrelay_start(struct netrelay **out, int listen_fd, const char *upstream, struct aegis_error *err)
{
	struct netrelay *r = calloc(1, sizeof *r);
	sigset_t pipe, saved;
	int rc, fl;

	*out = NULL;
	if (!r) {
		close(listen_fd);
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "net relay");
	}
	r->listen_fd = listen_fd;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->idle, NULL);
	if (netrelay_parse(upstream, &r->up, &r->up_len, err) < 0)
		goto fail;
	if ((r->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		error_sys(err, "net relay: eventfd");
		goto fail;
	}
	if ((fl = fcntl(listen_fd, F_GETFL)) < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		error_sys(err, "net relay: listener");
		goto fail;
	}
	/* splice(2) into a socket whose peer has gone raises SIGPIPE (it has
	 * no MSG_NOSIGNAL): the relay's threads start with it blocked, so it
	 * is an EPIPE, not the supervisor's death. */
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, &saved);
	rc = pthread_create(&r->accept_thread, NULL, netrelay_accept_main, r);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0) {
		error_set(err, AEGIS_E_SETUP, rc, "net relay: accept thread");
		goto fail;
	}
	*out = r;
	return 0;
fail:
	if (r->stop_fd > 0)
		close(r->stop_fd);
	close(listen_fd);
	free(r);
	return -1;
}

void netrelay_stop(struct netrelay *r)
{
	uint64_t one = 1;

	if (!r)
		return;
	(void)!write(r->stop_fd, &one, sizeof one);
	pthread_join(r->accept_thread, NULL);
	pthread_mutex_lock(&r->lock);
	while (r->active)
		pthread_cond_wait(&r->idle, &r->lock);
	pthread_mutex_unlock(&r->lock);
	close(r->listen_fd);
	close(r->stop_fd);
	free(r);
}
