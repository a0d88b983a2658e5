/* manage.c — `aegis image list | inspect | rm | prune`: what the store
 * holds, and removing what is no longer wanted.
 *
 * An image is in use when an instance's config.json names it or a sandbox
 * holds the shared flock image_store_resolve() takes on its manifest. rm
 * and prune hold the store's lock exclusively (no pull or import runs
 * meanwhile) and try an exclusive non-blocking flock on every blob: the
 * ones they cannot lock are in use and stay, with all they reference; the
 * ones they lock stay locked until the end, so a sandbox starting now
 * waits, then finds the image gone (and pulls it again). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/imageref.h"
#include "../common/imagestore.h"
#include "../common/util.h"
#include "../vm/vm.h"
#include "fsutil.h"
#include "image.h"

static uint64_t image_size(const struct imagefs_image *img)
{
	uint64_t n = 0;

	for (size_t i = 0; i < img->manifest.n_layers; i++)
		n += img->manifest.layers[i].size;
	return n;
}

static void human(uint64_t n, char *out, size_t len)
{
	const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4)
		v /= 1024, u++;
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

int cmd_list(const struct image_opts *o)
{
	struct aegis_error err = { 0 };
	_cleanup_close_ int store = imagefs_open(o->state, false, &err);
	json_t *refs = store >= 0 ? imagefs_refs_load(store, &err) : (store < 0 && errno == ENOENT ?
								     json_object() : NULL);
	json_t *out = json_array(), *v;
	const char *ref;

	if (!refs) {
		json_decref(out);
		return image_report_error(o, &err);
	}
	if (!o->json)
		printf("%-60s %-19s %7s %10s\n", "REFERENCE", "DIGEST", "LAYERS", "SIZE");
	json_object_foreach(refs, ref, v) {
		const char *digest = json_string_value(json_object_get(v, "digest"));
		struct imagefs_image img;
		char size[32];
		if (!digest || imagefs_image_load(store, digest, &img, &err) != 0) {
			fprintf(stderr, "aegis: image %s: %s\n", ref, digest ? err.msg : "damaged entry");
			continue;
		}
		human(image_size(&img), size, sizeof size);
		if (!o->json)
			printf("%-60s %.19s %7zu %10s\n", ref, digest, img.manifest.n_layers, size);
		json_array_append_new(out, json_pack("{s:s, s:s, s:O?, s:I, s:I, s:O?}", "ref", ref,
						     "digest", img.digest, "index", json_object_get(v, "index"),
						     "layers", (json_int_t)img.manifest.n_layers, "size",
						     (json_int_t)image_size(&img), "time", json_object_get(v, "time")));
		imagefs_image_free(&img);
	}
	json_decref(refs);
	image_report_json(o, json_pack("{s:o}", "images", out));
	return 0;
}

int cmd_inspect(const char *ref, const struct image_opts *o)
{
	struct aegis_error err = { 0 };
	struct image_root root;
	struct imagefs_image img;
	_cleanup_close_ int store = -1;
	json_t *layers = json_array(), *out;
	int r = image_store_resolve(o->state, ref, &root, &err);

	if (r == 1) {
		image_fail_kind(FAIL_NOT_FOUND);
		error_set(&err, AEGIS_E_NOTFOUND, 0, "image %s is not in the store (aegis image pull %s)", ref,
			  ref);
	}
	if (r != 0 || (store = imagefs_open(o->state, false, &err)) < 0 ||
	    imagefs_image_load(store, root.digest, &img, &err) != 0) {
		json_decref(layers);
		if (r == 0)
			image_root_free(&root);
		return image_report_error(o, &err);
	}
	for (size_t i = 0; i < img.manifest.n_layers; i++)
		json_array_append_new(layers, json_pack("{s:s, s:s, s:s, s:I, s:s}", "digest",
							img.manifest.layers[i].digest, "diff_id",
							img.config.diff_ids[i], "media_type",
							img.manifest.layers[i].media_type, "size",
							(json_int_t)img.manifest.layers[i].size, "path",
							root.layers[i]));
	out = json_pack("{s:s, s:s, s:s?, s:s, s:o, s:o*}", "ref", root.ref, "digest", root.digest,
			"index", img.index[0] ? img.index : NULL, "platform", img.config.os, "layers", layers,
			"config", json_loadb(img.config_raw, img.config_len, 0, NULL));
	if (img.config.arch[0])
		json_object_set_new(out, "platform",
				    json_sprintf("%s/%s", img.config.os[0] ? img.config.os : "linux",
						 img.config.arch));
	json_dumpf(out, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	json_decref(out);
	imagefs_image_free(&img);
	image_root_free(&root);
	return 0;
}

/* --- what is in use --- */

