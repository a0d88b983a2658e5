/* run.c — `aegis run` (and `aegix --cmd`): flags → sandbox spec → result. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"
#include "cli.h"

static const char run_usage[] =
	"usage: aegis run [options] [--] CMD [ARGS...]\n"
	"\n"
	"Run CMD in a fresh sandbox: own user, pid, mount, network, ipc, uts and\n"
	"cgroup namespaces; the host's /usr read-only; no network; no capabilities;\n"
	"a seccomp allowlist. Exits with CMD's status, 128+N if killed by signal N,\n"
	"124 on timeout, 125 on an aegis error, 126 if CMD cannot run, 127 if not found.\n"
	"\n"
	"options:\n"
	"  --workspace DIR       bind DIR read-write at /workspace (default: empty tmpfs)\n"
	"  --workspace-ro DIR    bind DIR read-only at /workspace\n"
	"  --env NAME=VALUE      set a variable (repeatable; the environment starts clean)\n"
	"  --cwd DIR             working directory inside (default /workspace)\n"
	"  --timeout DURATION    kill the sandbox after DURATION (30s, 500ms, 2m)\n"
	"  --memory SIZE         memory limit, no swap (default 1g)\n"
	"  --pids N              process/thread limit (default 512)\n"
	"  --tmp-size SIZE       size of /tmp and of an empty /workspace (default 256m)\n"
	"  --hostname NAME       hostname inside (default aegis)\n"
	"  --cgroup-parent PATH  create the run's cgroup below PATH (delegated cgroups)\n"
	"  --json                print one JSON result object on stdout; output is captured\n"
	"  --output-max SIZE     bytes of stdout/stderr kept with --json (default 1m)\n"
	"  -h, --help            this text\n";

enum { OPT_WORKSPACE = 256, OPT_WORKSPACE_RO, OPT_ENV, OPT_CWD, OPT_TIMEOUT, OPT_MEMORY,
       OPT_PIDS, OPT_TMP, OPT_HOSTNAME, OPT_CGROUP_PARENT, OPT_JSON, OPT_OUTPUT_MAX, OPT_CMD };

static const struct option run_options[] = {
	{ "workspace", required_argument, NULL, OPT_WORKSPACE },
	{ "workspace-ro", required_argument, NULL, OPT_WORKSPACE_RO },
	{ "env", required_argument, NULL, OPT_ENV },
	{ "cwd", required_argument, NULL, OPT_CWD },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "pids", required_argument, NULL, OPT_PIDS },
	{ "tmp-size", required_argument, NULL, OPT_TMP },
	{ "hostname", required_argument, NULL, OPT_HOSTNAME },
	{ "cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "output-max", required_argument, NULL, OPT_OUTPUT_MAX },
	{ "cmd", required_argument, NULL, OPT_CMD },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct run_flags {
	struct aegis_spec spec;
	char **env;
	size_t nenv;
	const char *cmd;	/* aegix --cmd */
	bool json;
};

static int parse_value(int opt, const char *arg, struct run_flags *f)
{
	struct aegis_spec *s = &f->spec;
	uint64_t v;

	switch (opt) {
	case OPT_WORKSPACE:
	case OPT_WORKSPACE_RO:
		if (s->workspace)
			return cli_usage_error("--workspace given twice");
		s->workspace = arg;
		s->workspace_ro = opt == OPT_WORKSPACE_RO;
		return 0;
	case OPT_ENV:
		if (!strchr(arg, '=') || arg[0] == '=')
			return cli_usage_error("--env: expected NAME=VALUE, got '%s'", arg);
		f->env[f->nenv++] = (char *)arg;
		return 0;
	case OPT_CWD: s->cwd = arg; return 0;
	case OPT_HOSTNAME: s->hostname = arg; return 0;
	case OPT_CGROUP_PARENT: s->cgroup_parent = arg; return 0;
	case OPT_JSON: f->json = true; return 0;
	case OPT_CMD: f->cmd = arg; return 0;
	case OPT_TIMEOUT:
		if (parse_duration_ms(arg, &v) < 0 || v == 0)
			return cli_usage_error("--timeout: not a positive duration: '%s' (e.g. 30s, 500ms, 2m)", arg);
		s->limits.wall_ms = v;
		return 0;
	case OPT_MEMORY:
	case OPT_TMP:
	case OPT_OUTPUT_MAX:
		if (parse_size(arg, &v) < 0 || v == 0)
			return cli_usage_error("--%s: not a positive size: '%s' (e.g. 512m, 1g)",
					       opt == OPT_MEMORY ? "memory" : opt == OPT_TMP ? "tmp-size" : "output-max", arg);
		if (opt == OPT_MEMORY) s->limits.memory_bytes = v;
		else if (opt == OPT_TMP) s->limits.disk_bytes = v;
		else s->capture_max = (size_t)v;
		return 0;
	case OPT_PIDS:
		if (parse_u64(arg, &v) < 0 || v == 0)
			return cli_usage_error("--pids: not a positive number: '%s'", arg);
		s->limits.pids = v;
		return 0;
	}
	return cli_usage_error("internal: unhandled option");
}

