/* relay.c — moving a connection's bytes both ways (relay.h): the egress
 * proxy's and the daemon's port router's. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"




/* From the socket into the pipe, no copy through user space.
 * >0 bytes, 0 EOF, -1 errno. */
ssize_t relay_flow_fill(struct relay_flow *pp, int fd)
{
	ssize_t n = splice(fd, NULL, pp->pipe[1], NULL, RELAY_PIPE_SIZE - pp->inpipe,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

	if (n > 0)
		pp->inpipe += (size_t)n;
	else if (n == 0)
		pp->eof = true;
	return n;
}

/* The head's bytes first, then the pipe's. >0 bytes, -1 errno. */
ssize_t relay_flow_drain(struct relay_flow *pp, int fd)
{
	ssize_t n;

	if (pp->len > pp->off) {
		n = send(fd, pp->buf + pp->off, pp->len - pp->off, MSG_NOSIGNAL);
		if (n > 0 && (pp->off += (size_t)n) == pp->len)
			pp->off = pp->len = 0;
	} else {
		n = splice(pp->pipe[0], NULL, fd, NULL, pp->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0)
			pp->inpipe -= (size_t)n;
	}
	if (n > 0)
		*pp->count += (uint64_t)n;
	return n;
}

bool relay_flow_pending(const struct relay_flow *pp)
{
	return pp->len > pp->off || pp->inpipe > 0;
}

int relay_flow_open(struct relay_flow *pp)
{
	if (pipe2(pp->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		pp->pipe[0] = pp->pipe[1] = -1;
		return -1;
	}
	/* a bigger pipe, fewer trips; the default 64 KiB still works */
	(void)fcntl(pp->pipe[1], F_SETPIPE_SZ, RELAY_PIPE_SIZE);
	return 0;
}

void relay_flow_close(struct relay_flow *pp)
{
	for (int i = 0; i < 2; i++)
		if (pp->pipe[i] >= 0)
			close(pp->pipe[i]);
}

/* Move bytes both ways until both sides said EOF and everything was
 * delivered, an error, stop_fd readable, or idle_after_eof_ms of silence
 * once one side is done. */
void relay_run(const int fds[2], struct relay_flow *a2b, struct relay_flow *b2a, int stop_fd,
	       int idle_after_eof_ms)
{
	/* what is read from fds[i] goes into in[i]; out[i] is written to fds[i] */
	struct relay_flow *in[2] = { a2b, b2a }, *out[2] = { b2a, a2b };

	for (;;) {
		struct pollfd pfd[3];
		bool one_done = false;
		int r;

		for (int i = 0; i < 2; i++) {
			struct relay_flow *pp = in[i];
			if (pp->eof && !relay_flow_pending(pp) && !pp->shut) {
				shutdown(fds[1 - i], SHUT_WR);
				pp->shut = true;
			}
			if (pp->shut)
				one_done = true;
		}
		if (a2b->shut && b2a->shut)
			return;
		for (int i = 0; i < 2; i++) {
			short ev = 0;
			if (!in[i]->eof && in[i]->inpipe < RELAY_PIPE_SIZE)
				ev |= POLLIN;
			if (relay_flow_pending(out[i]))
				ev |= POLLOUT;
			/* fd -1 when there is nothing to wait for: a hung-up socket
			 * would otherwise make poll return at once, forever */
			pfd[i] = (struct pollfd){ .fd = ev ? fds[i] : -1, .events = ev };
		}
		pfd[2] = (struct pollfd){ .fd = stop_fd, .events = POLLIN };
		r = poll(pfd, 3, one_done ? idle_after_eof_ms : -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || pfd[2].revents)
			return;
		for (int i = 0; i < 2; i++) {
			short rev = pfd[i].revents;
			if ((rev & (POLLIN | POLLHUP | POLLERR)) && (pfd[i].events & POLLIN)) {
				if (relay_flow_fill(in[i], fds[i]) < 0 && errno != EAGAIN && errno != EINTR)
					return;
			}
			if ((rev & (POLLOUT | POLLHUP | POLLERR)) && (pfd[i].events & POLLOUT)) {
				if (relay_flow_drain(out[i], fds[i]) < 0 && errno != EAGAIN && errno != EINTR)
					return;
			}
		}
	}
}
