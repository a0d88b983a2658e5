/* httpc.h — the CLI's client for aegisd's API: one HTTP/1.1 request over
 * the daemon's unix socket, "Connection: close", bounded in size and time. */
#ifndef AEGIS_COMMON_HTTPC_H
#define AEGIS_COMMON_HTTPC_H

#include <stddef.h>

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
void httpc_response_free(struct httpc_response *resp);

#endif
