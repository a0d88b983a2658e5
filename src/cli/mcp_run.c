/* mcp_run.c — the run tool: one command in a fresh sandbox, what
 * `aegis run --json` does, without the daemon.
 *
 * The tool's arguments become `aegis run` flags, parsed and checked by the
 * CLI's own code (run_flags.c), and the engine runs in a child process
 * whose stdout is a pipe carrying the --json result. The child keeps the
 * server clear of the engine's state (signals, fds, a crash), and the
 * server honours the timeout itself: a child that outlives it by
 * RUN_GRACE_MS is killed, its sandbox with it (PR_SET_PDEATHSIG) and its
 * cgroup removed. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/secretinject.h"
#include "../common/util.h"
#include "../common/workspaces.h"
#include "image_use.h"
#include "mcp.h"
#include "run_flags.h"

#define RUN_TIMEOUT_DEFAULT 30000
#define RUN_GRACE_MS 10000		/* setup and teardown beyond the command's own timeout */
#define RUN_STDERR_MAX 65536

/* The last line of what fd holds (a memfd, a pipe's capture): the message,
 * without "aegis: ". */
static void last_line(const char *text, size_t n, char *why, size_t len)
{
	const char *end = text + n, *start;

	while (end > text && (end[-1] == '\n' || end[-1] == ' '))
		end--;
	for (start = end; start > text && start[-1] != '\n'; start--)
		;
	if (end - start > 7 && !strncmp(start, "aegis: ", 7))
		start += 7;
	snprintf(why, len, "%.*s", (int)(end - start), start);
}

int mcp_image(const char *ref, char *canon, size_t clen, char *why, size_t len)
{
	struct image_root img = { .lock_fd = -1 };
	struct aegis_error err = { 0 };
	int saved = fcntl(2, F_DUPFD_CLOEXEC, 3), cap = memfd_create("aegis-pull", MFD_CLOEXEC), r;
	char said[1024];
	ssize_t n = 0;

	/* a failed pull says why on stderr: catch that line for the model */
	if (saved >= 0 && cap >= 0)
		dup2(cap, 2);
	r = image_use(ref, true, &img, &err);
	if (saved >= 0 && cap >= 0) {
		dup2(saved, 2);
		n = pread(cap, said, sizeof said - 1, 0);
	}
	if (saved >= 0)
		close(saved);
	if (cap >= 0)
		close(cap);
	if (r == 0) {
		snprintf(canon, clen, "%s", img.ref);
		image_root_free(&img);
		return 0;
	}
	if (r < 0) {
		snprintf(why, len, "image %s: %s", ref, err.msg);
	} else {
		char line[600];
		last_line(said, n > 0 ? (size_t)n : 0, line, sizeof line);
		snprintf(why, len, "image %s: the pull failed%s%s", ref, *line ? ": " : "", line);
	}
	return -1;
}

/* `aegis run` arguments, strdup'd. */
struct flags {
	char **v;
	size_t n, cap;
	bool oom;
};

static void add(struct flags *f, const char *a, const char *b)
{
	for (int k = 0; k < 2; k++) {
		const char *s = k ? b : a;
		if (!s)
			continue;
		if (f->n + 2 > f->cap) {
			char **grown = realloc(f->v, (f->cap = f->cap * 2 + 16) * sizeof *grown);
			if (!grown) {
				f->oom = true;
				return;
			}
			f->v = grown;
		}
		if (!(f->v[f->n] = strdup(s)))
			f->oom = true;
		else
			f->v[++f->n] = NULL;
	}
}

static void flags_free(struct flags *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->v[i]);
	free(f->v);
}

/* The tool's arguments as `aegis run` flags; the workspace, a host
 * directory, opened into *ws_fd. -1 with why. */
