/* env.c — the command's environment: clean by default (nothing of the
 * caller's leaks in), a sensible PATH/HOME/TERM/LANG, then --env entries. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "sandbox.h"

static const char *const defaults[] = {
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root", "LANG=C.UTF-8", "HOSTNAME=aegis", NULL,
};

#define PROXY_URL "http://127.0.0.1:3128"
const char *const env_proxy_vars[] = {
	"HTTP_PROXY=" PROXY_URL, "HTTPS_PROXY=" PROXY_URL, "ALL_PROXY=" PROXY_URL,
	"http_proxy=" PROXY_URL, "https_proxy=" PROXY_URL, "all_proxy=" PROXY_URL,
	"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1", NULL,
};

/* Replace an entry with the same name, or append. */
static void env_put(char **envp, size_t *n, char *entry)
{
	size_t klen = strcspn(entry, "=");

	for (size_t i = 0; i < *n; i++) {
		if (strncmp(envp[i], entry, klen) == 0 && envp[i][klen] == '=') {
			free(envp[i]);
			envp[i] = entry;
			return;
		}
	}
	envp[(*n)++] = entry;
}

char **env_build(const struct aegis_spec *spec, struct aegis_error *err)
{
	size_t cap = 24, n = 0;
	const char *term = getenv("TERM");
	char **envp;

	for (char *const *e = spec->env; e && *e; e++)
		cap++;
	envp = calloc(cap, sizeof *envp);
	if (!envp)
		goto oom;
	for (int i = 0; defaults[i]; i++) {
		char *dup = strdup(defaults[i]);
		if (!dup)
			goto oom;
		env_put(envp, &n, dup);
	}
	/* allow mode: the egress proxy, under every name tools look for */
	if (netns_mode(spec->policy) == NET_ALLOW) {
		for (int i = 0; env_proxy_vars[i]; i++) {
			char *v = strdup(env_proxy_vars[i]);
			if (!v)
				goto oom;
			env_put(envp, &n, v);
		}
	}
	if (term) {
		char *t = malloc(strlen(term) + 6);
		if (!t)
			goto oom;
		strcpy(t, "TERM=");
		strcat(t, term);
		env_put(envp, &n, t);
	}
	for (char *const *e = spec->env; e && *e; e++) {
		char *dup;
		if (!strchr(*e, '=') || **e == '=') {
			env_free(envp);
			return error_set(err, AEGIS_E_INVALID, 0, "env: expected NAME=VALUE, got '%s'", *e),
			       NULL;
		}
		if (!(dup = strdup(*e)))
			goto oom;
		env_put(envp, &n, dup);
	}
	/* secrets last: named explicitly, they win over a plain entry; an
	 * error names the entry's name, never its value */
	for (char *const *e = spec->secret_env; e && *e; e++) {
		char *dup;
		if (!strchr(*e, '=') || **e == '=') {
			env_free(envp);
			return error_set(err, AEGIS_E_INVALID, 0, "secret: an entry without NAME="), NULL;
		}
		if (!(dup = strdup(*e)))
			goto oom;
		env_put(envp, &n, dup);
	}
	return envp;
oom:
	env_free(envp);
	error_set(err, AEGIS_E_SETUP, ENOMEM, "environment");
	return NULL;
}

void env_free(char **envp)
{
	if (!envp)
		return;
	/* wiped, not only freed: some entries are copies of secret values */
	for (char **e = envp; *e; e++) {
		explicit_bzero(*e, strlen(*e));
		free(*e);
	}
	free(envp);
}
