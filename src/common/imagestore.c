/* imagestore.c — the engine's view of the image store (imagestore.h):
 * from a reference to the layer directories an overlay root is built of.
 *
 * This is on the sandbox's cold-start path, so it reads three small files
 * (refs.json, the manifest, the config) and stats the layers; nothing is
 * copied. The shared flock it leaves on the manifest is what `aegis image
 * prune` tests before removing an image. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "imagefs.h"
#include "imageref.h"
#include "imagestore.h"

int image_ref_canonical(const char *ref, char *out, size_t len, struct aegis_error *err)
{
	struct image_ref r;

	/* a bare digest names an image as exactly as a reference can */
	if (imageref_is_digest(ref)) {
		if ((size_t)snprintf(out, len, "%s", ref) >= len)
			return error_set(err, AEGIS_E_INVALID, 0, "image reference too long");
		return 0;
	}
	if (imageref_parse(ref, &r, err) < 0)
		return -1;
	if (imageref_format(&r, out, len) < 0)
		return error_set(err, AEGIS_E_INVALID, 0, "image '%s': reference too long", ref);
	return 0;
}

/* The manifest (or index) digest REF stands for; 1 when the store has no
 * such reference. */
static int ref_digest(int store, const char *ref, char canon[512], char digest[72],
		      struct aegis_error *err)
{
	struct image_ref r;
	json_t *refs;
	const char *d;

	if (imageref_is_digest(ref)) {
		snprintf(canon, 512, "%s", ref);
		snprintf(digest, 72, "%s", ref);
		return 0;
	}
	if (imageref_parse(ref, &r, err) < 0 || imageref_format(&r, canon, 512) < 0)
		return -1;
	if (r.digest[0]) {
		snprintf(digest, 72, "%s", r.digest);
		return 0;
	}
	if (!(refs = imagefs_refs_load(store, err)))
		return -1;
	d = json_string_value(json_object_get(json_object_get(refs, canon), "digest"));
	if (d && !imageref_is_digest(d)) {
		json_decref(refs);
		return error_set(err, AEGIS_E_INVALID, 0, "image store is damaged: refs.json: %s", canon);
	}
	if (d)
		snprintf(digest, 72, "%s", d);
	json_decref(refs);
	return d ? 0 : 1;
}

static char **copy_list(char *const *l)
{
	size_t n = 0;
	char **out;

	while (l && l[n])
		n++;
	if (!(out = calloc(n + 1, sizeof *out)))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(out[i] = strdup(l[i])))
			return NULL;	/* the caller frees what was copied */
	return out;
}

/* Absolute paths of the layers, each of which must be unpacked; 1 when
 * one is not (an interrupted pull: pulling again completes it). */
static int layer_paths(int store, const char *images_dir, const struct imagefs_image *img,
		       struct image_root *out, struct aegis_error *err)
{
	size_t n = img->config.n_diff_ids;
	struct stat st;
	char name[96];

	if (!(out->layers = calloc(n + 1, sizeof *out->layers)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "image store");
	for (size_t i = 0; i < n; i++) {
		imagefs_layer_name(img->config.diff_ids[i], name);
		if (fstatat(store, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
			return 1;
		if (!S_ISDIR(st.st_mode))
			return error_set(err, AEGIS_E_INVALID, 0, "image store is damaged: %s is not a directory",
					 name);
		if (asprintf(&out->layers[i], "%s/%s", images_dir, name) < 0) {
			out->layers[i] = NULL;
			return error_set(err, AEGIS_E_SETUP, ENOMEM, "image store");
		}
	}
	return 0;
}

static int resolve_in(int store, const char *images_dir, const char *ref, struct image_root *out,
		      struct aegis_error *err)
{
	char canon[512], digest[72];
	struct imagefs_image img;
	int r;

	if ((r = ref_digest(store, ref, canon, digest, err)) != 0)
		return r;
	if ((r = imagefs_image_load(store, digest, &img, err)) != 0)
		return r;
	/* Lock first, then check the layers: a prune that won the race has
	 * unlinked the manifest (absent), one that comes later sees the lock. */
	out->lock_fd = imagefs_blob_open_locked(store, img.digest, LOCK_SH, err);
	if (out->lock_fd < 0) {
		imagefs_image_free(&img);
		return out->lock_fd == -2 ? 1 : -1;
	}
	r = layer_paths(store, images_dir, &img, out, err);
	if (r == 0) {
		out->env = copy_list(img.config.env);
		out->workdir = img.config.workdir ? strdup(img.config.workdir) : NULL;
		out->ref = strdup(canon);
		out->digest = strdup(img.digest);
		if (!out->env || !out->ref || !out->digest || (img.config.workdir && !out->workdir))
			r = error_set(err, AEGIS_E_SETUP, ENOMEM, "image store");
	}
	imagefs_image_free(&img);
	return r;
}

int image_store_resolve(const char *state_dir, const char *ref, struct image_root *out,
			struct aegis_error *err)
{
	char images_dir[4096];
	_cleanup_close_ int store = -1;
	int r;

	memset(out, 0, sizeof *out);
	out->lock_fd = -1;
	snprintf(images_dir, sizeof images_dir, "%s/images", state_dir);
	store = imagefs_open(state_dir, false, err);
	if (store < 0) {
		if (errno != ENOENT)
			return -1;
		/* no store yet; but a malformed reference is still an error */
		char canon[512];
		return image_ref_canonical(ref, canon, sizeof canon, err) < 0 ? -1 : 1;
	}
	r = resolve_in(store, images_dir, ref, out, err);
	if (r != 0)
		image_root_free(out);
	if (r < 0)
		error_prefix(err, "image %s", ref);
	return r;
}

static void free_list(char **l)
{
	for (size_t i = 0; l && l[i]; i++)
		free(l[i]);
	free(l);
}

int image_root_apply(struct image_root *r, struct aegis_spec *spec, bool cwd_given, struct aegis_error *err)
{
	size_t n = 0, given = 0, k = 0;

	while (r->env && r->env[n])
		n++;
	while (spec->env && spec->env[given])
		given++;
	free(r->spec_env);
	if (!(r->spec_env = calloc(n + given + 1, sizeof *r->spec_env)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "image: environment");
	for (size_t i = 0; i < n; i++)
		r->spec_env[k++] = r->env[i];
	for (size_t i = 0; i < given; i++)	/* later entries win (env_build) */
		r->spec_env[k++] = spec->env[i];
	spec->env = r->spec_env;
	spec->image_layers = r->layers;
	spec->image_ref = r->ref;
	spec->image_digest = r->digest;
	if (!cwd_given && r->workdir && r->workdir[0] == '/')
		spec->cwd = r->workdir;
	return 0;
}

void image_root_free(struct image_root *r)
{
	free_list(r->layers);
	free_list(r->env);
	free(r->workdir);
	free(r->ref);
	free(r->digest);
	free(r->spec_env);
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	memset(r, 0, sizeof *r);
	r->lock_fd = -1;
}
