/* sync.c — the one channel between the sandbox and its supervisor.
 *
 * A SOCK_SEQPACKET pair keeps message boundaries, so a fixed-size struct is
 * one message, and EOF tells the supervisor the sandbox side is gone. A
 * message may carry a payload after the struct and descriptors beside it
 * (SCM_RIGHTS): the exec listener, an exec's stdio. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sandbox.h"

int sync_sendv(int fd, const struct sync_msg *msg, const void *payload, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * SYNC_FDS_MAX)];
		struct cmsghdr align;
	} control = { 0 };
	struct iovec iov[2] = { { .iov_base = (void *)msg, .iov_len = sizeof *msg },
				{ .iov_base = (void *)payload, .iov_len = msg->payload_len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = payload && msg->payload_len ? 2 : 1 };
	size_t want = sizeof *msg + (mh.msg_iovlen == 2 ? msg->payload_len : 0);
	ssize_t n;

	if (nfds > SYNC_FDS_MAX || msg->payload_len > SYNC_PAYLOAD_MAX)
		return errno = EINVAL, -1;
	if (nfds > 0) {
		struct cmsghdr *c;
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)want ? 0 : -1;
}

int sync_recvv(int fd, struct sync_msg *msg, char *buf, size_t cap, int fds[SYNC_FDS_MAX])
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * SYNC_FDS_MAX)];
		struct cmsghdr align;
	} control;
	struct iovec iov[2] = { { .iov_base = msg, .iov_len = sizeof *msg },
				{ .iov_base = buf, .iov_len = buf && cap ? cap - 1 : 0 } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = buf && cap > 1 ? 2 : 1,
			     .msg_control = control.buf, .msg_controllen = sizeof control.buf };
	struct cmsghdr *c;
	ssize_t n;
	int got = 0;

	for (int i = 0; i < SYNC_FDS_MAX; i++)
		fds[i] = -1;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	for (c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int passed;
				memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (got < SYNC_FDS_MAX)
					fds[got++] = passed;
				else
					close(passed);
			}
	if (n == 0)
		return 0;
	/* a short, truncated or inconsistent message is a protocol error */
	if (n < (ssize_t)sizeof *msg || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (size_t)n != sizeof *msg + msg->payload_len) {
		for (int i = 0; i < got; i++)
			close(fds[i]), fds[i] = -1;
		if (n >= 0)
			errno = EPROTO;
		return -1;
	}
	if (buf && cap)
		buf[msg->payload_len] = '\0';
	msg->err.msg[sizeof msg->err.msg - 1] = '\0';
	msg->limit[sizeof msg->limit - 1] = '\0';
	return 1;
}

int sync_send(int fd, const struct sync_msg *msg)
{
	struct sync_msg m = *msg;

	m.payload_len = 0;
	return sync_sendv(fd, &m, NULL, NULL, 0);
}

/* A message carrying one descriptor, e.g. the exec listener. */
int sync_send_fd(int fd, const struct sync_msg *msg, int passed)
{
	struct sync_msg m = *msg;

	m.payload_len = 0;
	return sync_sendv(fd, &m, NULL, &passed, 1);
}

int sync_recv_fd(int fd, struct sync_msg *msg, int *passed)
{
	int fds[SYNC_FDS_MAX], r = sync_recvv(fd, msg, NULL, 0, fds);

	*passed = fds[0];
	for (int i = 1; i < SYNC_FDS_MAX; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return r;
}

int sync_recv(int fd, struct sync_msg *msg)
{
	int passed, r = sync_recv_fd(fd, msg, &passed);

	if (passed >= 0)
		close(passed);	/* not expected here */
	return r;
}
