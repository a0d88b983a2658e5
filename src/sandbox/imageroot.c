/* imageroot.c — an OCI image as the sandbox's root: its unpacked layers
 * (the image store's, shared by every sandbox and never written) under a
 * writable layer of the run's own, assembled with overlayfs. Nothing is
 * copied: a cached image starts as fast as the host image.
 *
 * The layers' files belong to the store's user. Run by root, the
 * supervisor attaches each layer through an idmapped mount that shows
 * them owned by sandbox root (as the workspace is), so the command can
 * copy them up and change them in its layer; rootless, the store is the
 * user's own and sandbox root already is that user. In a vm guest the
 * image comes merged, as one EROFS tree the host built with sandbox root
 * as the owner of its files (src/vm/erofs.c).
 *
 * An image is data from elsewhere: before the root is pivoted into, any
 * name in it may be a symlink aimed at the host. Every mount point and
 * every file aegis writes there is opened component by component without
 * following a symlink; one found where aegis needs a file is removed from
 * the run's layer (the image is untouched) and replaced, one found where it
 * needs a directory is hidden by a directory made in the run's layer before
 * the overlay is mounted again.
 *
 * In a vm guest the guest's root builds the same root before clone, one
 * overlay over the EROFS tree (imageroot_prepare_guest says why), and the
 * child attaches it whole. */
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

#define LAYERS_MAX 128		/* overlayfs allows 500; images rarely have 30 */
#define KEPT (-2)
#define DEPTH_MAX 4		/* real_dirs[] are two names deep at most */
/* where a vm guest's helper stages the root: the guest's /tmp, covered in
 * the helper's own mount namespace only (guestbuild.c) */
#define GUEST_STAGE "/tmp"

/* The directories aegis mounts on or writes in before the root is pivoted
 * into: each must be a real directory of the root, never an image's link. */
static const char *const real_dirs[] = { "etc", "proc", "dev", "tmp", "workspace", "run/secrets", NULL };

/* A name of the image that is a symlink or a file where aegis needs a
 * directory: its path, and the directories above it as the image has them. */
struct replace {
	char path[256];
	size_t depth;
	struct stat above[DEPTH_MAX];
};

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

static int mount_root_overlay(const char *opts, size_t n, struct aegis_error *err)
{
	if (mount("overlay", "root", "overlay", MS_NOSUID | MS_NODEV, opts) < 0)
		return error_sys(err, "image: overlay of %zu layers", n);
	return 0;
}

/* The layers' trees attached at l<i> on the staging tmpfs (cwd); *lowersp
 * gets them as lowerdir lists them, the top layer first ("l1:l0"), the
 * caller's to free. trees[] are ours: each is closed here. */
static int attach_layers(const struct sandbox_ctx *ctx, int *trees, char **lowersp, struct aegis_error *err)
{
	size_t n = imageroot_count(ctx->spec), off = 0;
	char *lowers = malloc(n * 8 + 1), name[16];	/* "l127:" at most per layer */
	int r = -1;

	if (!lowers) {
		error_set(err, AEGIS_E_SETUP, ENOMEM, "image: overlay options");
		goto out;
	}
	lowers[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t layer = n - 1 - i;

		snprintf(name, sizeof name, "l%zu", layer);
		if (mounts_mkdir(name, err) < 0)
			goto out;
		if (syscall(SYS_move_mount, trees[layer], "", AT_FDCWD, name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
			error_sys(err, "image: attach layer %s", ctx->spec->image_layers[layer]);
			goto out;
		}
		off += (size_t)sprintf(lowers + off, "%s%s", i ? ":" : "", name);
	}
	*lowersp = lowers, lowers = NULL;
	r = 0;
out:
	for (size_t i = 0; i < n; i++)
		close(trees[i]);
	free(lowers);
	return r;
}

/* The overlay at STAGE/root (cwd: STAGE, the staging tmpfs, which is
 * limits.disk_bytes: the disk limit of everything the command writes
 * outside /tmp): the layers under the run's layer in STAGE/upper. trees[]
 * are ours. *optsp gets the mount options (to mount it again), the
 * caller's to free. */
static int mount_overlay(const struct sandbox_ctx *ctx, int *trees, char **optsp, struct aegis_error *err)
{
	_cleanup_free_ char *lowers = NULL, *opts = NULL;

	if (attach_layers(ctx, trees, &lowers, err) < 0)
		return -1;
	/* userxattr: overlay in a user namespace reads user.overlay.* (the
	 * store writes opaque directories that way) */
	if (asprintf(&opts, "lowerdir=%s,upperdir=upper,workdir=work,userxattr", lowers) < 0) {
		opts = NULL;	/* undefined after a failure */
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "image: overlay options");
	}
	if (mounts_mkdir("upper", err) < 0 || mounts_mkdir("work", err) < 0 || mounts_mkdir("root", err) < 0 ||
	    mount_root_overlay(opts, imageroot_count(ctx->spec), err) < 0)
		return -1;
	*optsp = opts, opts = NULL;
	return 0;
}

