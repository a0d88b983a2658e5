/* record.c — what a run writes to its audit log: run.start (what was asked:
 * argv, environment names but never values, image, policy digest, limits),
 * limit (the typed reason), run.end (status and usage). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../common/audit.h"
#include "../common/error.h"
#include "../common/policy.h"
#include "proxy.h"
#include "sandbox.h"

/* Arguments are bytes; the log is UTF-8: invalid bytes become '?'. */
static json_t *text(const char *s)
{
	json_t *j = json_string(s);
	char *copy;

	if (j || !(copy = strdup(s)))
		return j ? j : json_string("?");
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static json_t *string_list(char *const *list, bool names_only)
{
	json_t *a = json_array();

	for (; list && *list; list++) {
		size_t n = names_only ? strcspn(*list, "=") : strlen(*list);
		json_array_append_new(a, json_stringn(*list, n));
	}
	return a;
}

bool record_has_secrets(const struct aegis_spec *spec)
{
	return (spec->secret_env && spec->secret_env[0]) || (spec->secret_files && spec->secret_files[0]);
}

/* The names of the secrets given, environment ones first; never a value. */
json_t *record_secret_names(const struct aegis_spec *spec)
{
	json_t *names = string_list(spec->secret_env, true), *files = string_list(spec->secret_files, true);

	json_array_extend(names, files);
	json_decref(files);
	return names;
}

static void secret_as_add(json_t *as, char *const *list, const char *how)
{
	for (; list && *list; list++) {
		char name[256];
		snprintf(name, sizeof name, "%.*s", (int)strcspn(*list, "="), *list);
		json_object_set_new(as, name, json_string(how));
	}
}

/* How each was given: {"NAME": "env" | "file"}. */
json_t *record_secret_as(const struct aegis_spec *spec)
{
	json_t *as = json_object();

	secret_as_add(as, spec->secret_env, "env");
	secret_as_add(as, spec->secret_files, "file");
	return as;
}

static json_t *limits_json(const struct aegis_limits *l)
{
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
			      "memory_bytes", (json_int_t)l->memory_bytes, "pids", (json_int_t)l->pids,
			      "disk_bytes", (json_int_t)l->disk_bytes,
			      "output_bytes", (json_int_t)l->output_bytes,
			      "nofile", (json_int_t)l->nofile, "execs", (json_int_t)l->execs);

	if (l->wall_ms)
		json_object_set_new(o, "wall_ms", json_integer((json_int_t)l->wall_ms));
	if (l->cpu_ms)
		json_object_set_new(o, "cpu_ms", json_integer((json_int_t)l->cpu_ms));
	if (l->cpus_milli)
		json_object_set_new(o, "cpus", json_real(l->cpus_milli / 1000.0));
	return o;
}

/* Append to every log of the run (the --audit file, the artifacts copy). */
static int emit(struct record *r, const char *type, json_t *ev, struct aegis_error *err)
{
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	for (int i = 0; i < RECORD_LOGS; i++)
		if (r->logs[i] && audit_append(r->logs[i], type, json_incref(ev), err) < 0)
			rc = -1;
	pthread_mutex_unlock(&r->lock);
	json_decref(ev);
	return rc;
}

static void close_logs(struct record *r)
{
	for (int i = 0; i < RECORD_LOGS; i++) {
		if (r->logs[i])
			audit_close(r->logs[i]);
		r->logs[i] = NULL;
	}
}

static bool recording(const struct record *r)
{
	return r && (r->logs[0] || r->logs[1]);
}

json_t *record_limits_json(const struct aegis_limits *l)
{
	return limits_json(l);
}

const char *record_workspace_mode(const struct aegis_spec *spec)
{
	if (!spec->workspace)
		return "tmpfs";
	return spec->workspace_overlay ? "overlay" : spec->workspace_ro ? "ro" : "rw";
}

int record_start(struct record *r, const struct aegis_spec *spec, const char *cgroup_mode,
		 struct aegis_error *err)
{
	unsigned char raw[8];
	char digest[65];
	json_t *ev;

	char copy[4096];

