/* secrets_api.c — /v1/secrets (secrets_api.h).
 *
 * The daemon holds no key and no value between requests: each call opens
 * the store, does its one thing and closes it (secrets_close wipes the
 * key). A value set over the API lives in the request buffer, in jansson's
 * parse of it and in the encryption's buffers, each wiped when done; the
 * errors say what was wrong with the request, never what was in it. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "../common/error.h"
#include "../common/secrets.h"
#include "secrets_api.h"

static char store_dir[4200];
/* one writer at a time in this daemon (the store also locks against the CLI) */
static pthread_mutex_t writing = PTHREAD_MUTEX_INITIALIZER;

void secrets_api_init(const char *state_dir)
{
	snprintf(store_dir, sizeof store_dir, "%s/secrets", state_dir);
}

int secrets_api_check(struct aegis_error *err)
{
	struct secrets s;
	struct stat st;

	if (lstat(store_dir, &st) < 0 && errno == ENOENT)
		return 0;	/* no store yet: made on first use */
	if (secrets_open(&s, store_dir, err) < 0)
		return -1;
	secrets_close(&s);
	return 0;
}

void secrets_api_wiping_free(void *p)
{
	if (p)
		OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

static json_t *error_body(const char *code, const char *field, const char *message)
{
	json_t *e = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);

	if (field)
		json_object_set_new(json_object_get(e, "error"), "field", json_string(field));
	return e;
}

/* A store that cannot be opened or read: the key file's or directory's
 * permissions, a damaged file. Its message names paths, never values. */
static unsigned store_error(const struct aegis_error *err, json_t **body)
{
	*body = error_body("secrets_unavailable", NULL, err->msg);
	return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

static bool name_ok(const char *name, json_t **body)
{
	if (secrets_name_valid(name))
		return true;
	*body = error_body("invalid", "name", "must match ^[A-Za-z_][A-Za-z0-9_]{0,127}$");
	return false;
}

unsigned secrets_api_list(json_t **body)
{
	struct aegis_error err = { 0 };
	struct secrets s;
	char *text;

	if (secrets_open(&s, store_dir, &err) < 0)
		return store_error(&err, body);
	text = secrets_list(&s, &err);
	secrets_close(&s);
	if (!text)
		return store_error(&err, body);
	*body = json_pack("{s:o}", "secrets", json_loads(text, 0, NULL) ?: json_array());
	free(text);
	return MHD_HTTP_OK;
}

/* The value of {"value": "..."} (the body is already known to be JSON). */
static json_t *parse_value(const char *request, size_t len, json_t **body)
{
	json_t *req = json_loadb(request ? request : "", request ? len : 0, JSON_REJECT_DUPLICATES, NULL);
	const char *key;
	json_t *v;

	if (!json_is_object(req)) {
		*body = error_body("invalid", "body", "must be a JSON object {\"value\": \"...\"}");
		json_decref(req);
		return NULL;
	}
	json_object_foreach(req, key, v)
		if (strcmp(key, "value")) {
			/* the field's name is the caller's text: not repeated back */
			*body = error_body("invalid", "body", "unknown field (only \"value\" is taken)");
			json_decref(req);
			return NULL;
		}
	v = json_object_get(req, "value");
	if (!json_is_string(v)) {
		*body = error_body("invalid", "value", "must be a string");
		json_decref(req);
		return NULL;
	}
	if (json_string_length(v) > SECRET_VALUE_MAX) {
		*body = error_body("invalid", "value", "at most 65536 bytes");
		json_decref(req);
		return NULL;
	}
	return req;
}

unsigned secrets_api_set(const char *name, char *request, size_t len, json_t **body)
{
	struct aegis_error err = { 0 };
	struct secrets s;
	json_t *req = NULL, *v;
	unsigned status = MHD_HTTP_OK;
	bool created = true;

	if (!name_ok(name, body) || !(req = parse_value(request, len, body))) {
		status = MHD_HTTP_BAD_REQUEST;
		goto out;
	}
	v = json_object_get(req, "value");
	pthread_mutex_lock(&writing);
	if (secrets_open(&s, store_dir, &err) < 0) {
		status = store_error(&err, body);
	} else {
		char *names = secrets_list(&s, &err);
		if (names) {
			/* "name" is a whole JSON string in the list: "\"NAME\"" */
			char quoted[SECRET_NAME_MAX + 3];
			snprintf(quoted, sizeof quoted, "\"%s\"", name);
			created = !strstr(names, quoted);
			free(names);
		}
		if (secrets_set(&s, name, json_string_value(v), json_string_length(v), &err) < 0)
			status = store_error(&err, body);
		secrets_close(&s);
	}
	pthread_mutex_unlock(&writing);
	if (status == MHD_HTTP_OK) {
		status = created ? MHD_HTTP_CREATED : MHD_HTTP_OK;
		*body = json_pack("{s:s, s:s}", "name", name, "status", created ? "created" : "updated");
	}
out:
	/* jansson's copy goes through the wiping free; the request text here */
	json_decref(req);
	if (request)
		OPENSSL_cleanse(request, len);
	return status;
}

unsigned secrets_api_delete(const char *name, json_t **body)
{
	struct aegis_error err = { 0 };
	struct secrets s;
	unsigned status = MHD_HTTP_OK;

	if (!name_ok(name, body))
		return MHD_HTTP_BAD_REQUEST;
	pthread_mutex_lock(&writing);
	if (secrets_open(&s, store_dir, &err) < 0) {
		status = store_error(&err, body);
	} else {
		if (secrets_delete(&s, name, &err) < 0) {
			bool unknown = strstr(err.msg, "no secret named") != NULL;
			status = unknown ? MHD_HTTP_NOT_FOUND : store_error(&err, body);
			if (unknown)
				*body = error_body("not_found", "name", "no secret by that name");
		}
		secrets_close(&s);
	}
	pthread_mutex_unlock(&writing);
	if (status == MHD_HTTP_OK)
		*body = json_pack("{s:s, s:s}", "name", name, "status", "deleted");
	return status;
}

const char *secrets_api_missing(char *const *names, bool *broken)
{
	struct aegis_error err = { 0 };
	struct secrets s;
	json_t *all = NULL, *e;
	char *text = NULL;
	size_t i;

	*broken = false;
	if (!names || !names[0])
		return NULL;
	if (secrets_open(&s, store_dir, &err) == 0) {
		text = secrets_list(&s, &err);
		secrets_close(&s);
	}
	if (!text || !(all = json_loads(text, 0, NULL))) {
		free(text);
		*broken = true;
		return names[0];
	}
	free(text);
	for (char *const *n = names; *n; n++) {
		size_t nlen = strcspn(*n, ":");
		bool found = false;
		json_array_foreach(all, i, e) {
			const char *have = json_string_value(json_object_get(e, "name"));
			found |= have && strlen(have) == nlen && !strncmp(have, *n, nlen);
		}
		if (!found) {
			json_decref(all);
			return *n;
		}
	}
	json_decref(all);
	return NULL;
}
