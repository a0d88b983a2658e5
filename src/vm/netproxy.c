/* netproxy.c — the host's end of a vm guest's network channel (--net allow).
 *
 * The guest has no NIC: its 127.0.0.1:3128 carries each connection as one
 * netmux stream over the virtio-serial port "aegis-net" (netmux_guest.c).
 * Here every stream becomes a connection to the ns backend's own egress
 * proxy (src/sandbox/proxy.c), served on a unix socket in the run's 0700
 * directory with the run's rules, so every HTTP parse, rule check, name
 * resolution and upstream connection happens on the host, in the same
 * code, with one report per connection for the caller's audit log. What
 * the guest sends is not trusted: a malformed frame ends the channel (the
 * guest's connections fail) with the reason. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/netmux.h"
#include "vm.h"

struct netproxy {
	struct proxy *proxy;
	struct netmux *mux;
	int chan, stop_fd;
	pthread_t thread;
	struct sockaddr_un addr;	/* the proxy's socket */
	int rc;
	struct aegis_error err;		/* why the channel ended, when rc < 0 */
};

/* A stream from the guest: a connection to the proxy, or a refusal (the
 * proxy's backlog full: the guest's client sees its connection closed). */
static int netproxy_open(void *arg, unsigned id)
{
	struct netproxy *np = arg;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	(void)id;
	if (fd >= 0 && connect(fd, (struct sockaddr *)&np->addr, sizeof np->addr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void *netproxy_main(void *arg)
{
	struct netproxy *np = arg;

	np->rc = netmux_run(np->mux, -1, np->stop_fd, &np->err);
	if (np->rc < 0)	/* the guest sees its channel end: its connections fail */
		shutdown(np->chan, SHUT_RDWR);
	return NULL;
}

/* The proxy's listening socket at dir/proxy.sock (the directory is ours
 * alone: 0700). */
static int netproxy_listener(struct netproxy *np, const char *dir, struct aegis_error *err)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	np->addr.sun_family = AF_UNIX;
	snprintf(np->addr.sun_path, sizeof np->addr.sun_path, "%s/proxy.sock", dir);
	if (fd < 0)
		return error_sys(err, "vm: network: socket");
	unlink(np->addr.sun_path);
	if (bind(fd, (struct sockaddr *)&np->addr, sizeof np->addr) < 0 || listen(fd, PROXY_MAX_CONCURRENT) < 0) {
		error_sys(err, "vm: network: listen on %s", np->addr.sun_path);
		close(fd);
		return -1;
	}
	return fd;
}

int netproxy_start(struct netproxy **out, int chan, const char *dir, const struct net_rules *rules,
		   proxy_report_fn report, void *report_arg, struct aegis_error *err)
{
	struct netproxy *np = calloc(1, sizeof *np);
	sigset_t pipe, saved;
	int lfd, rc;

	*out = NULL;
	if (!np)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "vm: network");
	np->chan = chan;
	if ((np->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		free(np);
		return error_sys(err, "vm: network: eventfd");
	}
	/* The proxy relays with splice(2), which cannot be told MSG_NOSIGNAL:
	 * a guest client gone mid-transfer would raise SIGPIPE and kill aegis.
	 * Its threads and ours start with SIGPIPE blocked (they inherit this
	 * mask), so a vanished peer is an EPIPE the relay handles. */
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, &saved);
	if ((lfd = netproxy_listener(np, dir, err)) < 0 ||
	    proxy_start(&np->proxy, lfd, rules, report, report_arg, err) < 0)	/* takes lfd */
		goto fail;
	if (!(np->mux = netmux_new(chan, netproxy_open, np))) {
		error_sys(err, "vm: network: channel");
		goto fail;
	}
	if ((rc = pthread_create(&np->thread, NULL, netproxy_main, np)) != 0) {
		error_set(err, AEGIS_E_SETUP, rc, "vm: network: thread");
		goto fail;
	}
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	*out = np;
	return 0;
fail:
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (np->proxy)
		proxy_stop(np->proxy);
	netmux_free(np->mux);
	if (np->addr.sun_path[0])
		unlink(np->addr.sun_path);
	close(np->stop_fd);
	free(np);
	return -1;
}

int netproxy_stop(struct netproxy *np, char *why, size_t cap)
{
	uint64_t one = 1;
	int rc;

	if (!np)
		return 0;
	(void)!write(np->stop_fd, &one, sizeof one);
	pthread_join(np->thread, NULL);
	netmux_free(np->mux);	/* the streams' ends first: the proxy's connections see EOF */
	proxy_stop(np->proxy);
	unlink(np->addr.sun_path);
	close(np->stop_fd);
	rc = np->rc;
	if (rc < 0)
		snprintf(why, cap, "%s", np->err.msg);
	free(np);
	return rc;
}
