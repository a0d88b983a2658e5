/* imageref.h — OCI/Docker image references as users type them and as the
 * image store names them ("python:3.12" is docker.io/library/python:3.12). */
#ifndef AEGIS_COMMON_IMAGEREF_H
#define AEGIS_COMMON_IMAGEREF_H

#include <stdbool.h>
#include <stddef.h>

#include <aegis/aegis.h>

#define IMAGEREF_DIGEST_LEN 71	/* "sha256:" + 64 hex digits */

struct image_ref {
	char domain[256];	/* "docker.io", "127.0.0.1:5000" */
	char path[256];		/* "library/python" */
	char tag[129];		/* "" when the reference has none (and a digest) */
	char digest[IMAGEREF_DIGEST_LEN + 1];	/* "sha256:<hex>" or "" */
};

/* Parse and normalise REF the way docker does: a first component without
 * '.' or ':' (and not "localhost") is not a registry, so it is docker.io,
 * with "library/" for one-component names; no tag and no digest means
 * ":latest". -1 with err naming what is malformed. */
int imageref_parse(const char *ref, struct image_ref *out, struct aegis_error *err);
/* "domain/path:tag", "domain/path@digest" or "domain/path:tag@digest". */
int imageref_format(const struct image_ref *r, char *out, size_t len);
/* "domain/path" (the repository, for scopes and URLs). */
int imageref_repo(const struct image_ref *r, char *out, size_t len);
/* Is s "sha256:" followed by 64 lowercase hex digits? */
bool imageref_is_digest(const char *s);

#endif
