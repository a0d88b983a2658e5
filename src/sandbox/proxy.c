/* proxy.c — the egress proxy of the allow network mode (proxy.h).
 *
 * One accept thread and one thread per connection. A connection reads the
 * request head (bounded size, one deadline for the whole head so a client
 * trickling bytes cannot hold a slot forever), checks the target against
 * the rules, resolves it itself (host entries, IP literals, else the
 * host's resolver in a helper thread), checks every resolved address again
 * and connects to the first one that passes: the address checked is the
 * address used, so a name cannot be rebound between check and connect.
 * Then it relays both ways through two bounded buffers, with half-close.
 *
 * Every wait is a poll() that also watches one eventfd, written once by
 * proxy_stop: hung clients, slow upstreams and slow resolvers all let go at
 * once, so stopping takes milliseconds. All sockets are non-blocking, and
 * send() uses MSG_NOSIGNAL so a vanished peer is an error, not a SIGPIPE in
 * the supervisor.
 *
 * Byte counters count what crossed the proxy: bytes_up is what was written
 * to the upstream (for plain HTTP including the rewritten request head),
 * bytes_down what was relayed from the upstream to the client; the proxy's
 * own answers (200 Connection established, errors) are not counted. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/relay.h"
#include "../common/util.h"
#include "proxy.h"

/* each direction; on loopback 256 KiB moves ~70% more per second than 64 */
#define PROXY_RELAY_BUF (256 * 1024)
#define PROXY_REPLY_TIMEOUT_MS 2000	/* to hand our own answer to a client */
#define PROXY_LINGER_MS 1000		/* to drain what a refused client still sends */
#define PROXY_LINGER_BYTES (1 << 20)
#define PROXY_IDLE_AFTER_EOF_MS 60000	/* one side done, the other silent: end */
#define PROXY_MAX_ADDRS 16
#define PROXY_HOST_MAX 256
#define PROXY_STACK_SIZE (512 * 1024)

struct proxy;

struct proxy_conn {
	struct proxy *p;
	struct proxy_conn *next;
	pthread_t thread;
	bool done;			/* thread finished: the accept thread may join it */
	int client, upstream;
	uint64_t start_us;

	/* what the report says */
	char method[16];
	char host[PROXY_HOST_MAX];
	bool have_host;
	char address[INET6_ADDRSTRLEN];
	uint16_t port;
	const char *verdict;
	char rule[384];
	uint64_t up, down;

	/* the request head as received, and what followed it */
	char head[PROXY_HEADER_MAX + 1];
	size_t len;			/* bytes in head[] */
	size_t head_end;		/* end of the blank line; 0 while not seen */
};

struct proxy {
	int listen_fd;
	int stop_fd;			/* eventfd: readable once stopping */
	int reap_fd;			/* eventfd: a connection thread finished */
	const struct net_rules *rules;
	proxy_report_fn report;
	void *report_arg;
	pthread_t accept_thread;
	pthread_attr_t attr;

	pthread_mutex_t lock;		/* guards everything below */
	struct proxy_conn *conns;
	size_t active;
	uint64_t total;
};

/* A resolution running in its own detached thread, so that a slow resolver
 * holds neither the connection nor proxy_stop. Whoever drops the last
 * reference frees it; the proxy itself may be gone by then. */
struct proxy_lookup {
	pthread_mutex_t lock;
	int refs;
	int done_fd;			/* eventfd, written when the answer is in */
	char host[PROXY_HOST_MAX];
	int rc, sys_errno;
	struct addrinfo *res;
};

struct proxy_target {
	struct sockaddr_storage addrs[PROXY_MAX_ADDRS];
	size_t n;
	bool mapped;			/* from a host entry */
};

static uint64_t proxy_deadline(uint64_t ms)
{
	return now_us() + ms * 1000;
}

/* Milliseconds left until deadline (0 when past), for poll(). */
static int proxy_left_ms(uint64_t deadline)
{
	uint64_t now = now_us();

	if (now >= deadline)
		return 0;
	return (int)((deadline - now + 999) / 1000);
}

/* Wait for events on fd or for stop. 1: fd ready (revents in *revents),
 * 0: deadline passed, -1: stopping or poll failed. */
