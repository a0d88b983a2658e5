/* httpc.c — a minimal HTTP/1.1 client for the local API socket: request
 * out, whole response in (the daemon closes after each answer), status line
 * and body separated. Nothing here is exposed to the network. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "httpc.h"
#include "util.h"

static int connect_unix(const char *path, struct aegis_error *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof sun.sun_path)
		return error_set(err, AEGIS_E_INVALID, 0, "socket path too long: %s", path);
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return error_sys(err, "socket");
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		error_sys(err, "cannot reach aegisd at %s", path);
		close(fd);
		return -1;
	}
	return fd;
}

static int read_all(int fd, unsigned timeout_ms, struct httpc_response *resp, struct aegis_error *err)
{
	uint64_t deadline = now_us() + timeout_ms * 1000ULL;
	size_t cap = 4096;
	char *buf = malloc(cap);

	if (!buf)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "response");
	resp->len = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_us();
		ssize_t n;

		if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000) + 1) == 0) {
			free(buf);
			return error_set(err, AEGIS_E_SETUP, 0, "aegisd did not answer within %u ms", timeout_ms);
		}
		if (resp->len + 1 >= cap) {
			char *grown = cap < HTTPC_RESPONSE_MAX ? realloc(buf, cap *= 2) : NULL;
			if (!grown) {
				free(buf);
				return error_set(err, AEGIS_E_SETUP, 0, "aegisd's answer is too large");
			}
			buf = grown;
		}
		n = read(fd, buf + resp->len, cap - 1 - resp->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return error_sys(err, "reading aegisd's answer");
		}
		if (n == 0)
			break;
		resp->len += (size_t)n;
	}
	buf[resp->len] = '\0';
	resp->body = buf;
	return 0;
}

/* Connect and send one request; its connection, or -1 with err. */
static int send_request(const char *socket_path, const char *method, const char *path,
			const char *connection, const char *body, struct aegis_error *err)
{
	char head[1024];
	size_t blen = body ? strlen(body) : 0;
	int fd, n;

	if ((fd = connect_unix(socket_path, err)) < 0)
		return -1;
	n = snprintf(head, sizeof head,
		     "%s %s HTTP/1.1\r\nHost: aegisd\r\nConnection: %s\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", method, path, connection,
		     blen);
	if (n < 0 || (size_t)n >= sizeof head || send_all(fd, head, (size_t)n) < 0 ||
	    (blen && send_all(fd, body, blen) < 0)) {
		error_sys(err, "talking to aegisd");
		close(fd);
		return -1;
	}
	return fd;
}

int httpc_request(const char *socket_path, const char *method, const char *path, const char *body,
		  struct httpc_response *resp, struct aegis_error *err)
{
	return httpc_request_timed(socket_path, method, path, body, HTTPC_TIMEOUT_MS, resp, err);
}

