/* imagefs.c — reading and writing the image store's files (imagefs.h).
 *
 * Blobs are trusted only as far as their names: every read hashes the
 * content again, so a damaged or edited store is an error and never a
 * different image. Writes of shared files are whole-file renames, so a
 * reader sees the old or the new version, never a torn one. */
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
#include "hash.h"
#include "imagefs.h"
#include "imageref.h"
#include "paths.h"
#include "util.h"

#define REFS_MAX (16u << 20)

static const char *const store_dirs[] = { "blobs", "blobs/sha256", "layers", "locks", "tmp", NULL };

int imagefs_open(const char *state_dir, bool create, struct aegis_error *err)
{
	char dir[4096];
	int fd;

	if ((size_t)snprintf(dir, sizeof dir, "%s/images", state_dir) >= sizeof dir)
		return error_set(err, AEGIS_E_INVALID, 0, "state directory path too long");
	if (create) {
		if (paths_private_dir(state_dir, err) < 0 || paths_private_dir(dir, err) < 0)
			return error_prefix(err, "image store");
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int e = errno;
		error_set(err, AEGIS_E_SETUP, e, "image store %s", dir);
		errno = e;
		return -1;
	}
	for (size_t i = 0; create && store_dirs[i]; i++)
		if (mkdirat(fd, store_dirs[i], 0700) < 0 && errno != EEXIST) {
			error_sys(err, "image store: mkdir %s/%s", dir, store_dirs[i]);
			close(fd);
			return -1;
		}
	return fd;
}

void imagefs_blob_name(const char *digest, char out[96])
{
	snprintf(out, 96, "blobs/sha256/%s", digest + 7);
}

void imagefs_layer_name(const char *diff_id, char out[96])
{
	snprintf(out, 96, "layers/%s", diff_id + 7);
}

static int open_blob(int store, const char *digest, struct aegis_error *err)
{
	char name[96];
	int fd;

	if (!imageref_is_digest(digest))
		return error_set(err, AEGIS_E_INVALID, 0, "'%.80s' is not a sha256 digest", digest);
	imagefs_blob_name(digest, name);
	fd = openat(store, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT)
		return -2;
	if (fd < 0)
		return error_sys(err, "image store: open blob %s", digest);
	return fd;
}

int imagefs_blob_open_locked(int store, const char *digest, int how, struct aegis_error *err)
{
	_cleanup_close_ int fd = open_blob(store, digest, err);
	struct stat st;

	if (fd < 0)
		return fd;
	if (how && flock(fd, how) < 0)
		return error_sys(err, "image store: lock %s", digest);
	if (fstat(fd, &st) < 0)
		return error_sys(err, "image store: stat %s", digest);
	if (st.st_nlink == 0)
		return -2;	/* removed (by prune) while we waited for the lock */
	return steal_fd(&fd);
}

int imagefs_blob_read(int store, const char *digest, size_t max, char **buf, size_t *len,
		      struct aegis_error *err)
{
	_cleanup_close_ int fd = open_blob(store, digest, err);
	_cleanup_free_ char *data = NULL;
	char hex[HASH_HEX_LEN + 1];
	struct stat st;
	size_t got = 0;

	if (fd == -2)
		return 1;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		return error_sys(err, "image store: stat blob %s", digest);
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max)
		return error_set(err, AEGIS_E_INVALID, 0, "image store: blob %s is %s", digest,
				 S_ISREG(st.st_mode) ? "too large" : "not a file");
	if (!(data = malloc((size_t)st.st_size + 1)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "image store: read %s", digest);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return error_set(err, AEGIS_E_SETUP, n < 0 ? errno : EIO, "image store: read blob %s",
					 digest);
		got += (size_t)n;
	}
	data[got] = '\0';
	hash_sha256_hex(data, got, hex);
	if (strcmp(hex, digest + 7) != 0)
		return error_set(err, AEGIS_E_INVALID, 0,
				 "image store is damaged: blob %s has digest sha256:%s", digest, hex);
	*buf = steal_pointer(&data);
	*len = got;
	return 0;
}

/* The manifest of an image from a manifest or index digest. */
static int load_manifest(int store, const char *digest, struct imagefs_image *out,
			 struct aegis_error *err)
{
	_cleanup_free_ char *buf = NULL;
	struct oci_index idx;
	enum oci_kind kind;
	size_t len;
	int r, pick;

