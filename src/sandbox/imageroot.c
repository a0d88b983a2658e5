/* imageroot.c — an OCI image as the sandbox's root: its unpacked layers
 * (the image store's, shared by every sandbox and never written) under a
 * writable layer of the run's own, assembled with overlayfs. Nothing is
 * copied: a cached image starts as fast as the host image.
 *
 * The layers' files belong to the store's user. Run by root, the
 * supervisor attaches each layer through an idmapped mount that shows
 * them owned by sandbox root (as the workspace is), so the command can
 * copy them up and change them in its layer; rootless, the store is the
 * user's own and sandbox root already is that user.
 *
 * An image is data from elsewhere: before the root is pivoted into, any
 * name in it may be a symlink aimed at the host. Every mount point and
 * every file aegis writes there is opened component by component without
 * following a symlink; one found where aegis needs a directory or a file
 * is removed from the run's layer (the image is untouched) and replaced. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mount.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/util.h"
#include "sandbox.h"

#define LAYERS_MAX 128
#define KEPT (-2)		/* overlayfs allows 500; images rarely have 30 */

size_t imageroot_count(const struct aegis_spec *spec)
{
	size_t n = 0;

	while (spec->image_layers && spec->image_layers[n])
		n++;
	return n;
}

/* Root only, before clone: each layer as a detached, read-only tree whose
 * files (the store user's) show as sandbox root's. fds[] gets one per
 * layer; 0, or -1 with err and nothing left open. */
int imageroot_prepare(const struct sandbox_ctx *ctx, int *fds, struct aegis_error *err)
{
	const struct aegis_spec *spec = ctx->spec;
	size_t n = imageroot_count(spec), i;
	struct mount_attr attr = {
		.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
	};
	_cleanup_close_ int userns = -1;
	struct stat st;

	for (i = 0; i < n; i++)
		fds[i] = -1;
	for (i = 0; i < n; i++) {
		fds[i] = (int)syscall(SYS_open_tree, AT_FDCWD, spec->image_layers[i],
				      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
		if (fds[i] < 0 || fstat(fds[i], &st) < 0) {
			error_sys(err, "image layer %s", spec->image_layers[i]);
			goto fail;
		}
		/* one mapping for all: every layer belongs to the store's user */
		if (userns < 0 &&
		    (userns = userns_idmap_fd(st.st_uid, st.st_gid, ctx->host_uid, ctx->host_gid, err)) < 0) {
			error_prefix(err, "image layer %s", spec->image_layers[i]);
			goto fail;
		}
		attr.userns_fd = (uint64_t)userns;
		if (syscall(SYS_mount_setattr, fds[i], "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
			error_sys(err, "image layer %s: idmapped mount", spec->image_layers[i]);
			goto fail;
		}
	}
	return 0;
fail:
	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return -1;
}

/* Layer i's tree: the supervisor's, or (rootless) a clone made here. */
static int layer_tree(const struct sandbox_ctx *ctx, size_t i, struct aegis_error *err)
{
	int tree;

	if (ctx->layer_fds && ctx->layer_fds[i] >= 0)
		return ctx->layer_fds[i];
	tree = (int)syscall(SYS_open_tree, AT_FDCWD, ctx->spec->image_layers[i],
			    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
	if (tree < 0)
		return error_sys(err, "image layer %s", ctx->spec->image_layers[i]);
	return tree;
}

/* The overlay at STAGE/root: the layers' trees attached at STAGE/l<i>, the
 * run's layer in STAGE/upper on the staging tmpfs (which is
 * limits.disk_bytes: the disk limit of everything the command writes
 * outside /tmp). trees[] are ours: each is closed here. */
static int mount_overlay(const struct sandbox_ctx *ctx, int *trees, struct aegis_error *err)
{
	size_t n = imageroot_count(ctx->spec), off;
	char *opts = malloc(64 + n * 8), name[16];
	int r = -1;

	if (!opts)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "image: overlay options");
	/* lowerdir lists the top layer first */
	off = (size_t)sprintf(opts, "lowerdir=");
	for (size_t i = 0; i < n; i++) {
		size_t layer = n - 1 - i;
		int moved;
		snprintf(name, sizeof name, "l%zu", layer);
		if (mounts_mkdir(name, err) < 0)
			goto out;
		moved = (int)syscall(SYS_move_mount, trees[layer], "", AT_FDCWD, name, MOVE_MOUNT_F_EMPTY_PATH);
		if (moved < 0) {
			error_sys(err, "image: attach layer %s", ctx->spec->image_layers[layer]);
			goto out;
		}
		off += (size_t)sprintf(opts + off, "%s%s", i ? ":" : "", name);
	}
	/* userxattr: overlay in a user namespace reads user.overlay.* (the
	 * store writes opaque directories that way) */
	sprintf(opts + off, ",upperdir=upper,workdir=work,userxattr");
	if (mounts_mkdir("upper", err) < 0 || mounts_mkdir("work", err) < 0 || mounts_mkdir("root", err) < 0)
		goto out;
	if (mount("overlay", "root", "overlay", MS_NOSUID | MS_NODEV, opts) < 0) {
		error_sys(err, "image: overlay of %zu layers", n);
		goto out;
	}
	r = 0;
out:
	for (size_t i = 0; i < n; i++)
		close(trees[i]);
	free(opts);
	return r;
}

/* dirfd/name as a real directory of the run's layer: a symlink or a file
 * of the image there is removed (whited out) first, unless keep: then
 * KEPT says "not a directory here" and the image is left as it is. The
 * directory's fd, KEPT, or -1 with err. */
static int real_dir_at(int dirfd, const char *name, bool keep, struct aegis_error *err)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if ((errno == ELOOP || errno == ENOTDIR) && keep)
		return KEPT;
	if (errno == ELOOP || errno == ENOTDIR) {
		if (unlinkat(dirfd, name, 0) < 0)
			return error_sys(err, "image: replace /%s", name);
	} else if (errno != ENOENT) {
		return error_sys(err, "image: open /%s", name);
	}
	if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
		return error_sys(err, "image: mkdir /%s", name);
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? error_sys(err, "image: open /%s", name) : fd;
}

/* Each directory of path (relative to the root, cwd) made real; keep:
 * only the missing ones are made, and the walk stops at a symlink (which
 * the sandbox resolves in its own root later). */
static int real_path(const char *path, bool keep, struct aegis_error *err)
{
	char copy[256], *save = NULL;
	int dir = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dir < 0)
		return error_sys(err, "image: open the root");
	snprintf(copy, sizeof copy, "%s", path);
	for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
		int next = real_dir_at(dir, part, keep, err);
		close(dir);
		if (next < 0)
			return next == KEPT ? 0 : -1;
		dir = next;
	}
	close(dir);
	return 0;
}

