/* proxy.h — the egress proxy the supervisor serves inside a sandbox's
 * network namespace (allow mode; DESIGN.md §4, docs/network.md).
 *
 * HTTP/1.1: CONNECT host:port (TLS and any TCP) and plain-HTTP forwarding
 * of absolute-form requests. Names are resolved by the proxy with the
 * host's resolver and the resolved address is the one connected to. A
 * refused request gets "HTTP/1.1 403 Forbidden" with a one-line reason at
 * once; every connection is reported (host, address, port, verdict, rule,
 * bytes each way, duration) through the callback. */
#ifndef AEGIS_SANDBOX_PROXY_H
#define AEGIS_SANDBOX_PROXY_H

#include <stdint.h>

#include "netrules.h"

#define PROXY_PORT 3128			/* inside the sandbox: 127.0.0.1:3128 */
#define PROXY_MAX_CONCURRENT 256	/* open connections at once */
#define PROXY_MAX_TOTAL 100000		/* connections in one run */
#define PROXY_HEADER_MAX 16384		/* request head, bytes */
#define PROXY_HEADER_TIMEOUT_MS 10000	/* to receive the request head */
#define PROXY_CONNECT_TIMEOUT_MS 10000	/* to reach the upstream */

struct proxy_conn_report {
	const char *method;		/* "CONNECT", "GET", ... or "?" for garbage */
	const char *host;		/* as requested, or NULL */
	const char *address;		/* resolved, textual, or NULL */
	uint16_t port;
	const char *verdict;		/* "allow", "deny" or "error" */
	const char *rule;		/* the rule that matched / refused, or the reason */
	uint64_t bytes_up, bytes_down;	/* sandbox → upstream, upstream → sandbox */
	uint64_t duration_us;
};

typedef void (*proxy_report_fn)(void *arg, const struct proxy_conn_report *r);

struct proxy;

/* Serve on listen_fd (a listening TCP socket, made inside the sandbox's
 * network namespace; the proxy takes it). Threads; returns at once. */
int proxy_start(struct proxy **out, int listen_fd, const struct net_rules *rules,
		proxy_report_fn report, void *report_arg, struct aegis_error *err);
/* Stop accepting, close every connection, join the threads, free. */
void proxy_stop(struct proxy *p);

#endif
