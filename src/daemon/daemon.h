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
#define API_CONNECTIONS_MAX 64		/* concurrent connections */
#define API_TIMEOUT_S 10		/* idle / header / body timeout per connection */

struct api {
	uint64_t started_us;
	int shutdown_fd;		/* eventfd: POST /v1/shutdown and signals */
};

/* The MHD access handler and its completion callback. */
enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_size, void **req_cls);
void api_request_done(void *cls, struct MHD_Connection *conn, void **req_cls,
		      enum MHD_RequestTerminationCode toe);

/* One JSON line on stderr: {"ts":..., "level":..., "msg":..., key: value...}. */
void daemon_log(const char *level, const char *msg, const char *key, const char *value);

#endif