/* Parse options up to the command. Returns -1 to exit 0 (help), 125 on error, 0 ok. */
static int parse_flags(int argc, char **argv, struct run_flags *f, bool aegix)
{
	int opt;

	f->env = calloc((size_t)argc + 1, sizeof *f->env);
	if (!f->env)
		return cli_usage_error("out of memory");
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+h", run_options, NULL)) != -1) {
		if (opt == 'h') {
			fputs(run_usage, stdout);
			return -1;
		}
		if (opt == '?' || opt == ':') {
			if (optopt)
				return cli_usage_error("run: option '-%c' is unknown or needs a value", optopt);
			return cli_usage_error("run: option '%s' is unknown or needs a value", argv[optind - 1]);
		}
		if (opt == OPT_CMD && !aegix)
			return cli_usage_error("run: --cmd is for aegix; use 'aegis run -- CMD'");
		if (parse_value(opt, optarg, f) != 0)
			return EXIT_AEGIS_ERROR;
	}
	f->spec.env = f->env;
	return 0;
}

/* Captured output is bytes; JSON wants UTF-8: invalid bytes become U+FFFD. */
static json_t *json_bytes(const struct aegis_stream *s)
{
	json_t *j;
	char *clean;
	size_t o = 0;

	if (!s->data)
		return json_string("");
	if ((j = json_stringn(s->data, s->len)))
		return j;
	clean = malloc(s->len * 3 + 1);
	if (!clean)
		return json_string("");
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->data[i];
		if (c < 0x80 && c != 0) {
			clean[o++] = (char)c;
		} else {
			memcpy(clean + o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	j = json_stringn(clean, o);
	free(clean);
	return j ? j : json_string("");
}

static void print_json_result(const struct aegis_result *r)
{
	static const char *const ends[] = { "exited", "signaled", "timeout" };
	json_t *o = json_pack("{s:i, s:s, s:o, s:f, s:f, s:f, s:I, s:s, s:o, s:o, s:b, s:b}",
			      "exit_code", r->exit_code, "end", ends[r->end],
			      "signal", r->term_signal ? json_integer(r->term_signal) : json_null(),
			      "wall_ms", (double)r->wall_us / 1000.0,
			      "cpu_user_ms", (double)r->user_us / 1000.0,
			      "cpu_sys_ms", (double)r->sys_us / 1000.0,
			      "peak_memory_bytes", (json_int_t)r->peak_memory_bytes,
			      "cgroup", r->cgroup_mode ? r->cgroup_mode : "none",
			      "stdout", json_bytes(&r->out), "stderr", json_bytes(&r->err),
			      "stdout_truncated", r->out.truncated, "stderr_truncated", r->err.truncated);

	if (r->end == AEGIS_END_TIMEOUT)
		json_object_set_new(o, "limit", json_string("timeout"));
	json_dumpf(o, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(o);
}

static void print_json_error(const struct aegis_error *err, int status)
{
	json_t *o = json_pack("{s:i, s:{s:s, s:i}}", "exit_code", status, "error",
			      "message", err->msg, "errno", err->sys_errno);

	json_dumpf(o, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(o);
}

static int execute(struct run_flags *f)
{
	struct aegis_result res;
	struct aegis_error err = { 0 };
	int status;

	f->spec.capture = f->json;
	if (aegis_run(&f->spec, &res, &err) < 0) {
		status = cli_fail(&err);
		if (f->json)
			print_json_error(&err, status);
		return status;
	}
	if (f->json)
		print_json_result(&res);
	if (res.end == AEGIS_END_TIMEOUT)
		fprintf(stderr, "aegis: timeout: the sandbox was killed after %llu ms\n",
			(unsigned long long)f->spec.limits.wall_ms);
	aegis_result_free(&res);
	return res.exit_code;
}

int cmd_run(int argc, char **argv)
{
	struct run_flags f = { .spec = AEGIS_SPEC_DEFAULT };
	int r = parse_flags(argc, argv, &f, false);

	if (r == 0) {
		if (optind >= argc)
			r = cli_usage_error("run: no command given (usage: aegis run [options] -- CMD [ARGS...])");
		else {
			f.spec.argv = argv + optind;
			r = execute(&f);
		}
	}
	free(f.env);
	return r < 0 ? 0 : r;
}

/* `aegix --cmd "STRING"`: the original interface; STRING runs under sh -c. */
int cmd_aegix(int argc, char **argv)
{
	struct run_flags f = { .spec = AEGIS_SPEC_DEFAULT };
	int r = parse_flags(argc, argv, &f, true);
	char *sh[] = { "/bin/sh", "-c", NULL, NULL };

	if (r == 0) {
		if (!f.cmd && optind < argc) {
			f.spec.argv = argv + optind;
			r = execute(&f);
		} else if (!f.cmd) {
			r = cli_usage_error("aegix: give --cmd \"COMMAND\" (or -- CMD [ARGS...])");
		} else if (optind < argc) {
			r = cli_usage_error("aegix: --cmd and a trailing command cannot be combined");
		} else {
			sh[2] = (char *)f.cmd;
			f.spec.argv = sh;
			r = execute(&f);
		}
	}
	free(f.env);
	return r < 0 ? 0 : r;
}