/* vm guest, as the guest's root (see imageroot_prepare_guest): the image
 * comes as one tree, the EROFS root the host built (src/vm/erofs.c) with
 * the layers already merged, whiteouts and opaque marks applied, so it is
 * the run's lower layer as it is. STAGE/root: that under the run's layer,
 * with the overlay's trusted.* xattrs, which tmpfs holds on 6.1, and the
 * features that would make it behave otherwise than the ns backend's
 * userxattr overlay off (GUESTBUILD_OVERLAY_OPTS). */
static int mount_guest_overlay(const struct sandbox_ctx *ctx, int *trees, char **optsp, struct aegis_error *err)
{
	_cleanup_free_ char *lowers = NULL, *opts = NULL;
	size_t n = imageroot_count(ctx->spec);

	if (n != 1) {
		for (size_t i = 0; i < n; i++)
			close(trees[i]);
		return error_set(err, AEGIS_E_SETUP, 0, "image: a vm guest takes one merged image tree, not %zu", n);
	}
	if (attach_layers(ctx, trees, &lowers, err) < 0)
		return -1;
	if (mounts_mkdir("upper", err) < 0 || mounts_mkdir("work", err) < 0 || mounts_mkdir("root", err) < 0)
		return -1;
	/* the root directory is the upper one's: sandbox root's, as when
	 * the child makes it */
	if (chown("upper", ctx->host_uid, ctx->host_gid) < 0)
		return error_sys(err, "image: the run's layer: chown");
	if (asprintf(&opts, "lowerdir=%s,upperdir=upper,workdir=work," GUESTBUILD_OVERLAY_OPTS, lowers) < 0) {
		opts = NULL;	/* undefined after a failure */
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "image: overlay options");
	}
	if (mount_root_overlay(opts, n, err) < 0)
		return -1;
	*optsp = opts, opts = NULL;
	return 0;
}

/* Walks path in the mounted root (cwd) without following anything: 1 with
 * *r filled at the first name that is not a directory, 0 when there is none
 * (a missing name is made later, a plain mkdir in the overlay), or -1. */
static int find_nondir(const char *path, struct replace *r, struct aegis_error *err)
{
	char copy[256], *save = NULL;
	size_t off = 0;
	int dir = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dir < 0)
		return error_sys(err, "image: open the root");
	snprintf(copy, sizeof copy, "%s", path);
	r->depth = 0;
	for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
		int next = openat(dir, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), e = errno;

		off += (size_t)snprintf(r->path + off, sizeof r->path - off, "%s%s", off ? "/" : "", part);
		if (next < 0) {
			close(dir);
			if (e == ENOENT)
				return 0;
			if (e == ELOOP || e == ENOTDIR)
				return 1;
			errno = e;
			return error_sys(err, "image: open /%s", r->path);
		}
		if (r->depth == DEPTH_MAX) {
			close(next), close(dir);
			return error_set(err, AEGIS_E_SETUP, 0, "image: /%s: too deep", r->path);
		}
		if (fstat(next, &r->above[r->depth]) < 0) {
			error_sys(err, "image: stat /%s", r->path);
			close(next), close(dir);
			return -1;
		}
		r->depth++;
		close(dir);
		dir = next;
	}
	close(dir);
	return 0;
}

