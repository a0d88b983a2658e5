/* overlay.c — `--workspace-mode overlay`: the command works on a copy-on-
 * write layer over the host workspace, which is never written.
 *
 * The upper layer is a size-limited tmpfs inside the sandbox (so the disk
 * limit holds and the sandbox never writes a host directory). PID 1 hands
 * an fd of it to the supervisor, which reads the changes through that fd
 * after the run (artifacts.c): fd-relative access needs no path into the
 * sandbox's mount namespace and keeps the tmpfs alive until then.
 *
 * In a vm guest the guest's root builds the same overlay before clone
 * (guestbuild.c says why), with trusted.overlay.* marks, and the child
 * attaches it; the supervisor keeps the builder's fd of the upper layer. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mount.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "sandbox.h"

#define LOWER ".aegis-lower"
#define LAYER ".aegis-layer"
/* where the vm guest's builder stages the overlay: the guest's /tmp,
 * covered in the builder's own mount namespace only */
#define GUEST_STAGE "/tmp"

int overlay_mount(const struct sandbox_ctx *ctx, int lower_tree, const char *target, int *layer_fd,
		  struct aegis_error *err)
{
	char opts[256];
	int fd;

	if (mounts_mkdir(LOWER, err) < 0 || mounts_mkdir(LAYER, err) < 0)
		return -1;
	if (syscall(SYS_move_mount, lower_tree, "", AT_FDCWD, LOWER, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return error_sys(err, "workspace: attach %s", ctx->spec->workspace);
	snprintf(opts, sizeof opts, "mode=0755,size=%llu", (unsigned long long)ctx->spec->limits.disk_bytes);
	if (mounts_tmpfs(LAYER, opts, MS_NOSUID | MS_NODEV, err) < 0 ||
	    mounts_mkdir(LAYER "/upper", err) < 0 || mounts_mkdir(LAYER "/work", err) < 0)
		return -1;
	/* userxattr: overlay in a user namespace keeps its metadata in user.* */
	if (mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV,
		  "lowerdir=" LOWER ",upperdir=" LAYER "/upper,workdir=" LAYER "/work,userxattr") < 0)
		return error_sys(err, "workspace: overlay over %s", ctx->spec->workspace);
	fd = open(LAYER "/upper", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return error_sys(err, "workspace: open the overlay's upper layer");
	/* The overlay holds its own references: the staging names can go. */
	if (umount2(LOWER, MNT_DETACH) < 0 || umount2(LAYER, MNT_DETACH) < 0 ||
	    rmdir(LOWER) < 0 || rmdir(LAYER) < 0) {
		close(fd);
		return error_sys(err, "workspace: tidy overlay staging");
	}
	*layer_fd = fd;
	return 0;
}

/* The builder's part (overlay_prepare_guest), in a mount namespace of its
 * own: fds[0] the overlay as a detached tree, fds[1] its upper dir. The
 * same layers as overlay_mount's: the workspace read-only under the run's
 * tmpfs of limits.disk_bytes (the disk limit, disk_full, as there). */
static int guest_overlay(const struct sandbox_ctx *ctx, int *fds, struct aegis_error *err)
{
	const struct aegis_spec *spec = ctx->spec;
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV };
	_cleanup_close_ int lower = -1, tree = -1, upper = -1;
	char opts[64];

	/* in hand before the staging tmpfs covers /tmp, where it may well be */
	lower = (int)syscall(SYS_open_tree, AT_FDCWD, spec->workspace,
			     OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (lower < 0)
		return error_sys(err, "workspace %s", spec->workspace);
	if (syscall(SYS_mount_setattr, lower, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
		return error_sys(err, "workspace %s: set mount flags", spec->workspace);
	snprintf(opts, sizeof opts, "mode=0755,size=%llu", (unsigned long long)spec->limits.disk_bytes);
	if (mounts_tmpfs(GUEST_STAGE, opts, MS_NOSUID | MS_NODEV, err) < 0)
		return -1;
	if (chdir(GUEST_STAGE) < 0)
		return error_sys(err, "workspace: chdir " GUEST_STAGE);
	if (mounts_mkdir("lower", err) < 0 || mounts_mkdir("upper", err) < 0 || mounts_mkdir("work", err) < 0 ||
	    mounts_mkdir("merged", err) < 0)
		return -1;
	if (syscall(SYS_move_mount, lower, "", AT_FDCWD, "lower", MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return error_sys(err, "workspace: attach %s", spec->workspace);
	/* the workspace's root directory shows as the upper one: sandbox
	 * root's, as when the child makes it */
	if (chown("upper", ctx->host_uid, ctx->host_gid) < 0)
		return error_sys(err, "workspace: the overlay's upper layer: chown");
	/* no userxattr: mounted in the initial user namespace, its marks are
	 * trusted.overlay.*, which 6.1's tmpfs holds */
	if (mount("overlay", "merged", "overlay", MS_NOSUID | MS_NODEV,
		  "lowerdir=lower,upperdir=upper,workdir=work," GUESTBUILD_OVERLAY_OPTS) < 0)
		return error_sys(err, "workspace: overlay over %s", spec->workspace);
	tree = (int)syscall(SYS_open_tree, AT_FDCWD, "merged", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (tree < 0)
		return error_sys(err, "workspace: detach the overlay");
	upper = open("upper", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (upper < 0)
		return error_sys(err, "workspace: open the overlay's upper layer");
	fds[0] = steal_fd(&tree);
	fds[1] = steal_fd(&upper);
	return 0;
}

int overlay_prepare_guest(const struct sandbox_ctx *ctx, int *tree_fd, int *layer_fd, struct aegis_error *err)
{
	int fds[2];

	if (guestbuild_run(ctx, "workspace", guest_overlay, fds, 2, err) < 0)
		return -1;
	*tree_fd = fds[0];
	*layer_fd = fds[1];
	return 0;
}

/* In the child: the guest builder's overlay (ctx->overlay_tree_fd) at target. */
int overlay_attach(const struct sandbox_ctx *ctx, const char *target, struct aegis_error *err)
{
	if (syscall(SYS_move_mount, ctx->overlay_tree_fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return error_sys(err, "workspace: attach the overlay over %s", ctx->spec->workspace);
	return 0;
}
