/* test_netmux.c — the vm network channel's multiplexer (netmux.h) with
 * both ends live over a socketpair: the opening side ("guest") accepts
 * clients on a unix listener, the serving side ("host") hands each stream
 * one end of a fresh socketpair whose other end the test holds. Covers a
 * round trip with half-close, a stalled stream that must not block another
 * (and must not make either side buffer without bound), many streams at
 * once and the id bound, abrupt closes, and malformed frames, each refused
 * with its reason. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../src/common/netmux.h"
#include "../../src/common/util.h"
#include "tap.h"

/* ---- the serving side's streams: one socketpair each ------------------- */

struct served {
	pthread_mutex_t lock;
	int far[NETMUX_MAX_STREAMS * 2];	/* the test's ends, in OPEN order */
	size_t n;
	int sndbuf;				/* 0: default */
	bool refuse;
};

static int serve_open(void *arg, unsigned id)
{
	struct served *sv = arg;
	int sp[2];

	(void)id;
	if (sv->refuse || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return -1;
	if (sv->sndbuf)
		setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &sv->sndbuf, sizeof sv->sndbuf);
	pthread_mutex_lock(&sv->lock);
	sv->far[sv->n++] = sp[1];
	pthread_mutex_unlock(&sv->lock);
	return sp[0];
}

/* The far end of the i-th stream, once it is there (5 s at most). */
static int far_end(struct served *sv, size_t i)
{
	for (int waited = 0; waited < 5000; waited++) {
		int fd = -1;

		pthread_mutex_lock(&sv->lock);
		if (sv->n > i)
			fd = sv->far[i];
		pthread_mutex_unlock(&sv->lock);
		if (fd >= 0)
			return fd;
		usleep(1000);
	}
	return -1;
}

/* ---- two muxes and their threads ---------------------------------------- */

struct side {
	struct netmux *m;
	int listen_fd, stop_fd;
	pthread_t thread;
	int rc;
	struct aegis_error err;
};

struct pair {
	int chan[2];
	struct side guest, host;
	struct served sv;
	char path[108];
};

static void *side_main(void *arg)
{
	struct side *s = arg;

	s->rc = netmux_run(s->m, s->listen_fd, s->stop_fd, &s->err);
	return NULL;
}

static void pair_start(struct pair *p, int sndbuf)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(p, 0, sizeof *p);
	pthread_mutex_init(&p->sv.lock, NULL);
	p->sv.sndbuf = sndbuf;
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->chan);
	snprintf(p->path, sizeof p->path, "/tmp/test-netmux-%d-%p.sock", getpid(), (void *)p);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", p->path);
	unlink(p->path);
	p->guest.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bind(p->guest.listen_fd, (struct sockaddr *)&sa, sizeof sa);
	listen(p->guest.listen_fd, 512);
	p->host.listen_fd = -1;
	p->guest.stop_fd = eventfd(0, EFD_CLOEXEC);
	p->host.stop_fd = eventfd(0, EFD_CLOEXEC);
	p->guest.m = netmux_new(p->chan[0], NULL, NULL);
	p->host.m = netmux_new(p->chan[1], serve_open, &p->sv);
	pthread_create(&p->guest.thread, NULL, side_main, &p->guest);
	pthread_create(&p->host.thread, NULL, side_main, &p->host);
}

static void pair_stop(struct pair *p)
{
	uint64_t one = 1;

	(void)!write(p->guest.stop_fd, &one, sizeof one);
	(void)!write(p->host.stop_fd, &one, sizeof one);
	pthread_join(p->guest.thread, NULL);
	pthread_join(p->host.thread, NULL);
	netmux_free(p->guest.m);
	netmux_free(p->host.m);
	for (size_t i = 0; i < p->sv.n; i++)
		close(p->sv.far[i]);
	close(p->chan[0]), close(p->chan[1]);
	close(p->guest.listen_fd), close(p->guest.stop_fd), close(p->host.stop_fd);
	unlink(p->path);
}

static int client(struct pair *p)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", p->path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read exactly len bytes within 10 s. */
static bool read_exact(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n;

		if (poll(&(struct pollfd){ fd, POLLIN, 0 }, 1, 10000) <= 0)
			return false;
		n = read(fd, buf + got, len - got);
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return true;
}

