/* control.h — an instance's control socket: DIR/control.sock, where its
 * shim takes exec requests from aegisd (SOCK_SEQPACKET; one message per
 * exec: the request JSON with the user's stream attached). */
#ifndef AEGIS_DAEMON_CONTROL_H
#define AEGIS_DAEMON_CONTROL_H

#define CONTROL_SOCKET "control.sock"

/* The shim's listening socket in the instance directory dirfd; -1 with errno. */
int control_listen(int dirfd);
/* aegisd's connection to it; -1 with errno (ENOENT/ECONNREFUSED: no shim). */
int control_connect(int dirfd);

#endif