int httpc_request_timed(const char *socket_path, const char *method, const char *path, const char *body,
			unsigned timeout_ms, struct httpc_response *resp, struct aegis_error *err)
{
	char *sep;
	int fd;

	memset(resp, 0, sizeof *resp);
	if ((fd = send_request(socket_path, method, path, "close", body, err)) < 0)
		return -1;
	if (read_all(fd, timeout_ms, resp, err) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	sep = strstr(resp->body, "\r\n\r\n");
	if (strncmp(resp->body, "HTTP/1.", 7) || !sep || sscanf(resp->body + 8, " %d", &resp->status) != 1) {
		httpc_response_free(resp);
		return error_set(err, AEGIS_E_SETUP, 0, "aegisd answered something that is not HTTP");
	}
	sep += 4;
	resp->len -= (size_t)(sep - resp->body);
	memmove(resp->body, sep, resp->len + 1);
	return 0;
}

void httpc_response_free(struct httpc_response *resp)
{
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}

/* The response head, a byte at a time: what follows it is not ours to
 * read (it is the upgraded protocol's). */
static int read_head(int fd, char *head, size_t cap, struct aegis_error *err)
{
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;
		if (poll(&p, 1, HTTPC_TIMEOUT_MS) == 0)
			return error_set(err, AEGIS_E_SETUP, 0, "aegisd did not answer within %d ms", HTTPC_TIMEOUT_MS);
		r = read(fd, head + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return error_set(err, AEGIS_E_SETUP, r < 0 ? errno : 0, "aegisd closed the connection");
		head[++n] = '\0';
		if (n >= 4 && !memcmp(head + n - 4, "\r\n\r\n", 4))
			return 0;
	}
	return error_set(err, AEGIS_E_SETUP, 0, "aegisd's answer has an oversized head");
}

int httpc_upgrade(const char *socket_path, const char *path, const char *body, const char *protocol,
		  struct httpc_response *resp, struct aegis_error *err)
{
	char head[4096], connection[300];
	int fd;

	memset(resp, 0, sizeof *resp);
	snprintf(connection, sizeof connection, "Upgrade\r\nUpgrade: %s", protocol);
	if ((fd = send_request(socket_path, "POST", path, connection, body, err)) < 0)
		return -1;
	if (read_head(fd, head, sizeof head, err) < 0) {
		close(fd);
		return -1;
	}
	if (strncmp(head, "HTTP/1.", 7) || sscanf(head + 8, " %d", &resp->status) != 1) {
		close(fd);
		return error_set(err, AEGIS_E_SETUP, 0, "aegisd answered something that is not HTTP");
	}
	if (resp->status == 101)
		return fd;
	/* an error: its JSON body, Content-Length bytes (the connection may
	 * be kept open: "Connection: Upgrade" is not "close") */
	{
		const char *cl = strcasestr(head, "\r\ncontent-length:");
		size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0, got = 0;
		if (want > HTTPC_RESPONSE_MAX || !(resp->body = malloc(want + 1))) {
			close(fd);
			return error_set(err, AEGIS_E_SETUP, 0, "aegisd's answer is too large");
		}
		while (got < want) {
			ssize_t r = read(fd, resp->body + got, want - got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		resp->body[got] = '\0';
		resp->len = got;
	}
	close(fd);
	return 0;
}

/* Streamed answers: the head within the usual time, then the body as it
 * comes, for as long as it takes (a followed log may be quiet for hours). */

static bool stream_fill(struct httpc_stream *s)
{
	ssize_t n;

	if (s->pos < s->len)
		return true;
	do
		n = read(s->fd, s->buf, sizeof s->buf);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	s->pos = 0;
	s->len = (size_t)n;
	return true;
}

/* One line of chunked framing, its CRLF cut: 0, or -1 at EOF or if too long. */
static int stream_line(struct httpc_stream *s, char *line, size_t cap)
{
	size_t n = 0;

	for (;;) {
		char c;
		if (!stream_fill(s))
			return -1;
		c = s->buf[s->pos++];
		if (c == '\n')
			break;
		if (n + 1 >= cap)
			return -1;
		line[n++] = c;
	}
	if (n && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	return 0;
}

int httpc_stream_open(const char *socket_path, const char *path, struct httpc_stream *s,
		      struct aegis_error *err)
{
	uint64_t deadline = now_us() + HTTPC_TIMEOUT_MS * 1000ULL;
	char head[sizeof s->buf + 1], *end = NULL, *h;
	int n;

	memset(s, 0, sizeof *s);
	if ((s->fd = connect_unix(socket_path, err)) < 0)
		return -1;
	n = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: aegisd\r\nConnection: close\r\n\r\n", path);
	if (n < 0 || (size_t)n >= sizeof head || send_all(s->fd, head, (size_t)n) < 0) {
		error_sys(err, "talking to aegisd");
		goto fail;
	}
	while (!end) {
		struct pollfd p = { .fd = s->fd, .events = POLLIN };
		uint64_t now = now_us();
		ssize_t r;
		if (s->len == sizeof s->buf) {
			error_set(err, AEGIS_E_SETUP, 0, "aegisd's answer has an oversized head");
			goto fail;
		}
		if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000) + 1) == 0) {
			error_set(err, AEGIS_E_SETUP, 0, "aegisd did not answer within %d ms", HTTPC_TIMEOUT_MS);
			goto fail;
		}
		r = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			error_set(err, AEGIS_E_SETUP, r < 0 ? errno : 0, "aegisd closed the connection");
			goto fail;
		}
		s->len += (size_t)r;
		memcpy(head, s->buf, s->len);
		head[s->len] = '\0';
		end = strstr(head, "\r\n\r\n");
	}
	end[2] = '\0';	/* the head, each header line ending in CRLF */
	if (strncmp(head, "HTTP/1.", 7) || sscanf(head + 8, " %d", &s->status) != 1) {
		error_set(err, AEGIS_E_SETUP, 0, "aegisd answered something that is not HTTP");
		goto fail;
	}
	if ((h = strcasestr(head, "\r\ntransfer-encoding:")) && strcasestr(h, "chunked") &&
	    strcasestr(h, "chunked") < strstr(h + 2, "\r\n"))
		s->chunked = true;
	else if ((h = strcasestr(head, "\r\ncontent-length:")))
		s->sized = true, s->left = strtoull(h + 17, NULL, 10);
	s->pos = (size_t)(end + 4 - head);	/* the body's first bytes came with the head */
	return 0;
fail:
	close(s->fd);
	s->fd = -1;
	return -1;
}

ssize_t httpc_stream_read(struct httpc_stream *s, char *out, size_t cap, struct aegis_error *err)
{
	size_t n;

	if (s->done)
		return 0;
	while (s->chunked && !s->left) {
		char line[128], *end;
		unsigned long long size;
		/* the CRLF after the previous chunk, then the next one's size */
		if ((s->crlf_due && (stream_line(s, line, sizeof line) < 0 || line[0])) ||
		    stream_line(s, line, sizeof line) < 0)
			goto broken;
		s->crlf_due = false;
		size = strtoull(line, &end, 16);
		if (end == line || (*end && *end != ';'))
			goto broken;
		if (!size) {
			do	/* trailers, up to the empty line */
				if (stream_line(s, line, sizeof line) < 0)
					goto broken;
			while (line[0]);
			s->done = true;
			return 0;
		}
		s->left = size;
		s->crlf_due = true;
	}
	if (s->sized && !s->left) {
		s->done = true;
		return 0;
	}
	if (!stream_fill(s)) {
		if (s->chunked || s->sized)
			goto broken;
		s->done = true;	/* neither: the body ends when the connection does */
		return 0;
	}
	n = s->len - s->pos < cap ? s->len - s->pos : cap;
	if ((s->chunked || s->sized) && n > s->left)
		n = (size_t)s->left;
	memcpy(out, s->buf + s->pos, n);
	s->pos += n;
	if (s->chunked || s->sized)
		s->left -= n;
	return (ssize_t)n;
broken:
	return error_set(err, AEGIS_E_SETUP, 0, "aegisd's answer broke off (the connection was lost)");
}

void httpc_stream_close(struct httpc_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}
