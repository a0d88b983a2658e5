/* execserve.c — execs into a running sandbox: the supervisor's side.
 *
 * The daemon connects to the run's control socket (spec.control_fd) and
 * sends one message: the exec request as JSON, with the user's stream
 * attached (SCM_RIGHTS). A thread per exec then makes the command's stdio
 * (pipes, or a pty), asks the sandbox's PID 1 to start it (harness.c: so it
 * inherits every confinement of the main command), and relays the stream
 * in frames (common/frames.h) until the exit status is sent. The stream
 * belongs to the run, not to the daemon: a daemon that dies or restarts
 * meanwhile does not cut it.
 *
 * The supervise loop owns the sync channel's reading side: it hands PID
 * 1's answers (EXEC_STARTED, EXEC_EXIT) to the session they belong to. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/fdpass.h"
#include "../common/frames.h"
#include "../common/util.h"
#include "execserve.h"
#include "redact.h"
#include "sandbox.h"

#define REQUEST_WAIT_MS 5000	/* for the daemon's one request message */
#define DRAIN_QUIET_MS 100	/* after the exit: output still in flight */
#define CLIENT_IO_TIMEOUT_S 30	/* a user who stops reading stalls only their exec */

enum session_state { S_STARTING, S_RUNNING, S_FAILED, S_EXITED, S_ENDED };

struct session {
	struct execserve *srv;
	struct session *next;
	uint32_t id;
	int conn, client;
	int wake[2];		/* the supervise loop's news for this session */
	int master;		/* -t: the terminal's master side, from PID 1 */
	enum session_state state;
	int status;		/* S_EXITED: wait status */
	struct aegis_error err;	/* S_FAILED */
	char frame[FRAME_MAX + 1];	/* one frame from the user */
	char pending[FRAME_MAX];	/* stdin not yet taken by the command */
	char out[FRAME_MAX];		/* output on its way to the user */
};

struct execserve {
	pthread_mutex_t lock;
	pthread_cond_t drained;
	int sync_fd;		/* our own dup of the channel to PID 1 */
	const char *cwd;	/* the run's default working directory */
	struct record *rec;	/* the run's audit events */
	char *const *secret_env, *const *secret_files;	/* redacted from execs' output */
	struct session *live;
	unsigned refs;		/* the supervise loop, and one per session thread */
	uint32_t next_id;
	bool ending;
};

static void serve_release(struct execserve *srv)
{
	bool last;

	pthread_mutex_lock(&srv->lock);
	last = --srv->refs == 0;
	pthread_cond_broadcast(&srv->drained);
	pthread_mutex_unlock(&srv->lock);
	if (last) {
		close(srv->sync_fd);
		free(srv);
	}
}

struct execserve *execserve_new(int sync_fd, const struct aegis_spec *spec, struct record *rec)
{
	struct execserve *srv = calloc(1, sizeof *srv);

	if (!srv)
		return NULL;
	srv->sync_fd = fcntl(sync_fd, F_DUPFD_CLOEXEC, 3);
	if (srv->sync_fd < 0) {
		free(srv);
		return NULL;
	}
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->drained, NULL);
	srv->cwd = spec->cwd;
	srv->rec = rec;
	srv->secret_env = spec->secret_env;
	srv->secret_files = spec->secret_files;
	srv->refs = 1;
	return srv;
}

static void session_set(struct session *s, enum session_state state)
{
	s->state = state;
	(void)!write(s->wake[1], "", 1);
}

