/* expose_srv.c — the minimal HTTP/1.0 server and the bulk client of
 * bench/expose.py. Built statically by the bench, so that its own start
 * (exec to listening) is as short as a server's can be.
 *
 *   expose_srv serve PORT       listen on 0.0.0.0:PORT, one connection at
 *                               a time: "GET /" -> "ok\n";
 *                               "GET /zero/N" -> N zero bytes;
 *                               "PUT /sink/N" -> reads N bytes, "ok\n"
 *   expose_srv get HOST PORT N  download /zero/N; prints the bytes received
 *                               (head included) and the seconds taken
 *   expose_srv put HOST PORT N  upload N zero bytes to /sink/N; the same
 *
 * Bodies move in 1 MiB read()/write() calls on both sides, through the
 * router or directly on loopback alike. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static char buf[CHUNK];

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int zeros(int fd, unsigned long long n)
{
	static const char z[CHUNK];

	while (n) {
		size_t k = n < CHUNK ? (size_t)n : CHUNK;
		if (write_all(fd, z, k) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

/* The request head (up to the blank line) into buf; what came after it
 * stays in buf + *head .. buf + *got. -1 on EOF or error. */
static int read_head(int fd, size_t *head, size_t *got)
{
	size_t n = 0;

	for (;;) {
		ssize_t r = read(fd, buf + n, 4096 - n);
		char *end;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = '\0';
		if ((end = strstr(buf, "\r\n\r\n"))) {
			*head = (size_t)(end + 4 - buf);
			*got = n;
			return 0;
		}
		if (n >= 4096)
			return -1;
	}
}

static void one(int c)
{
	static const char ok[] = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
	char hdr[128];
	size_t head, got;
	unsigned long long n;

	if (read_head(c, &head, &got) < 0)
		return;
	if (!strncmp(buf, "GET /zero/", 10)) {
		n = strtoull(buf + 10, NULL, 10);
		snprintf(hdr, sizeof hdr, "HTTP/1.0 200 OK\r\nContent-Length: %llu\r\n\r\n", n);
		if (write_all(c, hdr, strlen(hdr)) == 0)
			zeros(c, n);
	} else if (!strncmp(buf, "PUT /sink/", 10)) {
		n = strtoull(buf + 10, NULL, 10);
		n = n > got - head ? n - (got - head) : 0;
		while (n) {
			ssize_t r = read(c, buf, n < CHUNK ? (size_t)n : CHUNK);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return;
			n -= (unsigned long long)r;
		}
		write_all(c, ok, sizeof ok - 1);
	} else {
		write_all(c, ok, sizeof ok - 1);
	}
}

static int serve(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(INADDR_ANY) };
	int one_ = 1, l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	signal(SIGPIPE, SIG_IGN);
	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one_, sizeof one_) < 0 ||
	    bind(l, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(l, 128) < 0) {
		perror("expose_srv: listen");
		return 1;
	}
	for (;;) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		one(c);
		close(c);
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int client(int put, const char *host, int port, unsigned long long n)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	unsigned long long total = 0;
	char req[128];
	double t0, t;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1 || s < 0)
		return 2;
	t0 = now();
	if (connect(s, (struct sockaddr *)&sin, sizeof sin) < 0) {
		perror("expose_srv: connect");
		return 1;
	}
	if (put)
		snprintf(req, sizeof req, "PUT /sink/%llu HTTP/1.0\r\nContent-Length: %llu\r\n\r\n", n, n);
	else
		snprintf(req, sizeof req, "GET /zero/%llu HTTP/1.0\r\n\r\n", n);
	if (write_all(s, req, strlen(req)) < 0 || (put && zeros(s, n) < 0)) {
		perror("expose_srv: send");
		return 1;
	}
	for (;;) {
		ssize_t r = read(s, buf, CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			perror("expose_srv: read");
			return 1;
		}
		if (r == 0)
			break;
		total += (unsigned long long)r;
	}
	t = now() - t0;
	/* everything received, head included (PUT: the answer only) */
	printf("%llu %.6f\n", total, t);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]));
	if (argc == 5 && (!strcmp(argv[1], "get") || !strcmp(argv[1], "put")))
		return client(argv[1][0] == 'p', argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 10));
	fprintf(stderr, "usage: expose_srv serve PORT | get HOST PORT N | put HOST PORT N\n");
	return 2;
}
