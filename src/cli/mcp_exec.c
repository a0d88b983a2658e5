/* mcp_exec.c — exec (a command in a running instance, through the API's
 * JSON exec: it runs to its end or its timeout) and logs (the tail of an
 * instance's output, optionally waiting a bounded time for new lines). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "../common/httpc.h"
#include "../common/logrecord.h"
#include "../common/util.h"
#include "cli.h"
#include "mcp.h"

#define EXEC_TIMEOUT_DEFAULT 30000
#define EXEC_READY_WAIT_MS 10000	/* for an instance still starting (or waking) */
#define LOGS_TAIL_DEFAULT 100
#define LOGS_QUIET_MS 250		/* after new output came: how long a pause ends the wait */

char *mcp_output_body(const char *out, bool out_cut, const char *err, bool err_cut, size_t max)
{
	char *body = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&body, &size);

	if (!f)
		return NULL;
	if (*out || out_cut)
		fprintf(f, "--- stdout ---\n%s%s", out, *out && out[strlen(out) - 1] != '\n' ? "\n" : "");
	if (out_cut)
		fprintf(f, "[stdout truncated: the first %zu bytes are shown]\n", max);
	if (*err || err_cut)
		fprintf(f, "--- stderr ---\n%s%s", err, *err && err[strlen(err) - 1] != '\n' ? "\n" : "");
	if (err_cut)
		fprintf(f, "[stderr truncated: the first %zu bytes are shown]\n", max);
	fclose(f);
	return body;
}

/* 409 from exec: the instance is not taking execs now. Worth waiting for
 * while it is starting (or was woken by this very exec); anything else is
 * the answer. */
static bool worth_waiting(struct mcp_server *s, const char *name)
{
	char path[128], why[MCP_WHY_MAX];
	json_t *info;
	const char *state;
	bool wait;
	int status;

	snprintf(path, sizeof path, "/v1/instances/%s", name);
	if (mcp_api(s, "GET", path, NULL, 10000, &info, &status, why, sizeof why) < 0)
		return false;
	state = json_string_value(json_object_get(info, "state"));
	wait = state && (!strcmp(state, "starting") || !strcmp(state, "running") || !strcmp(state, "stopped"));
	json_decref(info);
	return wait;
}

static json_t *exec_request(json_t *args, long long timeout_ms, char *why, size_t len)
{
	const char *cwd = mcp_arg_str(args, "cwd");
	json_t *req = json_pack("{s:O, s:I}", "argv", json_object_get(args, "argv"), "timeout_ms", (json_int_t)timeout_ms);
	json_t *env;

	if (cwd && cwd[0] != '/') {
		snprintf(why, len, "cwd: must be an absolute path inside the instance");
		return json_decref(req), NULL;
	}
	if (cwd)
		json_object_set_new(req, "cwd", json_string(cwd));
	if (json_object_get(args, "stdin"))
		json_object_set(req, "stdin", json_object_get(args, "stdin"));
	if (json_object_get(args, "env")) {
		if (!(env = mcp_env_list(json_object_get(args, "env"), why, len)))
			return json_decref(req), NULL;
		json_object_set_new(req, "env", env);
	}
	return req;
}

