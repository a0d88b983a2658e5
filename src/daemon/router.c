/* router.c — exposed ports: the host side of `--expose [ADDR:]HOST:GUEST`.
 *
 * aegisd listens on each exposed host address. A connection wakes its
 * instance if it sleeps (idle.c: resumed if paused, started again if
 * stopped), then gets a connection to the instance's own GUEST port, made
 * by the sandbox's PID 1 inside its network namespace (so nothing else —
 * no host address, no other instance — can ever be the target), and the
 * bytes are relayed both ways with splice (common/relay.c). While a
 * stopped instance boots, the client waits until its server accepts (at
 * most ROUTER_WAKE_WAIT_MS, then a clean close). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/relay.h"
#include "../common/util.h"
#include "control.h"
#include "daemon.h"
#include "expose.h"
#include "idle.h"
#include "instances.h"
#include "router.h"

#define ROUTES_MAX 4096
#define ROUTER_WAKE_WAIT_MS 30000	/* a booting instance's server must accept by then */
#define ROUTER_IDLE_AFTER_EOF_MS 60000
#define ROUTER_CONNECTIONS_MAX 4096	/* a thread each; beyond, new ones are closed at once */

struct route {
	char name[INSTANCE_NAME_MAX + 1];
	struct expose e;
	int lfd;
};

static struct route routes[ROUTES_MAX];
static int nroutes;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int changed_fd = -1;	/* the accept loop's table changed */
static uint64_t wake_wait_ms = ROUTER_WAKE_WAIT_MS;	/* $AEGIS_WAKE_WAIT_MS */
static int open_conns;		/* relayed now, under lock */

