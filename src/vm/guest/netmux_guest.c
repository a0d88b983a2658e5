/* netmux_guest.c — aegis-guest's end of the network channel: the guest has
 * no NIC, only lo; in allow mode 127.0.0.1:3128 (where HTTP_PROXY points)
 * is served by this thread, which carries each accepted connection's raw
 * bytes as one netmux stream over the virtio-serial port "aegis-net" to
 * the host. It parses nothing: every HTTP parse, rule check, name
 * resolution and upstream connection happens on the host, in the ns
 * backend's own proxy (src/vm/netproxy.c). The thread does not depend on
 * the guest's main loop: the command may run here or in a sandbox of its
 * own inside the guest that relays to this address. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../common/netmux.h"
#include "../../sandbox/sandbox.h"
#include "netmux_guest.h"

#define PORT_WAIT_MS 5000	/* the ports appear together; "aegis" is open already */

struct guest_net {
	struct netmux *mux;
	int port, listen_fd;
};

/* /sys/class/virtio-ports/vportNpM/name == name → /dev/vportNpM, opened. */
static int find_port(const char *name)
{
	for (int waited = 0; waited < PORT_WAIT_MS; waited += 5) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;
		int fd = -1;

		while (d && fd < 0 && (e = readdir(d))) {
			char path[300], got[64] = "";
			FILE *f;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
			if ((f = fopen(path, "re"))) {
				if (!fgets(got, sizeof got, f))
					got[0] = '\0';
				fclose(f);
			}
			got[strcspn(got, "\n")] = '\0';
			if (strcmp(got, name) == 0) {
				snprintf(path, sizeof path, "/dev/%s", e->d_name);
				fd = open(path, O_RDWR | O_CLOEXEC);
			}
		}
		if (d)
			closedir(d);
		if (fd >= 0)
			return fd;
		nanosleep(&(struct timespec){ 0, 5 * 1000 * 1000 }, NULL);
	}
	return -1;
}

static void *guest_net_main(void *arg)
{
	struct guest_net *g = arg;
	struct aegis_error err = { 0 };

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

int netmux_guest_start(json_t *req, struct aegis_error *err)
{
	const char *mode = json_string_value(json_object_get(req, "network"));
	struct guest_net *g;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (!mode || strcmp(mode, "allow"))
		return 0;	/* none: lo stays down, no channel exists */
	if (netns_loopback_up() < 0)
		return error_sys(err, "network: bring lo up");
	if (!(g = calloc(1, sizeof *g)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "network");
	g->port = -1;
	if ((g->listen_fd = netns_proxy_listener(err)) < 0)
		goto fail;
	if ((g->port = find_port(NETMUX_PORT_NAME)) < 0) {
		error_set(err, AEGIS_E_SETUP, ENOENT, "network: no virtio-serial port named %s", NETMUX_PORT_NAME);
		goto fail;
	}
	if (!(g->mux = netmux_new(g->port, NULL, NULL))) {
		error_sys(err, "network: channel");
		goto fail;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, guest_net_main, g);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return 0;
	error_set(err, AEGIS_E_SETUP, rc, "network: thread");
	netmux_free(g->mux);
fail:
	if (g->listen_fd >= 0)
		close(g->listen_fd);
	if (g->port >= 0)
		close(g->port);
	free(g);
	return -1;
}