static int proxy_wait(struct proxy *p, int fd, short events, uint64_t deadline, short *revents)
{
	for (;;) {
		struct pollfd pfd[2] = { { .fd = fd, .events = events },
					 { .fd = p->stop_fd, .events = POLLIN } };
		int left = deadline ? proxy_left_ms(deadline) : -1;
		int r;

		if (deadline && left == 0)
			return 0;
		r = poll(pfd, 2, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || pfd[1].revents)
			return -1;
		if (r == 0)
			continue;	/* re-check the deadline with our own clock */
		*revents = pfd[0].revents;
		return 1;
	}
}

/* All of buf to a non-blocking socket before the deadline. */
static int proxy_send_all(struct proxy *p, int fd, const char *buf, size_t len, uint64_t deadline)
{
	short rev;

	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -1;
		if (proxy_wait(p, fd, POLLOUT, deadline, &rev) <= 0)
			return -1;
	}
	return 0;
}

static const char *proxy_status_text(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Error";
	}
}

/* The whole answer to a refused or failed request, in buf. */
static size_t proxy_format_reply(char *buf, size_t cap, int status, const char *reason)
{
	char body[512];
	int blen = snprintf(body, sizeof body, "aegis: %s\n", reason);
	int n;

	if (blen < 0)
		blen = 0;
	if ((size_t)blen >= sizeof body)
		blen = (int)sizeof body - 1;
	n = snprintf(buf, cap,
		     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\n"
		     "Content-Length: %d\r\n\r\n%.*s",
		     status, proxy_status_text(status), blen, blen, body);
	return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Refuse or fail the request: record why, answer, and let the client read
 * the answer. Closing a socket with unread input makes the kernel send a
 * reset, which can destroy the answer before the client reads it (a 431
 * for a 100 kB head, say): so shut our side, then drain the client's
 * input for a moment. Always returns -1. */
static int proxy_fail(struct proxy_conn *c, int status, const char *verdict, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int proxy_fail(struct proxy_conn *c, int status, const char *verdict, const char *fmt, ...)
{
	char reply[1024], sink[16384];
	uint64_t deadline;
	size_t drained = 0, n;
	va_list ap;
	short rev;

	va_start(ap, fmt);
	vsnprintf(c->rule, sizeof c->rule, fmt, ap);
	va_end(ap);
	c->verdict = verdict;
	n = proxy_format_reply(reply, sizeof reply, status, c->rule);
	if (proxy_send_all(c->p, c->client, reply, n, proxy_deadline(PROXY_REPLY_TIMEOUT_MS)) < 0)
		return -1;
	shutdown(c->client, SHUT_WR);
	deadline = proxy_deadline(PROXY_LINGER_MS);
	while (drained < PROXY_LINGER_BYTES) {
		ssize_t r = recv(c->client, sink, sizeof sink, 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			break;
		if (r > 0) {
			drained += (size_t)r;
			continue;
		}
		if (errno == EAGAIN && proxy_wait(c->p, c->client, POLLIN, deadline, &rev) <= 0)
			break;
	}
	return -1;
}

/* Where the head ends: after the first empty line (CRLF or bare LF). */
static size_t proxy_find_head_end(const char *buf, size_t len, size_t from)
{
	for (size_t i = from; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Receive the request head within PROXY_HEADER_TIMEOUT_MS in all. */
static int proxy_read_head(struct proxy_conn *c)
{
	uint64_t deadline = c->start_us + (uint64_t)PROXY_HEADER_TIMEOUT_MS * 1000;
	size_t skip = 0, scan = 0;

	for (;;) {
		ssize_t n;
		short rev;
		int w;

		/* RFC 9112 §2.2: ignore empty lines before the request line. */
		while (skip < c->len && (c->head[skip] == '\r' || c->head[skip] == '\n'))
			skip++;
		if (scan < skip)
			scan = skip;
		c->head_end = proxy_find_head_end(c->head, c->len, scan);
		if (c->head_end)
			break;
		/* the blank line may straddle two reads: look back two bytes next time */
		if (c->len >= 2 && c->len - 2 > scan)
			scan = c->len - 2;
		if (c->len == PROXY_HEADER_MAX)
			return proxy_fail(c, 431, "error", "request head larger than %d bytes",
					  PROXY_HEADER_MAX);
		n = recv(c->client, c->head + c->len, PROXY_HEADER_MAX - c->len, 0);
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		if (n == 0) {
			if (c->len == 0) {
				c->verdict = "error";
				snprintf(c->rule, sizeof c->rule, "client closed before sending a request");
				return -1;
			}
			return proxy_fail(c, 400, "error", "request head cut short");
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			c->verdict = "error";
			snprintf(c->rule, sizeof c->rule, "reading the request: %s", strerror(errno));
			return -1;
		}
		w = proxy_wait(c->p, c->client, POLLIN, deadline, &rev);
		if (w < 0) {
			c->verdict = "error";
			snprintf(c->rule, sizeof c->rule, "proxy stopped");
			return -1;
		}
		if (w == 0)
			return proxy_fail(c, 408, "error", "no complete request head within %d ms",
					  PROXY_HEADER_TIMEOUT_MS);
	}
	/* Strip the leading empty lines: the parser sees the request line first. */
	if (skip) {
		memmove(c->head, c->head + skip, c->len - skip);
		c->len -= skip;
		c->head_end -= skip;
	}
	c->head[c->len] = '\0';
	return 0;
}

static bool proxy_is_tchar(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* "host:port", "[v6]:port", or without ":port" when need_port is false.
 * The host is stored without brackets. */
static int proxy_parse_authority(const char *s, size_t len, bool need_port, char *host,
				 uint16_t *port)
{
	const char *colon = NULL, *h = s;
	size_t hlen;
	unsigned long v = 0;

	if (len && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (!close)
			return -1;
		h = s + 1;
		hlen = (size_t)(close - h);
		if ((size_t)(close + 1 - s) < len) {
			if (close[1] != ':')
				return -1;
			colon = close + 1;
		}
	} else {
		colon = memchr(s, ':', len);
		hlen = colon ? (size_t)(colon - s) : len;
		if (colon && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)))
			return -1;
	}
	if (hlen == 0 || hlen >= PROXY_HOST_MAX)
		return -1;
	for (size_t i = 0; i < hlen; i++)
		if ((unsigned char)h[i] <= ' ' || h[i] == '@' || h[i] == '/' || h[i] == 0x7f)
			return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (!colon) {
		if (need_port)
			return -1;
		*port = 80;
		return 0;
	}
	colon++;
	if (colon == s + len || s + len - colon > 5)
		return -1;
	for (; colon < s + len; colon++) {
		if (*colon < '0' || *colon > '9')
			return -1;
		v = v * 10 + (unsigned long)(*colon - '0');
	}
	if (v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

struct proxy_request {
	bool connect;
	const char *authority;		/* as written in the URL, for Host: */
	size_t authority_len;
	const char *path;		/* origin-form, NULL for CONNECT */
	size_t path_len;
	const char *version;		/* "HTTP/1.x" */
	const char *headers;		/* first header line */
};

/* Methods forwarded as plain HTTP; anything else would need semantics we
 * do not implement (TRACE echoes headers, PRI is HTTP/2). */
static bool proxy_method_forwarded(const char *m)
{
	static const char *const ok_methods[] = { "GET", "HEAD", "POST", "PUT", "DELETE",
						  "OPTIONS", "PATCH", NULL };
	for (const char *const *x = ok_methods; *x; x++)
		if (strcmp(*x, m) == 0)
			return true;
	return false;
}

/* Request line and header syntax. Strict where leniency lets a client and
 * an upstream read the same bytes differently. */
static int proxy_parse(struct proxy_conn *c, struct proxy_request *req)
{
	char *line = c->head, *eol, *sp1, *sp2, *target;
	size_t tlen;

	memset(req, 0, sizeof *req);
	if (memchr(c->head, '\0', c->head_end))
		return proxy_fail(c, 400, "error", "NUL byte in the request head");
	for (size_t i = 0; i < c->head_end; i++)
		if (c->head[i] == '\r' && c->head[i + 1] != '\n')
			return proxy_fail(c, 400, "error", "bare CR in the request head");

	eol = memchr(line, '\n', c->head_end);
	*eol = '\0';
	if (eol > line && eol[-1] == '\r')
		eol[-1] = '\0';
	sp1 = strchr(line, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || sp1 == line || sp2 == sp1 + 1 ||
	    (size_t)(sp1 - line) >= sizeof c->method)
		return proxy_fail(c, 400, "error", "malformed request line");
	for (char *m = line; m < sp1; m++)
		if (!proxy_is_tchar(*m))
			return proxy_fail(c, 400, "error", "malformed request line");
	memcpy(c->method, line, (size_t)(sp1 - line));
	c->method[sp1 - line] = '\0';
	req->version = sp2 + 1;
	if (strcmp(req->version, "HTTP/1.1") != 0 && strcmp(req->version, "HTTP/1.0") != 0)
		return proxy_fail(c, 400, "error", "unsupported protocol version");
	target = sp1 + 1;
	tlen = (size_t)(sp2 - target);
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)target[i] <= ' ' || target[i] == 0x7f)
			return proxy_fail(c, 400, "error", "malformed request line");

	/* Header lines: "name: value", no folding (RFC 9112 §5.2 lets us refuse). */
	req->headers = eol + 1;
	for (char *h = eol + 1; h < c->head + c->head_end;) {
		char *end = memchr(h, '\n', (size_t)(c->head + c->head_end - h));
		char *colon;
		size_t l = (size_t)(end - h);
		if (l && h[l - 1] == '\r')
			l--;
		if (l == 0)
			break;
		if (h[0] == ' ' || h[0] == '\t')
			return proxy_fail(c, 400, "error", "folded header line");
		colon = memchr(h, ':', l);
		if (!colon || colon == h)
			return proxy_fail(c, 400, "error", "malformed header line");
		for (char *x = h; x < colon; x++)
			if (!proxy_is_tchar(*x))
				return proxy_fail(c, 400, "error", "malformed header name");
		h = end + 1;
	}

	if (strcmp(c->method, "CONNECT") == 0) {
		req->connect = true;
		if (proxy_parse_authority(target, tlen, true, c->host, &c->port) < 0)
			return proxy_fail(c, 400, "error", "CONNECT needs host:port");
		c->have_host = true;
		return 0;
	}
	if (!proxy_method_forwarded(c->method))
		return proxy_fail(c, 405, "error", "method %s is not forwarded", c->method);
	if (tlen < 7 || strncasecmp(target, "http://", 7) != 0) {
		if (tlen >= 8 && strncasecmp(target, "https://", 8) == 0)
			return proxy_fail(c, 400, "error", "https:// requests go through CONNECT");
		return proxy_fail(c, 400, "error",
				  "not a proxy request (want an absolute http:// URL)");
	}
	req->authority = target + 7;
	req->authority_len = strcspn(req->authority, "/?#");
	if (req->authority_len > tlen - 7)
		req->authority_len = tlen - 7;
	if (memchr(req->authority, '@', req->authority_len))
		return proxy_fail(c, 400, "error", "credentials in the URL are not forwarded");
	if (proxy_parse_authority(req->authority, req->authority_len, false, c->host, &c->port) < 0)
		return proxy_fail(c, 400, "error", "malformed URL");
	c->have_host = true;
	req->path = req->authority + req->authority_len;
	req->path_len = strcspn(req->path, "#");
	if (req->path + req->path_len > sp2)
		req->path_len = (size_t)(sp2 - req->path);
	return 0;
}

static bool proxy_header_dropped(const char *h, size_t namelen)
{
	/* Hop-by-hop headers of the client↔proxy leg, and Host, which is
	 * rebuilt from the URL so the upstream sees the name that was checked. */
	static const char *const dropped[] = { "host", "connection", "proxy-connection",
					       "proxy-authorization", "keep-alive", NULL };
	for (const char *const *d = dropped; *d; d++)
		if (strlen(*d) == namelen && strncasecmp(*d, h, namelen) == 0)
			return true;
	return false;
}

/* The request head as the upstream gets it: origin-form request line,
 * Host from the URL, proxy headers dropped, "Connection: close". */
static size_t proxy_rewrite(struct proxy_conn *c, const struct proxy_request *req, char *out,
			    size_t cap)
{
	size_t n = 0;
	int w;

	w = snprintf(out, cap, "%s %s%.*s %s\r\nHost: %.*s\r\n", c->method,
		     req->path_len && req->path[0] == '/' ? "" : "/", (int)req->path_len, req->path,
		     req->version, (int)req->authority_len, req->authority);
	if (w < 0 || (size_t)w >= cap)
		return 0;
	n = (size_t)w;
	for (const char *h = req->headers; h < c->head + c->head_end;) {
		const char *end = memchr(h, '\n', (size_t)(c->head + c->head_end - h));
		size_t l = (size_t)(end - h);
		if (l && h[l - 1] == '\r')
			l--;
		if (l == 0)
			break;
		if (!proxy_header_dropped(h, (size_t)((const char *)memchr(h, ':', l) - h))) {
			if (n + l + 2 >= cap)
				return 0;
			memcpy(out + n, h, l);
			memcpy(out + n + l, "\r\n", 2);
			n += l + 2;
		}
		h = end + 1;
	}
	w = snprintf(out + n, cap - n, "Connection: close\r\n\r\n");
	if (w < 0 || (size_t)w >= cap - n)
		return 0;
	return n + (size_t)w;
}

static void proxy_lookup_put(struct proxy_lookup *l)
{
	bool last;

	pthread_mutex_lock(&l->lock);
	last = --l->refs == 0;
	pthread_mutex_unlock(&l->lock);
	if (!last)
		return;
	if (l->res)
		freeaddrinfo(l->res);
	close(l->done_fd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

static void *proxy_lookup_main(void *arg)
{
	struct proxy_lookup *l = arg;
	/* No AI_ADDRCONFIG: the supervisor's view of configured addresses
	 * says nothing about what the user asked for. */
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(l->host, NULL, &hints, &res);

	pthread_mutex_lock(&l->lock);
	l->rc = rc;
	l->sys_errno = errno;
	l->res = rc == 0 ? res : NULL;
	pthread_mutex_unlock(&l->lock);
	eventfd_write(l->done_fd, 1);
	proxy_lookup_put(l);
	return NULL;
}

static void proxy_add_addr(struct proxy_target *t, int family, const void *addr, uint16_t port)
{
	struct sockaddr_storage *ss;

	if (t->n == PROXY_MAX_ADDRS)
		return;
	ss = &t->addrs[t->n++];
	memset(ss, 0, sizeof *ss);
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		memcpy(&in->sin_addr, addr, 4);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		memcpy(&in6->sin6_addr, addr, 16);
	}
}

/* Host entries first, then IP literals, then the resolver. Returns 0, or
 * -1 after answering the client. */
static int proxy_resolve(struct proxy_conn *c, struct proxy_target *t)
{
	const struct net_rules *r = c->p->rules;
	char name[PROXY_HOST_MAX];
	uint8_t addr[16];
	size_t n = strlen(c->host);
	struct proxy_lookup *l;
	pthread_t tid;
	short rev;
	int w, rc, sys_errno;

	memset(t, 0, sizeof *t);
	if (inet_pton(AF_INET, c->host, addr) == 1) {
		proxy_add_addr(t, AF_INET, addr, c->port);
		return 0;
	}
	if (inet_pton(AF_INET6, c->host, addr) == 1) {
		proxy_add_addr(t, AF_INET6, addr, c->port);
		return 0;
	}
	/* the rules compare names lowercased, without a trailing dot */
	if (n > 1 && c->host[n - 1] == '.')
		n--;
	for (size_t i = 0; i < n; i++)
		name[i] = (char)((c->host[i] >= 'A' && c->host[i] <= 'Z') ? c->host[i] + 32 : c->host[i]);
	name[n] = '\0';
	for (size_t i = 0; i < r->nhosts; i++)
		if (strcmp(r->hosts[i].name, name) == 0)
			proxy_add_addr(t, r->hosts[i].family, r->hosts[i].addr, c->port);
	if (t->n) {
		t->mapped = true;
		return 0;
	}

	l = calloc(1, sizeof *l);
	if (!l)
		return proxy_fail(c, 502, "error", "resolving %s: out of memory", c->host);
	l->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->done_fd < 0) {
		free(l);
		return proxy_fail(c, 502, "error", "resolving %s: %s", c->host, strerror(errno));
	}
	pthread_mutex_init(&l->lock, NULL);
	l->refs = 2;
	memcpy(l->host, name, n + 1);
	if ((rc = pthread_create(&tid, &c->p->attr, proxy_lookup_main, l)) != 0) {
		l->refs = 1;
		proxy_lookup_put(l);
		return proxy_fail(c, 502, "error", "resolving %s: %s", c->host, strerror(rc));
	}
	pthread_detach(tid);
	w = proxy_wait(c->p, l->done_fd, POLLIN, proxy_deadline(PROXY_CONNECT_TIMEOUT_MS), &rev);
	if (w <= 0) {
		proxy_lookup_put(l);
		if (w < 0) {
			c->verdict = "error";
			snprintf(c->rule, sizeof c->rule, "proxy stopped");
			return -1;
		}
		return proxy_fail(c, 504, "error", "resolving %s timed out", c->host);
	}
	pthread_mutex_lock(&l->lock);
	rc = l->rc;
	sys_errno = l->sys_errno;
	for (struct addrinfo *ai = l->res; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET)
			proxy_add_addr(t, AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr,
				       c->port);
		else if (ai->ai_family == AF_INET6)
			proxy_add_addr(t, AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr,
				       c->port);
	}
	pthread_mutex_unlock(&l->lock);
	proxy_lookup_put(l);
	if (rc != 0)
		return proxy_fail(c, 502, "error", "cannot resolve %s: %s", c->host,
				  rc == EAI_SYSTEM ? strerror(sys_errno) : gai_strerror(rc));
	if (!t->n)
		return proxy_fail(c, 502, "error", "cannot resolve %s: no addresses", c->host);
	return 0;
}

static void proxy_addr_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)cap);
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, (socklen_t)cap);
}