void execserve_news(struct execserve *srv, const struct sync_msg *msg, int passed)
{
	pthread_mutex_lock(&srv->lock);
	for (struct session *s = srv->live; s; s = s->next) {
		if (s->id != msg->exec_id)
			continue;
		if (msg->kind == SYNC_EXEC_STARTED && msg->err.code) {
			s->err = msg->err;
			session_set(s, S_FAILED);
		} else if (msg->kind == SYNC_EXEC_STARTED) {
			if (s->master < 0) {
				s->master = passed;
				passed = -1;
			}
			session_set(s, S_RUNNING);
		} else if (msg->kind == SYNC_EXEC_EXIT) {
			s->status = msg->wait_status;
			session_set(s, S_EXITED);
		} else if (msg->kind == SYNC_CONNECTED) {
			s->status = msg->wait_status;	/* 0, or why not */
			if (!msg->wait_status && s->master < 0) {
				s->master = passed;
				passed = -1;
			}
			session_set(s, msg->wait_status ? S_FAILED : S_RUNNING);
		}
	}
	pthread_mutex_unlock(&srv->lock);
	if (passed >= 0)
		close(passed);
}

void execserve_end(struct execserve *srv)
{
	struct timespec until;

	pthread_mutex_lock(&srv->lock);
	srv->ending = true;
	for (struct session *s = srv->live; s; s = s->next)
		session_set(s, S_ENDED);
	/* give the sessions a moment to tell their users how the exec ended */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	while (srv->refs > 1 && pthread_cond_timedwait(&srv->drained, &srv->lock, &until) == 0)
		;
	pthread_mutex_unlock(&srv->lock);
	serve_release(srv);
}

/* Tell PID 1 something about this session's exec (under the lock: the
 * channel may be closed the moment the run ends). */
static int tell_pid1(struct session *s, struct sync_msg *msg, const void *payload, const int *fds, int n)
{
	int r = -1;

	pthread_mutex_lock(&s->srv->lock);
	if (!s->srv->ending)
		r = sync_sendv(s->srv->sync_fd, msg, payload, fds, n);
	pthread_mutex_unlock(&s->srv->lock);
	return r;
}

static void exit_frame(struct session *s, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);

	if (text)
		frame_send(s->client, FRAME_EXIT, text, strlen(text));
	free(text);
	json_decref(j);
}

static void fail_frame(struct session *s, const char *code, const char *message, int exit_code)
{
	exit_frame(s, json_pack("{s:i, s:{s:s, s:s}}", "exit_code", exit_code, "error", "code", code,
				"message", message));
}

/* The daemon's one message: the request JSON, with the user's stream. */
static json_t *read_request(struct session *s)
{
	static const size_t max = SYNC_PAYLOAD_MAX * 2;
	struct pollfd p = { .fd = s->conn, .events = POLLIN };
	char *text = malloc(max);
	json_t *req = NULL;
	ssize_t n = -1;

	if (text && poll(&p, 1, REQUEST_WAIT_MS) == 1)
		n = fdpass_recv(s->conn, text, max, &s->client);
	if (n > 0)
		req = json_loadb(text, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
	free(text);
	return req;
}

/* cwd, argv, env of the request as PID 1's payload; NULL if malformed. */
static char *request_payload(struct session *s, json_t *req, uint32_t *len)
{
	json_t *argv = json_object_get(req, "argv"), *env = json_object_get(req, "env"), *v;
	const char *cwd = json_string_value(json_object_get(req, "cwd"));
	struct exec_wire w = { .argc = (uint32_t)json_array_size(argv), .envc = (uint32_t)json_array_size(env),
			       .tty = json_is_true(json_object_get(req, "tty")) };
	size_t size = sizeof w, i;
	char *out, *p;

	if (!cwd)
		cwd = s->srv->cwd;
	if (!w.argc || cwd[0] != '/' || (env && !json_is_array(env)))
		return NULL;
	size += strlen(cwd) + 1;
	json_array_foreach(argv, i, v)
		size += json_string_length(v) + 1;
	json_array_foreach(env, i, v)
		size += json_string_length(v) + 1;
	if (size > SYNC_PAYLOAD_MAX || !(out = malloc(size)))
		return NULL;
	memcpy(out, &w, sizeof w);
	p = stpcpy(out + sizeof w, cwd) + 1;
	json_array_foreach(argv, i, v) {
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
			return free(out), NULL;
		p = stpcpy(p, json_string_value(v)) + 1;
	}
	json_array_foreach(env, i, v) {
		const char *e = json_is_string(v) ? json_string_value(v) : "";
		if (!strchr(e, '=') || e[0] == '=' || strlen(e) != json_string_length(v))
			return free(out), NULL;
		p = stpcpy(p, e) + 1;
	}
	*len = (uint32_t)size;
	return out;
}

/* The command's side of its stdio (child[]) and ours (in, out, err). */
struct stdio {
	int child[3];
	int in, out, err;	/* a pty: in == out == the master, err -1 */
	bool tty;
};

static int stdio_make(struct stdio *io, json_t *req)
{
	int p[3][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 } };

	io->tty = json_is_true(json_object_get(req, "tty"));
	if (io->tty)
		return 0;	/* PID 1 makes the terminal, in the sandbox's devpts */
	for (int i = 0; i < 3; i++)
		if (pipe2(p[i], O_CLOEXEC) < 0) {
			for (int j = 0; j < i; j++)
				close(p[j][0]), close(p[j][1]);
			return -1;
		}
	io->child[0] = p[0][0], io->in = p[0][1];
	io->child[1] = p[1][1], io->out = p[1][0];
	io->child[2] = p[2][1], io->err = p[2][0];
	fcntl(io->in, F_SETFL, O_NONBLOCK);
	return 0;
}

