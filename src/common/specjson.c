/* specjson.c — struct aegis_spec / struct aegis_result as JSON and back.
 *
 * One explicit field list each way, so a field added to the spec without
 * being added here shows up in the round-trip unit test (tests/unit/
 * test_specjson.c), not as a setting the guest silently drops. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "specjson.h"

/* ---- encoding ---- */

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *strv(char *const *v)
{
	json_t *a;

	if (!v)
		return json_null();
	a = json_array();
	for (; *v; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

/* JSON integers are signed: a limit of UINT64_MAX ("none", as an
 * instance's output_bytes) travels as INT64_MAX, as unbounded in practice,
 * not as a negative number the decoder refuses. */
static json_int_t u64j(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v;
}

static json_t *limits_to(const struct aegis_limits *l)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "wall_ms", u64j(l->wall_ms), "cpu_ms", u64j(l->cpu_ms),
			 "cpus_milli", u64j(l->cpus_milli), "memory_bytes", u64j(l->memory_bytes),
			 "pids", u64j(l->pids), "disk_bytes", u64j(l->disk_bytes),
			 "output_bytes", u64j(l->output_bytes), "nofile", u64j(l->nofile),
			 "execs", u64j(l->execs));
}

static json_t *policy_to(const struct aegis_policy *p)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", str_or_null(p->name));
	json_object_set_new(o, "cmd_allow", strv(p->cmd_allow));
	json_object_set_new(o, "cmd_deny", strv(p->cmd_deny));
	json_object_set_new(o, "argv_deny", strv(p->argv_deny));
	json_object_set_new(o, "files_read", strv(p->files_read));
	json_object_set_new(o, "files_write", strv(p->files_write));
	json_object_set_new(o, "files_deny", strv(p->files_deny));
	json_object_set_new(o, "net_mode", str_or_null(p->net_mode));
	json_object_set_new(o, "net_allow", strv(p->net_allow));
	json_object_set_new(o, "net_deny", strv(p->net_deny));
	json_object_set_new(o, "net_hosts", strv(p->net_hosts));
	json_object_set_new(o, "best_effort", json_boolean(p->best_effort));
	json_object_set_new(o, "limits", limits_to(&p->limits));
	json_object_set_new(o, "limits_set", json_integer(p->limits_set));
	return o;
}

json_t *specjson_from_spec(const struct aegis_spec *s)
{
	json_t *o = json_object();

	json_object_set_new(o, "backend", json_string(s->backend == AEGIS_BACKEND_VM ? "vm" : "ns"));
	json_object_set_new(o, "argv", strv(s->argv));
	json_object_set_new(o, "env", strv(s->env));
	json_object_set_new(o, "secret_env", strv(s->secret_env));
	json_object_set_new(o, "secret_files", strv(s->secret_files));
	json_object_set_new(o, "image_layers", strv(s->image_layers));
	json_object_set_new(o, "image_ref", str_or_null(s->image_ref));
	json_object_set_new(o, "image_digest", str_or_null(s->image_digest));
	json_object_set_new(o, "cwd", str_or_null(s->cwd));
	json_object_set_new(o, "workspace", str_or_null(s->workspace));
	json_object_set_new(o, "workspace_name", str_or_null(s->workspace_name));
	json_object_set_new(o, "workspace_ro", json_boolean(s->workspace_ro));
	json_object_set_new(o, "workspace_overlay", json_boolean(s->workspace_overlay));
	json_object_set_new(o, "limits", limits_to(&s->limits));
	json_object_set_new(o, "policy", s->policy ? policy_to(s->policy) : json_null());
	json_object_set_new(o, "audit_path", str_or_null(s->audit_path));
	json_object_set_new(o, "artifacts_dir", str_or_null(s->artifacts_dir));
	json_object_set_new(o, "capture", json_boolean(s->capture));
	json_object_set_new(o, "freezable", json_boolean(s->freezable));
	json_object_set_new(o, "capture_max", json_integer((json_int_t)s->capture_max));
	json_object_set_new(o, "cgroup_parent", str_or_null(s->cgroup_parent));
	json_object_set_new(o, "hostname", str_or_null(s->hostname));
	return o;
}

static const char *const end_names[] = { "exited", "signaled", "timeout", "limit", NULL };

