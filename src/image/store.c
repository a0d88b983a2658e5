/* store.c — writing the image store (layout in common/imagefs.h).
 *
 * Everything arrives in tmp/ and is renamed into place only once checked:
 * a blob after its digest matched, a layer after it unpacked completely
 * and hashed to its diff_id. So a kill -9 at any moment leaves the store
 * as it was plus debris in tmp/ that the next pull of the same thing
 * (or prune) removes. Locks (flock, released by the kernel when a process
 * dies): locks/store shared by pulls and imports, exclusive for rm and
 * prune; locks/layer-<hex> around unpacking one layer; locks/refs around
 * a refs.json update. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/hash.h"
#include "../common/util.h"
#include "fsutil.h"
#include "image.h"
#include "unpack.h"

#define LAYER_MAX_DEFAULT (32ULL << 30)

int store_open(struct store *s, const char *state, int lock_how, struct aegis_error *err)
{
	const char *max = getenv("AEGIS_IMAGE_LAYER_MAX");

	memset(s, 0, sizeof *s);
	s->lock = -1;
	s->layer_max = LAYER_MAX_DEFAULT;
	if (max && *max && parse_size(max, &s->layer_max) < 0)
		return error_set(err, AEGIS_E_INVALID, 0, "AEGIS_IMAGE_LAYER_MAX: bad size '%s'", max);
	snprintf(s->dir, sizeof s->dir, "%s/images", state);
	if ((s->fd = imagefs_open(state, true, err)) < 0)
		return -1;
	if ((s->lock = imagefs_lock(s->fd, "store", lock_how, err)) < 0) {
		if (errno == EWOULDBLOCK)
			error_set(err, AEGIS_E_SETUP, 0, "the image store is busy (a pull, rm or prune runs)");
		close(s->fd);
		s->fd = -1;
		return -1;
	}
	return 0;
}

void store_close(struct store *s)
{
	if (s->lock >= 0)
		close(s->lock);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = s->lock = -1;
}

int store_verify_fd(int fd, const char *digest, struct aegis_error *err)
{
	char hex[HASH_HEX_LEN + 1];

	if (lseek(fd, 0, SEEK_SET) < 0 || hash_sha256_fd(fd, hex) < 0)
		return error_sys(err, "read blob %s", digest);
	if (strcmp(hex, digest + 7) != 0) {
		image_fail_kind(FAIL_DIGEST);
		return error_set(err, AEGIS_E_INVALID, 0, "digest mismatch: blob %s has sha256:%s", digest,
				 hex);
	}
	return lseek(fd, 0, SEEK_SET) < 0 ? error_sys(err, "read blob %s", digest) : 0;
}

int store_put_blob(struct store *s, const char *digest, const char *buf, size_t len,
		   struct aegis_error *err)
{
	char name[96], tmp[96], hex[HASH_HEX_LEN + 1];
	_cleanup_close_ int fd = -1;

	hash_sha256_hex(buf, len, hex);
	if (strcmp(hex, digest + 7) != 0) {
		image_fail_kind(FAIL_DIGEST);
		return error_set(err, AEGIS_E_INVALID, 0, "digest mismatch: %s has sha256:%s", digest, hex);
	}
	imagefs_blob_name(digest, name);
	if (faccessat(s->fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	snprintf(tmp, sizeof tmp, "tmp/blob-%.16s.%d", digest + 7, (int)getpid());
	fd = openat(s->fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || write_all(fd, buf, len) < 0 || fsync(fd) < 0 ||
	    renameat(s->fd, tmp, s->fd, name) < 0) {
		error_sys(err, "store blob %s", digest);
		unlinkat(s->fd, tmp, 0);
		return -1;
	}
	return 0;
}

int store_set_ref(struct store *s, const char *ref, const char *digest, const char *index,
		  struct aegis_error *err)
{
	_cleanup_close_ int lock = imagefs_lock(s->fd, "refs", LOCK_EX, err);
	json_t *refs, *entry;
	char when[32];
	time_t now = time(NULL);
	int r;

	if (lock < 0)
		return -1;
	if (!(refs = imagefs_refs_load(s->fd, err)))
		return -1;
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	entry = json_pack("{s:s, s:s}", "digest", digest, "time", when);
	if (index && *index)
		json_object_set_new(entry, "index", json_string(index));
	json_object_set_new(refs, ref, entry);
	r = imagefs_refs_save(s->fd, refs, err);
	json_decref(refs);
	return r;
}

bool store_has_layer(struct store *s, const char *diff_id)
{
	char name[96];
	struct stat st;

	imagefs_layer_name(diff_id, name);
	return fstatat(s->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Unpack into tmp/layer-<hex> and check it; the caller holds the lock. */
static int unpack_checked(struct store *s, int blob_fd, const char *diff_id, const char *tmp,
			  struct aegis_error *err)
{
	_cleanup_close_ int dir = -1;
	struct unpack_result res;

	if (rmtree_at(s->fd, tmp) < 0 || mkdirat(s->fd, tmp, 0755) < 0 ||
	    (dir = openat(s->fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return error_sys(err, "layer %s: make %s", diff_id, tmp);
	if (lseek(blob_fd, 0, SEEK_SET) < 0)
		return error_sys(err, "layer %s", diff_id);
	if (unpack_run(blob_fd, dir, s->layer_max, &res, err) < 0)
		return error_prefix(err, "layer %s", diff_id);
	if (!res.ok) {
		image_fail_kind(strstr(res.msg, "over the limit") ? FAIL_TOO_LARGE : FAIL_LAYER);
		return error_set(err, AEGIS_E_INVALID, 0, "layer %s: %s", diff_id, res.msg);
	}
	if (strcmp(res.diff_id, diff_id) != 0) {
		image_fail_kind(FAIL_DIGEST);
		return error_set(err, AEGIS_E_INVALID, 0,
				 "digest mismatch: the layer unpacks to %s, its config says %s", res.diff_id,
				 diff_id);
	}
	if (res.neutralised)
		fprintf(stderr, "aegis-image: layer %.19s: %llu entries neutralised (paths out of the layer, "
			"links through symlinks, devices)\n", diff_id, (unsigned long long)res.neutralised);
	/* the files reach the disk before the name that says they are complete */
	if (syncfs(dir) < 0)
		return error_sys(err, "layer %s: sync", diff_id);
	return 0;
}

int store_unpack_layer(struct store *s, int blob_fd, const char *diff_id, struct aegis_error *err)
{
	char lockname[96], tmp[96], name[96];
	_cleanup_close_ int lock = -1;

	snprintf(lockname, sizeof lockname, "layer-%s", diff_id + 7);
	snprintf(tmp, sizeof tmp, "tmp/layer-%s", diff_id + 7);
	imagefs_layer_name(diff_id, name);
	if ((lock = imagefs_lock(s->fd, lockname, LOCK_EX, err)) < 0)
		return -1;
	if (store_has_layer(s, diff_id))
		return 0;	/* another pull unpacked it while we waited */
	if (unpack_checked(s, blob_fd, diff_id, tmp, err) < 0) {
		rmtree_at(s->fd, tmp);
		return -1;
	}
	if (renameat(s->fd, tmp, s->fd, name) < 0) {
		error_sys(err, "layer %s: rename into place", diff_id);
		rmtree_at(s->fd, tmp);
		return -1;
	}
	return 0;
}
