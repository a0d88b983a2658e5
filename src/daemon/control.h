/* control.h — an instance's control socket: DIR/control.sock, where its
 * shim takes exec requests from aegisd (SOCK_SEQPACKET; one message per
 * exec: the request JSON with the user's stream attached). */
#ifndef AEGIS_DAEMON_CONTROL_H
#define AEGIS_DAEMON_CONTROL_H

#include <jansson.h>

#define CONTROL_SOCKET "control.sock"

/* The shim's listening socket in the instance directory dirfd; -1 with errno. */
int control_listen(int dirfd);
/* aegisd's connection to it; -1 with errno (ENOENT/ECONNREFUSED: no shim). */
int control_connect(int dirfd);

/* One request that is not an exec ({"connect": PORT}, {"event": ...}):
 * its JSON answer (NULL: no shim, or no answer within timeout_ms), and
 * in *fd the descriptor that came with it, or -1. */
json_t *control_call(int dirfd, json_t *request, int *fd, int timeout_ms);

#endif
