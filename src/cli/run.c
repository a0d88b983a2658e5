/* run.c — `aegis run` (and `aegix --cmd`): flags → sandbox spec → result. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"
#include "run_flags.h"
#include "../common/error.h"
#include "../common/paths.h"
#include "../common/secretinject.h"
#include "../common/workspaces.h"
#include "image_use.h"
#include "../vm/vm.h"

static const char run_usage[] =
	"usage: aegis run [options] [--] CMD [ARGS...]\n"
	"\n"
	"Run CMD in a fresh sandbox: own user, pid, mount, network, ipc, uts and\n"
	"cgroup namespaces; the host's /usr read-only; no network; no capabilities;\n"
	"a seccomp allowlist. Exits with CMD's status, 128+N if killed by signal N,\n"
	"124 on timeout, 125 on an aegis error, 126 if CMD cannot run, 127 if not found.\n"
	"\n"
	"options:\n"
	"  --workspace DIR|NAME  bind DIR, or the named workspace NAME (aegis workspace),\n"
	"                        read-write at /workspace (default: empty tmpfs); DIR has\n"
	"                        a '/' or starts with '.' or '~' (./code, not code)\n"
	"  --workspace-ro DIR|NAME  the same, read-only\n"
	"  --workspace-mode M    rw, ro, or overlay: work on a copy-on-write layer; the\n"
	"                        changes land in --artifacts for review (aegis apply DIR)\n"
	"  --artifacts DIR       write stdout, stderr, result.json, audit.jsonl and the\n"
	"                        workspace changes to DIR (new or empty)\n"
	"  --env NAME=VALUE      set a variable (repeatable; the environment starts clean)\n"
	"  --secret NAME[:env]   NAME=value from the secrets store in the environment\n"
	"                        (aegis secret set NAME); repeatable, each name once\n"
	"  --secret NAME:file    the value as the file /run/secrets/NAME instead (0400,\n"
	"                        on a read-only tmpfs), not in the environment\n"
	"  --cwd DIR             working directory inside (default: the image's, else /workspace)\n"
	"  --image REF           an OCI image as the root (pulled if missing; default: host,\n"
	"                        the host's /usr read-only); its Env and WorkingDir are defaults\n"
	"  --policy NAME|FILE    policy: default, strict, or a JSON policy file\n"
	"  --audit FILE          append this run's audit events to FILE (JSON Lines, hash-chained)\n"
	"network (--net replaces the policy's mode; the rest add to its lists, allow mode only):\n"
	"  --net MODE            none (default: loopback only), allow (via the proxy), host\n"
	"  --allow RULE          let RULE out: name[:port], *.name, IP or CIDR (repeatable)\n"
	"  --deny RULE           refuse RULE even if --allow matches it (repeatable)\n"
	"  --host NAME=IP        the proxy resolves NAME to IP itself (repeatable)\n"
	"limits (override the policy's; a hit stops the sandbox with a typed reason):\n"
	"  --timeout DURATION    wall-clock time (30s, 500ms, 2m); exit 124\n"
	"  --cpu-time DURATION   total CPU time of the sandbox\n"
	"  --cpus N              CPU bandwidth, e.g. 0.5 or 2\n"
	"  --memory SIZE         memory, no swap (default 1g); OOM exits 137\n"
	"  --pids N              processes and threads (default 512)\n"
	"  --disk SIZE           each writable layer: /tmp, an empty /workspace (default 256m)\n"
	"  --output SIZE         stdout and stderr each; the rest is cut (default 16m)\n"
	"  --nofile N            open files per process (default 1024)\n"
	"  --execs N             execve calls in the run (default: no limit)\n"
	"  --hostname NAME       hostname inside (default aegis)\n"
	"  --cgroup-parent PATH  create the run's cgroup below PATH (delegated cgroups)\n"
	"  --backend ns|vm       ns: namespaces on the host kernel (default); vm: the same\n"
	"                        sandbox inside a QEMU microvm with its own kernel (docs/vm.md)\n"
	"  --json                print one JSON result object on stdout; output is captured\n"
	"  --output-max SIZE     bytes of stdout/stderr kept with --json (default 1m)\n"
	"  -h, --help            this text\n";

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
	static const char *const ends[] = { "exited", "signaled", "timeout", "limit" };
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

	json_object_set_new(o, "limit", r->limit ? json_string(r->limit) : json_null());
	json_object_set_new(o, "execs", json_integer((json_int_t)r->execs));
	if (r->unenforced)
		json_object_set_new(o, "unenforced", json_string(r->unenforced));
	if (r->vm_kernel[0]) {	/* the vm backend: how the guest ran */
		json_object_set_new(o, "backend", json_string("vm"));
		json_object_set_new(o, "accel", json_string(r->vm_kvm ? "kvm" : "tcg"));
		json_object_set_new(o, "isolation", json_string(r->vm_kvm ? "vm" :
				    "test mode: TCG emulation is not a security boundary"));
		json_object_set_new(o, "guest_kernel", json_string(r->vm_kernel));
		json_object_set_new(o, "boot_ms", json_real((double)r->vm_boot_us / 1000.0));
		if (r->vm_guest_setup_us)
			json_object_set_new(o, "guest_setup_ms", json_real((double)r->vm_guest_setup_us / 1000.0));
		vm_start_json(o, r->vm_restored, r->vm_restore_us, r->vm_snapshot_build_us, r->vm_start_why);
		vm_image_json(o, r->vm_image_erofs, r->vm_image_build_us);
		if (r->vm_net_error[0])
			json_object_set_new(o, "net_error", json_string(r->vm_net_error));
	}
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

