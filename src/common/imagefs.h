/* imagefs.h — the image store's files (docs/images.md), shared by the
 * engine's read side (imagestore.c) and aegis-image, which writes them:
 *
 *   <state>/images/blobs/sha256/<hex>     verified blobs (manifests, configs, layers until unpacked)
 *   <state>/images/layers/<hex>/          an unpacked layer, named by its diff_id
 *   <state>/images/refs.json              canonical reference → manifest digest
 *   <state>/images/locks/                 flock files (store, per layer, refs)
 *   <state>/images/tmp/                   work in progress, removed when stale */
#ifndef AEGIS_COMMON_IMAGEFS_H
#define AEGIS_COMMON_IMAGEFS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include <aegis/aegis.h>

#include "ocispec.h"

/* One image as the store holds it: the platform manifest and its config. */
struct imagefs_image {
	char digest[72];	/* the platform manifest's */
	char index[72];		/* the index it was chosen from, or "" */
	struct oci_manifest manifest;
	struct oci_config config;
	char *config_raw;	/* the config blob as stored */
	size_t config_len;
};

/* <state>/images as an O_PATH directory fd; created (0700) when create,
 * else -1 with errno ENOENT when there is no store yet. */
int imagefs_open(const char *state_dir, bool create, struct aegis_error *err);
/* "blobs/sha256/<hex>" of digest (which must be a sha256 digest). */
void imagefs_blob_name(const char *digest, char out[96]);
/* "layers/<hex>" of a diff_id. */
void imagefs_layer_name(const char *diff_id, char out[96]);
/* A whole blob, verified against its digest again as it is read (disk
 * rot or tampering is an error, not a wrong image). 0; 1 when absent. */
int imagefs_blob_read(int store, const char *digest, size_t max, char **buf, size_t *len,
		      struct aegis_error *err);
/* Open digest's blob read-only; flock it with how (LOCK_SH...) when how
 * is not 0; a blob unlinked while we waited counts as absent. fd; -2 when
 * absent; -1 with err. */
int imagefs_blob_open_locked(int store, const char *digest, int how, struct aegis_error *err);
/* Load the image whose manifest (or index: then the host's platform) is
 * digest. 0; 1 when a blob of it is missing; -1 with err. */
int imagefs_image_load(int store, const char *digest, struct imagefs_image *out,
		       struct aegis_error *err);
void imagefs_image_free(struct imagefs_image *img);
/* refs.json as an object {ref: {"digest":..., "index":..., "time":...}};
 * an empty one when there is none. NULL with err when damaged. */
json_t *imagefs_refs_load(int store, struct aegis_error *err);
/* Replace refs.json whole (temp file, fsync, rename); take "refs" lock first. */
int imagefs_refs_save(int store, json_t *refs, struct aegis_error *err);
/* open locks/NAME (created) and flock(how); fd, or -1 with err; with
 * LOCK_NB a busy lock is -1 with errno EWOULDBLOCK and err filled. */
int imagefs_lock(int store, const char *name, int how, struct aegis_error *err);

#endif
