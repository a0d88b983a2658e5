/* registry.h — a client of the distribution API v2 (the OCI distribution
 * spec): manifests and blobs, with the registries' auth challenges. */
#ifndef AEGIS_IMAGE_REGISTRY_H
#define AEGIS_IMAGE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include <aegis/aegis.h>

#include "../common/imageref.h"

struct registry {
	struct image_ref ref;
	char host[300];		/* host[:port] we talk to (docker.io's API host for docker.io) */
	char base[320];		/* scheme://host */
	bool insecure;		/* plain HTTP, only when asked for by name */
	char user[256], pass[512];
	bool have_creds;
	bool basic;		/* send Basic credentials (the registry asked for them) */
	char *bearer;		/* token from the realm, for this repository */
};

struct http_resp {
	long code;
	char *body;
	size_t len, max;
	bool too_large;
	char ctype[128];
	char www_auth[1024];
};

int registry_init(struct registry *r, const struct image_ref *ref, bool insecure,
		  struct aegis_error *err);
void registry_free(struct registry *r);
/* GET a manifest (tag or digest) with the Accept list of every manifest
 * type we read; at most OCI_MANIFEST_MAX bytes. Errors name the failure
 * (manifest unknown, auth, network) and set its kind. */
int registry_manifest(struct registry *r, const char *reference, struct http_resp *out,
		      struct aegis_error *err);
/* GET a small blob (a config) whole. */
int registry_blob_small(struct registry *r, const char *digest, size_t max, struct http_resp *out,
			struct aegis_error *err);
/* A handle set up for GET url: TLS, redirects, timeouts, our auth. */
int registry_setup(struct registry *r, CURL *c, const char *url);
void registry_blob_url(struct registry *r, const char *digest, char *out, size_t len);
/* The one-line reason for an error response (the registry's error code). */
void registry_describe(const struct http_resp *resp, char *out, size_t len);
/* After a 401 (its WWW-Authenticate header): get a token or switch to
 * Basic. -1 with err (kind auth) when that cannot work. */
int registry_authenticate(struct registry *r, const char *challenge, struct aegis_error *err);
void http_resp_free(struct http_resp *h);

/* auth.c: credentials for a registry host from $AEGIS_REGISTRY_AUTH,
 * ~/.config/aegis/auth.json or ~/.docker/config.json (docker's format).
 * 1 found, 0 none, -1 with err (a damaged file). */
int auth_lookup(const char *host, char *user, size_t ulen, char *pass, size_t plen,
		struct aegis_error *err);
/* Is host marked insecure ($AEGIS_INSECURE_REGISTRIES, comma-separated)? */
bool auth_insecure_listed(const char *host);

#endif