/* References the instances' config.json files name, canonical, and the
 * digests they are pinned to. */
static void instance_images(const char *state, json_t *names)
{
	char dir[4200];
	DIR *d;
	struct dirent *de;

	snprintf(dir, sizeof dir, "%s/instances", state);
	if (!(d = opendir(dir)))
		return;
	while ((de = readdir(d))) {
		char path[4500], canon[512];
		struct aegis_error err;
		json_t *cfg;
		const char *img, *pin;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s/config.json", dir, de->d_name);
		if (!(cfg = json_load_file(path, 0, NULL)))
			continue;
		img = json_string_value(json_object_get(cfg, "image"));
		/* the digest an instance was pinned to when it was created (its
		 * reference may name a newer image since) */
		pin = json_string_value(json_object_get(cfg, "image_digest"));
		if (pin && imageref_is_digest(pin))
			json_object_set_new(names, pin, json_true());
		if (img && strcmp(img, "host") && image_ref_canonical(img, canon, sizeof canon, &err) == 0) {
			json_object_set_new(names, canon, json_true());
			/* pinned by digest: the image is that digest, whatever its name */
			if (strchr(canon, '@'))
				json_object_set_new(names, strchr(canon, '@') + 1, json_true());
		}
		json_decref(cfg);
	}
	closedir(d);
}

struct gc {
	struct store *s;
	json_t *locked;		/* digest → fd we hold an exclusive lock with */
	json_t *busy;		/* digests a sandbox holds */
	json_t *used_names;	/* references instances name */
};

