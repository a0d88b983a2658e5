/* run_vm.c — `aegis run --backend vm`: the command in a guest of its own.
 *
 * This first piece of the vm backend honours the flags below and refuses
 * every other one by name: a flag the guest cannot honour yet (workspace,
 * image, policy, secrets, most limits) must never be dropped silently
 * (docs/vm.md). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include "../common/audit.h"
#include "../common/error.h"
#include "../sandbox/netrules.h"
#include "../sandbox/sandbox.h"
#include "../vm/vm.h"
#include "run_flags.h"

/* What the vm backend does with each flag it accepts:
 *   --env, --cwd      the command's environment and directory in the guest
 *   --timeout         QEMU killed at the deadline, exit 124
 *   --memory, --cpus  the VM's RAM and vCPUs
 *   --audit           run.start and run.end (no exec events yet) with the
 *                     backend, the accelerator and the guest kernel
 *   --net none|allow, --allow, --deny, --host
 *                     none: the guest has no NIC and lo down; allow: the
 *                     guest's 127.0.0.1:3128 leads over a virtio-serial
 *                     port to the ns backend's egress proxy on the host
 *                     (netproxy.c), one net.connect event per connection
 *   --json, --output-max, --cmd (aegix), --backend */
static const char *const vm_flags[] = { "env", "cwd", "timeout", "memory", "cpus", "json", "output-max",
					"cmd", "backend", "audit", "net", "allow", "deny", "host", NULL };

static bool vm_flag(const char *name)
{
	for (const char *const *v = vm_flags; *v; v++)
		if (!strcmp(*v, name))
			return true;
	return false;
}

/* The flags given that the vm backend cannot honour yet, into out. */
static bool vm_refused(const struct run_flags *f, char *out, size_t cap)
{
	char copy[sizeof f->given], *save = NULL;
	size_t used = 0;

	snprintf(copy, sizeof copy, "%s", f->given);
	out[0] = '\0';
	for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
		if (!vm_flag(w + 2))
			used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%s%s", used ? ", " : "", w);
	return used > 0;
}

static json_t *json_out(const char *data, size_t len)
{
	json_t *j = data ? json_stringn(data, len) : json_string("");

	return j ? j : json_string("(output is not UTF-8)");
}