json_t *specjson_from_result(const struct aegis_result *r)
{
	json_t *o = json_pack("{s:s, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:b, s:b}",
			      "end", end_names[r->end], "exit_code", r->exit_code, "term_signal", r->term_signal,
			      "wall_us", (json_int_t)r->wall_us, "user_us", (json_int_t)r->user_us,
			      "sys_us", (json_int_t)r->sys_us, "peak_memory_bytes", (json_int_t)r->peak_memory_bytes,
			      "execs", (json_int_t)r->execs, "stdout_truncated", r->out.truncated,
			      "stderr_truncated", r->err.truncated);

	json_object_set_new(o, "limit", str_or_null(r->limit));
	json_object_set_new(o, "cgroup_mode", str_or_null(r->cgroup_mode));
	json_object_set_new(o, "unenforced", str_or_null(r->unenforced));
	return o;
}

/* ---- decoding ---- */

struct field {
	json_t *obj;
	const char *where;	/* "spec", "spec.limits", ... */
};

static int bad(struct aegis_error *err, const struct field *f, const char *key, const char *what)
{
	return error_set(err, AEGIS_E_INVALID, EINVAL, "%s.%s: %s", f->where, key, what);
}

/* A string; NULL for null or (optional) absent. */
static int get_str(const struct field *f, const char *key, bool required, const char **out,
		   struct aegis_error *err)
{
	json_t *v = json_object_get(f->obj, key);

	*out = NULL;
	if (!v)
		return required ? bad(err, f, key, "missing") : 0;
	if (json_is_null(v))
		return required ? bad(err, f, key, "null") : 0;
	if (!json_is_string(v))
		return bad(err, f, key, "not a string");
	*out = json_string_value(v);
	return 0;
}

static int get_bool(const struct field *f, const char *key, bool *out, struct aegis_error *err)
{
	json_t *v = json_object_get(f->obj, key);

	if (!v)
		return *out = false, 0;
	if (!json_is_boolean(v))
		return bad(err, f, key, "not a boolean");
	*out = json_is_true(v);
	return 0;
}

static int get_u64(const struct field *f, const char *key, bool required, uint64_t *out,
		   struct aegis_error *err)
{
	json_t *v = json_object_get(f->obj, key);

	if (!v)
		return required ? bad(err, f, key, "missing") : (*out = 0, 0);
	if (!json_is_integer(v))
		return bad(err, f, key, "not an integer");
	if (json_integer_value(v) < 0)
		return bad(err, f, key, "negative");
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* A NULL-terminated vector pointing into the JSON; NULL for null or absent. */
static int get_strv(struct specjson_spec *s, const struct field *f, const char *key, bool required,
		    char ***out, struct aegis_error *err)
{
	json_t *v = json_object_get(f->obj, key);
	size_t n;
	char **vec;

	*out = NULL;
	if (!v || json_is_null(v))
		return required ? bad(err, f, key, v ? "null" : "missing") : 0;
	if (!json_is_array(v))
		return bad(err, f, key, "not an array of strings");
	n = json_array_size(v);
	if (s->nvecs >= (int)(sizeof s->vecs / sizeof s->vecs[0]) || !(vec = calloc(n + 1, sizeof *vec)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "%s.%s: out of memory", f->where, key);
	s->vecs[s->nvecs++] = vec;
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(v, i);
		if (!json_is_string(e))
			return error_set(err, AEGIS_E_INVALID, EINVAL, "%s.%s[%zu]: not a string", f->where, key, i);
		vec[i] = (char *)json_string_value(e);
	}
	*out = vec;
	return 0;
}

static int get_obj(const struct field *f, const char *key, const char *where, bool required, struct field *out,
		   struct aegis_error *err)
{
	json_t *v = json_object_get(f->obj, key);

