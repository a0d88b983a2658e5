/* ctlwire.c — the header of a control message on a vm instance's
 * "aegis-ctl" port (ctlwire.h). Used on both sides: the host's ctlproxy.c
 * reads the guest's answers with it, aegis-guest the host's requests. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctlwire.h"
#include "util.h"

void ctlwire_header(unsigned char h[CTLWIRE_HEADER], size_t len, bool with_fd)
{
	h[0] = (unsigned char)(len >> 24), h[1] = (unsigned char)(len >> 16);
	h[2] = (unsigned char)(len >> 8), h[3] = (unsigned char)len;
	h[4] = with_fd ? CTLWIRE_FLAG_FD : 0;
	h[5] = h[6] = h[7] = 0;
}

const char *ctlwire_parse_header(const unsigned char h[CTLWIRE_HEADER], size_t max, uint32_t *len,
				 bool *with_fd)
{
	*len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	*with_fd = h[4] & CTLWIRE_FLAG_FD;
	if (h[4] & ~CTLWIRE_FLAG_FD)
		return "unknown flag in a control message";
	if (h[5] || h[6] || h[7])
		return "non-zero reserved byte in a control message";
	if (*len == 0)
		return "empty control message";
	if (*len > max)
		return "control message over its bound";
	return NULL;
}

json_t *ctlwire_parse_json(const char *text, size_t len, const char **why)
{
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);

	if (json_is_object(j))
		return j;
	json_decref(j);
	*why = "a control message that is not one JSON object";
	return NULL;
}

json_t *ctlwire_clock_now(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return json_pack("{s:{s:I, s:I}}", "clock", "sec", (json_int_t)now.tv_sec, "nsec", (json_int_t)now.tv_nsec);
}

const char *ctlwire_clock_value(json_t *clock, struct timespec *ts)
{
	json_t *sec = json_object_get(clock, "sec"), *nsec = json_object_get(clock, "nsec");

	if (!json_is_object(clock) || json_object_size(clock) != 2 || !json_is_integer(sec) || !json_is_integer(nsec))
		return "clock: an object of exactly the integers sec and nsec expected";
	if (json_integer_value(sec) < CTLWIRE_CLOCK_SEC_MIN || json_integer_value(sec) > CTLWIRE_CLOCK_SEC_MAX)
		return "clock.sec: out of range";
	if (json_integer_value(nsec) < 0 || json_integer_value(nsec) >= 1000000000LL)
		return "clock.nsec: out of range";
	ts->tv_sec = (time_t)json_integer_value(sec);
	ts->tv_nsec = (long)json_integer_value(nsec);
	return NULL;
}

const char *ctlwire_clock_parse(json_t *msg, struct timespec *ts)
{
	if (!json_is_object(msg) || json_object_size(msg) != 1 || !json_object_get(msg, "clock"))
		return "a clock message has the one key clock";
	return ctlwire_clock_value(json_object_get(msg, "clock"), ts);
}

int ctlwire_send(int fd, const char *json, size_t len, bool with_fd)
{
	unsigned char h[CTLWIRE_HEADER];

	ctlwire_header(h, len, with_fd);
	return send_all(fd, h, sizeof h) < 0 || send_all(fd, json, len) < 0 ? -1 : 0;
}

/* Exactly len bytes; 0, or -1 with *why. */
static int read_exact(int fd, void *buf, size_t len, int timeout_ms, const char **why)
{
	char *p = buf;

	while (len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, timeout_ms);
		ssize_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return *why = "no control message in time", -1;
		n = r < 0 ? -1 : read(fd, p, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return *why = n == 0 ? "the control stream ended" : "reading the control stream failed", -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

json_t *ctlwire_recv(int fd, size_t max, int timeout_ms, bool *with_fd, const char **why)
{
	unsigned char h[CTLWIRE_HEADER];
	uint32_t len;
	char *text;
	json_t *j = NULL;

	if (read_exact(fd, h, sizeof h, timeout_ms, why) < 0)
		return NULL;
	if ((*why = ctlwire_parse_header(h, max, &len, with_fd)))
		return NULL;
	if (!(text = malloc(len)))
		return *why = "out of memory", NULL;
	if (read_exact(fd, text, len, timeout_ms, why) == 0)
		j = ctlwire_parse_json(text, len, why);
	free(text);
	return j;
}

#define RELAY_FLUSH_MS 30000	/* execserve.c's bound on a user who stops reading */

struct relay_dir {
	char buf[64 * 1024];
	size_t off, len;
	bool eof, shut;
};

int ctlwire_relay(int outer, int inner)
{
	return ctlwire_relay_each(outer, inner, NULL, NULL);
}

int ctlwire_relay_each(int outer, int inner, void (*heard)(void *), void *arg)
{
	const int fds[2] = { outer, inner };
	/* d[0]: what outer sends, on its way to inner; d[1]: the other way */
	struct relay_dir *d = calloc(2, sizeof *d);
	int rc = -1;

	if (!d)
		return -1;
	for (;;) {
		struct pollfd p[2];

		if (d[1].eof && d[1].off == d[1].len) {
			rc = 0;
			break;
		}
		if (d[0].eof && d[0].off == d[0].len && !d[0].shut) {
			shutdown(inner, SHUT_WR);
			d[0].shut = true;
		}
		for (int i = 0; i < 2; i++) {
			short ev = 0;

			if (!d[i].eof && d[i].len == 0)
				ev |= POLLIN;
			if (d[1 - i].off < d[1 - i].len)
				ev |= POLLOUT;
			/* -1 when nothing is awaited: a hung-up socket would
			 * otherwise make poll return at once, forever */
			p[i] = (struct pollfd){ .fd = ev ? fds[i] : -1, .events = ev };
		}
		/* once inner is done, outer gets a bounded time to take the rest:
		 * a user who stops reading does not hold the relay forever */
		int r = poll(p, 2, d[1].eof ? RELAY_FLUSH_MS : -1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (int i = 0; i < 2; i++) {
			struct relay_dir *in = &d[i], *out = &d[1 - i];
			ssize_t n;

			if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) && (p[i].events & POLLIN)) {
				n = recv(fds[i], in->buf, sizeof in->buf, MSG_DONTWAIT);
				if (n > 0 && i == 1 && heard)
					heard(arg);
				if (n > 0)
					in->off = 0, in->len = (size_t)n;
				else if (n == 0)
					in->eof = true;
				else if (errno != EAGAIN && errno != EINTR)
					goto out;
			}
			if ((p[i].revents & (POLLOUT | POLLHUP | POLLERR)) && (p[i].events & POLLOUT)) {
				n = send(fds[i], out->buf + out->off, out->len - out->off, MSG_DONTWAIT | MSG_NOSIGNAL);
				if (n > 0 && (out->off += (size_t)n) == out->len)
					out->off = out->len = 0;
				else if (n < 0 && errno != EAGAIN && errno != EINTR)
					goto out;
			}
		}
	}
out:
	free(d);
	return rc;
}