static int build(struct mcp_server *s, json_t *args, struct flags *f, int *ws_fd, char *why, size_t len)
{
	static const char *const sizes[] = { "memory", "disk", NULL };
	const char *ws = mcp_arg_str(args, "workspace"), *image = mcp_arg_str(args, "image");
	char num[64], real[4096], canon[512];
	json_t *v;
	const char *key;
	size_t i;

	add(f, "run", "--json");
	snprintf(num, sizeof num, "%lld", mcp_arg_int(args, "max_bytes", MCP_OUTPUT_DEFAULT));
	add(f, "--output-max", num);
	snprintf(num, sizeof num, "%lldms", mcp_arg_int(args, "timeout_ms", RUN_TIMEOUT_DEFAULT));
	add(f, "--timeout", num);
	for (i = 0; sizes[i]; i++) {
		snprintf(num, sizeof num, "--%s", sizes[i]);
		add(f, mcp_arg_str(args, sizes[i]) ? num : NULL, mcp_arg_str(args, sizes[i]));
	}
	if ((v = json_object_get(args, "cpus"))) {
		snprintf(num, sizeof num, "%g", json_number_value(v));
		add(f, "--cpus", num);
	}
	if ((v = json_object_get(args, "pids"))) {
		snprintf(num, sizeof num, "%lld", json_integer_value(v));
		add(f, "--pids", num);
	}
	/* where aegisd puts its instances' cgroups (a delegated one, rootless)
	 * is where runs go too */
	if (getenv("AEGIS_CGROUP_PARENT") && *getenv("AEGIS_CGROUP_PARENT"))
		add(f, "--cgroup-parent", getenv("AEGIS_CGROUP_PARENT"));
	add(f, mcp_arg_str(args, "cwd") ? "--cwd" : NULL, mcp_arg_str(args, "cwd"));
	add(f, mcp_arg_str(args, "policy") ? "--policy" : NULL, mcp_arg_str(args, "policy"));
	add(f, mcp_arg_str(args, "net") ? "--net" : NULL, mcp_arg_str(args, "net"));
	add(f, mcp_arg_str(args, "backend") ? "--backend" : NULL, mcp_arg_str(args, "backend"));
	json_array_foreach(json_object_get(args, "allow"), i, v)
		add(f, "--allow", json_string_value(v));
	json_object_foreach(json_object_get(args, "env"), key, v) {
		char *kv;
		if (!*key || strchr(key, '='))
			return snprintf(why, len, "env: \"%.80s\" is not a variable name", key), -1;
		if (asprintf(&kv, "%s=%s", key, json_string_value(v)) < 0)
			return snprintf(why, len, "out of memory"), -1;
		add(f, "--env", kv);
		free(kv);
	}
	json_array_foreach(json_object_get(args, "secrets"), i, v) {
		if (!secret_request_valid(json_string_value(v)))
			return snprintf(why, len, "secrets[%zu]: expected NAME, NAME:env or NAME:file, got \"%.80s\"", i,
					json_string_value(v)), -1;
		add(f, "--secret", json_string_value(v));
	}
	if (ws && !workspace_is_name(ws)) {
		if ((*ws_fd = mcp_root_open(s, ws, real, sizeof real, why, len)) < 0)
			return -1;
		ws = real;
	}
	add(f, ws ? (mcp_arg_bool(args, "workspace_ro", false) ? "--workspace-ro" : "--workspace") : NULL, ws);
	/* pulled here, before the clock of the run starts */
	if (image && strcmp(image, "host")) {
		if (mcp_image(image, canon, sizeof canon, why, len) < 0)
			return -1;
		add(f, "--image", canon);
	}
	add(f, "--", NULL);
	json_array_foreach(json_object_get(args, "argv"), i, v)
		add(f, json_string_value(v), NULL);
	if (f->oom)
		return snprintf(why, len, "out of memory"), -1;
	return 0;
}