	if ((r = imagefs_blob_read(store, digest, OCI_MANIFEST_MAX, &buf, &len, err)) != 0)
		return r;
	if (oci_kind_of(NULL, buf, len, &kind, err) < 0)
		return error_prefix(err, "%s", digest);
	if (kind == OCI_KIND_MANIFEST) {
		snprintf(out->digest, sizeof out->digest, "%s", digest);
		return oci_parse_manifest(buf, len, &out->manifest, err) < 0 ?
			error_prefix(err, "%s", digest) : 0;
	}
	if (out->index[0])
		return error_set(err, AEGIS_E_INVALID, 0, "%s: an index inside an index is not supported",
				 digest);
	if (oci_parse_index(buf, len, &idx, err) < 0)
		return error_prefix(err, "%s", digest);
	{
		char os[32], arch[32], variant[32];
		oci_host_platform(os, arch, variant);
		pick = oci_select_platform(&idx, os, arch, variant, err);
	}
	snprintf(out->index, sizeof out->index, "%s", digest);
	if (pick >= 0) {
		char child[72];
		snprintf(child, sizeof child, "%s", idx.manifests[pick].digest);
		oci_index_free(&idx);
		return load_manifest(store, child, out, err);
	}
	oci_index_free(&idx);
	return -1;
}

int imagefs_image_load(int store, const char *digest, struct imagefs_image *out,
		       struct aegis_error *err)
{
	int r;

	memset(out, 0, sizeof *out);
	if ((r = load_manifest(store, digest, out, err)) != 0)
		goto fail;
	r = imagefs_blob_read(store, out->manifest.config.digest, OCI_CONFIG_MAX, &out->config_raw,
			      &out->config_len, err);
	if (r != 0)
		goto fail;
	r = -1;
	if (oci_parse_config(out->config_raw, out->config_len, &out->config, err) < 0) {
		error_prefix(err, "%s", out->manifest.config.digest);
		goto fail;
	}
	if (out->config.n_diff_ids != out->manifest.n_layers) {
		error_set(err, AEGIS_E_INVALID, 0, "image %s: %zu layers but %zu diff_ids in its config",
			  out->digest, out->manifest.n_layers, out->config.n_diff_ids);
		goto fail;
	}
	return 0;
fail:
	imagefs_image_free(out);
	return r;
}

void imagefs_image_free(struct imagefs_image *img)
{
	oci_manifest_free(&img->manifest);
	oci_config_free(&img->config);
	free(img->config_raw);
	img->config_raw = NULL;
}

json_t *imagefs_refs_load(int store, struct aegis_error *err)
{
	_cleanup_close_ int fd = openat(store, "refs.json", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_free_ char *buf = NULL;
	json_error_t je;
	struct stat st;
	json_t *j;

	if (fd < 0 && errno == ENOENT)
		return json_object();
	if (fd < 0 || fstat(fd, &st) < 0) {
		error_sys(err, "image store: refs.json");
		return NULL;
	}
	if (st.st_size > REFS_MAX || !(buf = malloc((size_t)st.st_size + 1)) ||
	    read(fd, buf, (size_t)st.st_size) != st.st_size) {
		error_set(err, AEGIS_E_SETUP, 0, "image store: cannot read refs.json");
		return NULL;
	}
	j = json_loadb(buf, (size_t)st.st_size, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(j) || !json_is_object(json_object_get(j, "refs"))) {
		json_decref(j);
		error_set(err, AEGIS_E_INVALID, 0, "image store is damaged: refs.json: %s",
			  j ? "no \"refs\" object" : je.text);
		return NULL;
	}
	json_incref(json_object_get(j, "refs"));
	{
		json_t *refs = json_object_get(j, "refs");
		json_decref(j);
		return refs;
	}
}

int imagefs_refs_save(int store, json_t *refs, struct aegis_error *err)
{
	json_t *doc = json_pack("{s:i, s:O}", "version", 1, "refs", refs);
	_cleanup_free_ char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	char tmp[64];
	_cleanup_close_ int fd = -1;

	json_decref(doc);
	if (!text)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "image store: refs.json");
	snprintf(tmp, sizeof tmp, "tmp/refs.json.%d", (int)getpid());
	fd = openat(store, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0 ||
	    fsync(fd) < 0 || renameat(store, tmp, store, "refs.json") < 0) {
		error_sys(err, "image store: write refs.json");
		unlinkat(store, tmp, 0);
		return -1;
	}
	fsync(store);
	return 0;
}

int imagefs_lock(int store, const char *name, int how, struct aegis_error *err)
{
	char path[160];
	_cleanup_close_ int fd = -1;

	snprintf(path, sizeof path, "locks/%s", name);
	fd = openat(store, path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return error_sys(err, "image store: lock %s", name);
	while (flock(fd, how) < 0) {
		if (errno == EINTR)
			continue;
		{
			int e = errno;
			error_set(err, AEGIS_E_SETUP, e, "image store: lock %s", name);
			errno = e;
		}
		return -1;
	}
	return steal_fd(&fd);
}