/* Connect to the first address the rules allow, within one deadline for
 * all attempts. Returns 0, or -1 after answering the client. */
static int proxy_connect(struct proxy_conn *c, const struct net_rule *matched,
			 const struct proxy_target *t)
{
	uint64_t deadline = proxy_deadline(PROXY_CONNECT_TIMEOUT_MS);
	char refusal[sizeof c->rule] = "";
	char failed_addr[INET6_ADDRSTRLEN] = "";
	int last_err = 0, one = 1;
	bool tried = false;

	for (size_t i = 0; i < t->n; i++) {
		const struct sockaddr_storage *ss = &t->addrs[i];
		socklen_t sl = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
							: sizeof(struct sockaddr_in6);
		const char *why;
		short rev;
		int fd, w, soerr = 0;
		socklen_t elen = sizeof soerr;

		proxy_addr_text(ss, c->address, sizeof c->address);
		if (!netrules_allow_address(c->p->rules, matched, (const struct sockaddr *)ss,
					    t->mapped, &why)) {
			if (!refusal[0])
				snprintf(refusal, sizeof refusal, "%s: %s", c->host, why);
			continue;
		}
		tried = true;
		fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last_err = errno;
			snprintf(failed_addr, sizeof failed_addr, "%s", c->address);
			continue;
		}
		if (connect(fd, (const struct sockaddr *)ss, sl) == 0)
			goto connected;
		if (errno != EINPROGRESS) {
			last_err = errno;
			goto next;
		}
		w = proxy_wait(c->p, fd, POLLOUT, deadline, &rev);
		if (w < 0) {
			close(fd);
			c->verdict = "error";
			snprintf(c->rule, sizeof c->rule, "proxy stopped");
			return -1;
		}
		if (w == 0) {
			last_err = ETIMEDOUT;
			snprintf(failed_addr, sizeof failed_addr, "%s", c->address);
			close(fd);
			break;	/* the deadline covers every address */
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0)
			soerr = errno;
		if (soerr == 0)
			goto connected;
		last_err = soerr;
next:
		snprintf(failed_addr, sizeof failed_addr, "%s", c->address);
		close(fd);
		continue;
connected:
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->upstream = fd;
		return 0;
	}
	if (!tried)
		return proxy_fail(c, 403, "deny", "%s", refusal);
	if (failed_addr[0])
		snprintf(c->address, sizeof c->address, "%s", failed_addr);
	if (last_err == ETIMEDOUT)
		return proxy_fail(c, 504, "error", "connecting to %s:%u (%s) timed out", c->host,
				  c->port, c->address);
	return proxy_fail(c, 502, "error", "cannot reach %s:%u (%s): %s", c->host, c->port,
			  c->address, strerror(last_err));
}

