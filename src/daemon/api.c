/* api.c — the /v1 HTTP API of aegisd: who may ask, how much they may send,
 * and the answers. Every error is JSON: {"error": {"code", "message"}}.
 *
 * Only the daemon's own user (and root) may talk to it: the socket's
 * directory is 0700 and the peer's credentials are checked on every
 * connection (SO_PEERCRED), so a sandbox or another user is refused even if
 * the socket were reachable. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <aegis/aegis.h>
#include "../common/util.h"
#include "daemon.h"
#include "exec.h"
#include "instances.h"
#include "logs.h"
#include "secrets_api.h"
#include "workspaces_api.h"

struct request {
	char *body;
	size_t len;
	bool too_big;
	bool shutdown;		/* POST /v1/shutdown: stop once its answer is out */
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	struct MHD_Response *r;
	enum MHD_Result ret;

	json_decref(body);
	if (!text)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result fail(struct MHD_Connection *conn, unsigned status, const char *code,
			    const char *message)
{
	return reply(conn, status, json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message));
}

/* The peer must be us or root: the same rule the socket's 0700 directory
 * makes for the file system, checked again on the connection itself. */
static bool peer_allowed(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct ucred cred;
	socklen_t len = sizeof cred;

	if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == geteuid() || cred.uid == 0;
}

static enum MHD_Result route(struct api *api, struct MHD_Connection *conn, const char *url,
			     const char *method, struct request *req)
{
	static const struct { const char *path, *method; } routes[] = {
		{ "/v1/health", "GET" }, { "/v1/version", "GET" }, { "/v1/status", "GET" },
		{ "/v1/shutdown", "POST" },
	};
	bool known = false;
	json_t *ws_body;
	unsigned ws_status = workspaces_api(url, method, req->body, &ws_body);

	/* /v1/secrets and /v1/secrets/NAME: a value in a PUT body only */
	if (!strcmp(url, "/v1/secrets") || !strncmp(url, "/v1/secrets/", 12)) {
		const char *name = url[11] == '/' ? url + 12 : NULL;
		json_t *body = NULL;
		unsigned status;
		if (!name && !strcmp(method, "GET"))
			status = secrets_api_list(&body);
		else if (name && !strcmp(method, "PUT"))
			status = secrets_api_set(name, req->body, req->len, &body);
		else if (name && !strcmp(method, "DELETE"))
			status = secrets_api_delete(name, &body);
		else
			return fail(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
				    name ? "this path takes PUT (with {\"value\": ...}) or DELETE; a value is never read back"
					 : "this path takes GET");
		return reply(conn, status, body);
	}
	/* /v1/workspaces and /v1/workspaces/NAME (workspaces_api.c) */
	if (ws_status)
		return reply(conn, ws_status, ws_body);
	/* /v1/instances and /v1/instances/NAME */
	if (!strcmp(url, "/v1/instances") || !strncmp(url, "/v1/instances/", 14)) {
		const char *name = url[13] == '/' ? url + 14 : NULL;
		json_t *body = NULL;
		unsigned status;
		size_t nlen = name ? strlen(name) : 0;
		char base[80];
		/* POST /v1/instances/NAME/pause, /resume, /disable, /start */
		for (int i = 0; i < 4 && name; i++) {
			static const char *const verbs[] = { "/pause", "/resume", "/disable", "/start" };
			const char *verb = verbs[i];
			size_t vlen = strlen(verb);
			if (nlen > vlen && !strcmp(name + nlen - vlen, verb) && nlen - vlen < sizeof base) {
				if (strcmp(method, "POST"))
					return fail(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
						    "this path does not take that method");
				snprintf(base, sizeof base, "%.*s", (int)(nlen - vlen), name);
				status = i < 2 ? instances_pause(base, i == 0, &body)
				       : i == 2 ? instances_disable(base, &body) : instances_start(base, &body);
				return reply(conn, status, body);
			}
		}
		/* POST /v1/instances/NAME/exec (streamed with Upgrade, else JSON) */
		if (name && nlen > 5 && !strcmp(name + nlen - 5, "/exec") && nlen - 5 < sizeof base) {
			struct MHD_Response *up;
			enum MHD_Result ret;
			if (strcmp(method, "POST"))
				return fail(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
					    "this path does not take that method");
			snprintf(base, sizeof base, "%.*s", (int)(nlen - 5), name);
			status = exec_start(conn, base, req->body, &body, &up);
			if (!up)
				return reply(conn, status, body);
			ret = MHD_queue_response(conn, status, up);
			MHD_destroy_response(up);
			return ret;
		}
		/* GET /v1/instances/NAME/logs?tail=&since=&follow=... (logs.c) */
		if (name && nlen > 5 && !strcmp(name + nlen - 5, "/logs") && nlen - 5 < sizeof base) {
			struct MHD_Response *stream;
			enum MHD_Result ret;
			if (strcmp(method, "GET"))
				return fail(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
					    "this path does not take that method");
			snprintf(base, sizeof base, "%.*s", (int)(nlen - 5), name);
			status = logs_request(conn, base, &body, &stream);
			if (!stream)
				return reply(conn, status, body);
			ret = MHD_queue_response(conn, status, stream);
			MHD_destroy_response(stream);
			return ret;
		}
		if (!name && !strcmp(method, "GET"))
			status = instances_list(&body);
		else if (!name && !strcmp(method, "POST"))
			status = instances_create(req->body, &body);
		else if (name && !strcmp(method, "GET"))
			status = instances_info(name, &body);
		else if (name && !strcmp(method, "DELETE"))
			status = instances_delete(name, &body);
		else
			return fail(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
				    "this path does not take that method");
		return reply(conn, status, body);
	}
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		if (strcmp(url, routes[i].path))
			continue;
		known = true;
		if (strcmp(method, routes[i].method))
			continue;
		if (!strcmp(url, "/v1/health"))
			return reply(conn, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
		if (!strcmp(url, "/v1/version"))
			return reply(conn, MHD_HTTP_OK, json_pack("{s:s, s:s}", "version", AEGIS_VERSION,
								  "api", API_VERSION));
		if (!strcmp(url, "/v1/status")) {
			struct aegis_host h;
			aegis_doctor(&h);
			return reply(conn, MHD_HTTP_OK,
				     json_pack("{s:s, s:s, s:f, s:o, s:{s:b, s:s, s:b, s:i, s:b}}",
					       "version", AEGIS_VERSION, "api", API_VERSION,
					       "uptime_s", (now_us() - api->started_us) / 1e6,
					       "instances", instances_counts(),
					       "host", "user_namespaces", h.userns, "cgroup", h.cgroup_version,
					       "cgroup_writable", h.cgroup_writable,
					       "landlock_abi", h.landlock_abi, "seccomp_notify", h.seccomp_notify));
		}
		/* POST /v1/shutdown: on record, with who asked */
		{
			const union MHD_ConnectionInfo *ci =
				MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
			struct ucred cred = { 0 };
			socklen_t len = sizeof cred;
			char pid[16];
			if (ci)
				getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
			snprintf(pid, sizeof pid, "%d", (int)cred.pid);
			daemon_log("info", "shutdown requested", "peer_pid", pid);
		}
		req->shutdown = true;	/* api_request_done stops us, once the answer is sent */
		return reply(conn, MHD_HTTP_ACCEPTED, json_pack("{s:s}", "status", "shutting down"));
	}
	if (known)
		return fail(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
			    "this path does not take that method");
	return fail(conn, MHD_HTTP_NOT_FOUND, "not_found", "no such API path (the API is under /v1)");
}

