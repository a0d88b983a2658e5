/* auth.c — registry credentials and the insecure list.
 *
 * Credentials are in docker's config.json format, which is what users
 * have: {"auths": {"host[:port]": {"auth": base64("user:pass")}}} (or
 * "username"/"password"). Looked up in $AEGIS_REGISTRY_AUTH when set (and
 * only there), else ~/.config/aegis/auth.json, else docker's own
 * ($DOCKER_CONFIG/config.json or ~/.docker/config.json). Credential
 * helpers (credsStore) are not run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "../common/error.h"
#include "registry.h"

bool auth_insecure_listed(const char *host)
{
	const char *list = getenv("AEGIS_INSECURE_REGISTRIES");
	size_t n = strlen(host);

	for (const char *p = list; p && *p;) {
		size_t len = strcspn(p, ", ");
		if (len == n && !strncmp(p, host, n))
			return true;
		p += len;
		p += strspn(p, ", ");
	}
	return false;
}

/* docker keys entries by host, by URL ("https://host/v1/"), docker.io
 * by its old index URL. */
static json_t *entry_for(json_t *auths, const char *host)
{
	const char *k;
	json_t *v;

	if (!strcmp(host, "docker.io") || !strcmp(host, "registry-1.docker.io")) {
		if ((v = json_object_get(auths, "https://index.docker.io/v1/")))
			return v;
		host = "docker.io";
	}
	json_object_foreach(auths, k, v) {
		const char *h = k;
		size_t n;
		if (!strncmp(h, "https://", 8))
			h += 8;
		else if (!strncmp(h, "http://", 7))
			h += 7;
		n = strcspn(h, "/");
		if (n == strlen(host) && !strncmp(h, host, n))
			return v;
	}
	return NULL;
}

static int decode(const char *b64, char *user, size_t ulen, char *pass, size_t plen,
		  struct aegis_error *err)
{
	size_t n = strlen(b64);
	unsigned char *raw = malloc(n + 4);
	char *colon;
	int len;

	if (!raw)
		return error_set(err, AEGIS_E_SETUP, 0, "out of memory");
	len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
	if (len < 0) {
		free(raw);
		return error_set(err, AEGIS_E_INVALID, 0, "registry credentials: bad base64 in \"auth\"");
	}
	/* EVP_DecodeBlock counts the padding as zero bytes */
	while (n > 0 && b64[n - 1] == '=' && len > 0)
		n--, len--;
	raw[len] = '\0';
	colon = strchr((char *)raw, ':');
	if (!colon || (size_t)(colon - (char *)raw) >= ulen || strlen(colon + 1) >= plen) {
		free(raw);
		return error_set(err, AEGIS_E_INVALID, 0, "registry credentials: \"auth\" is not user:password");
	}
	*colon = '\0';
	strcpy(user, (char *)raw);
	strcpy(pass, colon + 1);
	OPENSSL_cleanse(raw, (size_t)len);
	free(raw);
	return 1;
}

static int lookup_file(const char *path, const char *host, char *user, size_t ulen, char *pass,
		       size_t plen, struct aegis_error *err)
{
	json_error_t je;
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je), *e;
	const char *b64, *u, *p;
	int r = 0;

	if (!doc)
		return strstr(je.text, "unable to open") ? 0 :
			error_set(err, AEGIS_E_INVALID, 0, "registry credentials %s: %s", path, je.text);
	e = entry_for(json_object_get(doc, "auths"), host);
	b64 = json_string_value(json_object_get(e, "auth"));
	u = json_string_value(json_object_get(e, "username"));
	p = json_string_value(json_object_get(e, "password"));
	if (b64 && *b64)
		r = decode(b64, user, ulen, pass, plen, err);
	else if (u && p && strlen(u) < ulen && strlen(p) < plen) {
		strcpy(user, u);
		strcpy(pass, p);
		r = 1;
	}
	json_decref(doc);
	if (r < 0)
		error_prefix(err, "%s", path);
	return r;
}

int auth_lookup(const char *host, char *user, size_t ulen, char *pass, size_t plen,
		struct aegis_error *err)
{
	const char *env = getenv("AEGIS_REGISTRY_AUTH"), *home = getenv("HOME");
	const char *dc = getenv("DOCKER_CONFIG");
	char path[4096];
	int r;

	if (env && *env)
		return lookup_file(env, host, user, ulen, pass, plen, err);
	if (home && *home) {
		snprintf(path, sizeof path, "%s/.config/aegis/auth.json", home);
		if ((r = lookup_file(path, host, user, ulen, pass, plen, err)) != 0)
			return r;
	}
	if (dc && *dc)
		snprintf(path, sizeof path, "%s/config.json", dc);
	else if (home && *home)
		snprintf(path, sizeof path, "%s/.docker/config.json", home);
	else
		return 0;
	return lookup_file(path, host, user, ulen, pass, plen, err);
}