static int listen_on(const struct expose *e)
{
	int one = 1, fd = socket(e->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (e->sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)&e->sa, e->salen) < 0 || listen(fd, 1024) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

int router_open(const char *name, json_t *expose, char *why, size_t len)
{
	struct expose e[EXPOSE_MAX];
	int fds[EXPOSE_MAX], n = 0;
	size_t i;
	json_t *v;

	json_array_foreach(expose, i, v) {
		if (n == EXPOSE_MAX || expose_parse(json_string_value(v) ?: "", &e[n]) < 0) {
			snprintf(why, len, "bad expose: %s", json_string_value(v) ?: "?");
			goto undo;
		}
		if ((fds[n] = listen_on(&e[n])) < 0) {
			snprintf(why, len, "cannot listen on %s:%u: %s", e[n].addr, e[n].host, strerror(errno));
			goto undo;
		}
		n++;
	}
	pthread_mutex_lock(&lock);
	if (nroutes + n > ROUTES_MAX) {
		pthread_mutex_unlock(&lock);
		snprintf(why, len, "too many exposed ports (%d)", ROUTES_MAX);
		goto undo;
	}
	for (int k = 0; k < n; k++) {
		snprintf(routes[nroutes].name, sizeof routes[nroutes].name, "%s", name);
		routes[nroutes].e = e[k];
		routes[nroutes++].lfd = fds[k];
	}
	pthread_mutex_unlock(&lock);
	if (n && changed_fd >= 0)
		eventfd_write(changed_fd, 1);
	return 0;
undo:
	while (n-- > 0)
		close(fds[n]);
	return -1;
}

void router_close(const char *name)
{
	pthread_mutex_lock(&lock);
	for (int i = nroutes - 1; i >= 0; i--)
		if (!strcmp(routes[i].name, name)) {
			close(routes[i].lfd);
			routes[i] = routes[--nroutes];
		}
	pthread_mutex_unlock(&lock);
	if (changed_fd >= 0)
		eventfd_write(changed_fd, 1);
}

json_t *router_list(const char *name)
{
	json_t *out = json_array();
	char text[96];

	pthread_mutex_lock(&lock);
	for (int i = 0; i < nroutes; i++)
		if (!strcmp(routes[i].name, name)) {
			snprintf(text, sizeof text, strchr(routes[i].e.addr, ':') ? "[%s]:%u:%u" : "%s:%u:%u",
				 routes[i].e.addr, routes[i].e.host, routes[i].e.guest);
			json_array_append_new(out, json_string(text));
		}
	pthread_mutex_unlock(&lock);
	return out;
}

/* One prober per instance and port while its server is not listening yet.
 *
 * Each look is a connect made by the sandbox's PID 1 — for a vm instance a
 * round trip into the guest — so clients that each looked on their own
 * would make the work grow with their number: 30 clients of a waking vm
 * instance under TCG made ~1,600 looks and took the guest's CPU from the
 * server starting up (5 s instead of 1). The first client refused probes;
 * the others wait until it is answered (or gives up), then try at once. */
struct probe {
	struct probe *next;
	char name[INSTANCE_NAME_MAX + 1];
	uint16_t guest;
	bool busy;		/* a client probes for all */
	unsigned refs;		/* the prober and its waiters */
	uint64_t gen;		/* bumped when a prober is done */
};

static struct probe *probes;
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t probe_done;	/* CLOCK_MONOTONIC, set in router_start */

static struct probe *probe_get(const char *name, uint16_t guest)
{
	struct probe *p;

	for (p = probes; p; p = p->next)
		if (p->guest == guest && !strcmp(p->name, name))
			break;
	if (!p && (p = calloc(1, sizeof *p))) {
		snprintf(p->name, sizeof p->name, "%s", name);
		p->guest = guest;
		p->next = probes;
		probes = p;
	}
	if (p)
		p->refs++;
	return p;
}

static void probe_put(struct probe *p)
{
	if (--p->refs)
		return;
	for (struct probe **pp = &probes; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	free(p);
}

/* After a refused look: true when this client is to probe now (it holds
 * the probe until probe_end), false when another prober was answered or
 * gave up, or the deadline came, meanwhile: look again at once. */
static bool probe_begin(const char *name, uint16_t guest, uint64_t deadline, struct probe **mine)
{
	struct timespec until = { .tv_sec = (time_t)(deadline / 1000000), .tv_nsec = (long)(deadline % 1000000) * 1000 };
	struct probe *p;
	uint64_t gen;

	pthread_mutex_lock(&probe_lock);
	if (!(p = probe_get(name, guest))) {
		pthread_mutex_unlock(&probe_lock);
		return true;	/* no memory for a probe: probe alone, as before */
	}
	if (!p->busy) {
		p->busy = true;
		*mine = p;
		pthread_mutex_unlock(&probe_lock);
		return true;
	}
	gen = p->gen;
	while (p->gen == gen && pthread_cond_timedwait(&probe_done, &probe_lock, &until) == 0)
		;
	probe_put(p);
	pthread_mutex_unlock(&probe_lock);
	return false;
}

static void probe_end(struct probe **mine)
{
	if (!*mine)
		return;
	pthread_mutex_lock(&probe_lock);
	(*mine)->busy = false;
	(*mine)->gen++;
	probe_put(*mine);
	pthread_cond_broadcast(&probe_done);
	pthread_mutex_unlock(&probe_lock);
	*mine = NULL;
}

/* A connection to the instance's GUEST port, made inside it; -1 when the
 * instance cannot be woken or its server did not accept in time. */
static int guest_connection(const char *name, uint16_t guest)
{
	uint64_t deadline = now_us() + wake_wait_ms * 1000ULL;
	useconds_t backoff = 2000;
	struct probe *mine = NULL;
	bool probing = false;
	int fd = -1;

	while (now_us() < deadline) {
		json_t *req, *reply;
		int dirfd;
		if (instances_wake(name) < 0)
			break;	/* disabled, deleted, or ended on its own */
		if ((dirfd = instances_dirfd(name)) < 0)
			break;
		req = json_pack("{s:i}", "connect", guest);
		reply = control_call(dirfd, req, &fd, 5000);
		close(dirfd);
		json_decref(req);
		if (fd >= 0) {
			json_decref(reply);
			break;
		}
		if (reply) {
			/* the sandbox is up, its server not yet listening: look
			 * again soon, a server is usually a few ms from listening
			 * (one client looks for all, see struct probe) */
			if (!probing && !(probing = probe_begin(name, guest, deadline, &mine))) {
				json_decref(reply);
				continue;
			}
			usleep(1000);
		} else {
			/* no shim to ask yet (starting, or being stopped) */
			usleep(backoff);
			if (backoff < 50000)
				backoff *= 2;
		}
		json_decref(reply);
	}
	probe_end(&mine);
	return fd;
}

struct conn {
	char name[INSTANCE_NAME_MAX + 1];
	uint16_t guest;
	int client;
};

static void *serve(void *arg)
{
	struct conn *c = arg;
	uint64_t up = 0, down = 0;
	struct relay_flow a2b = { .count = &up, .pipe = { -1, -1 } }, b2a = { .count = &down, .pipe = { -1, -1 } };
	int guest;

	idle_hold(c->name, 1);
	guest = guest_connection(c->name, c->guest);
	if (guest >= 0 && relay_flow_open(&a2b) == 0 && relay_flow_open(&b2a) == 0) {
		const int fds[2] = { c->client, guest };
		fcntl(c->client, F_SETFL, fcntl(c->client, F_GETFL) | O_NONBLOCK);
		fcntl(guest, F_SETFL, fcntl(guest, F_GETFL) | O_NONBLOCK);
		relay_run(fds, &a2b, &b2a, -1, ROUTER_IDLE_AFTER_EOF_MS);
	}
	relay_flow_close(&a2b);
	relay_flow_close(&b2a);
	if (guest >= 0)
		close(guest);
	close(c->client);
	idle_hold(c->name, -1);
	free(c);
	pthread_mutex_lock(&lock);
	open_conns--;
	pthread_mutex_unlock(&lock);
	return NULL;
}

static void accept_one(const struct route *r)
{
	struct conn *c;
	pthread_attr_t attr;
	pthread_t t;
	int fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	/* called under lock: the count is ours to look at */
	if (open_conns >= ROUTER_CONNECTIONS_MAX || !(c = calloc(1, sizeof *c))) {
		close(fd);
		return;
	}
	snprintf(c->name, sizeof c->name, "%s", r->name);
	c->guest = r->e.guest;
	c->client = fd;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	if (pthread_create(&t, &attr, serve, c) != 0) {
		close(fd);
		free(c);
	} else {
		open_conns++;
	}
	pthread_attr_destroy(&attr);
}

static void *accept_loop(void *arg)
{
	struct pollfd *p = calloc(ROUTES_MAX + 1, sizeof *p);
	struct route *snap = calloc(ROUTES_MAX, sizeof *snap);

	(void)arg;
	if (!p || !snap)
		return NULL;
	for (;;) {
		eventfd_t v;
		int n;
		pthread_mutex_lock(&lock);
		n = nroutes;
		memcpy(snap, routes, sizeof *snap * (size_t)n);
		pthread_mutex_unlock(&lock);
		p[0] = (struct pollfd){ .fd = changed_fd, .events = POLLIN };
		for (int i = 0; i < n; i++)
			p[i + 1] = (struct pollfd){ .fd = snap[i].lfd, .events = POLLIN };
		if (poll(p, (nfds_t)n + 1, -1) < 0)
			continue;
		if (p[0].revents) {
			eventfd_read(changed_fd, &v);
			continue;	/* a listener may be closed: look again */
		}
		pthread_mutex_lock(&lock);	/* a listener is only closed under it */
		for (int i = 0; i < n; i++) {
			if (!p[i + 1].revents)
				continue;
			/* still in the table (not closed, its number not reused)? */
			for (int j = 0; j < nroutes; j++)
				if (routes[j].lfd == snap[i].lfd && !strcmp(routes[j].name, snap[i].name))
					accept_one(&routes[j]);
		}
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

int router_start(void)
{
	const char *wait = getenv("AEGIS_WAKE_WAIT_MS");
	pthread_attr_t attr;
	pthread_t t;
	uint64_t ms;
	int r;

	/* how long a client may wait for a waking instance's server */
	if (wait && (parse_u64(wait, &ms) < 0 || ms < 100 || ms > 600000))
		return daemon_log("error", "AEGIS_WAKE_WAIT_MS must be 100 to 600000", "value", wait), -1;
	if (wait)
		wake_wait_ms = ms;

	/* the probe's waiters wait until a deadline of now_us()'s clock */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&probe_done, &ca);
	pthread_condattr_destroy(&ca);

	changed_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (changed_fd < 0)
		return -1;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, accept_loop, NULL);
	pthread_attr_destroy(&attr);
	return r == 0 ? 0 : -1;
}
