/* netmux.c — the stream multiplexer of the vm backend's network channel
 * (netmux.h), one poll loop used by both sides: aegis-guest (which opens a
 * stream per connection accepted on the guest's 127.0.0.1:3128) and the
 * host (which serves each stream with a connection to the egress proxy).
 *
 * Why credit and not "read the channel when there is room": the channel
 * carries every stream, so it must always be read. A DATA frame is taken
 * whole at once: written to its socket if that takes it, else kept in the
 * stream's pending buffer — which never needs more than a window, because
 * the sender may not send more than the credit we gave. A stream whose
 * reader stalls thus stops its own sender and no one else.
 *
 * Everything the peer sends is checked: unknown type, non-zero reserved
 * byte, bad length, id out of range, DATA beyond credit or after SHUT, an
 * OPEN the side may not receive or for an id in use. Any of these ends the
 * channel with the reason (the peer is a guest: it is not trusted). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netmux.h"

/* We read a local socket only while our queue to the peer is below this:
 * the channel's writer sets the pace of every stream's reader. */
#define OUT_HIGH (128 * 1024)
/* A peer that does not read what we send while sending us more is not
 * read from beyond this (a legitimate peer never gets near it: see above). */
#define OUT_STOP_READING (1024 * 1024)
/* CREDIT once this much was taken, not per byte: at most 4 per window. */
#define CREDIT_STEP (NETMUX_WINDOW / 4)

enum stream_state { STREAM_FREE, STREAM_OPEN, STREAM_CLOSING };

struct netmux_stream {
	enum stream_state state;	/* CLOSING: our CLOSE sent, the peer's awaited */
	int fd;				/* local socket; -1 unless OPEN */
	uint32_t send_credit;		/* bytes we may still send the peer */
	uint32_t recv_credit;		/* bytes the peer may still send us */
	uint32_t taken;			/* bytes written to fd, not yet credited back */
	char *pend;			/* from the peer, not yet written to fd (≤ a window) */
	size_t pend_off, pend_len;
	bool rd_eof;			/* fd said EOF: SHUT sent */
	bool peer_shut;			/* the peer sent SHUT */
	bool wr_shut;			/* and fd has been shut for writing */
};

struct netmux {
	int chan;
	netmux_open_fn open;
	void *open_arg;
	bool failed;
	size_t active;
	struct netmux_stream s[NETMUX_MAX_STREAMS];
	unsigned char in[NETMUX_HEADER + NETMUX_DATA_MAX];
	size_t in_len;
	unsigned char *out;
	size_t out_off, out_len, out_cap;
};

static void put16(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 8), p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Queue one frame for the peer. -1 (ENOMEM) fails the channel. */
static int queue(struct netmux *m, enum netmux_type type, unsigned id, const void *data, size_t len)
{
	size_t need = m->out_len + NETMUX_HEADER + len;

	if (m->out_off && m->out_off == m->out_len)
		m->out_off = m->out_len = 0, need = NETMUX_HEADER + len;
	if (need > m->out_cap) {
		size_t cap = m->out_cap ? m->out_cap : 65536;
		unsigned char *grown;

		while (cap < need)
			cap *= 2;
		if (!(grown = realloc(m->out, cap)))
			return m->failed = true, errno = ENOMEM, -1;
		m->out = grown, m->out_cap = cap;
	}
	m->out[m->out_len] = (unsigned char)type;
	m->out[m->out_len + 1] = 0;
	put16(m->out + m->out_len + 2, id);
	put32(m->out + m->out_len + 4, (uint32_t)len);
	if (len)
		memcpy(m->out + m->out_len + NETMUX_HEADER, data, len);
	m->out_len += NETMUX_HEADER + len;
	return 0;
}

static size_t queued(const struct netmux *m)
{
	return m->out_len - m->out_off;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

struct netmux *netmux_new(int chan, netmux_open_fn open, void *open_arg)
{
	struct netmux *m;

	if (set_nonblock(chan) < 0 || !(m = calloc(1, sizeof *m)))
		return NULL;
	m->chan = chan;
	m->open = open;
	m->open_arg = open_arg;
	for (unsigned i = 0; i < NETMUX_MAX_STREAMS; i++)
		m->s[i].fd = -1;
	return m;
}

static void stream_release(struct netmux *m, struct netmux_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->state == STREAM_OPEN)
		m->active--;
	free(s->pend);
	*s = (struct netmux_stream){ .fd = -1 };
}

void netmux_free(struct netmux *m)
{
	if (!m)
		return;
	for (unsigned i = 0; i < NETMUX_MAX_STREAMS; i++)
		stream_release(m, &m->s[i]);
	free(m->out);
	free(m);
}

