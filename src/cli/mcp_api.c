/* mcp_api.c — aegisd's API as the MCP tools use it: the CLI's HTTP client
 * on the daemon's socket, the daemon started on demand (as `aegis instance`
 * does), its errors turned into one line a model can act on. Nothing here
 * has rights the user running `aegis mcp` does not have. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/httpc.h"
#include "../common/util.h"
#include "cli.h"
#include "mcp.h"

/* The daemon's error body: "field: message", or its status. */
static void daemon_error(const struct httpc_response *r, char *why, size_t len)
{
	json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, NULL), *e = json_object_get(j, "error");
	const char *field = json_string_value(json_object_get(e, "field"));
	const char *msg = json_string_value(json_object_get(e, "message"));

	if (msg)
		snprintf(why, len, "%s%s%s", field ? field : "", field ? ": " : "", msg);
	else
		snprintf(why, len, "aegisd answered HTTP %d", r->status);
	json_decref(j);
}

int mcp_api(struct mcp_server *s, const char *method, const char *path, json_t *body, unsigned timeout_ms,
	    json_t **out, int *status, char *why, size_t len)
{
	struct aegis_error err = { 0 };
	struct httpc_response r;
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int rc;

	*status = 0;
	*out = NULL;
	if (body && !text) {
		snprintf(why, len, "the request could not be encoded");
		return -1;
	}
	if (daemon_start(s->sock, &err) < 0 ||
	    httpc_request_timed(s->sock, method, path, text, timeout_ms, &r, &err) < 0) {
		free(text);
		snprintf(why, len, "%s", err.msg);
		return -1;
	}
	free(text);
	*status = r.status;
	if (r.status < 200 || r.status > 299) {
		daemon_error(&r, why, len);
		httpc_response_free(&r);
		return -1;
	}
	rc = (*out = json_loadb(r.body, r.len, JSON_ALLOW_NUL, NULL)) ? 0 : -1;
	if (rc < 0)
		snprintf(why, len, "aegisd's answer is not JSON");
	httpc_response_free(&r);
	return rc;
}

bool mcp_name_ok(const char *name, char *why, size_t len)
{
	if (name && name_valid(name))
		return true;
	snprintf(why, len, "not an instance name: \"%.80s\" (lowercase letters, digits and '-', 1-63, "
		 "starting with a letter or digit)", name ? name : "");
	return false;
}

json_t *mcp_env_list(const json_t *env, char *why, size_t len)
{
	json_t *list = json_array(), *v;
	const char *key;

	json_object_foreach((json_t *)env, key, v) {
		char *kv;
		if (!*key || strchr(key, '=')) {
			snprintf(why, len, "env: \"%.80s\" is not a variable name", key);
			json_decref(list);
			return NULL;
		}
		if (asprintf(&kv, "%s=%s", key, json_string_value(v)) < 0) {
			json_decref(list);
			snprintf(why, len, "env: out of memory");
			return NULL;
		}
		json_array_append_new(list, json_string(kv));
		free(kv);
	}
	return list;
}