static void close_child_side(struct stdio *io)
{
	for (int i = 0; i < 3; i++)
		if (io->child[i] >= 0 && (i == 0 || io->child[i] != io->child[i - 1]))
			close(io->child[i]);
	io->child[0] = io->child[1] = io->child[2] = -1;
}

static void signal_exec(struct session *s, int sig)
{
	struct sync_msg msg = { .kind = SYNC_EXEC_SIGNAL, .exec_id = s->id, .wait_status = sig };

	tell_pid1(s, &msg, NULL, NULL, 0);
}

/* One frame from the user: stdin bytes, its end, a signal, a resize.
 * false: the user is gone. */
static bool from_user(struct session *s, struct stdio *io, size_t *npending)
{
	char *buf = s->frame;
	enum frame_type type;
	size_t len;
	json_t *j;

	if (frame_recv(s->client, &type, buf, &len) <= 0)
		return false;
	switch (type) {
	case FRAME_STDIN:
		if (io->in >= 0) {
			memcpy(s->pending, buf, len);
			*npending = len;
		}
		break;
	case FRAME_STDIN_CLOSE:
		/* a terminal's end of input is its EOF character, not a hangup */
		if (io->tty)
			(void)!write(io->in, "\x04", 1);
		else if (io->in >= 0)
			close(io->in), io->in = -1;
		break;
	case FRAME_SIGNAL:
		if ((j = json_loadb(buf, len, 0, NULL))) {
			int sig = (int)json_integer_value(json_object_get(j, "signal"));
			if (sig > 0 && sig < 65)
				signal_exec(s, sig);
			json_decref(j);
		}
		break;
	case FRAME_RESIZE:
		if (io->tty && (j = json_loadb(buf, len, 0, NULL))) {
			struct winsize ws = { .ws_row = (unsigned short)json_integer_value(json_object_get(j, "rows")),
					      .ws_col = (unsigned short)json_integer_value(json_object_get(j, "cols")) };
			ioctl(io->out, TIOCSWINSZ, &ws);
			json_decref(j);
		}
		break;
	default:
		break;
	}
	return true;
}

/* One output stream of an exec on its way to the user: an instance's
 * injected secrets are cut out of it as they are from its log (redact.c). */
struct outgoing {
	struct session *s;
	enum frame_type type;
	struct redactor red;
	bool gone;		/* the user stopped taking frames */
};

static void emit_frame(void *arg, const char *buf, size_t len)
{
	struct outgoing *o = arg;

	/* a frame at most FRAME_MAX: redaction may have made a chunk longer */
	for (size_t off = 0; off < len && !o->gone; off += FRAME_MAX)
		o->gone = frame_send(o->s->client, o->type, buf + off,
				     len - off < FRAME_MAX ? len - off : FRAME_MAX) < 0;
}

