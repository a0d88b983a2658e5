/* httpc.h — the CLI's client for aegisd's API: one HTTP/1.1 request over
 * the daemon's unix socket, "Connection: close", bounded in size and time. */
#ifndef AEGIS_COMMON_HTTPC_H
#define AEGIS_COMMON_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <aegis/aegis.h>

#define HTTPC_RESPONSE_MAX (16 << 20)
#define HTTPC_TIMEOUT_MS 10000

struct httpc_response {
	int status;		/* e.g. 200 */
	char *body;		/* malloc'd, NUL-terminated */
	size_t len;
};

/* -1 with err when the daemon cannot be reached or answers garbage. */
int httpc_request(const char *socket_path, const char *method, const char *path, const char *body,
		  struct httpc_response *resp, struct aegis_error *err);
/* The same with the answer awaited for timeout_ms instead (an exec that
 * may run for as long as its own timeout). */
int httpc_request_timed(const char *socket_path, const char *method, const char *path, const char *body,
			unsigned timeout_ms, struct httpc_response *resp, struct aegis_error *err);
void httpc_response_free(struct httpc_response *resp);
/* POST path with "Upgrade: protocol". On 101: the connection, now that
 * protocol's (resp->status 101). Otherwise 0 with the answer in resp, or
 * -1 with err. */
int httpc_upgrade(const char *socket_path, const char *path, const char *body, const char *protocol,
		  struct httpc_response *resp, struct aegis_error *err);

/* A streamed answer: the head read within HTTPC_TIMEOUT_MS, then the body
 * as it comes, chunked or not, with no time limit (a followed log). */
struct httpc_stream {
	int fd;
	int status;
	bool chunked, sized, done, crlf_due;
	uint64_t left;		/* of the body (sized) or of the current chunk */
	char buf[16384];
	size_t pos, len;
};

/* GET path; on return s->status is known. -1 with err. */
int httpc_stream_open(const char *socket_path, const char *path, struct httpc_stream *s,
		      struct aegis_error *err);
/* Up to cap bytes of the body: how many, 0 at its end, -1 with err. */
ssize_t httpc_stream_read(struct httpc_stream *s, char *out, size_t cap, struct aegis_error *err);
void httpc_stream_close(struct httpc_stream *s);

#endif
