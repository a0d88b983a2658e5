/* mcp_instances.c — persistent instances through aegisd's API: start
 * (create, or start again), list, info, stop (disable), delete, pause,
 * resume, and the names of the stored secrets. Values of secrets never
 * pass here: an instance asks for secrets by name and aegisd injects them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/policy.h"
#include "../common/secretinject.h"
#include "../common/util.h"
#include "../common/workspaces.h"
#include "mcp.h"

#define LIST_MAX 500		/* instances shown by instance_list */
#define START_WAIT_DEFAULT 10000

static json_t *api_fail(const char *what, const char *name, int status, const char *why)
{
	if (status == 404)
		return mcp_fail("%s %s: no instance of that name (instance_list shows them)", what, name);
	return mcp_fail("%s %s: %s", what, name, why);
}

/* GET /v1/instances/NAME: its info, or NULL with why and *status. */
static json_t *info_of(struct mcp_server *s, const char *name, int *status, char *why, size_t len)
{
	char path[128];
	json_t *out;

	snprintf(path, sizeof path, "/v1/instances/%s", name);
	return mcp_api(s, "GET", path, NULL, 10000, &out, status, why, len) == 0 ? out : NULL;
}

/* A policy through MCP may not put the sandbox on the host's network:
 * that is for a person to choose on the command line. */
static int policy_allowed(const char *name, char *why, size_t len)
{
	struct aegis_policy p;
	struct aegis_error err = { 0 };
	int r = 0;

	if (policy_load(name, &p, &err) < 0) {
		snprintf(why, len, "policy: %s", err.msg);
		return -1;
	}
	if (p.net_mode && !strcmp(p.net_mode, "host")) {
		snprintf(why, len, "policy %s: network mode \"host\" is not available through MCP (use the CLI)", name);
		r = -1;
	}
	policy_free(&p);
	return r;
}

/* The create request's fields from the tool's arguments (checked against
 * the schema already); NULL with why. */
static json_t *create_request(struct mcp_server *s, json_t *args, char *why, size_t len)
{
	static const char *const same[] = { "name", "argv", "cwd", "workspace_ro", "secrets", "idle_pause_s",
					    "idle_stop_s", "backend", NULL };
	const char *ws = mcp_arg_str(args, "workspace"), *image = mcp_arg_str(args, "image");
	const char *policy = mcp_arg_str(args, "policy");
	json_t *req = json_object(), *v, *list;
	char real[4096], canon[512];
	size_t i;

	for (i = 0; same[i]; i++)
		if ((v = json_object_get(args, same[i])))
			json_object_set(req, same[i], v);
	if ((v = json_object_get(args, "env"))) {
		if (!(list = mcp_env_list(v, why, len)))
			goto fail;
		json_object_set_new(req, "env", list);
	}
	json_array_foreach(json_object_get(args, "secrets"), i, v)
		if (!secret_request_valid(json_string_value(v))) {
			snprintf(why, len, "secrets[%zu]: expected NAME, NAME:env or NAME:file, got \"%.80s\"", i,
				 json_string_value(v));
			goto fail;
		}
	if ((v = json_object_get(args, "expose"))) {
		json_t *port;
		list = json_array();
		json_array_foreach(v, i, port) {
			char one[64];
			/* loopback only: a model does not open ports to the network */
			snprintf(one, sizeof one, "127.0.0.1:%lld:%lld", mcp_arg_int(port, "host_port", 0),
				 mcp_arg_int(port, "guest_port", 0));
			json_array_append_new(list, json_string(one));
		}
		json_object_set_new(req, "expose", list);
	}
	if (ws && workspace_is_name(ws)) {
		if (!name_valid(ws)) {
			snprintf(why, len, "workspace: \"%.80s\" is not a workspace name (nor a host path)", ws);
			goto fail;
		}
		json_object_set_new(req, "workspace", json_string(ws));
	} else if (ws) {
		int fd = mcp_root_open(s, ws, real, sizeof real, why, len);
		if (fd < 0)
			goto fail;
		close(fd);
		json_object_set_new(req, "workspace", json_string(real));
	}
	if (policy) {
		if (policy_allowed(policy, why, len) < 0)
			goto fail;
		json_object_set_new(req, "policy", json_string(policy));
	}
	/* aegisd does not pull: the image comes into the store here first */
	if (image && strcmp(image, "host")) {
		if (mcp_image(image, canon, sizeof canon, why, len) < 0)
			goto fail;
		json_object_set_new(req, "image", json_string(canon));
	}
	return req;
fail:
	json_decref(req);
	return NULL;
}

