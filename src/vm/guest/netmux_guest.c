/* netmux_guest.c — aegis-guest's end of the network channel: the guest has
 * no NIC, only lo; in allow mode the guest's 127.0.0.1:3128 is served by
 * this thread, which carries each accepted connection's raw bytes as one
 * netmux stream over the virtio-serial port "aegis-net" to the host. The
 * engine in the guest relays its sandbox's 127.0.0.1:3128 (where
 * HTTP_PROXY points) here (spec.net_upstream). Nothing here parses: every
 * HTTP parse, rule check, name resolution and upstream connection happens
 * on the host, in the ns backend's own proxy (src/vm/netproxy.c). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../common/netmux.h"
#include "../../sandbox/sandbox.h"
#include "guest.h"
#include "netmux_guest.h"

struct guest_net {
	struct netmux *mux;
	int port, listen_fd;
};

/* Test-only fault injection, the daemon's AEGIS_FAULT pattern: the host
 * puts AEGIS_FAULT=net-bad-frame on the guest kernel's command line
 * (AEGIS_VM_KERNEL_ARGS), which the kernel hands PID 1 as its environment;
 * the sandbox's clean environment never has it, nor can anything in the
 * guest set it. A header of no known type goes out first, as a broken
 * guest's would, so the host is seen to end the channel and say why. */
static void guest_net_fault(int port)
{
	static const unsigned char bad[NETMUX_HEADER] = { 0 };	/* type 0: none */
	const char *want = getenv("AEGIS_FAULT");

	if (want && !strcmp(want, "net-bad-frame")) {
		fprintf(stderr, "aegis-guest: fault injection: %s\n", want);
		(void)!write(port, bad, sizeof bad);
	}
}

static void *guest_net_main(void *arg)
{
	struct guest_net *g = arg;
	struct aegis_error err = { 0 };

	guest_net_fault(g->port);
	if (netmux_run(g->mux, g->listen_fd, -1, &err) < 0)
		fprintf(stderr, "aegis-guest: network channel: %s\n", err.msg);
	/* The host is gone or broke the protocol: connecting fails from now on
	 * (refused at once), rather than being accepted by no one. */
	close(g->listen_fd);
	netmux_free(g->mux);
	close(g->port);
	free(g);
	return NULL;
}

int netmux_guest_prepare(struct guest_net **out, struct aegis_error *err)
{
	struct guest_net *g;

	if (!(*out = g = calloc(1, sizeof *g)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "network");
	g->port = -1;
	if ((g->listen_fd = netns_proxy_listener(err)) < 0)
		goto fail;
	if ((g->port = guest_port_open(NETMUX_PORT_NAME)) < 0) {
		error_set(err, AEGIS_E_SETUP, ENOENT, "network: no virtio-serial port named %s", NETMUX_PORT_NAME);
		goto fail;
	}
	if ((g->mux = netmux_new(g->port, NULL, NULL)))
		return 0;
	error_sys(err, "network: channel");
fail:
	if (g->listen_fd >= 0)
		close(g->listen_fd);
	if (g->port >= 0)
		close(g->port);
	free(g);
	*out = NULL;
	return -1;
}

int netmux_guest_start(struct guest_net *g, struct aegis_error *err)
{
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, guest_net_main, g);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return 0;
	netmux_free(g->mux);
	close(g->listen_fd);
	close(g->port);
	free(g);
	return error_set(err, AEGIS_E_SETUP, rc, "network: thread");
}