/* Output to the user; -1 when it is at EOF, 0 moved, 1 user gone. */
static int to_user(struct outgoing *o, int *fd)
{
	ssize_t n = read(*fd, o->s->out, sizeof o->s->out);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {	/* EOF; EIO: a pty whose last slave closed */
		if (o->red.n)
			redact_feed(&o->red, NULL, 0, true, emit_frame, o);
		return o->gone ? 1 : -1;
	}
	if (o->red.n)
		redact_feed(&o->red, o->s->out, (size_t)n, false, emit_frame, o);
	else
		emit_frame(o, o->s->out, (size_t)n);
	return o->gone ? 1 : 0;
}

static enum session_state state_of(struct session *s)
{
	enum session_state st;
	char drain[16];

	while (read(s->wake[0], drain, sizeof drain) > 0)
		;
	pthread_mutex_lock(&s->srv->lock);
	st = s->state;
	pthread_mutex_unlock(&s->srv->lock);
	return st;
}

/* Move stdin in and output out until the exec has exited and its output
 * is out; false when the user went away (the exec got SIGHUP). */
static bool relay_streams(struct session *s, struct stdio *io, struct outgoing *streams)
{
	char *pending = s->pending;
	size_t npending = 0, off = 0;
	int out = io->out, err = io->err;
	/* the exit may have come with the start already (a quick command) */
	enum session_state st = state_of(s);
	bool exited = st == S_EXITED || st == S_ENDED;

	while (out >= 0 || err >= 0 || !exited) {
		struct pollfd p[5] = {
			{ .fd = !npending ? s->client : -1, .events = POLLIN },
			{ .fd = npending && io->in >= 0 ? io->in : -1, .events = POLLOUT },
			{ .fd = out, .events = POLLIN },
			{ .fd = err, .events = POLLIN },
			{ .fd = exited ? -1 : s->wake[0], .events = POLLIN },
		};
		int n = poll(p, 5, exited ? DRAIN_QUIET_MS : -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;	/* exited and quiet: what still holds its pipes is not its output */
		if (p[4].revents) {
			st = state_of(s);
			exited = st == S_EXITED || st == S_ENDED;
			if (st == S_ENDED)
				break;
		}
		if (p[0].revents && !from_user(s, io, &npending)) {
			/* the user hung up: as a terminal would, say so to the exec */
			signal_exec(s, SIGHUP);
			return false;
		}
		if (p[1].revents) {
			ssize_t w = write(io->in, pending + off, npending - off);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				npending = off = 0;	/* the command closed its stdin */
			} else if (w > 0 && (off += (size_t)w) == npending) {
				npending = off = 0;
			}
		}
		for (int i = 0; i < 2; i++) {
			int *fd = i ? &err : &out;
			if (!p[2 + i].revents || *fd < 0)
				continue;
			switch (to_user(&streams[i], fd)) {
			case 1:
				signal_exec(s, SIGHUP);
				return false;
			case -1:
				*fd = -1;
				break;
			}
		}
	}
	return true;
}

/* Relay until the exec has exited and its output is out, then its status. */
static void relay(struct session *s, struct stdio *io)
{
	struct outgoing streams[2] = { { .s = s, .type = FRAME_STDOUT }, { .s = s, .type = FRAME_STDERR } };
	enum session_state st;
	bool user;

	for (int i = 0; i < 2; i++)
		if (redact_init(&streams[i].red, s->srv->secret_env, s->srv->secret_files) < 0) {
			/* no output rather than unredacted output */
			redact_free(&streams[0].red);
			redact_free(&streams[1].red);
			signal_exec(s, SIGKILL);
			fail_frame(s, "failed", "cannot set up secret redaction", 125);
			return;
		}
	user = relay_streams(s, io, streams);
	for (int i = 0; i < 2; i++) {
		/* what was held back as a value's possible start, now the stream is done */
		if (user && streams[i].red.n)
			redact_feed(&streams[i].red, NULL, 0, true, emit_frame, &streams[i]);
		user &= !streams[i].gone;
		redact_free(&streams[i].red);
	}
	if (!user)
		return;
	st = state_of(s);
	if (st == S_EXITED && WIFSIGNALED(s->status))
		exit_frame(s, json_pack("{s:i, s:i}", "exit_code", 128 + WTERMSIG(s->status), "signal",
					WTERMSIG(s->status)));
	else if (st == S_EXITED)
		exit_frame(s, json_pack("{s:i, s:n}", "exit_code", WEXITSTATUS(s->status), "signal"));
	else
		fail_frame(s, "instance_stopped", "the instance stopped while the exec ran", 128 + SIGKILL);
}

