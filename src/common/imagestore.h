/* imagestore.h — what the sandbox engine needs of the image store: the
 * unpacked layers, env and working dir of an image that is already there
 * (no network; `aegis-image` pulls and imports). docs/images.md has the
 * store's layout. */
#ifndef AEGIS_COMMON_IMAGESTORE_H
#define AEGIS_COMMON_IMAGESTORE_H

#include <stdbool.h>
#include <stddef.h>

#include <aegis/aegis.h>

struct image_root {
	char **layers;		/* absolute paths of unpacked layer directories, bottom first, NULL-terminated */
	char **env;		/* the image config's Env ("K=V"), NULL-terminated (may be empty) */
	char *workdir;		/* the config's WorkingDir, or NULL */
	char *ref;		/* the canonical reference, e.g. docker.io/library/busybox:latest */
	char *digest;		/* the manifest's digest, sha256:... */
	int lock_fd;		/* a shared lock that keeps prune away while a sandbox uses the image; -1 after free */
	char **spec_env;	/* image_root_apply's environment (the strings are others') */
};

/* Look REF up in the store under state_dir (no network). 0; 1 when it is not in the store; -1 with err (a bad reference, a damaged store). */
int image_store_resolve(const char *state_dir, const char *ref, struct image_root *out, struct aegis_error *err);
void image_root_free(struct image_root *r);
/* The image into a spec: its layers, ref and digest; its Env under the
 * spec's env (whose entries win); its WorkingDir as cwd unless cwd_given.
 * What it sets lives as long as r. -1 (ENOMEM) with err. */
int image_root_apply(struct image_root *r, struct aegis_spec *spec, bool cwd_given, struct aegis_error *err);
/* A reference as the store names it: "python:3.12" → "docker.io/library/python:3.12"; -1 with err when malformed. */
int image_ref_canonical(const char *ref, char *out, size_t len, struct aegis_error *err);

#endif
