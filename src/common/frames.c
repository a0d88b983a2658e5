/* frames.c — reading and writing exec stream frames (frames.h). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "frames.h"

int frame_send(int fd, enum frame_type type, const void *data, size_t len)
{
	unsigned char head[8] = { (unsigned char)type, 0, 0, 0, (unsigned char)(len >> 24),
				  (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len };
	struct iovec iov[2] = { { head, sizeof head }, { (void *)data, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	size_t left = sizeof head + len;

	if (len > FRAME_MAX)
		return errno = EMSGSIZE, -1;
	while (left) {
		/* MSG_NOSIGNAL: a gone peer is an error, not a SIGPIPE. A
		 * device is no socket: writev, where SIGPIPE cannot come. */
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == ENOTSOCK)
			n = writev(fd, mh.msg_iov, (int)mh.msg_iovlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		left -= (size_t)n;
		while (n > 0 && mh.msg_iovlen) {
			size_t take = (size_t)n < mh.msg_iov->iov_len ? (size_t)n : mh.msg_iov->iov_len;
			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + take;
			mh.msg_iov->iov_len -= take;
			n -= (ssize_t)take;
			if (!mh.msg_iov->iov_len) {
				mh.msg_iov++;
				mh.msg_iovlen--;
			}
		}
	}
	return 0;
}

/* Exactly len bytes; 0 if EOF came first (with got = bytes read). */
static int read_exact(int fd, void *buf, size_t len, size_t *got)
{
	*got = 0;
	while (*got < len) {
		ssize_t n = read(fd, (char *)buf + *got, len - *got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		*got += (size_t)n;
	}
	return 1;
}

int frame_recv(int fd, enum frame_type *type, char *buf, size_t *len)
{
	unsigned char head[8];
	size_t got;
	int r = read_exact(fd, head, sizeof head, &got);

	if (r <= 0)
		return r == 0 && got ? (errno = EPROTO, -1) : r;
	*len = (size_t)head[4] << 24 | (size_t)head[5] << 16 | (size_t)head[6] << 8 | head[7];
	if (head[1] || head[2] || head[3] || *len > FRAME_MAX)
		return errno = EPROTO, -1;
	*type = (enum frame_type)head[0];
	if ((r = read_exact(fd, buf, *len, &got)) <= 0)
		return r == 0 ? (errno = EPROTO, -1) : -1;
	buf[*len] = '\0';
	return 1;
}