static int exit_code_of(const struct aegis_error *e)
{
	return e->code == AEGIS_E_NOTFOUND ? 127 : e->code == AEGIS_E_NOEXEC ? 126 : 125;
}

static const char *code_name(const struct aegis_error *e)
{
	return e->code == AEGIS_E_NOTFOUND ? "not_found" : e->code == AEGIS_E_NOEXEC ? "cannot_execute"
	       : e->code == AEGIS_E_INVALID ? "invalid" : "failed";
}

/* The answer to a connect or event request, on the control connection,
 * with a descriptor or without. */
static void answer(struct session *s, json_t *j, int fd)
{
	char *text = json_dumps(j, JSON_COMPACT);

	if (text)
		(void)fdpass_send(s->conn, text, strlen(text), fd);
	free(text);
	json_decref(j);
}

/* {"connect": PORT}: a connection to the sandbox's own 127.0.0.1:PORT,
 * made by its PID 1, handed back to the daemon's router. */
static void serve_connect(struct session *s, json_t *req)
{
	json_int_t port = json_integer_value(json_object_get(req, "connect"));
	struct sync_msg msg = { .kind = SYNC_CONNECT, .wait_status = (int)port };
	enum session_state st;

	pthread_mutex_lock(&s->srv->lock);
	msg.exec_id = s->id = ++s->srv->next_id;
	pthread_mutex_unlock(&s->srv->lock);
	if (port < 1 || port > 65535 || tell_pid1(s, &msg, NULL, NULL, 0) < 0) {
		answer(s, json_pack("{s:s, s:i}", "error", "the instance is not running", "errno", ESRCH), -1);
		return;
	}
	while ((st = state_of(s)) == S_STARTING) {
		struct pollfd p = { .fd = s->wake[0], .events = POLLIN };
		poll(&p, 1, -1);
	}
	if (st == S_RUNNING && s->master >= 0)
		answer(s, json_pack("{s:b}", "ok", 1), s->master);
	else
		answer(s, json_pack("{s:s, s:i}", "error", st == S_FAILED ? strerror(s->status) :
				    "the instance stopped", "errno", st == S_FAILED ? s->status : ESRCH), -1);
}

/* {"event": "instance.X", "fields": {...}}: the daemon's word on the
 * run's audit chain (it cannot append there itself while we write it). */
static void serve_event(struct session *s, json_t *req)
{
	const char *type = json_string_value(json_object_get(req, "event"));
	json_t *fields = json_object_get(req, "fields");

	if (!type || strncmp(type, "instance.", 9) || !json_is_object(fields)) {
		answer(s, json_pack("{s:s}", "error", "malformed event"), -1);
		return;
	}
	record_event(s->srv->rec, type, json_deep_copy(fields));
	answer(s, json_pack("{s:b}", "ok", 1), -1);
}

