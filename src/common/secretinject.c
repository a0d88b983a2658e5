/* secretinject.c — secret requests ("NAME", "NAME:env", "NAME:file") into
 * the "NAME=value" lists of spec.secret_env and spec.secret_files.
 *
 * Every request is checked, duplicates included, before the store is
 * opened: a mistyped request is reported the same with or without a store,
 * and no value is decrypted for a run that cannot start. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "error.h"
#include "secretinject.h"
#include "secrets.h"

enum secret_as { AS_ENV, AS_FILE };

/* The name's length and how it is given; -1 if req is not a request. */
static int request_parse(const char *req, size_t *name_len, enum secret_as *as)
{
	const char *colon = strchr(req, ':');
	size_t n = colon ? (size_t)(colon - req) : strlen(req);
	char name[SECRET_NAME_MAX + 1];

	if (n == 0 || n > SECRET_NAME_MAX)
		return -1;
	memcpy(name, req, n);
	name[n] = '\0';
	if (!secrets_name_valid(name))
		return -1;
	if (!colon || strcmp(colon + 1, "env") == 0)
		*as = AS_ENV;
	else if (strcmp(colon + 1, "file") == 0)
		*as = AS_FILE;
	else
		return -1;
	*name_len = n;
	return 0;
}

bool secret_request_valid(const char *req)
{
	enum secret_as as;
	size_t n;

	return req && request_parse(req, &n, &as) == 0;
}

/* All well formed, no name twice (it would be one variable, or one file,
 * given two ways or twice over). */
static int requests_check(char *const *requests, struct aegis_error *err)
{
	enum secret_as as;
	size_t n, m;

	for (size_t i = 0; requests && requests[i]; i++) {
		if (request_parse(requests[i], &n, &as) < 0)
			return error_set(err, AEGIS_E_INVALID, 0,
					 "secrets: not a secret request: '%s' (expected NAME, NAME:env or NAME:file)",
					 requests[i]);
		for (size_t j = 0; j < i; j++)
			if (request_parse(requests[j], &m, &as) == 0 && m == n &&
			    memcmp(requests[i], requests[j], n) == 0)
				return error_set(err, AEGIS_E_INVALID, 0, "secrets: %.*s is asked for twice",
						 (int)n, requests[i]);
	}
	return 0;
}

/* "NAME=value" from one request; NULL with err. The value wiped either way
 * by the caller. */
static char *entry_new(const char *name, size_t nlen, const char *value, size_t vlen,
		       struct aegis_error *err)
{
	char *e;

	/* "NAME=value" ends at the first NUL: a value holding one would be
	 * cut short, and the cut-off part never wiped */
	if (memchr(value, '\0', vlen)) {
		error_set(err, AEGIS_E_INVALID, 0, "secrets: %.*s holds a NUL byte, which cannot be injected",
			  (int)nlen, name);
		return NULL;
	}
	if (!(e = malloc(nlen + vlen + 2))) {
		error_set(err, AEGIS_E_SETUP, ENOMEM, "secrets: out of memory for %.*s", (int)nlen, name);
		return NULL;
	}
	memcpy(e, name, nlen);
	e[nlen] = '=';
	memcpy(e + nlen + 1, value, vlen);
	e[nlen + 1 + vlen] = '\0';
	return e;
}

/* One request's value from the store, appended to env or files. */
static int load_one(struct secrets *store, const char *req, char **env, size_t *nenv, char **files,
		    size_t *nfiles, struct aegis_error *err)
{
	char name[SECRET_NAME_MAX + 1], *value, *e;
	enum secret_as as;
	size_t n, vlen;

	request_parse(req, &n, &as);	/* checked by requests_check */
	memcpy(name, req, n);
	name[n] = '\0';
	if (secrets_get(store, name, &value, &vlen, err) < 0)
		return -1;
	e = entry_new(name, n, value, vlen, err);
	secrets_wipe(value, vlen);
	if (!e)
		return -1;
	if (as == AS_FILE)
		files[(*nfiles)++] = e;
	else
		env[(*nenv)++] = e;
	return 0;
}

int secret_inject_load(const char *state_dir, char *const *requests, char ***env, char ***files,
		       struct aegis_error *err)
{
	struct secrets store;
	char dir[4096];
	size_t count = 0, nenv = 0, nfiles = 0;
	int r = 0;

	*env = *files = NULL;
	if (requests_check(requests, err) < 0)
		return -1;
	while (requests && requests[count])
		count++;
	*env = calloc(count + 1, sizeof **env);
	*files = calloc(count + 1, sizeof **files);
	if (!*env || !*files) {
		r = error_set(err, AEGIS_E_SETUP, ENOMEM, "secrets: out of memory");
		goto out;
	}
	if (!count)
		return 0;	/* no store is opened (or made) for nothing */
	/* HOSTILE S-05: from here this process holds values; if it crashes it
	 * leaves no core file (nor a core for a piped handler that honours
	 * the limit). Not PR_SET_DUMPABLE: the sandbox it is about to clone
	 * would inherit it, and a rootless parent could no longer write the
	 * child's uid_map. */
	if (setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 }) < 0) {
		r = error_sys(err, "secrets: RLIMIT_CORE");
		goto out;
	}
	if ((size_t)snprintf(dir, sizeof dir, "%s/secrets", state_dir) >= sizeof dir) {
		r = error_set(err, AEGIS_E_INVALID, ENAMETOOLONG, "secrets: the state directory's path is too long");
		goto out;
	}
	if (secrets_open(&store, dir, err) < 0) {
		r = -1;
		goto out;
	}
	for (size_t i = 0; i < count && r == 0; i++)
		r = load_one(&store, requests[i], *env, &nenv, *files, &nfiles, err);
	secrets_close(&store);
out:
	if (r < 0) {
		secret_inject_free(*env);
		secret_inject_free(*files);
		*env = *files = NULL;
	}
	return r;
}

void secret_inject_free(char **list)
{
	for (size_t i = 0; list && list[i]; i++)
		secrets_wipe(list[i], strlen(list[i]));
	free(list);
}
