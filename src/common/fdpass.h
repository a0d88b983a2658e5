/* fdpass.h — one message with a descriptor beside it (SCM_RIGHTS), over a
 * unix socket: the daemon's requests to a shim and the shim's answers. */
#ifndef AEGIS_COMMON_FDPASS_H
#define AEGIS_COMMON_FDPASS_H

#include <stddef.h>
#include <sys/types.h>

/* buf as one message, with fd (-1: none). Bytes sent, or -1 with errno. */
ssize_t fdpass_send(int sock, const void *buf, size_t len, int fd);
/* One message into buf (at most cap bytes); *fd gets the descriptor that
 * came with it (close-on-exec), or -1; any others are closed. Bytes, 0 at
 * EOF, -1 with errno (EMSGSIZE: the message did not fit). */
ssize_t fdpass_recv(int sock, void *buf, size_t cap, int *fd);

#endif