static json_t *exec_result(struct mcp_server *s, const char *name, json_t *r, size_t max, long long timeout_ms)
{
	const char *out = json_string_value(json_object_get(r, "stdout")) ?: "";
	const char *err = json_string_value(json_object_get(r, "stderr")) ?: "";
	const char *failed = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
	long long code = json_integer_value(json_object_get(r, "exit_code"));
	json_t *sig = json_object_get(r, "signal"), *o, *e, *res;
	bool ocut, ecut, timed_out = json_is_true(json_object_get(r, "timed_out"));
	char *body;

	if (failed)
		return mcp_fail("exec %s: %s (exit %lld)", name, failed, code);
	/* (the bytes may hold NULs: the lengths are the strings') */
	o = mcp_text(out, json_string_length(json_object_get(r, "stdout")), max, &ocut);
	e = mcp_text(err, json_string_length(json_object_get(r, "stderr")), max, &ecut);
	ocut |= json_is_true(json_object_get(r, "stdout_truncated"));
	ecut |= json_is_true(json_object_get(r, "stderr_truncated"));
	body = mcp_output_body(json_string_value(o), ocut, json_string_value(e), ecut, max);
	res = json_pack("{s:I, s:O, s:b, s:o, s:o, s:b, s:b}", "exit_code", (json_int_t)code, "signal",
			sig ? sig : json_null(), "timed_out", timed_out, "stdout", o, "stderr", e,
			"stdout_truncated", ocut, "stderr_truncated", ecut);
	if (timed_out)
		r = mcp_ok(s, res, body, "timed out: killed after %lld ms (exit %lld)", timeout_ms, code);
	else if (json_is_integer(sig))
		r = mcp_ok(s, res, body, "killed by signal %lld (exit %lld)", json_integer_value(sig), code);
	else
		r = mcp_ok(s, res, body, "exit %lld", code);
	free(body);
	return r;
}

static json_t *tool_exec(struct mcp_server *s, json_t *args)
{
	const char *name = mcp_arg_str(args, "name");
	long long timeout_ms = mcp_arg_int(args, "timeout_ms", EXEC_TIMEOUT_DEFAULT);
	size_t max = (size_t)mcp_arg_int(args, "max_bytes", MCP_OUTPUT_DEFAULT);
	uint64_t ready_by = now_us() + EXEC_READY_WAIT_MS * 1000ULL;
	struct timespec pause = { 0, 100 * 1000000 };
	char why[MCP_WHY_MAX], path[128];
	json_t *req, *out;
	int status;

	if (!mcp_name_ok(name, why, sizeof why))
		return mcp_fail("exec: %s", why);
	if (!(req = exec_request(args, timeout_ms, why, sizeof why)))
		return mcp_fail("exec %s: %s", name, why);
	snprintf(path, sizeof path, "/v1/instances/%s/exec", name);
	/* the answer comes when the command ends: give it its timeout and then some */
	while (mcp_api(s, "POST", path, req, (unsigned)timeout_ms + 15000, &out, &status, why, sizeof why) < 0) {
		if (status != 409 || now_us() > ready_by || !worth_waiting(s, name)) {
			json_decref(req);
			if (status == 404)
				return mcp_fail("exec %s: no instance of that name (instance_list shows them)", name);
			return mcp_fail("exec %s: %s", name, why);
		}
		nanosleep(&pause, NULL);
	}
	json_decref(req);
	req = exec_result(s, name, out, max, timeout_ms);
	json_decref(out);
	return req;
}

/* The records read so far, the oldest dropped to stay within max bytes. */
struct tail {
	json_t *records;	/* [[stream, text, t]...] */
	size_t bytes, max;
	bool truncated, fresh;	/* older output left out; new output came while waiting */
	uint64_t last_t;		/* the newest record's time */
};

static void tail_add(struct tail *t, json_t *rec, uint64_t asked_ns)
{
	const char *stream = json_string_value(json_object_get(rec, "s"));
	json_t *log = json_object_get(rec, "log"), *dropped = json_object_get(rec, "dropped");
	uint64_t at = (uint64_t)json_integer_value(json_object_get(rec, "t"));
	char lost[96];
	bool err = stream && !strcmp(stream, "stderr");

	if (dropped) {
		snprintf(lost, sizeof lost, "[%lld bytes of %s were lost here]\n", json_integer_value(dropped),
			 err ? "stderr" : "stdout");
		log = json_string(lost);
	} else if (!json_is_string(log)) {
		return;
	} else {
		json_incref(log);
	}
	t->bytes += json_string_length(log);
	json_array_append_new(t->records, json_pack("[b, o, I]", err, log, (json_int_t)at));
	t->last_t = at > t->last_t ? at : t->last_t;
	t->fresh |= asked_ns && at >= asked_ns;
	while (t->bytes > t->max && json_array_size(t->records) > 1) {
		t->bytes -= json_string_length(json_array_get(json_array_get(t->records, 0), 1));
		json_array_remove(t->records, 0);
		t->truncated = true;
	}
}