/* Both ways, until both are done (common/relay.c). */
static void proxy_relay(struct proxy_conn *c, struct relay_flow *c2u, struct relay_flow *u2c)
{
	const int fds[2] = { c->client, c->upstream };

	relay_run(fds, c2u, u2c, c->p->stop_fd, PROXY_IDLE_AFTER_EOF_MS);
}

static void proxy_serve(struct proxy_conn *c)
{
	static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	struct relay_flow c2u = { .count = &c->up, .pipe = { -1, -1 } },
			  u2c = { .count = &c->down, .pipe = { -1, -1 } };
	struct proxy_request req;
	struct proxy_target *t = NULL;
	const struct net_rule *matched = NULL;
	const char *why;
	size_t rest;

	if (proxy_read_head(c) < 0 || proxy_parse(c, &req) < 0)
		return;
	if (!netrules_allow_target(c->p->rules, c->host, c->port, &matched, &why)) {
		proxy_fail(c, 403, "deny", "%s", why);
		return;
	}
	/* the allow rule, until an error replaces it */
	snprintf(c->rule, sizeof c->rule, "%s", matched->text);
	t = malloc(sizeof *t);
	if (!t) {
		proxy_fail(c, 502, "error", "out of memory");
		return;
	}
	if (proxy_resolve(c, t) < 0 || proxy_connect(c, matched, t) < 0)
		goto out;
	snprintf(c->rule, sizeof c->rule, "%s", matched->text);

	c2u.buf = malloc(PROXY_RELAY_BUF);
	if (!c2u.buf || relay_flow_open(&c2u) < 0 || relay_flow_open(&u2c) < 0) {
		proxy_fail(c, 502, "error", "out of memory or descriptors");
		goto out;
	}
	rest = c->len - c->head_end;
	if (req.connect) {
		if (proxy_send_all(c->p, c->client, established, sizeof established - 1,
				   proxy_deadline(PROXY_REPLY_TIMEOUT_MS)) < 0)
			goto out;
	} else {
		/* the rewritten head is at most the head plus a few bytes; with
		 * what followed the head it always fits */
		c2u.len = proxy_rewrite(c, &req, c2u.buf, PROXY_RELAY_BUF - PROXY_HEADER_MAX);
		if (!c2u.len) {
			proxy_fail(c, 431, "error", "request head too large once rewritten");
			goto out;
		}
	}
	memcpy(c2u.buf + c2u.len, c->head + c->head_end, rest);
	c2u.len += rest;
	c->verdict = "allow";
	proxy_relay(c, &c2u, &u2c);
out:
	free(c2u.buf);
	relay_flow_close(&c2u);
	relay_flow_close(&u2c);
	free(t);
}