/* Until it is past "starting" or wait_ms is over: its info (or NULL). */
static json_t *settle(struct mcp_server *s, const char *name, long long wait_ms)
{
	struct timespec pause = { 0, 50 * 1000000 };
	uint64_t deadline = now_us() + (uint64_t)wait_ms * 1000;
	char why[MCP_WHY_MAX];
	int status;

	for (;;) {
		json_t *info = info_of(s, name, &status, why, sizeof why);
		const char *state = json_string_value(json_object_get(info, "state"));
		if (!info || strcmp(state ? state : "", "starting") || now_us() >= deadline)
			return info;
		json_decref(info);
		nanosleep(&pause, NULL);
	}
}

static json_t *started(struct mcp_server *s, const char *name, long long wait_ms)
{
	json_t *info = settle(s, name, wait_ms);
	const char *state = json_string_value(json_object_get(info, "state"));

	if (!info)
		return mcp_ok(s, json_pack("{s:s}", "name", name), NULL, "%s: started", name);
	if (state && (!strcmp(state, "failed") || !strcmp(state, "exited")))
		return mcp_ok(s, info, NULL, "%s: %s right after starting (its exit and logs say why)", name, state);
	return mcp_ok(s, info, NULL, "%s: %s", name, state ? state : "?");
}

static json_t *tool_start(struct mcp_server *s, json_t *args)
{
	const char *name = mcp_arg_str(args, "name");
	long long wait_ms = mcp_arg_int(args, "wait_ms", START_WAIT_DEFAULT);
	char why[MCP_WHY_MAX], path[128];
	json_t *req, *out;
	int status;

	if (!mcp_name_ok(name, why, sizeof why))
		return mcp_fail("instance_start: %s", why);
	if (!json_object_get(args, "argv")) {
		/* just a name (and wait_ms): start it again from its stored config */
		if (json_object_size(args) > (json_object_get(args, "wait_ms") ? 2u : 1u))
			return mcp_fail("instance_start: give argv to create %s; without argv only an existing "
					"instance is started again, from its stored config", name);
		snprintf(path, sizeof path, "/v1/instances/%s/start", name);
		if (mcp_api(s, "POST", path, NULL, 30000, &out, &status, why, sizeof why) < 0)
			return api_fail("instance_start", name, status, why);
		json_decref(out);
		return started(s, name, wait_ms);
	}
	if (!(req = create_request(s, args, why, sizeof why)))
		return mcp_fail("instance_start %s: %s", name, why);
	if (mcp_api(s, "POST", "/v1/instances", req, 30000, &out, &status, why, sizeof why) < 0) {
		json_decref(req);
		return mcp_fail("instance_start %s: %s", name, why);
	}
	json_decref(req);
	json_decref(out);
	return started(s, name, wait_ms);
}

static json_t *tool_list(struct mcp_server *s, json_t *args)
{
	char why[MCP_WHY_MAX], *lines = NULL;
	size_t size = 0, i;
	json_t *out, *one, *list = json_array();
	FILE *f;
	int status;

	(void)args;
	if (mcp_api(s, "GET", "/v1/instances", NULL, 10000, &out, &status, why, sizeof why) < 0)
		return json_decref(list), mcp_fail("instance_list: %s", why);
	if (!(f = open_memstream(&lines, &size)))
		return json_decref(out), json_decref(list), mcp_fail("instance_list: out of memory");
	json_array_foreach(json_object_get(out, "instances"), i, one) {
		char *argv = json_dumps(json_object_get(one, "argv"), JSON_COMPACT);
		if (i < LIST_MAX) {
			fprintf(f, "%-24s %-10s %s\n", json_string_value(json_object_get(one, "name")),
				json_string_value(json_object_get(one, "state")), argv ? argv : "");
			json_array_append_new(list, json_pack("{s:O, s:O, s:O, s:s}", "name", json_object_get(one, "name"),
				"state", json_object_get(one, "state"), "argv", json_object_get(one, "argv"),
				"image", json_string_value(json_object_get(one, "image")) ?: "host"));
		}
		free(argv);
	}
	fclose(f);
	one = json_pack("{s:o, s:b}", "instances", list, "truncated",
			json_array_size(json_object_get(out, "instances")) > LIST_MAX);
	json_decref(out);
	out = mcp_ok(s, one, lines, "%zu instance%s", json_array_size(list), json_array_size(list) == 1 ? "" : "s");
	free(lines);
	return out;
}