	r->logs[0] = r->logs[1] = NULL;
	pthread_mutex_init(&r->lock, NULL);
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		memset(raw, 0, sizeof raw);
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(r->id + 2 * i, 3, "%02x", raw[i]);
	if (spec->audit_path && audit_open(spec->audit_path, &r->logs[0], err) < 0)
		return -1;
	if (spec->artifacts_dir) {
		snprintf(copy, sizeof copy, "%s/audit.jsonl", spec->artifacts_dir);
		if (audit_open(copy, &r->logs[1], err) < 0) {
			close_logs(r);
			return -1;
		}
	}
	if (!recording(r))
		return 0;
	ev = json_pack("{s:s, s:o, s:o, s:s, s:s, s:s?, s:s}", "id", r->id,
		       "argv", string_list(spec->argv, false), "env", string_list(spec->env, true),
		       "cwd", spec->cwd, "image", spec->image_ref ? spec->image_ref : "host",
		       "workspace", spec->workspace, "workspace_mode", record_workspace_mode(spec));
	if (spec->image_digest)
		json_object_set_new(ev, "image_digest", json_string(spec->image_digest));
	if (spec->policy) {
		policy_digest(spec->policy, digest);
		json_object_set_new(ev, "policy", json_pack("{s:s, s:s+}", "name", spec->policy->name,
							    "digest", "sha256:", digest));
	}
	json_object_set_new(ev, "limits", limits_json(&spec->limits));
	json_object_set_new(ev, "backend", json_string("ns"));
	json_object_set_new(ev, "network", json_string(spec->policy && spec->policy->net_mode
							 ? spec->policy->net_mode : "none"));
	json_object_set_new(ev, "cgroup", json_string(cgroup_mode));
	json_object_set_new(ev, "host_uid", json_integer((json_int_t)getuid()));
	if (emit(r, "run.start", ev, err) < 0) {
		close_logs(r);
		return -1;
	}
	if (record_has_secrets(spec) &&
	    emit(r, "secret.use", json_pack("{s:s, s:o, s:o}", "id", r->id, "names", record_secret_names(spec),
					    "as", record_secret_as(spec)), err) < 0) {
		close_logs(r);
		return -1;
	}
	return 0;
}

void record_end(struct record *r, const struct aegis_result *res, const struct aegis_error *failure)
{
	static const char *const ends[] = { "exited", "signaled", "timeout", "limit" };
	struct aegis_error ignored;
	json_t *ev;

	if (!recording(r))
		return;
	if (res->limit)
		emit(r, "limit", json_pack("{s:s, s:s}", "id", r->id, "reason", res->limit), &ignored);
	if (failure) {
		ev = json_pack("{s:s, s:s, s:s}", "id", r->id, "end", "error", "error", failure->msg);
	} else {
		ev = json_pack("{s:s, s:s, s:i, s:o, s:o, s:f, s:f, s:I}", "id", r->id,
			       "end", ends[res->end], "exit_code", res->exit_code,
			       "signal", res->term_signal ? json_integer(res->term_signal) : json_null(),
			       "limit", res->limit ? json_string(res->limit) : json_null(),
			       "wall_ms", res->wall_us / 1000.0,
			       "cpu_ms", (res->user_us + res->sys_us) / 1000.0,
			       "peak_memory_bytes", (json_int_t)res->peak_memory_bytes);
		json_object_set_new(ev, "execs", json_integer((json_int_t)res->execs));
	}
	emit(r, "run.end", ev, &ignored);
	close_logs(r);
}

void record_event(struct record *r, const char *type, json_t *fields)
{
	struct aegis_error ignored;

	if (!recording(r) || !json_is_object(fields)) {
		json_decref(fields);
		return;
	}
	json_object_set_new(fields, "id", json_string(r->id));
	emit(r, type, fields, &ignored);
}

void record_exec(struct record *r, int pid, const char *path, char **argv, int argc, const char *rule)
{
	struct aegis_error ignored;
	json_t *args;

	if (!recording(r))
		return;
	args = json_array();
	for (int i = 0; i < argc; i++)
		json_array_append_new(args, text(argv[i]));
	emit(r, "exec", json_pack("{s:s, s:i, s:o, s:o, s:s, s:s?}", "id", r->id,
						"pid", pid, "path", text(path), "argv", args,
						"verdict", rule ? "deny" : "allow", "rule", rule),
	     &ignored);
}

void record_file_change(struct record *r, const char *path, const char *kind, uint64_t size,
			const char *sha256)
{
	struct aegis_error ignored;

	if (!recording(r))
		return;
	emit(r, "file.change", json_pack("{s:s, s:o, s:s, s:I, s:s?}", "id", r->id, "path", text(path),
					 "kind", kind, "size", (json_int_t)size, "sha256", sha256),
	     &ignored);
}

json_t *record_connection_json(const char *id, const struct proxy_conn_report *c)
{
	return json_pack("{s:s, s:s, s:o, s:o, s:i, s:s, s:o, s:I, s:I, s:f}", "id", id,
			 "method", c->method ? c->method : "?",
			 "host", c->host ? text(c->host) : json_null(),
			 "address", c->address ? json_string(c->address) : json_null(),
			 "port", (int)c->port, "verdict", c->verdict,
			 "rule", c->rule ? text(c->rule) : json_null(),
			 "bytes_up", (json_int_t)c->bytes_up, "bytes_down", (json_int_t)c->bytes_down,
			 "duration_ms", c->duration_us / 1000.0);
}

/* proxy_report_fn: one event per connection through the egress proxy. */
void record_connection(void *record, const struct proxy_conn_report *c)
{
	struct record *r = record;
	struct aegis_error ignored;

	if (!recording(r))
		return;
	emit(r, "net.connect", record_connection_json(r->id, c), &ignored);
}