static void proxy_report(struct proxy_conn *c)
{
	struct proxy_conn_report r = {
		.method = c->method[0] ? c->method : "?",
		.host = c->have_host ? c->host : NULL,
		.address = c->address[0] ? c->address : NULL,
		.port = c->port,
		.verdict = c->verdict ? c->verdict : "error",
		.rule = c->rule[0] ? c->rule : NULL,
		.bytes_up = c->up,
		.bytes_down = c->down,
		.duration_us = now_us() - c->start_us,
	};

	if (c->p->report)
		c->p->report(c->p->report_arg, &r);
}

static void *proxy_conn_main(void *arg)
{
	struct proxy_conn *c = arg;
	struct proxy *p = c->p;
	proxy_serve(c);
	close(c->client);
	if (c->upstream >= 0)
		close(c->upstream);
	c->client = c->upstream = -1;
	proxy_report(c);
	pthread_mutex_lock(&p->lock);
	c->done = true;
	p->active--;
	pthread_mutex_unlock(&p->lock);
	eventfd_write(p->reap_fd, 1);
	return NULL;
}

/* Join and free finished connection threads (all of them when `all`). */
static void proxy_reap(struct proxy *p, bool all)
{
	for (;;) {
		struct proxy_conn **pp, *c = NULL;

		pthread_mutex_lock(&p->lock);
		for (pp = &p->conns; *pp; pp = &(*pp)->next) {
			if (all || (*pp)->done) {
				c = *pp;
				*pp = c->next;
				break;
			}
		}
		pthread_mutex_unlock(&p->lock);
		if (!c)
			return;
		pthread_join(c->thread, NULL);
		free(c);
	}
}