size_t netmux_active(const struct netmux *m)
{
	return m->active;
}

static void stream_start(struct netmux *m, struct netmux_stream *s, int fd)
{
	*s = (struct netmux_stream){ .state = STREAM_OPEN, .fd = fd, .send_credit = NETMUX_WINDOW,
				     .recv_credit = NETMUX_WINDOW };
	m->active++;
}

/* Our side is done with the stream (its socket failed or both ways
 * ended): close the socket, tell the peer, wait for its CLOSE. */
static int stream_close(struct netmux *m, unsigned id)
{
	struct netmux_stream *s = &m->s[id];

	close(s->fd);
	s->fd = -1;
	free(s->pend);
	s->pend = NULL;
	s->pend_off = s->pend_len = 0;
	s->state = STREAM_CLOSING;
	m->active--;
	return queue(m, NETMUX_CLOSE, id, NULL, 0);
}

int netmux_add(struct netmux *m, int fd)
{
	for (unsigned id = 0; !m->failed && id < NETMUX_MAX_STREAMS; id++) {
		if (m->s[id].state != STREAM_FREE)
			continue;
		if (set_nonblock(fd) < 0)
			break;
		stream_start(m, &m->s[id], fd);
		return queue(m, NETMUX_OPEN, id, NULL, 0);
	}
	close(fd);
	return -1;
}

/* Credit back what the socket took, a step at a time: at most four CREDIT
 * frames per window, however small the DATA frames. No deadlock: a sender
 * out of credit means a window is taken or pending here, so once the
 * socket takes it a step is due. */
static int give_credit(struct netmux *m, unsigned id)
{
	struct netmux_stream *s = &m->s[id];
	unsigned char v[4];

	if (s->taken < CREDIT_STEP)
		return 0;
	put32(v, s->taken);
	s->recv_credit += s->taken;
	s->taken = 0;
	return queue(m, NETMUX_CREDIT, id, v, sizeof v);
}

/* Both ways ended: the stream is done. */
static int stream_maybe_done(struct netmux *m, unsigned id)
{
	struct netmux_stream *s = &m->s[id];

	if (s->state == STREAM_OPEN && s->peer_shut && s->pend_off == s->pend_len && !s->wr_shut) {
		shutdown(s->fd, SHUT_WR);
		s->wr_shut = true;
	}
	if (s->state == STREAM_OPEN && s->rd_eof && s->wr_shut)
		return stream_close(m, id);
	return 0;
}