/* 0 when fd reads EOF (or a reset) within 10 s. */
static bool reads_eof(int fd)
{
	char c;

	return poll(&(struct pollfd){ fd, POLLIN, 0 }, 1, 10000) == 1 && read(fd, &c, 1) <= 0;
}

static bool both_idle(struct pair *p)
{
	for (int waited = 0; waited < 5000; waited++) {
		if (netmux_active(p->guest.m) == 0 && netmux_active(p->host.m) == 0)
			return true;
		usleep(1000);
	}
	return false;
}

/* ---- the tests ----------------------------------------------------------- */

static void test_round_trip(void)
{
	struct pair p;
	char buf[16];
	int c, f = -1;

	pair_start(&p, 0);
	c = client(&p);
	ok(write(c, "hello", 5) == 5 && (f = far_end(&p.sv, 0)) >= 0 && read_exact(f, buf, 5) &&
	   !memcmp(buf, "hello", 5), "bytes from the client reach the served end");
	ok(write(f, "world", 5) == 5 && read_exact(c, buf, 5) && !memcmp(buf, "world", 5),
	   "and the answer comes back");
	shutdown(c, SHUT_WR);
	ok(reads_eof(f), "the client's half-close arrives as EOF");
	ok(write(f, "late", 4) == 4 && read_exact(c, buf, 4) && !memcmp(buf, "late", 4),
	   "the other direction still flows after it");
	shutdown(f, SHUT_WR);
	ok(reads_eof(c), "the served end's half-close reaches the client");
	ok(both_idle(&p), "both ways done: the stream is closed on both sides");
	close(c);
	pair_stop(&p);
	ok(p.guest.rc == 0 && p.host.rc == 0, "stop ends both loops cleanly");
}

/* One stream whose far end is never read: the client's writes stop after a
 * window plus the sockets' buffers, and another stream moves 1 MiB meanwhile. */
static void test_stalled_stream(void)
{
	struct pair p;
	size_t pushed = 0, moved = 0;
	char *big = malloc(1 << 20), *back = malloc(1 << 20);
	int stalled, busy, f;

	pair_start(&p, 0);
	stalled = client(&p);
	fcntl(stalled, F_SETFL, O_NONBLOCK);
	far_end(&p.sv, 0);
	for (int idle = 0; idle < 200; idle++) {	/* until 200 ms pass with no progress */
		ssize_t n = write(stalled, big, 65536);

		if (n > 0)
			pushed += (size_t)n, idle = 0;
		else
			usleep(1000);
	}
	ok(pushed > 0 && pushed < 16 << 20, "a stalled stream's writer is stopped (%zu bytes taken)", pushed);
	busy = client(&p);
	f = far_end(&p.sv, 1);
	memset(big, 'x', 1 << 20);
	for (size_t i = 0; i < (1 << 20); i += 4096)
		big[i] = (char)(i / 4096);
	while (moved < (1 << 20)) {	/* write and read in turns: no deadlock on our side */
		ssize_t n = write(busy, big + moved, (1 << 20) - moved > 65536 ? 65536 : (1 << 20) - moved);

		if (n <= 0 || !read_exact(f, back + moved, (size_t)n))
			break;
		moved += (size_t)n;
	}
	ok(moved == (1 << 20) && !memcmp(big, back, 1 << 20), "another stream moves 1 MiB byte-exact meanwhile");
	{
		size_t drained = 0, want;
		char *sink = malloc(1 << 16);
		int fs = far_end(&p.sv, 0);

		for (; drained < pushed; drained += want) {
			want = pushed - drained > (1 << 16) ? 1 << 16 : pushed - drained;
			if (!read_exact(fs, sink, want))
				break;
		}
		free(sink);
		ok(drained == pushed, "the stalled stream resumes once read: all %zu bytes arrive", pushed);
	}
	close(stalled), close(busy);
	pair_stop(&p);
	free(big), free(back);
}