/* One line on stderr naming the limit that was hit, if any. */
static void report_limit(const struct aegis_spec *spec, const struct aegis_result *r)
{
	if (!r->limit)
		return;
	if (r->end == AEGIS_END_TIMEOUT)
		fprintf(stderr, "aegis: timeout: the sandbox was killed after %llu ms\n",
			(unsigned long long)spec->limits.wall_ms);
	else if (strcmp(r->limit, "output_truncated") == 0)
		fprintf(stderr, "aegis: output_truncated: %s cut after %llu bytes\n",
			r->out.truncated && r->err.truncated ? "stdout and stderr" :
			r->out.truncated ? "stdout" : "stderr",
			(unsigned long long)spec->limits.output_bytes);
	else
		fprintf(stderr, "aegis: %s: %s\n", r->limit,
			r->end == AEGIS_END_LIMIT ? "limit hit, the sandbox was stopped" : "limit hit");
}

/* The --secret requests' values, from the store in the state directory,
 * into spec.secret_env and spec.secret_files. */
static int secrets_load(struct run_flags *f, char ***env, char ***files, struct aegis_error *err)
{
	char state[4096];

	if (paths_state(state, sizeof state, err) < 0)
		return -1;
	return secret_inject_load(state, f->secrets, env, files, err);
}

/* --workspace NAME (not a path: workspaces.h): the named workspace, held
 * for the run (its lock taken, its image mounted, data/ opened through no
 * symlink); the spec gets the opened directory. 0 for a host path. */
static int hold_workspace(struct run_flags *f, struct workspace_hold *h, struct aegis_error *err)
{
	const char *name = f->spec.workspace;
	char state[4096];

	if (!name || !workspace_is_name(name))
		return 0;
	if (paths_state(state, sizeof state, err) < 0)
		return -1;
	if (workspace_hold(state, name, h, err) < 0) {
		/* a directory of that name was perhaps meant */
		if (err->code == AEGIS_E_INVALID && err->sys_errno == ENOENT)
			snprintf(err->msg, sizeof err->msg, "no workspace named '%s' ('aegis workspace create %s' "
				 "makes one; a directory here is ./%s)", name, name, name);
		else if (err->code == AEGIS_E_INVALID && err->sys_errno == EINVAL)
			error_prefix(err, "--workspace (for a directory here: ./DIR)");
		return -1;
	}
	f->spec.workspace = h->path;
	f->spec.workspace_fd = h->data_fd;
	f->spec.workspace_name = name;
	return 0;
}

static int run_failed(const struct run_flags *f, const struct aegis_error *err)
{
	int status = cli_fail(err);

	if (f->json)
		print_json_error(err, status);
	return status;
}

