/* image.h — aegis-image, the image store's writer: pull, import, list,
 * inspect, rm, prune. A program of its own, dynamically linked against
 * libcurl and libarchive, so `aegis` stays static and small (docs/images.md). */
#ifndef AEGIS_IMAGE_IMAGE_H
#define AEGIS_IMAGE_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <aegis/aegis.h>

#include "../common/imagefs.h"

/* Exit status of aegis-image on any error (the project's convention). */
#define IMAGE_EXIT_ERROR 125

/* What a failure was, for --json and the tests: a word per kind. */
enum image_fail {
	FAIL_OTHER, FAIL_INVALID, FAIL_NOT_FOUND, FAIL_AUTH, FAIL_DIGEST, FAIL_TRUNCATED,
	FAIL_MEDIA_TYPE, FAIL_NETWORK, FAIL_TOO_LARGE, FAIL_LAYER, FAIL_IN_USE,
};
/* Set the kind of the error being reported; returns -1 like error_set. */
int image_fail_kind(enum image_fail kind);
const char *image_fail_name(void);
enum image_fail image_fail_from_name(const char *name);

struct image_opts {
	bool quiet;		/* no progress */
	bool json;		/* one JSON object on stdout */
	bool insecure;		/* plain HTTP for this command's registry */
	bool force;
	const char *name;	/* import: the reference to give the image */
	char state[4096];
};

/* The store as aegis-image uses it. */
struct store {
	int fd;			/* <state>/images */
	int lock;		/* locks/store: shared while writing, exclusive for rm/prune */
	char dir[4096];
	uint64_t layer_max;	/* bytes a layer may unpack to */
};

int store_open(struct store *s, const char *state, int lock_how, struct aegis_error *err);
void store_close(struct store *s);
/* Put a blob held in memory: verified against digest, then renamed in. */
int store_put_blob(struct store *s, const char *digest, const char *buf, size_t len,
		   struct aegis_error *err);
/* Name REF → manifest digest (and the index it was chosen from, or NULL). */
int store_set_ref(struct store *s, const char *ref, const char *digest, const char *index,
		  struct aegis_error *err);
/* Verify that fd's content hashes to digest (fd read from offset 0). */
int store_verify_fd(int fd, const char *digest, struct aegis_error *err);

/* Layers: what a pull or import wants unpacked. */
struct layer_want {
	char digest[72];	/* the blob (compressed) */
	char diff_id[72];	/* the unpacked tar's digest: the layer's name */
	uint64_t size;
	/* import: where the blob is when it is not in the store (fd >= 0) */
	int src_fd;
};
/* Is the layer of diff_id unpacked already? */
bool store_has_layer(struct store *s, const char *diff_id);
/* Unpack the blob on blob_fd as the layer diff_id: under the layer's lock,
 * into tmp/, checked against diff_id, renamed into layers/. Done at once
 * when another process finished it meanwhile. */
int store_unpack_layer(struct store *s, int blob_fd, const char *diff_id, struct aegis_error *err);

/* Commands. */
int cmd_pull(const char *ref, const struct image_opts *o);
int cmd_import(const char *path, const struct image_opts *o);
int cmd_list(const struct image_opts *o);
int cmd_inspect(const char *ref, const struct image_opts *o);
int cmd_rm(char **refs, int n, const struct image_opts *o);
int cmd_prune(const struct image_opts *o);

/* Report an error: one line on stderr; in JSON mode an object on stdout. */
int image_report_error(const struct image_opts *o, const struct aegis_error *err);
/* Print the result object (JSON mode) and free it. */
void image_report_json(const struct image_opts *o, json_t *result);

#endif