static void session_run(struct session *s)
{
	struct stdio io = { .child = { -1, -1, -1 }, .in = -1, .out = -1, .err = -1 };
	struct timeval tv = { .tv_sec = CLIENT_IO_TIMEOUT_S };
	struct sync_msg msg = { .kind = SYNC_EXEC };
	json_t *req = read_request(s);
	char *payload = NULL;
	enum session_state st;

	if (req && json_object_get(req, "connect")) {
		serve_connect(s, req);
		goto out;
	}
	if (req && json_object_get(req, "event")) {
		serve_event(s, req);
		goto out;
	}
	if (s->client < 0)
		goto out;
	/* an HTTP server's socket comes non-blocking: we want blocking writes,
	 * bounded by a timeout, so a slow reader slows the command down */
	fcntl(s->client, F_SETFL, fcntl(s->client, F_GETFL) & ~O_NONBLOCK);
	setsockopt(s->client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (!req || !(payload = request_payload(s, req, &msg.payload_len))) {
		fail_frame(s, "invalid", "malformed exec request", 125);
		goto out;
	}
	if (stdio_make(&io, req) < 0) {
		fail_frame(s, "failed", "cannot make the exec's stdio", 125);
		goto out;
	}
	pthread_mutex_lock(&s->srv->lock);
	msg.exec_id = s->id = ++s->srv->next_id;
	pthread_mutex_unlock(&s->srv->lock);
	if (tell_pid1(s, &msg, payload, io.child, io.tty ? 0 : 3) < 0) {
		fail_frame(s, "instance_stopped", "the instance is not running", 125);
		goto out;
	}
	close_child_side(&io);
	/* PID 1 says whether it started; the user may hang up meanwhile */
	while ((st = state_of(s)) == S_STARTING) {
		struct pollfd p = { .fd = s->wake[0], .events = POLLIN };
		poll(&p, 1, -1);
	}
	if (st == S_FAILED) {
		fail_frame(s, code_name(&s->err), s->err.msg, exit_code_of(&s->err));
	} else if (st == S_ENDED) {
		fail_frame(s, "instance_stopped", "the instance stopped", 128 + SIGKILL);
	} else if (io.tty && s->master < 0) {
		fail_frame(s, "failed", "the sandbox sent no terminal", 125);
	} else {
		if (io.tty) {
			struct winsize ws = {
				.ws_row = (unsigned short)json_integer_value(json_object_get(req, "rows")),
				.ws_col = (unsigned short)json_integer_value(json_object_get(req, "cols")) };
			io.in = io.out = s->master;
			s->master = -1;
			if (ws.ws_row && ws.ws_col)
				ioctl(io.in, TIOCSWINSZ, &ws);
		}
		relay(s, &io);
	}
out:
	close_child_side(&io);
	if (io.in >= 0)
		close(io.in);
	if (io.out >= 0 && io.out != io.in)
		close(io.out);
	if (io.err >= 0)
		close(io.err);
	free(payload);
	json_decref(req);
}

static void *session_main(void *arg)
{
	struct session *s = arg;
	struct execserve *srv = s->srv;

	session_run(s);
	pthread_mutex_lock(&srv->lock);
	for (struct session **pp = &srv->live; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&srv->lock);
	if (s->client >= 0)
		close(s->client);
	if (s->master >= 0)
		close(s->master);
	close(s->conn);
	close(s->wake[0]);
	close(s->wake[1]);
	free(s);
	serve_release(srv);
	return NULL;
}

void execserve_accept(struct execserve *srv, int listen_fd)
{
	struct session *s;
	pthread_attr_t attr;
	pthread_t t;
	int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (conn < 0)
		return;
	if (!peer_is_us_or_root(conn) || !(s = calloc(1, sizeof *s))) {
		close(conn);
		return;
	}
	s->srv = srv;
	s->conn = conn;
	s->client = s->master = -1;
	if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		close(conn);
		free(s);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_mutex_lock(&srv->lock);
	s->next = srv->live;
	srv->live = s;
	srv->refs++;
	pthread_mutex_unlock(&srv->lock);
	if (pthread_create(&t, &attr, session_main, s) != 0) {
		shutdown(conn, SHUT_RDWR);	/* no request can come: it tidies up at once */
		session_main(s);
	}
	pthread_attr_destroy(&attr);
}
