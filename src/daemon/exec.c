/* exec.c — POST /v1/instances/NAME/exec: a command in a running instance.
 *
 * Two ways to ask. With "Upgrade: aegis-exec.2" the connection becomes
 * the exec's stream (common/frames.h): stdin, stdout, stderr, signals,
 * terminal size and the exit status, interactive like a local command.
 * We hand the connection itself to the instance's shim, which relays it,
 * so the stream does not go through (or depend on) the daemon. Without
 * the upgrade, the exec runs to its end and the answer is JSON with its
 * exit status and bounded output: for curl, scripts and the MCP server.
 *
 * The request is checked here field by field, before the shim sees it. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/fdpass.h"
#include "../common/frames.h"
#include "../common/util.h"
#include "control.h"
#include "daemon.h"
#include "exec.h"
#include "idle.h"
#include "instances.h"

#define EXEC_OUTPUT_MAX (1 << 20)	/* buffered mode: bytes kept per stream */

static int stopping_fd = -1;

void exec_init(int stopping)
{
	stopping_fd = stopping;
}

static json_t *bad(const char *field, const char *why)
{
	return json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "invalid", "message", why, "field", field);
}

static bool strings_ok(json_t *arr, bool env)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);
		if (!s || strlen(s) != json_string_length(v) || (env && (!strchr(s, '=') || s[0] == '=')))
			return false;
	}
	return true;
}

/* NULL and *err set when a field is wrong. */
static json_t *check(const char *text, bool upgrade, json_t **err)
{
	static const char *const known[] = { "argv", "env", "cwd", "tty", "rows", "cols", "stdin",
					     "timeout_ms", NULL };
	json_t *req = json_loads(text ? text : "", JSON_REJECT_DUPLICATES, NULL), *v;
	const char *key;

	if (!json_is_object(req))
		return *err = bad("body", "the body must be a JSON object"), json_decref(req), NULL;
	json_object_foreach(req, key, v) {
		bool ok = false;
		for (size_t i = 0; known[i]; i++)
			ok |= !strcmp(key, known[i]);
		if (!ok) {
			*err = bad(key, "unknown field");
			return json_decref(req), NULL;
		}
	}
	v = json_object_get(req, "argv");
	if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > 4096 || !strings_ok(v, false))
		return *err = bad("argv", "must be a non-empty array of strings"), json_decref(req), NULL;
	if ((v = json_object_get(req, "env")) && (!json_is_array(v) || !strings_ok(v, true)))
		return *err = bad("env", "must be an array of NAME=VALUE"), json_decref(req), NULL;
	if ((v = json_object_get(req, "cwd")) && (!json_is_string(v) || json_string_value(v)[0] != '/'))
		return *err = bad("cwd", "must be an absolute path"), json_decref(req), NULL;
	if ((v = json_object_get(req, "tty")) && !json_is_boolean(v))
		return *err = bad("tty", "must be true or false"), json_decref(req), NULL;
	if (json_is_true(v) && !upgrade)
		return *err = bad("tty", "a terminal needs the streaming (Upgrade) form"), json_decref(req), NULL;
	for (int i = 0; i < 2; i++) {
		const char *f = i ? "cols" : "rows";
		if ((v = json_object_get(req, f)) && (!json_is_integer(v) || json_integer_value(v) < 0 ||
						      json_integer_value(v) > 65535))
			return *err = bad(f, "must be a whole number from 0 to 65535"), json_decref(req), NULL;
	}
	if ((v = json_object_get(req, "stdin")) && (!json_is_string(v) || upgrade))
		return *err = bad("stdin", upgrade ? "the stream carries stdin" : "must be a string"),
		       json_decref(req), NULL;
	if ((v = json_object_get(req, "timeout_ms")) && (!json_is_integer(v) || json_integer_value(v) < 0 || upgrade))
		return *err = bad("timeout_ms", upgrade ? "send a signal frame instead"
					       : "must be a whole number of milliseconds"), json_decref(req), NULL;
	return req;
}