static json_t *tool_info(struct mcp_server *s, json_t *args)
{
	const char *name = mcp_arg_str(args, "name");
	char why[MCP_WHY_MAX];
	json_t *info;
	int status;

	if (!mcp_name_ok(name, why, sizeof why))
		return mcp_fail("instance_info: %s", why);
	if (!(info = info_of(s, name, &status, why, sizeof why)))
		return api_fail("instance_info", name, status, why);
	return mcp_ok(s, info, NULL, "%s: %s", name, json_string_value(json_object_get(info, "state")) ?: "?");
}

/* POST /v1/instances/NAME/VERB or DELETE it: its new state. */
static json_t *change(struct mcp_server *s, json_t *args, const char *tool, const char *method, const char *verb)
{
	const char *name = mcp_arg_str(args, "name");
	char why[MCP_WHY_MAX], path[128];
	json_t *out;
	int status;

	if (!mcp_name_ok(name, why, sizeof why))
		return mcp_fail("%s: %s", tool, why);
	snprintf(path, sizeof path, "/v1/instances/%s%s%s", name, verb ? "/" : "", verb ? verb : "");
	/* a delete waits for the instance to stop (SIGTERM, SIGKILL after 5 s) */
	if (mcp_api(s, method, path, NULL, 30000, &out, &status, why, sizeof why) < 0)
		return api_fail(tool, name, status, why);
	return mcp_ok(s, out, NULL, "%s: %s", name, json_string_value(json_object_get(out, "state")) ?: "done");
}

static json_t *tool_stop(struct mcp_server *s, json_t *args)
{
	return change(s, args, "instance_stop", "POST", "disable");
}

static json_t *tool_delete(struct mcp_server *s, json_t *args)
{
	return change(s, args, "instance_delete", "DELETE", NULL);
}

static json_t *tool_pause(struct mcp_server *s, json_t *args)
{
	return change(s, args, "pause", "POST", "pause");
}

static json_t *tool_resume(struct mcp_server *s, json_t *args)
{
	return change(s, args, "resume", "POST", "resume");
}

static json_t *tool_secrets(struct mcp_server *s, json_t *args)
{
	char why[MCP_WHY_MAX], *lines = NULL;
	size_t size = 0, i;
	json_t *out, *one, *list = json_array();
	FILE *f;
	int status;

	(void)args;
	if (mcp_api(s, "GET", "/v1/secrets", NULL, 10000, &out, &status, why, sizeof why) < 0)
		return json_decref(list), mcp_fail("secret_list: %s", why);
	if (!(f = open_memstream(&lines, &size)))
		return json_decref(out), json_decref(list), mcp_fail("secret_list: out of memory");
	/* name and times, field by field: nothing else the answer holds passes */
	json_array_foreach(json_object_get(out, "secrets"), i, one) {
		json_t *name = json_object_get(one, "name");
		if (!json_is_string(name))
			continue;
		fprintf(f, "%s\n", json_string_value(name));
		json_array_append_new(list, json_pack("{s:O, s:I, s:I}", "name", name,
			"created", json_integer_value(json_object_get(one, "created")),
			"updated", json_integer_value(json_object_get(one, "updated"))));
	}
	fclose(f);
	json_decref(out);
	out = mcp_ok(s, json_pack("{s:o}", "secrets", list), lines, "%zu secret%s (names only; values are never shown)",
		     json_array_size(list), json_array_size(list) == 1 ? "" : "s");
	free(lines);
	return out;
}

#define NAME_ONLY "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"name\"], " \
	"\"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": 63, \"description\": \"the instance's name\"}}}"
#define NOTHING "{\"type\": \"object\", \"additionalProperties\": false, \"properties\": {}}"