/* r->path made a directory in the run's layer (upper, not mounted): the
 * directories above it with the mode and times the image gives them, as a
 * copy-up makes them, and r->path itself new and empty. A directory in the
 * upper layer over a symlink or a file of a lower one hides it: overlayfs
 * looks no further down past a non-directory. That takes no whiteout and no
 * opaque xattr: removing the link and making the directory through the
 * overlay does, and an upper filesystem without user xattrs (tmpfs before
 * Linux 6.6) cannot hold one under a userxattr overlay: that mkdir fails
 * EIO. */
static int upper_dirs(int upper, const struct replace *r, const struct sandbox_ctx *owner,
		      struct aegis_error *err)
{
	char copy[256], *save = NULL;
	int fds[DEPTH_MAX + 1], n = 0, rc = -1;

	snprintf(copy, sizeof copy, "%s", r->path);
	for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
		bool last = (size_t)n == r->depth;
		int dir = n ? fds[n - 1] : upper;

		if (mkdirat(dir, part, 0755) < 0 && errno != EEXIST) {
			error_sys(err, "image: make /%s a directory", r->path);
			goto out;
		}
		fds[n] = openat(dir, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fds[n] < 0) {
			error_sys(err, "image: open /%s in the run's layer", r->path);
			goto out;
		}
		n++;
		/* the guest's root makes them: they get the owner the child's
		 * mkdir would have given them, sandbox root's */
		if (owner && fchown(fds[n - 1], owner->host_uid, owner->host_gid) < 0) {
			error_sys(err, "image: /%s in the run's layer: chown", r->path);
			goto out;
		}
		if (last)
			break;
	}
	/* times last: each mkdir below a directory moved its mtime */
	for (int i = 0; i < n - 1; i++) {
		const struct stat *st = &r->above[i];
		struct timespec times[2] = { st->st_atim, st->st_mtim };

		if (fchmod(fds[i], st->st_mode & 07777) < 0 || futimens(fds[i], times) < 0) {
			error_sys(err, "image: /%s in the run's layer", r->path);
			goto out;
		}
	}
	rc = 0;
out:
	while (n--)
		close(fds[n]);
	return rc;
}

/* Every real_dirs[] name that is an image's symlink or file made a
 * directory of the run's layer: the overlay (at root, cwd) is taken down,
 * the upper layer given those directories, and the overlay mounted again.
 * Nothing has been made through the overlay yet, so its upper layer holds
 * nothing else that could be out of step. guest: the guest's root does it
 * (imageroot_prepare_guest), for the sandbox. */
