/* exec.h — POST /v1/instances/NAME/exec (exec.c). */
#ifndef AEGIS_DAEMON_EXEC_H
#define AEGIS_DAEMON_EXEC_H

#include <jansson.h>
#include <microhttpd.h>

/* An fd that becomes readable when the daemon stops (streams let go). */
void exec_init(int stopping_fd);
/* Returns an HTTP status with *body, or 101 with *upgrade: the response
 * to queue, after which the connection is the exec's stream. */
unsigned exec_start(struct MHD_Connection *conn, const char *name, const char *request, json_t **body,
		    struct MHD_Response **upgrade);

#endif