/* Lock every blob we can; the others are in use. */
static int lock_blobs(struct gc *g, struct aegis_error *err)
{
	_cleanup_close_ int dir = openat(g->s->fd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dir >= 0 ? opendir_at(dir) : NULL;
	struct dirent *de;

	if (!d)
		return error_sys(err, "image store: blobs");
	while ((de = readdir(d))) {
		char digest[80];
		int fd;
		if (strlen(de->d_name) != 64)
			continue;
		snprintf(digest, sizeof digest, "sha256:%s", de->d_name);
		if (!imageref_is_digest(digest) ||
		    (fd = openat(dir, de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd);
			json_object_set_new(g->busy, digest, json_true());
		} else {
			json_object_set_new(g->locked, digest, json_integer(fd));
		}
	}
	closedir(d);
	return 0;
}

static void unlock_blobs(struct gc *g)
{
	const char *k;
	json_t *v;

	json_object_foreach(g->locked, k, v)
		close((int)json_integer_value(v));
}

/* Is the image REF → digest in use? */
static bool in_use(struct gc *g, const char *ref, const char *digest)
{
	struct imagefs_image img;
	bool busy = json_object_get(g->used_names, ref) || json_object_get(g->used_names, digest) ||
		    json_object_get(g->busy, digest);
	struct aegis_error err;

	/* an index ref: the platform manifest is what a sandbox locks */
	if (!busy && imagefs_image_load(g->s->fd, digest, &img, &err) == 0) {
		busy = json_object_get(g->busy, img.digest) != NULL;
		imagefs_image_free(&img);
	}
	return busy;
}

/* Mark what digest's image needs. */
static void mark(struct gc *g, const char *digest, json_t *keep)
{
	struct imagefs_image img;
	struct aegis_error err;

	json_object_set_new(keep, digest, json_true());
	if (imagefs_image_load(g->s->fd, digest, &img, &err) != 0)
		return;
	json_object_set_new(keep, img.digest, json_true());
	json_object_set_new(keep, img.manifest.config.digest, json_true());
	for (size_t i = 0; i < img.manifest.n_layers; i++) {
		char key[96];
		snprintf(key, sizeof key, "layer:%s", img.config.diff_ids[i]);
		json_object_set_new(keep, key, json_true());
		/* a layer blob is wanted only until its layer is unpacked */
		if (!store_has_layer(g->s, img.config.diff_ids[i]))
			json_object_set_new(keep, img.manifest.layers[i].digest, json_true());
	}
	imagefs_image_free(&img);
}

static void sweep_dir(int store, const char *dir, const char *prefix, json_t *keep, uint64_t *freed,
		      size_t *removed)
{
	_cleanup_close_ int fd = openat(store, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? opendir_at(fd) : NULL;
	struct dirent *de;

	while (d && (de = readdir(d))) {
		char key[128];
		struct stat st;
		if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
			continue;
		snprintf(key, sizeof key, "%s%s", prefix, de->d_name);
		if (keep && json_object_get(keep, key))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			*freed += (uint64_t)st.st_size;
		if (rmtree_at(fd, de->d_name) == 0)
			(*removed)++;
	}
	if (d)
		closedir(d);
}

/* Remove every blob and layer no kept image needs, and all debris. */
static void collect(struct gc *g, const char *state, json_t *refs, json_t *result)
{
	json_t *keep = json_object(), *v, *tmp_v;
	const char *k;
	uint64_t freed = 0;
	size_t blobs = 0, layers = 0, other = 0, vm_roots = 0;

	json_object_foreach(refs, k, v) {
		const char *index = json_string_value(json_object_get(v, "index"));
		mark(g, json_string_value(json_object_get(v, "digest")) ?: "", keep);
		/* the index a pull chose from: name@<index digest> still resolves */
		if (index)
			json_object_set_new(keep, index, json_true());
	}
	json_object_foreach(g->busy, k, v)
		mark(g, k, keep);
	json_object_foreach(g->used_names, k, v)
		if (imageref_is_digest(k))
			mark(g, k, keep);	/* an instance names it by digest */
	/* kept images need not wait for the sweep: a sandbox may start them now */
	json_object_foreach_safe(g->locked, v, k, tmp_v) {
		if (json_object_get(keep, k)) {
			close((int)json_integer_value(tmp_v));
			json_object_del(g->locked, k);
		}
	}
	{
		/* blobs are keyed "sha256:<hex>" in keep; the sweep sees <hex> */
		json_t *hexkeep = json_object();
		json_object_foreach(keep, k, v) {
			if (!strncmp(k, "sha256:", 7))
				json_object_set_new(hexkeep, k + 7, json_true());
			else if (!strncmp(k, "layer:sha256:", 13))
				json_object_set_new(hexkeep, k + 6, json_true());
		}
		sweep_dir(g->s->fd, "blobs/sha256", "", hexkeep, &freed, &blobs);
		sweep_dir(g->s->fd, "layers", "sha256:", hexkeep, &freed, &layers);
		json_decref(hexkeep);
	}
	sweep_dir(g->s->fd, "tmp", "", NULL, &freed, &other);
	v = json_pack("{s:b}", "store", 1);
	sweep_dir(g->s->fd, "locks", "", v, &freed, &other);
	json_decref(v);
	json_decref(keep);
	/* the vm backend's EROFS roots of images whose layers just went */
	vm_erofs_sweep(state, &freed, &vm_roots);
	json_object_set_new(result, "blobs_removed", json_integer((json_int_t)blobs));
	json_object_set_new(result, "layers_removed", json_integer((json_int_t)layers));
	json_object_set_new(result, "vm_roots_removed", json_integer((json_int_t)vm_roots));
}

static int gc_begin(struct gc *g, struct store *s, const struct image_opts *o, json_t **refs,
		    struct aegis_error *err)
{
	*g = (struct gc){ .s = s, .locked = json_object(), .busy = json_object(),
			  .used_names = json_object() };
	if (store_open(s, o->state, LOCK_EX, err) < 0)
		return -1;
	instance_images(o->state, g->used_names);
	if (lock_blobs(g, err) < 0 || !(*refs = imagefs_refs_load(s->fd, err)))
		return -1;
	return 0;
}

static void gc_end(struct gc *g)
{
	unlock_blobs(g);
	json_decref(g->locked);
	json_decref(g->busy);
	json_decref(g->used_names);
	store_close(g->s);
}

/* Remove the refs named (canonical names, or a digest: all refs to it). */
static int remove_refs(struct gc *g, json_t *refs, char **names, int n, bool force, json_t *removed,
		       struct aegis_error *err)
{
	for (int i = 0; i < n; i++) {
		char canon[512];
		const char *k;
		json_t *v, *tmp;
		int hits = 0;
		if (image_ref_canonical(names[i], canon, sizeof canon, err) < 0)
			return image_fail_kind(FAIL_INVALID);
		json_object_foreach_safe(refs, tmp, k, v) {
			const char *d = json_string_value(json_object_get(v, "digest")) ?: "";
			if (strcmp(k, canon) && strcmp(d, canon))
				continue;
			hits++;
			if (!force && in_use(g, k, d)) {
				image_fail_kind(FAIL_IN_USE);
				return error_set(err, AEGIS_E_INVALID, 0,
						 "image %s is in use (by an instance or a running sandbox); "
						 "--force removes its name anyway", k);
			}
			json_array_append_new(removed, json_string(k));
			json_object_del(refs, k);
		}
		if (!hits) {
			image_fail_kind(FAIL_NOT_FOUND);
			return error_set(err, AEGIS_E_NOTFOUND, 0, "image %s is not in the store", names[i]);
		}
	}
	return 0;
}

static int gc_run(const struct image_opts *o, char **names, int n)
{
	struct aegis_error err = { 0 };
	struct store s = { .fd = -1, .lock = -1 };
	struct gc g;
	json_t *refs = NULL, *removed = json_array(), *result = json_object(), *v, *tmp;
	const char *k;
	int r = gc_begin(&g, &s, o, &refs, &err);

	if (r == 0 && names) {
		r = remove_refs(&g, refs, names, n, o->force, removed, &err);
	} else if (r == 0) {
		/* prune: every image nothing uses */
		json_object_foreach_safe(refs, tmp, k, v)
			if (!in_use(&g, k, json_string_value(json_object_get(v, "digest")) ?: "")) {
				json_array_append_new(removed, json_string(k));
				json_object_del(refs, k);
			}
	}
	if (r == 0 && json_array_size(removed))
		r = imagefs_refs_save(s.fd, refs, &err);
	if (r == 0)
		collect(&g, o->state, refs, result);
	gc_end(&g);
	json_decref(refs);
	if (r < 0) {
		json_decref(removed);
		json_decref(result);
		return image_report_error(o, &err);
	}
	if (!o->quiet && !o->json) {
		size_t i;
		json_array_foreach(removed, i, v)
			printf("removed %s\n", json_string_value(v));
	}
	json_object_set_new(result, "removed", removed);
	image_report_json(o, result);
	return 0;
}

int cmd_rm(char **refs, int n, const struct image_opts *o)
{
	return gc_run(o, refs, n);
}

int cmd_prune(const struct image_opts *o)
{
	return gc_run(o, NULL, 0);
}