static const char start_schema[] = "{"
	"\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"name\"],"
	"\"properties\": {"
	" \"name\": {\"type\": \"string\", \"maxLength\": 63, \"description\": \"a new name (lowercase letters, digits and '-', "
	"1-63), or an existing stopped or disabled instance's to start it again (then give nothing else)\"},"
	" \"argv\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"minItems\": 1, \"maxItems\": 4096,"
	"  \"description\": \"the instance's long-running command, e.g. [\\\"sleep\\\", \\\"infinity\\\"] for a sandbox to exec into\"},"
	" \"backend\": {\"type\": \"string\", \"enum\": [\"ns\", \"vm\"], \"description\": \"where it runs: ns "
	"(the default: namespaces on the host's kernel) or vm (the same sandbox inside a QEMU microvm guest with its own "
	"kernel: slower to start, a boundary more)\"},"
	" \"image\": {\"type\": \"string\", \"maxLength\": 512, \"description\": \"an OCI image reference such as "
	"python:3.12-slim (pulled if missing), or host (the default: the host's system directories, read-only)\"},"
	" \"workspace\": {\"type\": \"string\", \"maxLength\": 4096, \"description\": \"what is mounted at /workspace: a named "
	"workspace, or a host directory if the server allows one (--workspace-root). Default: the instance's own directory, "
	"kept until it is deleted\"},"
	" \"workspace_ro\": {\"type\": \"boolean\", \"description\": \"mount the workspace read-only\"},"
	" \"env\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}, \"description\": \"environment "
	"variables, {\\\"NAME\\\": \\\"value\\\"}\"},"
	" \"cwd\": {\"type\": \"string\", \"maxLength\": 4096, \"description\": \"absolute working directory inside\"},"
	" \"policy\": {\"type\": \"string\", \"maxLength\": 4096, \"description\": \"default, strict, or the absolute path "
	"of a policy file (network mode host is refused)\"},"
	" \"secrets\": {\"type\": \"array\", \"maxItems\": 64, \"items\": {\"type\": \"string\", \"maxLength\": 140},"
	"  \"description\": \"stored secrets to inject, by name: NAME (environment variable) or NAME:file "
	"(/run/secrets/NAME); secret_list shows the names\"},"
	" \"expose\": {\"type\": \"array\", \"maxItems\": 16, \"description\": \"ports relayed from 127.0.0.1 on the "
	"host into the instance\", \"items\": {\"type\": \"object\", \"additionalProperties\": false, "
	"\"required\": [\"host_port\", \"guest_port\"], \"properties\": {"
	"  \"host_port\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 65535},"
	"  \"guest_port\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 65535}}}},"
	" \"idle_pause_s\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 31536000, \"description\": "
	"\"pause after this many idle seconds (default 60; 0: never)\"},"
	" \"idle_stop_s\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 31536000, \"description\": "
	"\"stop after this many seconds paused (default 900; 0: never)\"},"
	" \"wait_ms\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 60000, \"description\": "
	"\"wait up to this long for it to be running (default 10000)\"}"
	"}}";

const struct mcp_tool mcp_instance_tools[] = {
	{ "instance_start", "Start an instance",
	  "Create and start a persistent sandbox (an instance) that keeps running between calls, or start a stopped "
	  "one again. Then use exec to run commands in it, file_write/file_read/file_list for its /workspace, logs "
	  "for its output, and instance_delete when done. Idle instances pause themselves and wake on the next exec. "
	  "Returns the instance's info (state, image, workspace...).",
	  start_schema, MCP_OPEN_WORLD, tool_start },
	{ "instance_list", "List instances", "The instances: name, state (running, paused, stopped, disabled, exited, "
	  "failed...), command and image.", NOTHING, MCP_READ_ONLY | MCP_IDEMPOTENT, tool_list },
	{ "instance_info", "Describe an instance", "One instance in full: state, command, image, workspace, policy, "
	  "exposed ports, secrets' names, resources used, idle activity and, once ended, its exit.",
	  NAME_ONLY, MCP_READ_ONLY | MCP_IDEMPOTENT, tool_info },
	{ "instance_stop", "Stop an instance", "Stop an instance and keep it (its config, workspace and logs): it stays "
	  "stopped, even for execs, until instance_start is called with its name. Same as disabling it.",
	  NAME_ONLY, MCP_IDEMPOTENT, tool_stop },
	{ "instance_delete", "Delete an instance", "Stop an instance (SIGTERM, SIGKILL after 5 s) and remove it: its "
	  "config, logs and its own workspace directory (a named workspace or host directory is kept).",
	  NAME_ONLY, MCP_DESTRUCTIVE | MCP_IDEMPOTENT, tool_delete },
	{ "pause", "Pause an instance", "Freeze a running instance: its memory is kept, it uses no CPU. resume thaws it.",
	  NAME_ONLY, MCP_IDEMPOTENT, tool_pause },
	{ "resume", "Resume an instance", "Thaw a paused instance.", NAME_ONLY, MCP_IDEMPOTENT, tool_resume },
	{ "secret_list", "List secret names", "The names (and created/updated times) of the stored secrets that run and "
	  "instance_start can inject by name. Values are never shown, and secrets cannot be set through MCP "
	  "(a person does that with `aegis secret set NAME`).", NOTHING, MCP_READ_ONLY | MCP_IDEMPOTENT, tool_secrets },
	{ 0 },
};