/* --image: the image into the spec (image_root_apply): --env entries win
 * over its Env, --cwd over its WorkingDir. 0; -1 with err; or a failed
 * pull's exit status. */
static int with_image(struct run_flags *f, struct image_root *img, struct aegis_error *err)
{
	int r;

	if ((r = image_use(f->image, f->json, img, err)) != 0)
		return r;
	if (image_root_apply(img, &f->spec, f->cwd_set, err) < 0) {
		image_root_free(img);
		return -1;
	}
	return 0;
}

/* A pull that failed said why on stderr; --json still gets its object. */
static int pull_failed(const struct run_flags *f, int status)
{
	struct aegis_error err = { 0 };

	if (f->json) {
		error_set(&err, AEGIS_E_SETUP, 0, "image %s: the pull failed", f->image);
		print_json_error(&err, status);
	}
	return status;
}

int run_execute(struct run_flags *f)
{
	struct workspace_hold ws = { .lock_fd = -1, .data_fd = -1 };
	struct image_root img = { .lock_fd = -1 };
	struct aegis_result res;
	struct aegis_error err = { 0 };
	char **env = NULL, **files = NULL;
	int r;

	f->spec.capture = f->json;
	f->spec.backend = f->vm ? AEGIS_BACKEND_VM : AEGIS_BACKEND_NS;
	if (f->image && (r = with_image(f, &img, &err)) != 0)
		return r < 0 ? run_failed(f, &err) : pull_failed(f, r);
	if (hold_workspace(f, &ws, &err) < 0) {
		image_root_free(&img);
		return run_failed(f, &err);
	}
	if (f->nsecrets) {
		if (secrets_load(f, &env, &files, &err) < 0) {
			workspace_release(&ws);
			image_root_free(&img);
			return run_failed(f, &err);
		}
		f->spec.secret_env = env;
		f->spec.secret_files = files;
	}
	r = aegis_run(&f->spec, &res, &err);
	workspace_release(&ws);
	image_root_free(&img);	/* the run is over: prune may have it */
	f->spec.secret_env = f->spec.secret_files = NULL;
	/* the values wiped as soon as the run is over */
	secret_inject_free(env);
	secret_inject_free(files);
	if (r < 0)
		return run_failed(f, &err);
	if (f->json)
		print_json_result(&res);
	if (res.vm_net_error[0])	/* the command's connections failed from then on */
		fprintf(stderr, "aegis: vm: the network channel ended early: %s\n", res.vm_net_error);
	report_limit(&f->spec, &res);
	aegis_result_free(&res);
	return res.exit_code;
}

int cmd_run(int argc, char **argv)
{
	struct run_flags f = { .spec = AEGIS_SPEC_DEFAULT };
	int r = run_flags_parse(argc, argv, &f, false);

	if (r < 0)
		fputs(run_usage, stdout);
	if (r == 0) {
		if (optind >= argc)
			r = cli_usage_error("run: no command given (usage: aegis run [options] -- CMD [ARGS...])");
		else {
			f.spec.argv = argv + optind;
			r = run_execute(&f);
		}
	}
	run_flags_free(&f);
	return r < 0 ? 0 : r;
}

/* `aegix --cmd "STRING"`: the original interface; STRING runs under sh -c. */
int cmd_aegix(int argc, char **argv)
{
	struct run_flags f = { .spec = AEGIS_SPEC_DEFAULT };
	int r = run_flags_parse(argc, argv, &f, true);
	char *sh[] = { "/bin/sh", "-c", NULL, NULL };

	if (r < 0)
		fputs(run_usage, stdout);
	if (r == 0) {
		if (!f.cmd && optind < argc) {
			f.spec.argv = argv + optind;
			r = run_execute(&f);
		} else if (!f.cmd) {
			r = cli_usage_error("aegix: give --cmd \"COMMAND\" (or -- CMD [ARGS...])");
		} else if (optind < argc) {
			r = cli_usage_error("aegix: --cmd and a trailing command cannot be combined");
		} else {
			sh[2] = (char *)f.cmd;
			f.spec.argv = sh;
			r = run_execute(&f);
		}
	}
	run_flags_free(&f);
	return r < 0 ? 0 : r;
}
