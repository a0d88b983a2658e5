/* logs.h — GET /v1/instances/NAME/logs: an instance's log read back. */
#ifndef AEGIS_DAEMON_LOGS_H
#define AEGIS_DAEMON_LOGS_H

#include <jansson.h>
#include <microhttpd.h>

/* Returns an HTTP status and sets either *body (a JSON answer or error,
 * owned by the caller) or *stream (a streamed answer to queue and destroy). */
unsigned logs_request(struct MHD_Connection *conn, const char *name, json_t **body,
		      struct MHD_Response **stream);

#endif