static void test_many_streams(void)
{
	struct pair p;
	static int c[NETMUX_MAX_STREAMS];
	size_t right = 0;
	int extra;
	char msg[32], buf[32];

	pair_start(&p, 0);
	for (unsigned i = 0; i < NETMUX_MAX_STREAMS; i++) {
		c[i] = client(&p);
		far_end(&p.sv, i);	/* accepted in order: the i-th OPEN is the i-th client */
	}
	for (unsigned i = 0; i < NETMUX_MAX_STREAMS; i++) {
		snprintf(msg, sizeof msg, "stream-%03u", i);
		(void)!write(c[i], msg, 10);
	}
	for (unsigned i = 0; i < NETMUX_MAX_STREAMS; i++) {
		int f = far_end(&p.sv, i);

		snprintf(msg, sizeof msg, "stream-%03u", i);
		if (f >= 0 && read_exact(f, buf, 10) && !memcmp(buf, msg, 10) && write(f, buf, 10) == 10 &&
		    read_exact(c[i], buf, 10) && !memcmp(buf, msg, 10))
			right++;
	}
	ok(right == NETMUX_MAX_STREAMS, "%u streams at once, each its own bytes both ways (%zu right)",
	   NETMUX_MAX_STREAMS, right);
	ok(netmux_active(p.host.m) == NETMUX_MAX_STREAMS, "the host serves every one");
	extra = client(&p);
	ok(extra >= 0 && reads_eof(extra), "one more than the id space is closed, not queued");
	close(extra);
	for (unsigned i = 0; i < NETMUX_MAX_STREAMS; i++)
		close(c[i]);
	for (size_t i = 0; i < p.sv.n; i++)
		shutdown(p.sv.far[i], SHUT_WR);
	ok(both_idle(&p), "all closed: no stream left on either side");
	c[0] = client(&p);
	ok(write(c[0], "again", 5) == 5, "ids are reusable after their CLOSE");
	{
		int f = far_end(&p.sv, NETMUX_MAX_STREAMS);

		ok(f >= 0 && read_exact(f, buf, 5) && !memcmp(buf, "again", 5), "and the reused id carries data");
	}
	close(c[0]);
	pair_stop(&p);
}

