/* overlay.c — `--workspace-mode overlay`: the command works on a copy-on-
 * write layer over the host workspace, which is never written.
 *
 * The upper layer is a size-limited tmpfs inside the sandbox (so the disk
 * limit holds and the sandbox never writes a host directory). PID 1 hands
 * an fd of it to the supervisor, which reads the changes through that fd
 * after the run (artifacts.c): fd-relative access needs no path into the
 * sandbox's mount namespace and keeps the tmpfs alive until then. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mount.h>

#include "../common/error.h"
#include "sandbox.h"

#define LOWER ".aegis-lower"
#define LAYER ".aegis-layer"

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