/* A body is JSON nested at most API_JSON_DEPTH deep, checked before any
 * parser builds it (a deep document costs memory and stack to parse). */
static bool body_well_formed(const char *text, size_t len, bool secret, char *why, size_t cap)
{
	bool in_string = false, escaped = false;
	int depth = 0;
	json_error_t e;
	json_t *j;

	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if ((c == '[' || c == '{') && ++depth > API_JSON_DEPTH) {
			snprintf(why, cap, "JSON nested deeper than %d levels", API_JSON_DEPTH);
			return false;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	if (!(j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e))) {
		/* the parser's text quotes the input: not for a body that holds a secret */
		snprintf(why, cap, "malformed JSON at line %d column %d%s%s", e.line, e.column,
			 secret ? "" : ": ", secret ? "" : e.text);
		return false;
	}
	json_decref(j);
	return true;
}

/* Bodies may hold secret values (PUT /v1/secrets/NAME): zeroed, then freed.
 * Keeps req->len (the caller may still be growing the body). */
static void wipe_body(struct request *req)
{
	if (req->body) {
		explicit_bzero(req->body, req->len);
		free(req->body);
		req->body = NULL;
	}
}

/* Percent-decoding of URLs and query values, in place, except %00: the
 * C strings the handlers get would end there, so "a%00b" would name "a".
 * It stays "%00", which no name or value accepts. */
size_t api_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	char *out = s;

	(void)cls;
	(void)conn;
	for (char *in = s; *in; in++) {
		unsigned v;
		if (*in == '%' && sscanf(in + 1, "%2x", &v) == 1 && isxdigit((unsigned char)in[1]) &&
		    isxdigit((unsigned char)in[2]) && v != 0) {
			*out++ = (char)v;
			in += 2;
		} else {
			*out++ = *in;
		}
	}
	*out = '\0';
	return (size_t)(out - s);
}

enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_size, void **req_cls)
{
	struct request *req = *req_cls;

	(void)version;
	if (!req) {
		/* first call: headers only. Refuse strangers before reading a byte. */
		if (!peer_allowed(conn))
			return fail(conn, MHD_HTTP_FORBIDDEN, "forbidden", "only the daemon's user may use this API");
		if (!(req = calloc(1, sizeof *req)))
			return MHD_NO;
		*req_cls = req;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!req->too_big && req->len + *upload_size <= API_BODY_MAX) {
			/* not realloc: a body may hold a secret, and what realloc
			 * leaves behind is never wiped */
			char *grown = malloc(req->len + *upload_size + 1);
			if (!grown)
				return MHD_NO;
			if (req->body)
				memcpy(grown, req->body, req->len);
			wipe_body(req);
			req->body = grown;
			memcpy(req->body + req->len, upload_data, *upload_size);
			req->len += *upload_size;
			req->body[req->len] = '\0';
		} else {
			req->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->too_big)
		return fail(conn, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large", "request body over 1 MiB");
	if (req->body) {
		char why[200];
		bool secret = !strncmp(url, "/v1/secrets", 11);
		if (!body_well_formed(req->body, req->len, secret, why, sizeof why)) {
			if (secret)
				wipe_body(req);
			return reply(conn, MHD_HTTP_BAD_REQUEST,
				     json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "invalid", "message", why,
					       "field", "body"));
		}
	}
	return route(cls, conn, url, method, req);
}

void api_request_done(void *cls, struct MHD_Connection *conn, void **req_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct request *req = *req_cls;
	struct api *api = cls;

	(void)conn;
	(void)toe;
	if (req && req->shutdown)
		eventfd_write(api->shutdown_fd, 1);
	if (req) {
		wipe_body(req);
		free(req);
		*req_cls = NULL;
	}
}