/* dirfd/name replaced by a new regular file holding text. */
static int etc_write(int dirfd, const char *name, const char *text, struct aegis_error *err)
{
	int fd;

	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT && errno != EISDIR)
		return error_sys(err, "image: replace /etc/%s", name);
	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return error_sys(err, "image: create /etc/%s", name);
	if (write_all(fd, text, strlen(text)) < 0) {
		close(fd);
		return error_sys(err, "image: write /etc/%s", name);
	}
	close(fd);
	return 0;
}

/* The sandbox's identity in the image's /etc; the rest of /etc is the image's. */
static int write_identity(const struct aegis_spec *spec, struct aegis_error *err)
{
	char hosts[256], name[128];
	_cleanup_close_ int etc = -1;

	if ((etc = real_dir_at(AT_FDCWD, "etc", false, err)) < 0)
		return -1;
	snprintf(hosts, sizeof hosts,
		 "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n",
		 spec->hostname);
	snprintf(name, sizeof name, "%s\n", spec->hostname);
	return etc_write(etc, "hosts", hosts, err) < 0 ? -1 : etc_write(etc, "hostname", name, err);
}

int imageroot_build(const struct sandbox_ctx *ctx, const char *stage, struct aegis_error *err)
{
	static const char *const mount_points[] = { "proc", "dev", "tmp", "workspace", "run/secrets", NULL };
	char opts[64];

	size_t n = imageroot_count(ctx->spec);
	int trees[LAYERS_MAX];

	if (n > LAYERS_MAX)
		return error_set(err, AEGIS_E_INVALID, 0, "image: more than %d layers", LAYERS_MAX);
	/* every layer in hand before the staging tmpfs goes over the host's
	 * view (the store may well be under /tmp) */
	for (size_t i = 0; i < n; i++)
		if ((trees[i] = layer_tree(ctx, i, err)) < 0) {
			while (i--)
				close(trees[i]);
			return -1;
		}
	snprintf(opts, sizeof opts, "mode=0755,size=%llu", (unsigned long long)ctx->spec->limits.disk_bytes);
	if (mounts_tmpfs(stage, opts, MS_NOSUID | MS_NODEV, err) < 0 ||
	    (chdir(stage) < 0 && error_sys(err, "chdir %s", stage))) {
		for (size_t i = 0; i < n; i++)
			close(trees[i]);
		return -1;
	}
	if (mount_overlay(ctx, trees, err) < 0)
		return -1;
	if (chdir("root") < 0)
		return error_sys(err, "chdir into the image root");
	for (int i = 0; mount_points[i]; i++) {
		if (!strcmp(mount_points[i], "run/secrets") &&
		    !(ctx->spec->secret_files && ctx->spec->secret_files[0]))
			continue;
		if (real_path(mount_points[i], false, err) < 0)
			return -1;
	}
	/* the working directory, made if the image lacks it (as docker does) */
	if (real_path(ctx->spec->cwd + 1, true, err) < 0)
		return -1;
	return write_identity(ctx->spec, err);
}