	out->obj = NULL;
	out->where = where;
	if (!v || json_is_null(v))
		return required ? bad(err, f, key, v ? "null" : "missing") : 0;
	if (!json_is_object(v))
		return bad(err, f, key, "not an object");
	out->obj = v;
	return 0;
}

static int limits_from(const struct field *f, struct aegis_limits *l, struct aegis_error *err)
{
	uint64_t cpus;

	if (get_u64(f, "wall_ms", true, &l->wall_ms, err) < 0 || get_u64(f, "cpu_ms", true, &l->cpu_ms, err) < 0 ||
	    get_u64(f, "cpus_milli", true, &cpus, err) < 0 ||
	    get_u64(f, "memory_bytes", true, &l->memory_bytes, err) < 0 ||
	    get_u64(f, "pids", true, &l->pids, err) < 0 || get_u64(f, "disk_bytes", true, &l->disk_bytes, err) < 0 ||
	    get_u64(f, "output_bytes", true, &l->output_bytes, err) < 0 ||
	    get_u64(f, "nofile", true, &l->nofile, err) < 0 || get_u64(f, "execs", true, &l->execs, err) < 0)
		return -1;
	if (cpus > UINT32_MAX)
		return bad(err, f, "cpus_milli", "out of range");
	l->cpus_milli = (uint32_t)cpus;
	return 0;
}

static int policy_from(struct specjson_spec *s, const struct field *f, struct aegis_error *err)
{
	struct aegis_policy *p = &s->policy;
	struct field lim;
	uint64_t set;
	const char *name, *mode;

	if (get_str(f, "name", false, &name, err) < 0 || get_strv(s, f, "cmd_allow", false, &p->cmd_allow, err) < 0 ||
	    get_strv(s, f, "cmd_deny", false, &p->cmd_deny, err) < 0 ||
	    get_strv(s, f, "argv_deny", false, &p->argv_deny, err) < 0 ||
	    get_strv(s, f, "files_read", false, &p->files_read, err) < 0 ||
	    get_strv(s, f, "files_write", false, &p->files_write, err) < 0 ||
	    get_strv(s, f, "files_deny", false, &p->files_deny, err) < 0 ||
	    get_str(f, "net_mode", false, &mode, err) < 0 ||
	    get_strv(s, f, "net_allow", false, &p->net_allow, err) < 0 ||
	    get_strv(s, f, "net_deny", false, &p->net_deny, err) < 0 ||
	    get_strv(s, f, "net_hosts", false, &p->net_hosts, err) < 0 ||
	    get_bool(f, "best_effort", &p->best_effort, err) < 0 ||
	    get_obj(f, "limits", "spec.policy.limits", true, &lim, err) < 0 || limits_from(&lim, &p->limits, err) < 0 ||
	    get_u64(f, "limits_set", true, &set, err) < 0)
		return -1;
	p->name = (char *)name;
	p->net_mode = (char *)mode;
	p->limits_set = (uint32_t)set;
	return 0;
}

int specjson_to_spec(json_t *j, struct specjson_spec *out, struct aegis_error *err)
{
	struct aegis_spec *sp = &out->spec;
	struct field top = { j, "spec" }, lim, pol;
	const char *backend;
	char **v;
	uint64_t cmax;

	memset(out, 0, sizeof *out);
	if (!json_is_object(j))
		return error_set(err, AEGIS_E_INVALID, EINVAL, "spec: not an object");
	out->json = json_incref(j);
	if (get_str(&top, "backend", false, &backend, err) < 0)
		goto fail;
	if (backend && strcmp(backend, "ns") && strcmp(backend, "vm")) {
		bad(err, &top, "backend", "neither \"ns\" nor \"vm\"");
		goto fail;
	}
	sp->backend = backend && !strcmp(backend, "vm") ? AEGIS_BACKEND_VM : AEGIS_BACKEND_NS;
	if (get_strv(out, &top, "argv", true, &v, err) < 0)
		goto fail;
	sp->argv = v;
	if (get_strv(out, &top, "env", false, &v, err) < 0)
		goto fail;
	sp->env = v;
	if (get_strv(out, &top, "secret_env", false, &v, err) < 0)
		goto fail;
	sp->secret_env = v;
	if (get_strv(out, &top, "secret_files", false, &v, err) < 0)
		goto fail;
	sp->secret_files = v;
	if (get_strv(out, &top, "image_layers", false, &v, err) < 0)
		goto fail;
	sp->image_layers = v;
	if (get_str(&top, "image_ref", false, &sp->image_ref, err) < 0 ||
	    get_str(&top, "image_digest", false, &sp->image_digest, err) < 0 ||
	    get_str(&top, "cwd", true, &sp->cwd, err) < 0 ||
	    get_str(&top, "workspace", false, &sp->workspace, err) < 0 ||
	    get_str(&top, "workspace_name", false, &sp->workspace_name, err) < 0 ||
	    get_bool(&top, "workspace_ro", &sp->workspace_ro, err) < 0 ||
	    get_bool(&top, "workspace_overlay", &sp->workspace_overlay, err) < 0 ||
	    get_obj(&top, "limits", "spec.limits", true, &lim, err) < 0 || limits_from(&lim, &sp->limits, err) < 0 ||
	    get_obj(&top, "policy", "spec.policy", false, &pol, err) < 0 ||
	    (pol.obj && policy_from(out, &pol, err) < 0) ||
	    get_str(&top, "audit_path", false, &sp->audit_path, err) < 0 ||
	    get_str(&top, "artifacts_dir", false, &sp->artifacts_dir, err) < 0 ||
	    get_bool(&top, "capture", &sp->capture, err) < 0 || get_bool(&top, "freezable", &sp->freezable, err) < 0 ||
	    get_u64(&top, "capture_max", false, &cmax, err) < 0 ||
	    get_str(&top, "cgroup_parent", false, &sp->cgroup_parent, err) < 0 ||
	    get_str(&top, "hostname", true, &sp->hostname, err) < 0)
		goto fail;
	sp->capture_max = (size_t)cmax;
	sp->policy = pol.obj ? &out->policy : NULL;
	return 0;
fail:
	specjson_spec_free(out);
	return -1;
}

void specjson_spec_free(struct specjson_spec *s)
{
	for (int i = 0; i < s->nvecs; i++)
		free(s->vecs[i]);
	s->nvecs = 0;
	if (s->json)
		json_decref(s->json);
	s->json = NULL;
}

/* The engine's own constant for a known name: the result's strings are
 * compared and printed by callers that expect them to outlive the JSON. */
static const char *intern(const char *s, const char *const *known)
{
	for (; *known; known++)
		if (!strcmp(s, *known))
			return *known;
	return NULL;
}

int specjson_to_result(json_t *j, struct specjson_result *out, struct aegis_error *err)
{
	static const char *const limits[] = { "timeout", "oom", "pids", "disk_full", "output_truncated", "execs",
					      "cpu", NULL };
	static const char *const modes[] = { "v1", "v2", NULL };
	struct aegis_result *r = &out->result;
	struct field top = { j, "result" };
	const char *end, *limit, *mode, *unenforced;
	uint64_t code, sig;
	json_t *c;
	int e;

	memset(out, 0, sizeof *out);
	if (!json_is_object(j))
		return error_set(err, AEGIS_E_INVALID, EINVAL, "result: not an object");
	if (get_str(&top, "end", true, &end, err) < 0)
		return -1;
	for (e = 0; end_names[e] && strcmp(end_names[e], end); e++)
		;
	if (!end_names[e])
		return bad(err, &top, "end", "unknown");
	r->end = (enum aegis_end)e;
	c = json_object_get(j, "exit_code");
	if (!json_is_integer(c))
		return bad(err, &top, "exit_code", c ? "not an integer" : "missing");
	code = (uint64_t)json_integer_value(c);
	if (code > 255)
		return bad(err, &top, "exit_code", "out of range");
	r->exit_code = (int)code;
	if (get_u64(&top, "term_signal", true, &sig, err) < 0)
		return -1;
	if (sig > 64)
		return bad(err, &top, "term_signal", "out of range");
	r->term_signal = (int)sig;
	if (get_u64(&top, "wall_us", true, &r->wall_us, err) < 0 || get_u64(&top, "user_us", true, &r->user_us, err) < 0 ||
	    get_u64(&top, "sys_us", true, &r->sys_us, err) < 0 ||
	    get_u64(&top, "peak_memory_bytes", true, &r->peak_memory_bytes, err) < 0 ||
	    get_u64(&top, "execs", true, &r->execs, err) < 0 ||
	    get_bool(&top, "stdout_truncated", &r->out.truncated, err) < 0 ||
	    get_bool(&top, "stderr_truncated", &r->err.truncated, err) < 0 ||
	    get_str(&top, "limit", false, &limit, err) < 0 || get_str(&top, "cgroup_mode", false, &mode, err) < 0 ||
	    get_str(&top, "unenforced", false, &unenforced, err) < 0)
		return -1;
	if (limit && !(r->limit = intern(limit, limits)))
		return bad(err, &top, "limit", "unknown");
	if (mode && !(r->cgroup_mode = intern(mode, modes)))
		return bad(err, &top, "cgroup_mode", "unknown");
	if (unenforced) {
		snprintf(out->unenforced_buf, sizeof out->unenforced_buf, "%s", unenforced);
		r->unenforced = out->unenforced_buf;
	}
	return 0;
}

void specjson_wipe(char *text)
{
	if (text)
		explicit_bzero(text, strlen(text));
	free(text);
}