/* Over a cap: say so at once rather than leave the client waiting. */
static void proxy_turn_away(struct proxy *p, int fd, const char *reason)
{
	char reply[1024], sink[4096];
	size_t n = proxy_format_reply(reply, sizeof reply, 503, reason);
	struct proxy_conn_report r = { .method = "?", .verdict = "error", .rule = reason };
	uint64_t start = now_us();

	/* read what already arrived, so that close() does not reset the
	 * connection before the client reads the answer */
	while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
		;
	if (send(fd, reply, n, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
		shutdown(fd, SHUT_WR);
	close(fd);
	r.duration_us = now_us() - start;
	if (p->report)
		p->report(p->report_arg, &r);
}

static void proxy_admit(struct proxy *p, int fd)
{
	char reason[128] = "";
	struct proxy_conn *c;
	int one = 1, rc;

	pthread_mutex_lock(&p->lock);
	if (p->total >= PROXY_MAX_TOTAL)
		snprintf(reason, sizeof reason, "connection cap reached (%d connections in this run)",
			 PROXY_MAX_TOTAL);
	else if (p->active >= PROXY_MAX_CONCURRENT)
		snprintf(reason, sizeof reason, "too many open connections (%d)",
			 PROXY_MAX_CONCURRENT);
	else {
		p->total++;
		p->active++;
	}
	pthread_mutex_unlock(&p->lock);
	if (reason[0]) {
		proxy_turn_away(p, fd, reason);
		return;
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(reason, sizeof reason, "out of memory");
		goto undo;
	}
	c->p = p;
	c->client = fd;
	c->upstream = -1;
	c->start_us = now_us();
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	pthread_mutex_lock(&p->lock);
	if ((rc = pthread_create(&c->thread, &p->attr, proxy_conn_main, c)) == 0) {
		c->next = p->conns;
		p->conns = c;
	}
	pthread_mutex_unlock(&p->lock);
	if (rc == 0)
		return;
	free(c);
	snprintf(reason, sizeof reason, "cannot start a connection thread: %s", strerror(rc));
undo:
	pthread_mutex_lock(&p->lock);
	p->active--;
	pthread_mutex_unlock(&p->lock);
	proxy_turn_away(p, fd, reason);
}

static void *proxy_accept_main(void *arg)
{
	struct proxy *p = arg;
	int backoff = -1;

	for (;;) {
		struct pollfd pfd[3] = { { .fd = p->listen_fd, .events = POLLIN },
					 { .fd = p->stop_fd, .events = POLLIN },
					 { .fd = p->reap_fd, .events = POLLIN } };
		eventfd_t ignored;
		int fd, r;

		/* after a resource error, leave the listener alone for a moment */
		if (backoff >= 0)
			pfd[0].fd = -1;
		r = poll(pfd, 3, backoff);
		backoff = -1;
		if (r < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (pfd[2].revents) {
			eventfd_read(p->reap_fd, &ignored);
			proxy_reap(p, false);
		}
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			backoff = 100;	/* a broken listener: do not spin on it */
		if (!(pfd[0].revents & POLLIN))
			continue;
		fd = accept4(p->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				backoff = 100;	/* EMFILE, ENOBUFS, ...: retry shortly */
			continue;
		}
		proxy_admit(p, fd);
	}
	return NULL;
}

int proxy_start(struct proxy **out, int listen_fd, const struct net_rules *rules,
		proxy_report_fn report, void *report_arg, struct aegis_error *err)
{
	struct proxy *p;
	int rc, flags;

	*out = NULL;
	p = calloc(1, sizeof *p);
	if (!p) {
		close(listen_fd);
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "proxy");
	}
	p->listen_fd = listen_fd;
	p->rules = rules;
	p->report = report;
	p->report_arg = report_arg;
	p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	p->reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->stop_fd < 0 || p->reap_fd < 0) {
		error_sys(err, "proxy: eventfd");
		goto fail;
	}
	/* accept4 must not block the accept thread when a client vanishes
	 * between poll and accept */
	flags = fcntl(listen_fd, F_GETFL);
	if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(listen_fd, F_SETFD, FD_CLOEXEC) < 0) {
		error_sys(err, "proxy: listening socket");
		goto fail;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_attr_init(&p->attr);
	pthread_attr_setstacksize(&p->attr, PROXY_STACK_SIZE);
	if ((rc = pthread_create(&p->accept_thread, &p->attr, proxy_accept_main, p)) != 0) {
		error_set(err, AEGIS_E_SETUP, rc, "proxy: starting the accept thread");
		pthread_attr_destroy(&p->attr);
		pthread_mutex_destroy(&p->lock);
		goto fail;
	}
	*out = p;
	return 0;
fail:
	if (p->stop_fd >= 0)
		close(p->stop_fd);
	if (p->reap_fd >= 0)
		close(p->reap_fd);
	close(listen_fd);
	free(p);
	return -1;
}

void proxy_stop(struct proxy *p)
{
	if (!p)
		return;
	/* every poll in every thread watches stop_fd: one write wakes them all */
	eventfd_write(p->stop_fd, 1);
	pthread_join(p->accept_thread, NULL);
	proxy_reap(p, true);
	close(p->listen_fd);
	close(p->stop_fd);
	close(p->reap_fd);
	pthread_attr_destroy(&p->attr);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