/* Write what is pending to the socket. A socket that fails is closed. */
static int stream_flush(struct netmux *m, unsigned id)
{
	struct netmux_stream *s = &m->s[id];

	while (s->pend_off < s->pend_len) {
		ssize_t n = send(s->fd, s->pend + s->pend_off, s->pend_len - s->pend_off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return stream_close(m, id);
		s->pend_off += (size_t)n;
		s->taken += (uint32_t)n;
	}
	if (s->pend_off == s->pend_len)
		s->pend_off = s->pend_len = 0;
	if (give_credit(m, id) < 0)
		return -1;
	return stream_maybe_done(m, id);
}

static int stream_data(struct netmux *m, unsigned id, const unsigned char *data, size_t len,
		       struct aegis_error *err)
{
	struct netmux_stream *s = &m->s[id];

	if (s->state == STREAM_CLOSING)
		return 0;	/* sent before the peer saw our CLOSE */
	if (s->peer_shut)
		return error_set(err, AEGIS_E_SETUP, EPROTO, "netmux: stream %u: DATA after SHUT", id);
	if (len > s->recv_credit)
		return error_set(err, AEGIS_E_SETUP, EPROTO, "netmux: stream %u: %zu bytes beyond its credit of %u",
				 id, len, s->recv_credit);
	s->recv_credit -= (uint32_t)len;
	if (!s->pend && !(s->pend = malloc(NETMUX_WINDOW)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "netmux: stream buffer");
	/* unacknowledged bytes ≤ a window, so pending ones fit after compaction */
	if (s->pend_len + len > NETMUX_WINDOW) {
		memmove(s->pend, s->pend + s->pend_off, s->pend_len - s->pend_off);
		s->pend_len -= s->pend_off;
		s->pend_off = 0;
	}
	memcpy(s->pend + s->pend_len, data, len);
	s->pend_len += len;
	return stream_flush(m, id) < 0 ? error_set(err, AEGIS_E_SETUP, ENOMEM, "netmux: queue") : 0;
}

/* A connection for the peer's new stream, or a refusal. */
static int stream_open(struct netmux *m, unsigned id, struct aegis_error *err)
{
	int fd;

	if (!m->open)
		return error_set(err, AEGIS_E_SETUP, EPROTO, "netmux: stream %u: the peer may not open streams", id);
	if (m->s[id].state != STREAM_FREE)
		return error_set(err, AEGIS_E_SETUP, EPROTO, "netmux: stream %u: OPEN for an id in use", id);
	fd = m->open(m->open_arg, id);
	if (fd < 0 || set_nonblock(fd) < 0) {
		if (fd >= 0)
			close(fd);
		m->s[id].state = STREAM_CLOSING;	/* refused: the peer answers our CLOSE */
		return queue(m, NETMUX_CLOSE, id, NULL, 0);
	}
	stream_start(m, &m->s[id], fd);
	return 0;
}

static int frame(struct netmux *m, unsigned type, unsigned id, const unsigned char *p, size_t len,
		 struct aegis_error *err)
{
	struct netmux_stream *s = &m->s[id];

	if (type == NETMUX_OPEN)
		return stream_open(m, id, err);
	if (s->state == STREAM_FREE)
		return error_set(err, AEGIS_E_SETUP, EPROTO, "netmux: stream %u: frame type %u for no open stream",
				 id, type);
	switch (type) {
	case NETMUX_DATA:
		return stream_data(m, id, p, len, err);
	case NETMUX_CREDIT: {
		uint32_t more = get32(p);

		if (s->state == STREAM_CLOSING)
			return 0;
		if (!more || more > NETMUX_WINDOW - s->send_credit)
			return error_set(err, AEGIS_E_SETUP, EPROTO,
					 "netmux: stream %u: credit of %u beyond the window", id, more);
		s->send_credit += more;
		return 0;
	}
	case NETMUX_SHUT:
		if (s->state == STREAM_CLOSING)
			return 0;
		if (s->peer_shut)
			return error_set(err, AEGIS_E_SETUP, EPROTO, "netmux: stream %u: SHUT twice", id);
		s->peer_shut = true;
		return stream_maybe_done(m, id) < 0 ? error_set(err, AEGIS_E_SETUP, ENOMEM, "netmux: queue") : 0;
	case NETMUX_CLOSE: {
		bool answer = s->state == STREAM_OPEN;

		stream_release(m, s);	/* the id is free again on our side */
		return answer && queue(m, NETMUX_CLOSE, id, NULL, 0) < 0
			       ? error_set(err, AEGIS_E_SETUP, ENOMEM, "netmux: queue") : 0;
	}
	}
	return -1;	/* not reached: checked by parse */
}

/* Check one header; the reason a frame is refused. NULL: fine. */
static const char *header_problem(unsigned type, unsigned reserved, unsigned id, uint32_t len)
{
	if (type < NETMUX_OPEN || type > NETMUX_CLOSE)
		return "unknown frame type";
	if (reserved)
		return "reserved header byte is not zero";
	if (id >= NETMUX_MAX_STREAMS)
		return "stream id out of range";
	if (type == NETMUX_DATA && (len == 0 || len > NETMUX_DATA_MAX))
		return "DATA length out of range";
	if (type == NETMUX_CREDIT && len != 4)
		return "CREDIT without a 4-byte payload";
	if ((type == NETMUX_OPEN || type == NETMUX_SHUT || type == NETMUX_CLOSE) && len)
		return "payload on a frame that takes none";
	return NULL;
}

/* Every whole frame in the input buffer. */
static int parse(struct netmux *m, struct aegis_error *err)
{
	size_t off = 0;

	while (m->in_len - off >= NETMUX_HEADER) {
		const unsigned char *h = m->in + off;
		unsigned id = (unsigned)h[2] << 8 | h[3];
		uint32_t len = get32(h + 4);
		const char *bad = header_problem(h[0], h[1], id, len);

		if (bad)
			return error_set(err, AEGIS_E_SETUP, EPROTO, "netmux: malformed frame (type %u, stream %u, "
					 "length %u): %s", h[0], id, len, bad);
		if (m->in_len - off < NETMUX_HEADER + len)
			break;
		if (frame(m, h[0], id, h + NETMUX_HEADER, len, err) < 0)
			return -1;
		off += NETMUX_HEADER + len;
	}
	memmove(m->in, m->in + off, m->in_len - off);
	m->in_len -= off;
	return 0;
}

/* 1 more may come, 0 the channel's EOF, -1 err. */
static int read_chan(struct netmux *m, struct aegis_error *err)
{
	ssize_t n = read(m->chan, m->in + m->in_len, sizeof m->in - m->in_len);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n < 0)
		return error_sys(err, "netmux: read the channel");
	if (n == 0 && m->in_len)
		return error_set(err, AEGIS_E_SETUP, EPROTO, "netmux: the channel ended inside a frame");
	if (n == 0)
		return 0;
	m->in_len += (size_t)n;
	return parse(m, err) < 0 ? -1 : 1;
}

static int write_chan(struct netmux *m, struct aegis_error *err)
{
	while (queued(m)) {
		/* MSG_NOSIGNAL: a gone peer is an error, not a SIGPIPE; the
		 * guest's port is a device (no socket, no SIGPIPE): write */
		ssize_t n = send(m->chan, m->out + m->out_off, queued(m), MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write(m->chan, m->out + m->out_off, queued(m));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0)
			return error_sys(err, "netmux: write the channel");
		m->out_off += (size_t)n;
	}
	m->out_off = m->out_len = 0;
	return 0;
}

/* The socket has bytes (or its end) for the peer. */
static int stream_read(struct netmux *m, unsigned id)
{
	struct netmux_stream *s = &m->s[id];
	unsigned char buf[NETMUX_DATA_MAX];
	size_t want = s->send_credit < sizeof buf ? s->send_credit : sizeof buf;
	ssize_t n = recv(s->fd, buf, want, 0);

	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n < 0)
		return stream_close(m, id);	/* reset: the peer's end goes too */
	if (n == 0) {
		s->rd_eof = true;
		if (queue(m, NETMUX_SHUT, id, NULL, 0) < 0)
			return -1;
		return stream_maybe_done(m, id);
	}
	s->send_credit -= (uint32_t)n;
	return queue(m, NETMUX_DATA, id, buf, (size_t)n);
}