static void test_abrupt_close(void)
{
	struct pair p;
	struct linger rst = { 1, 0 };
	int c, f;
	char buf[8];

	pair_start(&p, 0);
	c = client(&p);
	(void)!write(c, "x", 1);
	f = far_end(&p.sv, 0);
	read_exact(f, buf, 1);
	setsockopt(c, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
	close(c);	/* gone without a half-close */
	ok(reads_eof(f), "a client that vanishes ends its served stream");
	close(f);
	p.sv.far[0] = -1;
	ok(both_idle(&p), "and the stream is freed on both sides");
	c = client(&p);
	f = far_end(&p.sv, 1);
	(void)!write(c, "pending", 7);
	close(f);
	p.sv.far[1] = -1;
	ok(reads_eof(c), "a served end that vanishes ends the client's connection");
	close(c);
	ok(both_idle(&p), "freed again");
	p.sv.refuse = true;
	c = client(&p);
	ok(reads_eof(c), "a stream the host refuses is closed for the client");
	close(c);
	ok(both_idle(&p), "a refused stream leaves nothing behind");
	pair_stop(&p);
}

/* ---- malformed frames: the serving side against raw bytes --------------- */

static size_t frame_bytes(unsigned char *out, unsigned type, unsigned reserved, unsigned id, uint32_t len,
			  const void *payload, size_t have)
{
	out[0] = (unsigned char)type, out[1] = (unsigned char)reserved;
	out[2] = (unsigned char)(id >> 8), out[3] = (unsigned char)id;
	out[4] = (unsigned char)(len >> 24), out[5] = (unsigned char)(len >> 16);
	out[6] = (unsigned char)(len >> 8), out[7] = (unsigned char)len;
	if (have)
		memcpy(out + 8, payload, have);
	return 8 + have;
}

struct feed {
	int fd;
	const unsigned char *bytes;
	size_t len;
};

static void *feed_main(void *arg)
{
	struct feed *f = arg;

	write_all(f->fd, f->bytes, f->len);
	shutdown(f->fd, SHUT_WR);
	return NULL;
}

/* Feed bytes to a serving mux (or an opening one: serving false) and run it
 * to its end; the error message, "" for a clean end. */
static const char *verdict(const unsigned char *bytes, size_t len, bool serving, int sndbuf)
{
	static struct aegis_error err;
	struct served sv = { .sndbuf = sndbuf };
	struct feed f;
	struct netmux *m;
	pthread_t t;
	int sp[2], rc;

	pthread_mutex_init(&sv.lock, NULL);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
	m = netmux_new(sp[0], serving ? serve_open : NULL, &sv);
	f = (struct feed){ sp[1], bytes, len };
	pthread_create(&t, NULL, feed_main, &f);
	memset(&err, 0, sizeof err);
	rc = netmux_run(m, -1, -1, &err);
	netmux_free(m);
	close(sp[0]);	/* a feeder still writing gets EPIPE now */
	pthread_join(t, NULL);
	close(sp[1]);
	for (size_t i = 0; i < sv.n; i++)
		close(sv.far[i]);
	return rc == 0 ? "" : err.msg;
}

static void test_malformed(void)
{
	static unsigned char b[8 * 70000];
	unsigned char data[NETMUX_DATA_MAX] = { 0 }, credit[4] = { 0, 0, 0, 1 }, big[4] = { 0, 2, 0, 0 };
	size_t n;

	n = frame_bytes(b, 9, 0, 0, 0, NULL, 0);
	ok(strstr(verdict(b, n, true, 0), "unknown frame type") != NULL, "unknown type refused with its reason");
	n = frame_bytes(b, NETMUX_OPEN, 7, 0, 0, NULL, 0);
	ok(strstr(verdict(b, n, true, 0), "reserved") != NULL, "a non-zero reserved byte is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, NETMUX_MAX_STREAMS, 0, NULL, 0);
	ok(strstr(verdict(b, n, true, 0), "out of range") != NULL, "a stream id beyond the bound is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_DATA, 0, 1, 0, NULL, 0);
	ok(strstr(verdict(b, n, true, 0), "DATA length") != NULL, "empty DATA is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_DATA, 0, 1, 0xffffffffu, NULL, 0);
	ok(strstr(verdict(b, n, true, 0), "DATA length") != NULL, "a 4 GiB DATA length is refused, not awaited");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_CREDIT, 0, 1, 3, credit, 3);
	ok(strstr(verdict(b, n, true, 0), "CREDIT without") != NULL, "a short CREDIT is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 2, "xy", 2);
	ok(strstr(verdict(b, n, true, 0), "takes none") != NULL, "OPEN with a payload is refused");
	n = frame_bytes(b, NETMUX_DATA, 0, 3, 4, "data", 4);
	ok(strstr(verdict(b, n, true, 0), "no open stream") != NULL, "DATA for a stream never opened is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	ok(strstr(verdict(b, n, true, 0), "id in use") != NULL, "OPEN twice for one id is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	ok(strstr(verdict(b, n, false, 0), "may not open") != NULL, "OPEN towards the opening side is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_CREDIT, 0, 1, 4, big, 4);
	ok(strstr(verdict(b, n, true, 0), "beyond the window") != NULL, "credit for bytes never sent is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_SHUT, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_DATA, 0, 1, 1, "z", 1);
	ok(strstr(verdict(b, n, true, 0), "after SHUT") != NULL, "DATA after SHUT is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_SHUT, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_SHUT, 0, 1, 0, NULL, 0);
	ok(strstr(verdict(b, n, true, 0), "SHUT twice") != NULL, "SHUT twice is refused");
	/* The served socket takes little and is never read: little credit
	 * comes back, so 9 full frames go beyond the window. */
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	for (int i = 0; i < 9; i++)
		n += frame_bytes(b + n, NETMUX_DATA, 0, 1, NETMUX_DATA_MAX, data, sizeof data);
	ok(strstr(verdict(b, n, true, 4096), "beyond its credit") != NULL, "DATA beyond the credit is refused");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	ok(strstr(verdict(b, n - 3, true, 0), "inside a frame") != NULL, "a channel cut inside a frame is an error");
	n = frame_bytes(b, NETMUX_OPEN, 0, 1, 0, NULL, 0);
	n += frame_bytes(b + n, NETMUX_DATA, 0, 1, 4, "fine", 4);
	n += frame_bytes(b + n, NETMUX_CLOSE, 0, 1, 0, NULL, 0);
	ok(!strcmp(verdict(b, n, true, 0), ""), "a well-formed sequence is accepted (the probe can pass)");
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_round_trip();
	test_stalled_stream();
	test_many_streams();
	test_abrupt_close();
	test_malformed();
	return tap_done();
}
