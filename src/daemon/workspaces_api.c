/* workspaces_api.c — named workspaces through aegisd's API
 * (docs/api/openapi.json); the store is common/workspaces.c, the same the
 * CLI uses without the daemon.
 *
 *   GET    /v1/workspaces        {"workspaces": [...]}
 *   POST   /v1/workspaces        {"name", "size"}: 201
 *   GET    /v1/workspaces/NAME   what workspace_info says
 *   DELETE /v1/workspaces/NAME   200; 409 while a run or an instance uses it
 *
 * A name is checked before anything touches the file system: a bad one
 * is 400 with the field named, an unknown one 404. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/error.h"
#include "../common/paths.h"
#include "../common/util.h"
#include "../common/workspaces.h"
#include "workspaces_api.h"

#define PREFIX "/v1/workspaces"

static json_t *err_body(const char *code, const char *message, const char *field)
{
	json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message);

	if (field)
		json_object_set_new(e, "field", json_string(field));
	return json_pack("{s:o}", "error", e);
}

static unsigned bad(const char *field, const char *why, json_t **body)
{
	*body = err_body("invalid", why, field);
	return 400;
}

/* The store's error as a status: the caller's mistakes by their kind
 * (workspaces.h), anything else the host's storage. */
static unsigned failed(const struct aegis_error *err, json_t **body)
{
	static const struct { int kind; unsigned status; const char *code, *field; } kinds[] = {
		{ EINVAL, 400, "invalid", "name" }, { ENOENT, 404, "not_found", "name" },
		{ EEXIST, 409, "exists", "name" }, { EBUSY, 409, "in_use", "name" },
		{ EPERM, 400, "unsupported", "size" },
	};

	for (size_t i = 0; err->code == AEGIS_E_INVALID && i < sizeof kinds / sizeof kinds[0]; i++)
		if (err->sys_errno == kinds[i].kind) {
			*body = err_body(kinds[i].code, err->msg, kinds[i].field);
			return kinds[i].status;
		}
	*body = err_body("storage", err->msg, NULL);
	return 507;
}

/* "size": bytes, or a size as the CLI takes it ("512m"); absent or null: none. */
static int size_of(json_t *v, uint64_t *out)
{
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v) && json_integer_value(v) > 0)
		return *out = (uint64_t)json_integer_value(v), 0;
	return json_is_string(v) && parse_size(json_string_value(v), out) == 0 && *out ? 0 : -1;
}

static unsigned create(const char *state, const char *request, json_t **body)
{
	static __thread char field[128];	/* the key dies with req */
	json_t *req = json_loads(request ? request : "", JSON_REJECT_DUPLICATES, NULL), *v;
	struct aegis_error err = { 0 };
	const char *key, *name;
	uint64_t size;
	unsigned status;

	if (!json_is_object(req))
		return json_decref(req), bad("body", "the body must be a JSON object", body);
	json_object_foreach(req, key, v)
		if (strcmp(key, "name") && strcmp(key, "size")) {
			snprintf(field, sizeof field, "%s", key);
			return json_decref(req), bad(field, "unknown field", body);
		}
	name = json_string_value(json_object_get(req, "name"));
	if (!name || !name_valid(name))
		return json_decref(req), bad("name", "must match ^[a-z0-9][a-z0-9-]{0,62}$", body);
	if (size_of(json_object_get(req, "size"), &size) < 0 || (size && size < WORKSPACE_SIZE_MIN) ||
	    size > WORKSPACE_SIZE_MAX)
		return json_decref(req), bad("size", "must be bytes or a size like \"512m\", from 16m to 16t", body);
	if (workspace_create(state, name, size, &err) < 0)
		status = failed(&err, body);
	else if (!(*body = workspace_info(state, name, &err)))
		status = failed(&err, body);
	else
		status = 201;
	json_decref(req);
	return status;
}

static unsigned one(const char *state, const char *name, const char *method, json_t **body)
{
	struct aegis_error err = { 0 };

	/* checked here too, before any path is made of it */
	if (!name_valid(name))
		return bad("name", "must match ^[a-z0-9][a-z0-9-]{0,62}$", body);
	if (!strcmp(method, "GET"))
		return (*body = workspace_info(state, name, &err)) ? 200 : failed(&err, body);
	if (workspace_delete(state, name, &err) < 0)
		return failed(&err, body);
	*body = json_pack("{s:s, s:s}", "name", name, "state", "deleted");
	return 200;
}

unsigned workspaces_api(const char *url, const char *method, const char *request, json_t **body)
{
	const char *name = !strncmp(url, PREFIX "/", sizeof PREFIX) ? url + sizeof PREFIX : NULL;
	struct aegis_error err = { 0 };
	char state[4096];

	if (!name && strcmp(url, PREFIX))
		return 0;
	if (name ? strcmp(method, "GET") && strcmp(method, "DELETE")
		 : strcmp(method, "GET") && strcmp(method, "POST")) {
		*body = err_body("method_not_allowed", "this path does not take that method", NULL);
		return 405;
	}
	if (paths_state(state, sizeof state, &err) < 0)
		return failed(&err, body);
	if (name)
		return one(state, name, method, body);
	if (!strcmp(method, "POST"))
		return create(state, request, body);
	return (*body = workspace_list(state, &err)) ? 200 : failed(&err, body);
}