/* In the child: `aegis run` as the CLI would, stdout being the pipe. */
__attribute__((noreturn))
static void child(struct mcp_server *s, struct flags *fl, int ws_fd, int out, int err)
{
	struct run_flags f = { .spec = AEGIS_SPEC_DEFAULT };
	int r;

	/* the protocol is the server's alone */
	close(s->in_fd);
	close(s->out_fd);
	if (dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(EXIT_AEGIS_ERROR);
	signal(SIGPIPE, SIG_DFL);
	if ((r = run_flags_parse((int)fl->n, fl->v, &f, false)) != 0)
		_exit(r < 0 ? EXIT_AEGIS_ERROR : r);
	if (f.policy.net_mode && !strcmp(f.policy.net_mode, "host")) {
		fprintf(stderr, "aegis: network mode \"host\" is not available through MCP (use the CLI)\n");
		_exit(EXIT_AEGIS_ERROR);
	}
	f.spec.argv = fl->v + optind;
	/* exactly the directory checked beneath the root, not its path again */
	if (ws_fd >= 0)
		f.spec.workspace_fd = ws_fd;
	r = run_execute(&f);
	fflush(stdout);
	_exit(r);
}

struct capture {
	char *data;
	size_t len, cap, max;
	int fd;
};

/* Read what came; false at EOF (or once over the bound, the rest dropped). */
static bool capture_read(struct capture *c)
{
	char buf[65536];
	ssize_t n = read(c->fd, buf, sizeof buf);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	if (c->len + (size_t)n + 1 > c->cap && c->len + (size_t)n <= c->max) {
		size_t want = (c->len + (size_t)n + 1) * 2;
		char *grown = realloc(c->data, want);
		if (!grown)
			return true;
		c->data = grown;
		c->cap = want;
	}
	if (c->len + (size_t)n + 1 <= c->cap) {
		memcpy(c->data + c->len, buf, (size_t)n);
		c->len += (size_t)n;
		c->data[c->len] = '\0';
	}
	return true;
}

/* Both pipes until they close or deadline; false when it passed. */
static bool collect(struct capture *c, uint64_t deadline)
{
	bool open[2] = { true, true };

	while (open[0] || open[1]) {
		struct pollfd p[2] = { { .fd = open[0] ? c[0].fd : -1, .events = POLLIN },
				       { .fd = open[1] ? c[1].fd : -1, .events = POLLIN } };
		uint64_t now = now_us();
		int r;
		if (now >= deadline)
			return false;
		r = poll(p, 2, (int)((deadline - now) / 1000) + 1);
		if (r < 0 && errno != EINTR)
			return false;
		for (int i = 0; i < 2; i++)
			if (open[i] && p[i].revents)
				open[i] = capture_read(&c[i]);
	}
	return true;
}

static json_t *result(struct mcp_server *s, json_t *r, size_t max, long long timeout_ms)
{
	static const char *const keep[] = { "exit_code", "end", "signal", "limit", "wall_ms", "cpu_user_ms",
					    "cpu_sys_ms", "peak_memory_bytes", "execs", NULL };
	const char *out = json_string_value(json_object_get(r, "stdout")) ?: "";
	const char *err = json_string_value(json_object_get(r, "stderr")) ?: "";
	const char *end = json_string_value(json_object_get(r, "end")) ?: "exited";
	const char *limit = json_string_value(json_object_get(r, "limit"));
	long long code = json_integer_value(json_object_get(r, "exit_code"));
	json_t *res = json_object(), *o, *e;
	bool ocut, ecut;
	char *body;

	for (size_t i = 0; keep[i]; i++)
		if (json_object_get(r, keep[i]))
			json_object_set(res, keep[i], json_object_get(r, keep[i]));
	/* (the bytes may hold NULs: the lengths are the strings') */
	o = mcp_text(out, json_string_length(json_object_get(r, "stdout")), max, &ocut);
	e = mcp_text(err, json_string_length(json_object_get(r, "stderr")), max, &ecut);
	ocut |= json_is_true(json_object_get(r, "stdout_truncated"));
	ecut |= json_is_true(json_object_get(r, "stderr_truncated"));
	body = mcp_output_body(json_string_value(o), ocut, json_string_value(e), ecut, max);
	json_object_set_new(res, "timed_out", json_boolean(!strcmp(end, "timeout")));
	json_object_set_new(res, "stdout", o);
	json_object_set_new(res, "stderr", e);
	json_object_set_new(res, "stdout_truncated", json_boolean(ocut));
	json_object_set_new(res, "stderr_truncated", json_boolean(ecut));
	if (!strcmp(end, "timeout"))
		r = mcp_ok(s, res, body, "timed out: killed after %lld ms (exit %lld)", timeout_ms, code);
	else if (!strcmp(end, "limit"))
		r = mcp_ok(s, res, body, "limit %s hit: the sandbox was stopped (exit %lld)", limit ? limit : "?", code);
	else if (!strcmp(end, "signaled"))
		r = mcp_ok(s, res, body, "killed by signal %lld (exit %lld)",
			   json_integer_value(json_object_get(r, "signal")), code);
	else
		r = mcp_ok(s, res, body, "exit %lld in %.0f ms%s%s", code, json_number_value(json_object_get(r, "wall_ms")),
			   limit ? ", limit hit: " : "", limit ? limit : "");
	free(body);
	return r;
}

/* Fork the run, gather its answer within the deadline, reap it. */
static json_t *supervise(struct mcp_server *s, struct flags *fl, int ws_fd, size_t max, long long timeout_ms)
{
	struct capture c[2] = { { .max = 3 * MCP_OUTPUT_MAX * 3 }, { .max = RUN_STDERR_MAX } };
	int po[2], pe[2], status;
	char why[MCP_WHY_MAX];
	json_t *r = NULL, *res;
	bool in_time;
	pid_t pid;

	if (pipe2(po, O_CLOEXEC) < 0)
		return mcp_fail("run: pipe: %s", strerror(errno));
	if (pipe2(pe, O_CLOEXEC) < 0) {
		close(po[0]), close(po[1]);
		return mcp_fail("run: pipe: %s", strerror(errno));
	}
	if ((pid = fork()) == 0)
		child(s, fl, ws_fd, po[1], pe[1]);
	close(po[1]);
	close(pe[1]);
	c[0].fd = po[0];
	c[1].fd = pe[0];
	in_time = pid > 0 && collect(c, now_us() + (uint64_t)(timeout_ms + RUN_GRACE_MS) * 1000);
	if (pid > 0 && !in_time)
		kill(pid, SIGKILL);	/* the sandbox dies with it (PR_SET_PDEATHSIG) */
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (pid > 0 && !in_time)
		aegis_cleanup_killed_run(pid, getenv("AEGIS_CGROUP_PARENT"));
	close(po[0]);
	close(pe[0]);
	if (pid < 0)
		res = mcp_fail("run: fork: %s", strerror(errno));
	else if (!in_time)
		res = mcp_fail("run: no answer %d ms after the timeout: the run was killed", RUN_GRACE_MS);
	else if ((r = c[0].data ? json_loads(c[0].data, JSON_ALLOW_NUL, NULL) : NULL) &&
		 json_string_value(json_object_get(json_object_get(r, "error"), "message")))
		res = mcp_fail("run: %s (exit %lld)", json_string_value(json_object_get(json_object_get(r, "error"),
			"message")), json_integer_value(json_object_get(r, "exit_code")));
	else if (r)
		res = result(s, r, max, timeout_ms);
	else {
		last_line(c[1].data ? c[1].data : "", c[1].len, why, sizeof why);
		res = mcp_fail("run: %s", *why ? why : WIFSIGNALED(status) ? "the run crashed" : "the run gave no result");
	}
	json_decref(r);
	free(c[0].data);
	free(c[1].data);
	return res;
}

static json_t *tool_run(struct mcp_server *s, json_t *args)
{
	struct flags fl = { 0 };
	char why[MCP_WHY_MAX];
	int ws_fd = -1;
	json_t *r;

	if (build(s, args, &fl, &ws_fd, why, sizeof why) < 0)
		r = mcp_fail("run: %s", why);
	else
		r = supervise(s, &fl, ws_fd, (size_t)mcp_arg_int(args, "max_bytes", MCP_OUTPUT_DEFAULT),
			      mcp_arg_int(args, "timeout_ms", RUN_TIMEOUT_DEFAULT));
	if (ws_fd >= 0)
		close(ws_fd);
	flags_free(&fl);
	return r;
}

static const char run_schema[] = "{"
	"\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"argv\"],"
	"\"properties\": {"
	" \"argv\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"minItems\": 1, \"maxItems\": 4096,"
	"  \"description\": \"the command and its arguments, no shell: [\\\"python3\\\", \\\"-c\\\", \\\"print(1)\\\"], or "
	"[\\\"sh\\\", \\\"-c\\\", \\\"...\\\"] for a shell line\"},"
	" \"image\": {\"type\": \"string\", \"maxLength\": 512, \"description\": \"an OCI image reference such as "
	"python:3.12-slim (pulled if missing), or host (default: the host's system directories, read-only)\"},"
	" \"workspace\": {\"type\": \"string\", \"maxLength\": 4096, \"description\": \"mounted at /workspace: a named "
	"workspace, or a host directory if the server allows one (--workspace-root). Default: an empty, "
	"throw-away /workspace\"},"
	" \"workspace_ro\": {\"type\": \"boolean\", \"description\": \"mount the workspace read-only\"},"
	" \"env\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}, \"description\": "
	"\"environment variables (it starts clean)\"},"
	" \"cwd\": {\"type\": \"string\", \"maxLength\": 4096, \"description\": \"absolute working directory (default "
	"/workspace, or the image's)\"},"
	" \"policy\": {\"type\": \"string\", \"maxLength\": 4096, \"description\": \"default, strict, or the absolute path "
	"of a policy file (network mode host is refused)\"},"
	" \"secrets\": {\"type\": \"array\", \"maxItems\": 64, \"items\": {\"type\": \"string\", \"maxLength\": 140},"
	"  \"description\": \"stored secrets to inject, by name: NAME (environment variable) or NAME:file "
	"(/run/secrets/NAME); their values are redacted from the output\"},"
	" \"timeout_ms\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 3600000, \"description\": \"wall-clock "
	"limit (default 30000)\"},"
	" \"memory\": {\"type\": \"string\", \"maxLength\": 32, \"description\": \"memory limit, e.g. 512m (default 1g)\"},"
	" \"cpus\": {\"type\": \"number\", \"minimum\": 0.001, \"maximum\": 1024, \"description\": \"CPU bandwidth, "
	"e.g. 0.5\"},"
	" \"pids\": {\"type\": \"integer\", \"minimum\": 2, \"maximum\": 1000000, \"description\": \"processes and "
	"threads (default 512)\"},"
	" \"disk\": {\"type\": \"string\", \"maxLength\": 32, \"description\": \"size of each writable layer (/tmp, an "
	"empty /workspace), e.g. 256m\"},"
	" \"net\": {\"type\": \"string\", \"enum\": [\"none\", \"allow\"], \"description\": \"none (default: loopback "
	"only) or allow: out through a filtering proxy to the allow rules only\"},"
	" \"allow\": {\"type\": \"array\", \"maxItems\": 256, \"items\": {\"type\": \"string\", \"maxLength\": 260},"
	"  \"description\": \"with net allow: destinations let out, as name[:port], *.name, an IP or a CIDR\"},"
	" \"backend\": {\"type\": \"string\", \"enum\": [\"ns\", \"vm\"], \"description\": \"where it runs: ns "
	"(namespaces on the host's kernel; the default unless the server's AEGIS_BACKEND says vm) or vm (the same "
	"sandbox inside a QEMU microvm guest with its own kernel: slower to start, a boundary more)\"},"
	" \"max_bytes\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1048576, \"description\": \"bytes of stdout "
	"and of stderr returned (default 65536); more is cut and flagged\"}"
	"}}";

const struct mcp_tool mcp_run_tools[] = {
	{ "run", "Run a command in a fresh sandbox",
	  "Run one command in a new, isolated, throw-away Linux sandbox (own namespaces, no network unless net is "
	  "allow, no capabilities, seccomp, memory/pids/time limits) and return its exit_code, stdout, stderr "
	  "(bounded: *_truncated say when cut), which limit stopped it if any (limit, timed_out), and its duration. "
	  "Nothing persists after it unless written to a named workspace.",
	  run_schema, MCP_OPEN_WORLD, tool_run },
	{ 0 },
};
