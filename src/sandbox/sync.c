/* sync.c — the one channel between the sandbox and its supervisor.
 *
 * A SOCK_SEQPACKET pair keeps message boundaries, so a fixed-size struct is
 * one message, and EOF tells the supervisor the sandbox side is gone. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sandbox.h"

int sync_send(int fd, const struct sync_msg *msg)
{
	ssize_t n;

	do
		n = send(fd, msg, sizeof *msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof *msg ? 0 : -1;
}

/* A message carrying a descriptor (SCM_RIGHTS), e.g. the exec listener. */
int sync_send_fd(int fd, const struct sync_msg *msg, int passed)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control = { 0 };
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = sizeof *msg };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof control.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	ssize_t n;

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &passed, sizeof(int));
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof *msg ? 0 : -1;
}

int sync_recv_fd(int fd, struct sync_msg *msg, int *passed)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = msg, .iov_len = sizeof *msg };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof control.buf };
	struct cmsghdr *c;
	ssize_t n;

	*passed = -1;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	for (c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(passed, CMSG_DATA(c), sizeof(int));
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof *msg) {
		if (n >= 0)
			errno = EPROTO;
		return -1;
	}
	msg->err.msg[sizeof msg->err.msg - 1] = '\0';
	msg->limit[sizeof msg->limit - 1] = '\0';
	return 1;
}

int sync_recv(int fd, struct sync_msg *msg)
{
	int passed, r = sync_recv_fd(fd, msg, &passed);

	if (passed >= 0)
		close(passed);	/* not expected here */
	return r;
}