/* Hand the request and the user's stream to the shim. */
static int hand_to_shim(int ctl, json_t *req, int stream)
{
	char *text = json_dumps(req, JSON_COMPACT);
	ssize_t n = text ? fdpass_send(ctl, text, strlen(text), stream) : -1;
	int r = text && n == (ssize_t)strlen(text) ? 0 : -1;

	free(text);
	return r;
}

struct upgrade {
	int ctl;
	json_t *req;
	char name[INSTANCE_NAME_MAX + 1];
};

/* The connection is ours now: give it to the shim, then keep MHD's hold
 * on it until the shim is done (closing it any sooner could shut the
 * socket down under the shim), or until the daemon stops. */
static void upgraded(void *cls, struct MHD_Connection *conn, void *req_cls, const char *extra_in,
		     size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct upgrade *up = cls;

	(void)conn;
	(void)req_cls;
	(void)extra_in;
	/* the client waits for our 101 before it sends a frame */
	daemon_fault("exec-upgraded");
	if (extra_in_size == 0 && hand_to_shim(up->ctl, up->req, sock) == 0) {
		struct pollfd p[2] = { { .fd = up->ctl, .events = POLLIN }, { .fd = stopping_fd, .events = POLLIN } };
		idle_hold(up->name, 1);	/* awake while the exec streams */
		daemon_fault("exec-handed");
		while (poll(p, 2, -1) < 0 && errno == EINTR)
			;
		idle_hold(up->name, -1);
	}
	close(up->ctl);
	json_decref(up->req);
	free(up);
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

/* Replace what is not UTF-8 so the output fits in a JSON string. */
static json_t *text_of(const char *buf, size_t len)
{
	json_t *j = json_stringn(buf, len);
	char *clean;
	size_t k = 0;

	if (j)
		return j;
	if (!(clean = malloc(len * 3 + 1)))
		return json_string("");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];
		size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		json_t *one = n && i + n <= len ? json_stringn(buf + i, n) : NULL;
		if (one) {
			memcpy(clean + k, buf + i, n);
			k += n;
			i += n - 1;
			json_decref(one);
		} else {
			memcpy(clean + k, "\xef\xbf\xbd", 3);	/* U+FFFD */
			k += 3;
		}
	}
	j = json_stringn(clean, k);
	free(clean);
	return j ? j : json_string("");
}

struct captured {
	char *data;
	size_t len;
	bool truncated;
};

static void keep(struct captured *c, const char *buf, size_t n)
{
	size_t take = c->len + n > EXEC_OUTPUT_MAX ? EXEC_OUTPUT_MAX - c->len : n;
	char *grown = take ? realloc(c->data, c->len + take) : c->data;

	c->truncated |= take < n;
	if (!grown)
		return;
	c->data = grown;
	memcpy(c->data + c->len, buf, take);
	c->len += take;
}

