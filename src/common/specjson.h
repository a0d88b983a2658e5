/* specjson.h — struct aegis_spec and struct aegis_result as JSON and back.
 *
 * The vm backend's host sends the spec to the engine in the guest and gets
 * the result back this way (docs/vm.md). Descriptors (workspace_fd, out_fd,
 * err_fd, control_fd) do not travel: the guest has its own. Secret values
 * (secret_env, secret_files) are in the JSON: it lives in memory and on the
 * channel only, and specjson_wipe() clears a text before it is freed.
 *
 * Decoding checks every field's type; a wrong or missing one is an
 * AEGIS_E_INVALID error naming it ("spec.limits.pids: not an integer"). */
#ifndef AEGIS_COMMON_SPECJSON_H
#define AEGIS_COMMON_SPECJSON_H

#include <jansson.h>

#include <aegis/aegis.h>

/* A decoded spec: the spec points into json and the vectors here. */
struct specjson_spec {
	struct aegis_spec spec;
	struct aegis_policy policy;	/* spec.policy points here when one was given */
	json_t *json;
	char **vecs[16];
	int nvecs;
};

json_t *specjson_from_spec(const struct aegis_spec *spec);
int specjson_to_spec(json_t *j, struct specjson_spec *out, struct aegis_error *err);
void specjson_spec_free(struct specjson_spec *s);

/* A decoded result's strings: limit and cgroup_mode are the engine's own
 * constants again, unenforced points into unenforced_buf. */
struct specjson_result {
	struct aegis_result result;
	char unenforced_buf[256];
};

json_t *specjson_from_result(const struct aegis_result *r);
int specjson_to_result(json_t *j, struct specjson_result *out, struct aegis_error *err);

/* Zero a JSON text that may hold secret values, then free it. */
void specjson_wipe(char *text);

#endif