static void accept_new(struct netmux *m, int listen_fd)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd >= 0)
		netmux_add(m, fd);	/* no id free: closed, the client sees the reset */
}

int netmux_run(struct netmux *m, int listen_fd, int stop_fd, struct aegis_error *err)
{
	struct pollfd *p = calloc(NETMUX_MAX_STREAMS + 3, sizeof *p);
	unsigned ids[NETMUX_MAX_STREAMS];
	int rc = -1;

	if (!p)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "netmux: poll set");
	if (listen_fd >= 0 && set_nonblock(listen_fd) < 0) {
		error_sys(err, "netmux: listener");
		goto out;
	}
	for (;;) {
		size_t n = 3;

		if (m->failed) {
			error_set(err, AEGIS_E_SETUP, ENOMEM, "netmux: queue");
			goto out;
		}
		p[0] = (struct pollfd){ m->chan, (short)((queued(m) < OUT_STOP_READING ? POLLIN : 0) |
							   (queued(m) ? POLLOUT : 0)), 0 };
		p[1] = (struct pollfd){ stop_fd, POLLIN, 0 };
		p[2] = (struct pollfd){ listen_fd, POLLIN, 0 };
		for (unsigned id = 0; id < NETMUX_MAX_STREAMS; id++) {
			struct netmux_stream *s = &m->s[id];
			short ev = 0;

			if (s->state != STREAM_OPEN)
				continue;
			if (!s->rd_eof && s->send_credit && queued(m) < OUT_HIGH)
				ev |= POLLIN;
			if (s->pend_off < s->pend_len)
				ev |= POLLOUT;
			if (!ev)
				continue;
			ids[n - 3] = id;
			p[n++] = (struct pollfd){ s->fd, ev, 0 };
		}
		if (poll(p, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			error_sys(err, "netmux: poll");
			goto out;
		}
		if (p[1].revents) {
			rc = 0;
			goto out;
		}
		if (p[0].revents & POLLOUT && write_chan(m, err) < 0)
			goto out;
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			int r = read_chan(m, err);

			if (r <= 0) {
				rc = r;
				goto out;
			}
		}
		for (size_t i = 3; i < n; i++) {
			unsigned id = ids[i - 3];
			struct netmux_stream *s = &m->s[id];

			/* the stream may have been closed by a frame read above */
			if (s->state != STREAM_OPEN || s->fd != p[i].fd || !p[i].revents)
				continue;
			if (p[i].revents & POLLOUT || (p[i].revents & (POLLERR | POLLHUP) && s->pend_len))
				if (stream_flush(m, id) < 0)
					continue;
			if (s->state == STREAM_OPEN && p[i].revents & (POLLIN | POLLHUP | POLLERR) && !s->rd_eof &&
			    s->send_credit)
				stream_read(m, id);
		}
		if (p[2].revents)
			accept_new(m, listen_fd);
		if (queued(m) && write_chan(m, err) < 0)
			goto out;
	}
out:
	free(p);
	return rc;
}