static int replace_nondirs(const struct sandbox_ctx *ctx, const char *opts, bool guest, struct aegis_error *err)
{
	const struct aegis_spec *spec = ctx->spec;
	struct replace reps[sizeof real_dirs / sizeof *real_dirs];
	size_t n = 0;
	_cleanup_close_ int upper = -1;

	for (size_t i = 0; real_dirs[i]; i++) {
		int r;

		if (!strcmp(real_dirs[i], "run/secrets") && !(spec->secret_files && spec->secret_files[0]))
			continue;
		if ((r = find_nondir(real_dirs[i], &reps[n], err)) < 0)
			return -1;
		n += (size_t)r;
	}
	if (!n)
		return 0;
	if (chdir("..") < 0)
		return error_sys(err, "image: leave the root");
	if (umount2("root", UMOUNT_NOFOLLOW) < 0)
		return error_sys(err, "image: unmount the overlay to replace /%s", reps[0].path);
	if ((upper = open("upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return error_sys(err, "image: open the run's layer");
	for (size_t i = 0; i < n; i++)
		if (upper_dirs(upper, &reps[i], guest ? ctx : NULL, err) < 0)
			return -1;
	if (mount_root_overlay(opts, imageroot_count(spec), err) < 0)
		return -1;
	return chdir("root") < 0 ? error_sys(err, "chdir into the image root") : 0;
}

/* dirfd/name as a directory of the root, made when missing; keep: a
 * symlink or a file there is left as it is (KEPT). Otherwise one there is
 * an error: replace_nondirs made every real_dirs[] name a directory, and
 * nothing is ever followed. The directory's fd, KEPT, or -1 with err. */
static int real_dir_at(int dirfd, const char *name, bool keep, struct aegis_error *err)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if ((errno == ELOOP || errno == ENOTDIR) && keep)
		return KEPT;
	if (errno == ELOOP || errno == ENOTDIR)
		return error_sys(err, "image: /%s is not a directory", name);
	if (errno != ENOENT)
		return error_sys(err, "image: open /%s", name);
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

/* Every layer's tree in hand, then the staging tmpfs of limits.disk_bytes
 * at stage, made cwd; trees[] gets one per layer (closed on failure). */
static int stage_layers(const struct sandbox_ctx *ctx, const char *stage, int *trees, struct aegis_error *err)
{
	size_t n = imageroot_count(ctx->spec);
	char opts[64];

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
	return 0;
}

/* The builder's part (imageroot_prepare_guest), in a mount namespace of
 * its own (guestbuild.c): the root staged and fds[0] the root as a
 * detached tree. */
static int guest_root_tree(const struct sandbox_ctx *ctx, int *fds, struct aegis_error *err)
{
	_cleanup_free_ char *opts = NULL;
	int trees[LAYERS_MAX], tree;

	if (stage_layers(ctx, GUEST_STAGE, trees, err) < 0 || mount_guest_overlay(ctx, trees, &opts, err) < 0)
		return -1;
	if (chdir("root") < 0)
		return error_sys(err, "chdir into the image root");
	if (replace_nondirs(ctx, opts, true, err) < 0)
		return -1;
	tree = (int)syscall(SYS_open_tree, AT_FDCWD, ".", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (tree < 0)
		return error_sys(err, "image: detach the root");
	fds[0] = tree;
	return 0;
}

/* Why the guest's root builds the root, not the child: the run's overlay
 * there marks with trusted.overlay.* (guestbuild.c says why), which only
 * the guest's root may set. Its lower layer is the image's EROFS tree,
 * merged on the host, so the store's user.overlay.opaque marks and
 * whiteouts are already applied. The alternative, an upper layer on a
 * filesystem with user xattrs (ext4 on a ram disk), needs a mkfs of the
 * run's --disk size in every guest and keeps the disk's pages after files
 * are removed; the tmpfs stays the disk limit here. Copy-ups then run with
 * the guest root's credentials (the mounter's, as for any overlay): the
 * command's own access is checked with its credentials first, and it
 * cannot set trusted.* xattrs. The host keeps the userxattr overlay: this
 * would mount as the host's root.
 *
 * *root_fd gets the root as a detached tree, which the child attaches as
 * it does an idmapped layer. */
int imageroot_prepare_guest(const struct sandbox_ctx *ctx, int *root_fd, struct aegis_error *err)
{
	return guestbuild_run(ctx, "image", guest_root_tree, root_fd, 1, err);
}

int imageroot_build(const struct sandbox_ctx *ctx, const char *stage, struct aegis_error *err)
{
	_cleanup_free_ char *overlay_opts = NULL;
	int trees[LAYERS_MAX];

	if (ctx->image_root_fd >= 0) {
		/* vm guest: the guest's root built it whole, links replaced */
		if (syscall(SYS_move_mount, ctx->image_root_fd, "", AT_FDCWD, stage, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return error_sys(err, "image: attach the root at %s", stage);
		if (chdir(stage) < 0)
			return error_sys(err, "chdir into the image root");
	} else {
		if (stage_layers(ctx, stage, trees, err) < 0 || mount_overlay(ctx, trees, &overlay_opts, err) < 0)
			return -1;
		if (chdir("root") < 0)
			return error_sys(err, "chdir into the image root");
		if (replace_nondirs(ctx, overlay_opts, false, err) < 0)
			return -1;
	}
	for (int i = 0; real_dirs[i]; i++) {
		if (!strcmp(real_dirs[i], "run/secrets") &&
		    !(ctx->spec->secret_files && ctx->spec->secret_files[0]))
			continue;
		if (real_path(real_dirs[i], false, err) < 0)
			return -1;
	}
	/* the working directory, made if the image lacks it (as docker does) */
	if (real_path(ctx->spec->cwd + 1, true, err) < 0)
		return -1;
	return write_identity(ctx->spec, err);
}
