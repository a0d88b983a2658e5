/* test_specjson.c — the vm backend's spec and result codec: round trips of
 * every field, and malformed input refused with the field named. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <aegis/aegis.h>
#include "../../src/common/specjson.h"
#include "tap.h"

static bool same_strv(char *const *a, char *const *b)
{
	if (!a || !b)
		return a == b;
	for (; *a && *b; a++, b++)
		if (strcmp(*a, *b))
			return false;
	return !*a && !*b;
}

static bool same_str(const char *a, const char *b)
{
	return (!a || !b) ? a == b : !strcmp(a, b);
}

static bool same_limits(const struct aegis_limits *a, const struct aegis_limits *b)
{
	return !memcmp(a, b, sizeof *a);
}

/* Decode text; NULL on success, else the error message. */
static const char *decode_error(const char *text)
{
	static struct aegis_error err;
	struct specjson_spec d;
	json_t *j = json_loads(text, 0, NULL);
	int r;

	memset(&err, 0, sizeof err);
	r = specjson_to_spec(j, &d, &err);
	json_decref(j);
	if (r == 0) {
		specjson_spec_free(&d);
		return NULL;
	}
	return err.code == AEGIS_E_INVALID ? err.msg : "(wrong error code)";
}

static const char *result_error(const char *text)
{
	static struct aegis_error err;
	struct specjson_result d;
	json_t *j = json_loads(text, 0, NULL);
	int r;

	memset(&err, 0, sizeof err);
	r = specjson_to_result(j, &d, &err);
	json_decref(j);
	return r == 0 ? NULL : err.msg;
}

static void spec_round_trip(void)
{
	char *argv[] = { "sh", "-c", "echo hi", NULL }, *env[] = { "A=1", "B=", NULL };
	char *senv[] = { "TOKEN=s3cret", NULL }, *sfiles[] = { "KEY=v", NULL };
	char *layers[] = { "/img/l1", "/img/l2", NULL };
	char *allow[] = { "/usr/bin/*", NULL }, *argv_deny[] = { "git push", NULL }, *deny[] = { "/etc/ssl", NULL };
	char *hosts[] = { "api=10.0.0.1", NULL };
	struct aegis_policy p = { .name = "p.json", .cmd_allow = allow, .argv_deny = argv_deny, .files_deny = deny,
				  .net_mode = "allow", .net_hosts = hosts, .best_effort = true,
				  .limits = { .pids = 7, .execs = 3 }, .limits_set = AEGIS_LIMIT_PIDS | AEGIS_LIMIT_EXECS };
	struct aegis_spec s = AEGIS_SPEC_DEFAULT, *o;
	struct specjson_spec d;
	struct aegis_error err = { 0 };
	json_t *j;
	char *text;

	s.backend = AEGIS_BACKEND_VM;
	s.argv = argv, s.env = env, s.secret_env = senv, s.secret_files = sfiles;
	s.image_layers = layers, s.image_ref = "debian:12", s.image_digest = "sha256:ab";
	s.cwd = "/workspace/sub", s.workspace = "/mnt/ws", s.workspace_name = "proj";
	s.workspace_ro = false, s.workspace_overlay = true;
	s.limits.wall_ms = 1500, s.limits.cpus_milli = 2500, s.limits.execs = 9;
	s.policy = &p, s.audit_path = "/io/audit.jsonl", s.artifacts_dir = "/art", s.capture = true;
	s.freezable = true, s.capture_max = 4096, s.cgroup_parent = "/x", s.hostname = "box";
	s.workspace_fd = 5, s.out_fd = 7;	/* descriptors do not travel */

	text = json_dumps((j = specjson_from_spec(&s)), JSON_COMPACT);
	json_decref(j);
	j = json_loads(text, 0, NULL);
	ok(specjson_to_spec(j, &d, &err) == 0, "spec decodes: %s", err.msg);
	json_decref(j);
	specjson_wipe(text);
	o = &d.spec;
	ok(o->backend == AEGIS_BACKEND_VM, "backend");
	ok(same_strv(o->argv, argv) && same_strv(o->env, env), "argv, env");
	ok(same_strv(o->secret_env, senv) && same_strv(o->secret_files, sfiles), "secrets");
	ok(same_strv(o->image_layers, layers) && same_str(o->image_ref, "debian:12") &&
	   same_str(o->image_digest, "sha256:ab"), "image");
	ok(same_str(o->cwd, s.cwd) && same_str(o->workspace, s.workspace) && same_str(o->workspace_name, "proj") &&
	   !o->workspace_ro && o->workspace_overlay, "workspace");
	ok(o->workspace_fd == 0 && o->out_fd == 0, "no descriptor travels");
	ok(same_limits(&o->limits, &s.limits), "limits");
	ok(o->policy && same_str(o->policy->name, "p.json") && same_strv(o->policy->cmd_allow, allow) &&
	   !o->policy->cmd_deny && same_strv(o->policy->argv_deny, argv_deny) &&
	   same_strv(o->policy->files_deny, deny) && same_str(o->policy->net_mode, "allow") &&
	   same_strv(o->policy->net_hosts, hosts) && o->policy->best_effort &&
	   same_limits(&o->policy->limits, &p.limits) && o->policy->limits_set == p.limits_set, "policy");
	ok(same_str(o->audit_path, s.audit_path) && same_str(o->artifacts_dir, "/art") && o->capture &&
	   o->freezable && o->capture_max == 4096 && same_str(o->cgroup_parent, "/x") &&
	   same_str(o->hostname, "box"), "the rest");
	specjson_spec_free(&d);

	/* the defaults: NULLs stay NULL, no policy stays none */
	s = (struct aegis_spec)AEGIS_SPEC_DEFAULT;
	s.argv = argv;
	j = specjson_from_spec(&s);
	ok(specjson_to_spec(j, &d, &err) == 0 && d.spec.backend == AEGIS_BACKEND_NS && !d.spec.policy &&
	   !d.spec.env && !d.spec.workspace && !d.spec.image_layers && same_limits(&d.spec.limits, &s.limits),
	   "a default spec round-trips");
	json_decref(j);
	specjson_spec_free(&d);
}