static void print_vm_json(const struct vm_result *r)
{
	static const char *const ends[] = { "exited", "signaled", "timeout" };
	json_t *o = json_pack("{s:i, s:s, s:o, s:f, s:f, s:o, s:o, s:b, s:b, s:s, s:s, s:s, s:s}",
			      "exit_code", r->exit_code, "end", ends[r->end],
			      "signal", r->term_signal ? json_integer(r->term_signal) : json_null(),
			      "wall_ms", (double)r->wall_us / 1000.0, "boot_ms", (double)r->boot_us / 1000.0,
			      "stdout", json_out(r->out, r->out_len), "stderr", json_out(r->err, r->err_len),
			      "stdout_truncated", r->out_truncated, "stderr_truncated", r->err_truncated,
			      "backend", "vm", "accel", r->kvm ? "kvm" : "tcg",
			      "isolation", r->kvm ? "vm" : "test mode: TCG emulation is not a security boundary",
			      "guest_kernel", r->kernel);

	json_dumpf(o, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(o);
}

static void print_vm_error(const struct aegis_error *err)
{
	json_t *o = json_pack("{s:i, s:s, s:{s:s, s:i}}", "exit_code", EXIT_AEGIS_ERROR, "backend", "vm",
			      "error", "message", err->msg, "errno", err->sys_errno);

	json_dumpf(o, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(o);
}

struct vm_audit {
	struct audit_log *log;	/* NULL: no --audit */
	char id[17];
	pthread_mutex_t lock;	/* net.connect events come from the proxy's threads */
};

static json_t *names_of(char *const *env)
{
	json_t *a = json_array();

	for (; env && *env; env++)	/* names only: values may be secret */
		json_array_append_new(a, json_stringn(*env, strcspn(*env, "=")));
	return a;
}

/* run.start, before QEMU starts: a log that cannot be written stops the run. */
static int vm_audit_start(struct vm_audit *a, const char *path, const struct vm_opts *o,
			  struct aegis_error *err)
{
	unsigned char raw[8] = { 0 };
	struct vm_guest g;
	char why[160];
	bool kvm;
	json_t *ev, *argv;

	if (!path)
		return 0;
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return error_sys(err, "audit: run id");
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(a->id + 2 * i, 3, "%02x", raw[i]);
	if (vm_guest_find(&g, err) < 0 || audit_open(path, &a->log, err) < 0)
		return -1;
	if (vm_accel(&kvm, why, sizeof why) < 0) {
		audit_close(a->log);
		a->log = NULL;
		return error_set(err, AEGIS_E_UNSUPPORTED, 0, "vm: %s", why);
	}
	argv = json_array();
	for (char *const *v = o->argv; *v; v++)
		json_array_append_new(argv, json_string(*v));
	ev = json_pack("{s:s, s:o, s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:I, s:i, s:I}, s:I}",
		       "id", a->id, "argv", argv, "env", names_of(o->env), "cwd", o->cwd, "image", "initramfs",
		       "backend", "vm", "accel", kvm ? "kvm" : "tcg",
		       "isolation", kvm ? "vm" : "test mode: TCG emulation is not a security boundary",
		       "guest_kernel", g.release, "network", o->net_rules ? "allow" : "none", "limits", "memory_bytes",
		       (json_int_t)o->memory_bytes, "vcpus", (int)o->vcpus, "wall_ms", (json_int_t)o->timeout_ms,
		       "host_uid", (json_int_t)getuid());
	if (audit_append(a->log, "run.start", ev, err) < 0) {
		audit_close(a->log);
		a->log = NULL;
		return -1;
	}
	return 0;
}

/* proxy_report_fn: the ns backend's net.connect event, one per connection. */
static void vm_audit_connection(void *arg, const struct proxy_conn_report *c)
{
	struct vm_audit *a = arg;
	struct aegis_error ignored;

	if (!a->log)
		return;
	pthread_mutex_lock(&a->lock);
	audit_append(a->log, "net.connect", record_connection_json(a->id, c), &ignored);
	pthread_mutex_unlock(&a->lock);
}

static void vm_audit_end(struct vm_audit *a, const struct vm_result *r, const struct aegis_error *failure)
{
	static const char *const ends[] = { "exited", "signaled", "timeout" };
	struct aegis_error ignored;
	json_t *ev;

	if (!a->log)
		return;
	if (failure)
		ev = json_pack("{s:s, s:s, s:s}", "id", a->id, "end", "error", "error", failure->msg);
	else
		ev = json_pack("{s:s, s:s, s:i, s:o, s:f, s:f, s:s}", "id", a->id, "end", ends[r->end],
			       "exit_code", r->exit_code,
			       "signal", r->term_signal ? json_integer(r->term_signal) : json_null(),
			       "wall_ms", r->wall_us / 1000.0, "boot_ms", r->boot_us / 1000.0,
			       "guest_kernel", r->kernel);
	audit_append(a->log, "run.end", ev, &ignored);
	audit_close(a->log);
	a->log = NULL;
}

/* env has an entry of the same name as entry ("NAME=..."). */
static bool env_named(char *const *env, const char *entry)
{
	size_t len = strcspn(entry, "=") + 1;

	for (; env && *env; env++)
		if (!strncmp(*env, entry, len))
			return true;
	return false;
}

/* A clean environment as in the ns backend, with a PATH unless --env set
 * one, and in allow mode the proxy variables unless --env set them. */
static char **vm_env(const struct run_flags *f, bool allow)
{
	size_t n = 0, np = 0;
	char **env;

	while (f->spec.env && f->spec.env[n])
		n++;
	while (env_proxy_vars[np])
		np++;
	if (!(env = calloc(n + np + 2, sizeof *env)))
		return NULL;
	memcpy(env, f->spec.env, n * sizeof *env);
	for (size_t i = 0; allow && i < np; i++)
		if (!env_named(f->spec.env, env_proxy_vars[i]))
			env[n++] = (char *)env_proxy_vars[i];
	if (!env_named(f->spec.env, "PATH="))
		env[n] = "PATH=/usr/local/bin:/usr/bin:/bin";
	return env;
}

/* --net: none or allow (the rules loaded as the ns backend loads them);
 * host is refused. -1 with err. */
static int vm_network(const struct run_flags *f, struct net_rules *rules, bool *allow, struct aegis_error *err)
{
	enum net_mode mode = netns_mode(f->spec.policy);

	*allow = mode == NET_ALLOW;
	if (mode == NET_HOST)
		return error_set(err, AEGIS_E_UNSUPPORTED, 0,
				 "run --backend vm: --net host is refused: the guest never shares the host's network "
				 "(use --net allow)");
	return *allow ? netrules_load(f->spec.policy, rules, err) : 0;
}

int run_vm(struct run_flags *f)
{
	const struct aegis_limits *l = &f->spec.limits;
	struct vm_opts o = {
		.argv = f->spec.argv, .cwd = f->cwd_set ? f->spec.cwd : "/",
		.memory_bytes = l->memory_bytes ? l->memory_bytes : 1ULL << 30,
		.vcpus = l->cpus_milli ? (l->cpus_milli + 999) / 1000 : 1,
		.timeout_ms = l->wall_ms, .capture = f->json,
		.capture_max = f->spec.capture_max,
	};
	struct vm_result r;
	struct vm_audit audit = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct aegis_error err = { 0 };
	struct net_rules rules = { 0 };
	char refused[512];
	char **env;
	bool allow;
	int rc;

	if (vm_refused(f, refused, sizeof refused)) {
		error_set(&err, AEGIS_E_UNSUPPORTED, 0, "run --backend vm: not supported yet: %s (docs/vm.md)",
			  refused);
		goto fail;
	}
	if (o.memory_bytes < 64ULL << 20) {
		error_set(&err, AEGIS_E_INVALID, 0, "run --backend vm: --memory below 64m cannot boot the guest");
		goto fail;
	}
	if (vm_network(f, &rules, &allow, &err) < 0)
		goto fail;
	if (allow)
		o.net_rules = &rules, o.net_report = vm_audit_connection, o.net_report_arg = &audit;
	if (!(env = vm_env(f, allow))) {
		error_set(&err, AEGIS_E_SETUP, ENOMEM, "run --backend vm: environment");
		goto fail;
	}
	o.env = env;
	if (vm_audit_start(&audit, f->spec.audit_path, &o, &err) < 0) {
		free(env);
		goto fail;
	}
	rc = vm_run(&o, &r, &err);
	free(env);
	vm_audit_end(&audit, &r, rc < 0 ? &err : NULL);
	netrules_free(&rules);
	if (rc < 0)
		goto fail;
	if (f->json)
		print_vm_json(&r);
	if (r.end == VM_TIMEOUT)
		fprintf(stderr, "aegis: timeout: the VM was stopped after %llu ms\n", (unsigned long long)o.timeout_ms);
	vm_result_free(&r);
	return r.exit_code;
fail:
	netrules_free(&rules);	/* a zeroed set when not loaded */
	rc = cli_fail(&err);
	if (f->json)
		print_vm_error(&err);
	return rc;
}