/* The exec, start to end, over a socket pair: our end reads its frames. */
static unsigned run_buffered(int ctl, json_t *req, json_t **body)
{
	char *buf;
	struct captured out = { 0 }, err = { 0 };
	json_t *exitj = NULL, *in = json_object_get(req, "stdin");
	uint64_t timeout = (uint64_t)json_integer_value(json_object_get(req, "timeout_ms"));
	uint64_t deadline = timeout ? now_us() + timeout * 1000 : 0;
	bool timed_out = false;
	int sv[2];
	size_t len;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return *body = bad("body", strerror(errno)), 500;
	if (!(buf = malloc(FRAME_MAX + 1))) {
		close(sv[0]);
		close(sv[1]);
		return *body = bad("body", "out of memory"), 500;
	}
	if (hand_to_shim(ctl, req, sv[1]) < 0) {
		close(sv[0]);
		close(sv[1]);
		free(buf);
		return *body = json_pack("{s:{s:s, s:s}}", "error", "code", "not_running", "message",
					 "the instance did not take the exec"), 409;
	}
	close(sv[1]);
	/* stdin is small (it came in the body): send it all, then its end */
	for (size_t off = 0, n = json_string_length(in); in && off < n; off += len) {
		len = n - off < FRAME_MAX ? n - off : FRAME_MAX;
		if (frame_send(sv[0], FRAME_STDIN, json_string_value(in) + off, len) < 0)
			break;
	}
	frame_send(sv[0], FRAME_STDIN_CLOSE, NULL, 0);
	for (;;) {
		struct pollfd p = { .fd = sv[0], .events = POLLIN };
		enum frame_type type;
		int wait = -1;

		if (deadline && !timed_out) {
			uint64_t now = now_us();
			wait = now >= deadline ? 0 : (int)((deadline - now + 999) / 1000);
		}
		if (poll(&p, 1, wait) == 0) {
			frame_send(sv[0], FRAME_SIGNAL, "{\"signal\":9}", 12);
			timed_out = true;
			continue;
		}
		if (frame_recv(sv[0], &type, buf, &len) <= 0)
			break;
		if (type == FRAME_STDOUT || type == FRAME_STDERR)
			keep(type == FRAME_STDOUT ? &out : &err, buf, len);
		else if (type == FRAME_EXIT && (exitj = json_loadb(buf, len, 0, NULL)))
			break;
	}
	close(sv[0]);
	free(buf);
	if (!exitj)
		exitj = json_pack("{s:i, s:{s:s, s:s}}", "exit_code", 125, "error", "code", "failed", "message",
				  "the exec's stream ended without an exit status");
	json_object_set_new(exitj, "stdout", text_of(out.data ? out.data : "", out.len));
	json_object_set_new(exitj, "stderr", text_of(err.data ? err.data : "", err.len));
	json_object_set_new(exitj, "stdout_truncated", json_boolean(out.truncated));
	json_object_set_new(exitj, "stderr_truncated", json_boolean(err.truncated));
	json_object_set_new(exitj, "timed_out", json_boolean(timed_out));
	free(out.data);
	free(err.data);
	*body = exitj;
	return 200;
}

static bool wants_upgrade(struct MHD_Connection *conn)
{
	const char *up = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
	const char *c = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);

	return up && c && !strcasecmp(up, FRAMES_VERSION) && strcasestr(c, "upgrade");
}

unsigned exec_start(struct MHD_Connection *conn, const char *name, const char *text, json_t **body,
		    struct MHD_Response **upgrade)
{
	bool stream = wants_upgrade(conn);
	json_t *req = check(text, stream, body);
	unsigned status;
	int dirfd = -1, ctl;

	*upgrade = NULL;
	if (!req)
		return 400;
	/* an exec is activity, and wakes a sleeping instance */
	if (instance_name_valid(name) && instances_wake(name) == 0)
		idle_touch(name);
	if ((status = instances_running_dir(name, &dirfd, body)) != 0) {
		json_decref(req);
		return status;
	}
	ctl = control_connect(dirfd);
	close(dirfd);
	if (ctl < 0) {
		json_decref(req);
		return *body = json_pack("{s:{s:s, s:s}}", "error", "code", "not_running", "message",
					 "the instance is not taking execs (starting or ending)"), 409;
	}
	if (!stream) {
		idle_hold(name, 1);
		status = run_buffered(ctl, req, body);
		idle_hold(name, -1);
		close(ctl);
		json_decref(req);
		return status;
	}
	{
		struct upgrade *up = malloc(sizeof *up);
		if (up) {
			up->ctl = ctl;
			up->req = req;
			snprintf(up->name, sizeof up->name, "%s", name);
			*upgrade = MHD_create_response_for_upgrade(upgraded, up);
		}
		if (!*upgrade) {
			free(up);
			close(ctl);
			json_decref(req);
			return *body = bad("body", "cannot upgrade the connection"), 500;
		}
		MHD_add_response_header(*upgrade, MHD_HTTP_HEADER_UPGRADE, FRAMES_VERSION);
		return MHD_HTTP_SWITCHING_PROTOCOLS;
	}
}
