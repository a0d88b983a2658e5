/* netrelay.h — allow mode's relay: the sandbox's 127.0.0.1:3128 passed on,
 * byte for byte, to an egress proxy elsewhere (spec.net_upstream).
 *
 * For the engine inside a vm guest: there the proxy that parses, checks,
 * resolves and audits runs on the host, reached through the guest's own
 * 127.0.0.1:3128 (netmux_guest.c); the sandbox inside the guest has a
 * network namespace of its own, so its supervisor relays each connection
 * to that address in its own namespace. No parsing, no rules here: the
 * upstream decides. */
#ifndef AEGIS_SANDBOX_NETRELAY_H
#define AEGIS_SANDBOX_NETRELAY_H

#include <sys/socket.h>

#include "../common/error.h"

#define NETRELAY_MAX_CONCURRENT 256	/* as the proxy's own bound */
#define NETRELAY_CONNECT_TIMEOUT_MS 10000

struct netrelay;

/* upstream: "IPv4:port" or "[IPv6]:port", numeric (no lookup). -1 with
 * err when it is not one. */
int netrelay_parse(const char *upstream, struct sockaddr_storage *out, socklen_t *len, struct aegis_error *err);
/* Serve listen_fd (the sandbox's listening socket; taken) by relaying
 * each connection to upstream. Threads; returns at once. */
int netrelay_start(struct netrelay **out, int listen_fd, const char *upstream, struct aegis_error *err);
/* Stop accepting, end every relayed connection, join, free. */
void netrelay_stop(struct netrelay *r);

#endif
