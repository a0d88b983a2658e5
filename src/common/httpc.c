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

static int read_all(int fd, struct httpc_response *resp, struct aegis_error *err)
{
	uint64_t deadline = now_us() + HTTPC_TIMEOUT_MS * 1000ULL;
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
			return error_set(err, AEGIS_E_SETUP, 0, "aegisd did not answer within %d ms", HTTPC_TIMEOUT_MS);
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

int httpc_request(const char *socket_path, const char *method, const char *path, const char *body,
		  struct httpc_response *resp, struct aegis_error *err)
{
	char head[512], *sep;
	size_t blen = body ? strlen(body) : 0;
	int fd, n;

	memset(resp, 0, sizeof *resp);
	if ((fd = connect_unix(socket_path, err)) < 0)
		return -1;
	n = snprintf(head, sizeof head,
		     "%s %s HTTP/1.1\r\nHost: aegisd\r\nConnection: close\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", method, path, blen);
	if (n < 0 || (size_t)n >= sizeof head || write_all(fd, head, (size_t)n) < 0 ||
	    (blen && write_all(fd, body, blen) < 0) || read_all(fd, resp, err) < 0) {
		if (!err->msg[0])
			error_sys(err, "talking to aegisd");
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
