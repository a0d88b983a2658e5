/* sync.c — the one channel between the sandbox and its supervisor.
 *
 * A SOCK_SEQPACKET pair keeps message boundaries, so a fixed-size struct is
 * one message, and EOF tells the supervisor the sandbox side is gone. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "sandbox.h"

int sync_send(int fd, const struct sync_msg *msg)
{
	ssize_t n;

	do
		n = send(fd, msg, sizeof *msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof *msg ? 0 : -1;
}

int sync_recv(int fd, struct sync_msg *msg)
{
	ssize_t n;

	do
		n = recv(fd, msg, sizeof *msg, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof *msg) {
		if (n >= 0)
			errno = EPROTO;
		return -1;
	}
	msg->err.msg[sizeof msg->err.msg - 1] = '\0';
	return 1;
}