static void spec_malformed(void)
{
	const char *lim = "\"limits\":{\"wall_ms\":0,\"cpu_ms\":0,\"cpus_milli\":0,\"memory_bytes\":1,\"pids\":2,"
			  "\"disk_bytes\":3,\"output_bytes\":4,\"nofile\":64,\"execs\":0}";
	char text[1024];
	const char *e;

	snprintf(text, sizeof text, "{\"argv\":[\"x\"],\"cwd\":\"/\",\"hostname\":\"h\",%s}", lim);
	ok(decode_error(text) == NULL, "a minimal spec decodes");
	ok((e = decode_error("[]")) && strstr(e, "spec"), "not an object: %s", e);
	snprintf(text, sizeof text, "{\"cwd\":\"/\",\"hostname\":\"h\",%s}", lim);
	ok((e = decode_error(text)) && strstr(e, "spec.argv") && strstr(e, "missing"), "missing argv: %s", e);
	snprintf(text, sizeof text, "{\"argv\":[\"x\",3],\"cwd\":\"/\",\"hostname\":\"h\",%s}", lim);
	ok((e = decode_error(text)) && strstr(e, "spec.argv[1]"), "argv element not a string: %s", e);
	snprintf(text, sizeof text, "{\"argv\":[\"x\"],\"cwd\":7,\"hostname\":\"h\",%s}", lim);
	ok((e = decode_error(text)) && strstr(e, "spec.cwd") && strstr(e, "not a string"), "cwd wrong type: %s", e);
	ok((e = decode_error("{\"argv\":[\"x\"],\"cwd\":\"/\",\"hostname\":\"h\"}")) && strstr(e, "spec.limits"),
	   "missing limits: %s", e);
	ok((e = decode_error("{\"argv\":[\"x\"],\"cwd\":\"/\",\"hostname\":\"h\",\"limits\":{\"wall_ms\":0}}")) &&
	   strstr(e, "spec.limits.cpu_ms"), "missing limit field: %s", e);
	snprintf(text, sizeof text, "{\"argv\":[\"x\"],\"cwd\":\"/\",\"hostname\":\"h\",%s}", lim);
	strcpy(strstr(text, "\"pids\":2"), "\"pids\":\"2\",\"disk_bytes\":3,\"output_bytes\":4,\"nofile\":64,\"execs\":0}}");
	ok((e = decode_error(text)) && strstr(e, "spec.limits.pids") && strstr(e, "not an integer"),
	   "limit wrong type: %s", e);
	snprintf(text, sizeof text, "{\"argv\":[\"x\"],\"cwd\":\"/\",\"hostname\":\"h\",\"policy\":{\"cmd_deny\":\"x\"},%s}",
		 lim);
	ok((e = decode_error(text)) && strstr(e, "spec.policy.cmd_deny"), "policy list wrong type: %s", e);
	snprintf(text, sizeof text, "{\"argv\":[\"x\"],\"cwd\":\"/\",\"hostname\":\"h\",\"policy\":{},%s}", lim);
	ok((e = decode_error(text)) && strstr(e, "spec.policy.limits"), "policy without limits: %s", e);
	snprintf(text, sizeof text, "{\"argv\":[\"x\"],\"cwd\":\"/\",\"hostname\":\"h\",\"backend\":\"xen\",%s}", lim);
	ok((e = decode_error(text)) && strstr(e, "spec.backend"), "unknown backend: %s", e);
	snprintf(text, sizeof text, "{\"argv\":[\"x\"],\"cwd\":\"/\",\"hostname\":\"h\",\"workspace_ro\":1,%s}", lim);
	ok((e = decode_error(text)) && strstr(e, "spec.workspace_ro") && strstr(e, "boolean"), "bool wrong type: %s", e);
}