/* Reads on the stream block until deadline at most (also those inside
 * the chunked framing): false once it has passed. */
static bool time_left(struct httpc_stream *hs, uint64_t deadline)
{
	uint64_t now = now_us(), left = deadline > now ? deadline - now : 0;
	struct timeval tv = { .tv_sec = (time_t)(left / 1000000), .tv_usec = (suseconds_t)(left % 1000000) };

	if (left < 1000)
		return false;
	return setsockopt(hs->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0;
}

/* Read records until the stream ends or (follow) the wait is over. 1 when
 * the stream ended (a followed instance has ended), 0, -1 with why. */
static int read_records(struct httpc_stream *hs, struct tail *t, uint64_t deadline, uint64_t asked_ns,
			char *why, size_t len)
{
	struct aegis_error err = { 0 };
	size_t have = 0, cap = 65536;
	char *buf = malloc(cap);
	ssize_t n = 0;
	int rc = 0;

	if (!buf)
		return snprintf(why, len, "out of memory"), -1;
	for (;;) {
		/* once new output came, a short quiet ends the wait */
		uint64_t quiet = now_us() + LOGS_QUIET_MS * 1000ULL, until = t->fresh && quiet < deadline ? quiet : deadline;
		char *start = buf, *nl;
		if (!time_left(hs, until)) {
			n = 1;	/* the wait is over, not the stream */
			break;
		}
		if ((n = httpc_stream_read(hs, buf + have, cap - have, &err)) < 0 && now_us() + 1000 >= until) {
			n = 1;	/* the wait is over, not the stream */
			break;
		}
		if (n <= 0)
			break;
		have += (size_t)n;
		while ((nl = memchr(start, '\n', have - (size_t)(start - buf)))) {
			json_t *rec = json_loadb(start, (size_t)(nl - start), JSON_ALLOW_NUL, NULL);
			if (rec)
				tail_add(t, rec, asked_ns);
			json_decref(rec);
			start = nl + 1;
		}
		have -= (size_t)(start - buf);
		memmove(buf, start, have);
		if (have == cap) {
			char *grown = cap < (4u << 20) ? realloc(buf, cap *= 2) : NULL;
			if (!grown) {
				snprintf(why, len, "aegisd sent a log record that is too long");
				rc = -1;
				break;
			}
			buf = grown;
		}
	}
	if (rc == 0 && n < 0) {
		snprintf(why, len, "%s", err.msg);
		rc = -1;
	} else if (rc == 0 && n == 0) {
		rc = 1;
	}
	free(buf);
	return rc;
}

/* The records as text, stderr's lines marked; both streams apart too. */
static json_t *logs_result(struct mcp_server *s, const char *name, struct tail *t, bool ended, bool follow)
{
	char *text = NULL, *outs = NULL, *errs = NULL, since[48];
	size_t tl = 0, ol = 0, el = 0, i;
	FILE *f = open_memstream(&text, &tl), *fo = open_memstream(&outs, &ol), *fe = open_memstream(&errs, &el);
	bool mid[2] = { false, false };
	json_t *rec, *res;

	if (!f || !fo || !fe) {
		if (f)
			fclose(f), free(text);
		if (fo)
			fclose(fo), free(outs);
		if (fe)
			fclose(fe), free(errs);
		return mcp_fail("logs %s: out of memory", name);
	}
	json_array_foreach(t->records, i, rec) {
		int err = json_is_true(json_array_get(rec, 0));
		const char *log = json_string_value(json_array_get(rec, 1));
		for (const char *p = log; *p;) {
			const char *nl = strchr(p, '\n');
			size_t k = nl ? (size_t)(nl - p) + 1 : strlen(p);
			fprintf(f, "%s%.*s", err && !mid[err] ? "[stderr] " : "", (int)k, p);
			mid[err] = !nl;
			p += k;
		}
		fputs(log, err ? fe : fo);
	}
	fclose(f);
	fclose(fo);
	fclose(fe);
	/* "at or after": one nanosecond on, so the next call gets only newer ones */
	snprintf(since, sizeof since, "%llu.%09llu", (unsigned long long)((t->last_t + 1) / 1000000000),
		 (unsigned long long)((t->last_t + 1) % 1000000000));
	res = json_pack("{s:s, s:s, s:s, s:b, s:I, s:s?, s:b}", "name", name, "stdout", outs, "stderr", errs,
			"truncated", t->truncated, "records", (json_int_t)json_array_size(t->records),
			"next_since", t->last_t ? since : NULL, "ended", ended && follow);
	res = mcp_ok(s, res, text, "%s: %zu record%s%s%s%s", name, json_array_size(t->records),
		     json_array_size(t->records) == 1 ? "" : "s",
		     t->truncated ? " (older output left out: max_bytes)" : "",
		     follow && !t->fresh ? ", nothing new while waiting" : "",
		     ended && follow ? ", the instance has ended" : "");
	free(text);
	free(outs);
	free(errs);
	return res;
}

/* An answer that is not 200: aegisd's error, one line. */
static void stream_error(struct httpc_stream *hs, char *why, size_t len)
{
	struct aegis_error err = { 0 };
	char body[8192];
	size_t have = 0;
	ssize_t n;
	json_t *j, *e;

	while (have < sizeof body - 1 && (n = httpc_stream_read(hs, body + have, sizeof body - 1 - have, &err)) > 0)
		have += (size_t)n;
	body[have] = '\0';
	j = json_loads(body, 0, NULL);
	e = json_object_get(j, "error");
	if (json_string_value(json_object_get(e, "message")))
		snprintf(why, len, "%s%s%s", json_string_value(json_object_get(e, "field")) ?: "",
			 json_object_get(e, "field") ? ": " : "", json_string_value(json_object_get(e, "message")));
	else
		snprintf(why, len, "aegisd answered HTTP %d", hs->status);
	json_decref(j);
}

static json_t *tool_logs(struct mcp_server *s, json_t *args)
{
	const char *name = mcp_arg_str(args, "name"), *since = mcp_arg_str(args, "since");
	const char *stream = mcp_arg_str(args, "stream");
	long long wait_ms = mcp_arg_int(args, "wait_ms", 0);
	struct tail t = { .records = json_array(), .max = (size_t)mcp_arg_int(args, "max_bytes", MCP_OUTPUT_DEFAULT) };
	struct aegis_error err = { 0 };
	struct httpc_stream hs;
	struct timespec now;
	char why[MCP_WHY_MAX], path[256], from[48] = "";
	uint64_t ns, asked_ns;
	json_t *res;
	int ended;

	if (!mcp_name_ok(name, why, sizeof why))
		return json_decref(t.records), mcp_fail("logs: %s", why);
	if (since && logrecord_time_parse(since, &ns) < 0)
		return json_decref(t.records), mcp_fail("logs: since: not unix seconds (1712345678.25) nor RFC 3339 "
							"(2024-04-05T12:00:00Z): \"%.60s\"", since);
	if (since)
		snprintf(from, sizeof from, "&since=%llu.%09llu", (unsigned long long)(ns / 1000000000),
			 (unsigned long long)(ns % 1000000000));
	snprintf(path, sizeof path, "/v1/instances/%s/logs?format=ndjson&tail=%lld%s%s%s%s", name,
		 mcp_arg_int(args, "tail", LOGS_TAIL_DEFAULT), from, wait_ms ? "&follow=true" : "",
		 stream && !strcmp(stream, "stderr") ? "&stdout=false" : "",
		 stream && !strcmp(stream, "stdout") ? "&stderr=false" : "");
	clock_gettime(CLOCK_REALTIME, &now);
	asked_ns = wait_ms ? (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec : 0;
	if (daemon_start(s->sock, &err) < 0 || httpc_stream_open(s->sock, path, &hs, &err) < 0)
		return json_decref(t.records), mcp_fail("logs %s: %s", name, err.msg);
	if (hs.status != 200) {
		stream_error(&hs, why, sizeof why);
		httpc_stream_close(&hs);
		json_decref(t.records);
		if (hs.status == 404)
			return mcp_fail("logs %s: no instance of that name (instance_list shows them)", name);
		return mcp_fail("logs %s: %s", name, why);
	}
	ended = read_records(&hs, &t, now_us() + (uint64_t)(wait_ms ? wait_ms : 30000) * 1000, asked_ns,
			     why, sizeof why);
	httpc_stream_close(&hs);
	res = ended < 0 && !json_array_size(t.records) ? mcp_fail("logs %s: %s", name, why)
						       : logs_result(s, name, &t, ended == 1, wait_ms > 0);
	json_decref(t.records);
	return res;
}

static const char exec_schema[] = "{"
	"\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"name\", \"argv\"],"
	"\"properties\": {"
	" \"name\": {\"type\": \"string\", \"maxLength\": 63, \"description\": \"the instance\"},"
	" \"argv\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"minItems\": 1, \"maxItems\": 4096,"
	"  \"description\": \"the command and its arguments, no shell: [\\\"sh\\\", \\\"-c\\\", \\\"make test\\\"] for one\"},"
	" \"env\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}, \"description\": "
	"\"variables over the instance's environment\"},"
	" \"cwd\": {\"type\": \"string\", \"maxLength\": 4096, \"description\": \"absolute working directory (default: "
	"the instance's)\"},"
	" \"stdin\": {\"type\": \"string\", \"maxLength\": 262144, \"description\": \"the command's whole standard input\"},"
	" \"timeout_ms\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 3600000, \"description\": \"kill it after "
	"this long (default 30000)\"},"
	" \"max_bytes\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1048576, \"description\": \"bytes of stdout "
	"and of stderr returned (default 65536); more is cut and flagged\"}"
	"}}";

static const char logs_schema[] = "{"
	"\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"name\"],"
	"\"properties\": {"
	" \"name\": {\"type\": \"string\", \"maxLength\": 63, \"description\": \"the instance\"},"
	" \"tail\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 10000, \"description\": \"the last N lines of "
	"each stream (default 100; 0: all that is kept, within max_bytes)\"},"
	" \"since\": {\"type\": \"string\", \"maxLength\": 64, \"description\": \"only output from this time on: unix "
	"seconds (a previous answer's next_since) or RFC 3339\"},"
	" \"stream\": {\"type\": \"string\", \"enum\": [\"both\", \"stdout\", \"stderr\"], \"description\": \"default both\"},"
	" \"wait_ms\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 60000, \"description\": \"wait up to this long "
	"for new output (returning soon after it comes, or when the instance ends); default 0: do not wait\"},"
	" \"max_bytes\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1048576, \"description\": \"bytes of output "
	"returned (default 65536); the oldest is left out beyond it\"}"
	"}}";

const struct mcp_tool mcp_exec_tools[] = {
	{ "exec", "Run a command in an instance",
	  "Run a command inside a running instance (as a child of its PID 1, under the same isolation and policy) "
	  "and wait for it to end or time out. Returns exit_code, stdout, stderr (bounded: *_truncated say when cut) "
	  "and timed_out. A stopped or idle-paused instance is woken first.",
	  exec_schema, MCP_OPEN_WORLD, tool_exec },
	{ "logs", "Read an instance's output",
	  "The last lines of an instance's stdout and stderr (its main command's), oldest first, stderr lines marked "
	  "[stderr]. wait_ms waits for new output; next_since in the answer, given back as since, gets only newer "
	  "output next time.",
	  logs_schema, MCP_READ_ONLY, tool_logs },
	{ 0 },
};
