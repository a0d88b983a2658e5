/* daemon.h — aegisd: the daemon for persistent instances (issue 5; this is
 * its first part: the API server, its socket and its hardening).
 *
 * HTTP/1.1 + JSON on a unix socket, versioned under /v1 (docs/api/). The
 * wire version is API_VERSION below: bump it with any incompatible change. */
#ifndef AEGIS_DAEMON_H
#define AEGIS_DAEMON_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#define API_VERSION "v1"
#define API_BODY_MAX (1 << 20)		/* request bodies: 413 beyond */
#define API_CONNECTIONS_MAX 1024	/* concurrent connections (a thread each) */
#define API_BACKLOG 4096		/* waiting to be accepted (the kernel may clamp it) */
#define API_JSON_DEPTH 32		/* nesting of request bodies */
#define API_TIMEOUT_S 10		/* idle / header / body timeout per connection */

struct api {
	uint64_t started_us;
	int shutdown_fd;		/* eventfd: POST /v1/shutdown and signals */
};

/* The MHD access handler and its completion callback. */
enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_size, void **req_cls);
/* MHD_OPTION_UNESCAPE_CALLBACK: percent-decoding that never makes a NUL. */
size_t api_unescape(void *cls, struct MHD_Connection *conn, char *s);
void api_request_done(void *cls, struct MHD_Connection *conn, void **req_cls,
		      enum MHD_RequestTerminationCode toe);

/* Test-only fault injection: with AEGIS_FAULT=point in the daemon's
 * environment, the daemon kills itself (SIGKILL) when it reaches point. */
void daemon_fault(const char *point);

/* One JSON line on stderr: {"ts":..., "level":..., "msg":..., key: value...}. */
void daemon_log(const char *level, const char *msg, const char *key, const char *value);

#endif