static void result_round_trip(void)
{
	struct aegis_result r = { .end = AEGIS_END_LIMIT, .exit_code = 137, .term_signal = 9, .wall_us = 12345,
				  .user_us = 100, .sys_us = 200, .peak_memory_bytes = 1 << 20, .execs = 4,
				  .unenforced = "files.read (no landlock)", .cgroup_mode = "v2", .limit = "oom" };
	struct specjson_result d;
	struct aegis_error err = { 0 };
	json_t *j;

	r.out.truncated = true;
	j = specjson_from_result(&r);
	ok(specjson_to_result(j, &d, &err) == 0, "result decodes: %s", err.msg);
	json_decref(j);
	ok(d.result.end == r.end && d.result.exit_code == 137 && d.result.term_signal == 9 &&
	   d.result.wall_us == 12345 && d.result.user_us == 100 && d.result.sys_us == 200 &&
	   d.result.peak_memory_bytes == r.peak_memory_bytes && d.result.execs == 4, "numbers");
	ok(same_str(d.result.limit, "oom") && same_str(d.result.cgroup_mode, "v2") &&
	   same_str(d.result.unenforced, r.unenforced) && d.result.out.truncated && !d.result.err.truncated,
	   "strings and flags");

	r = (struct aegis_result){ .end = AEGIS_END_EXITED };
	j = specjson_from_result(&r);
	ok(specjson_to_result(j, &d, &err) == 0 && !d.result.limit && !d.result.cgroup_mode && !d.result.unenforced,
	   "nulls stay NULL");
	json_decref(j);

	const char *e;
	ok((e = result_error("{\"exit_code\":0}")) && strstr(e, "result.end"), "missing end: %s", e);
	ok((e = result_error("{\"end\":\"exited\",\"exit_code\":\"0\"}")) && strstr(e, "result.exit_code"),
	   "exit_code wrong type: %s", e);
	ok((e = result_error("{\"end\":\"exploded\",\"exit_code\":0}")) && strstr(e, "result.end"), "unknown end: %s", e);
	ok((e = result_error("{\"end\":\"exited\",\"exit_code\":0,\"term_signal\":0,\"wall_us\":1,\"user_us\":1,"
			     "\"sys_us\":1,\"peak_memory_bytes\":1,\"execs\":0,\"limit\":\"fun\"}")) &&
	   strstr(e, "result.limit"), "unknown limit: %s", e);
	ok((e = result_error("{\"end\":\"exited\",\"exit_code\":0,\"term_signal\":0,\"user_us\":1}")) &&
	   strstr(e, "result.wall_us"), "missing wall_us: %s", e);
}

/* An instance's output_bytes is UINT64_MAX (no cut: the log rotates):
 * it must travel to the guest, as a limit no run reaches. */
static void spec_unbounded_limit(void)
{
	char *argv[] = { "true", NULL };
	struct aegis_spec s = AEGIS_SPEC_DEFAULT;
	struct specjson_spec d;
	struct aegis_error err = { 0 };
	json_t *j;

	s.argv = argv;
	s.limits.output_bytes = UINT64_MAX;
	j = specjson_from_spec(&s);
	ok(specjson_to_spec(j, &d, &err) == 0, "UINT64_MAX output_bytes decodes: %s", err.msg);
	json_decref(j);
	if (!err.msg[0]) {
		ok(d.spec.limits.output_bytes == (uint64_t)INT64_MAX, "as INT64_MAX");
		specjson_spec_free(&d);
	}
}

int main(void)
{
	spec_round_trip();
	spec_unbounded_limit();
	spec_malformed();
	result_round_trip();
	return tap_done();
}
