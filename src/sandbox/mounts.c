/* mounts.c — mount helpers that put the path into every error. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mount.h>

#include "../common/error.h"
#include "sandbox.h"

int mounts_setattr(const char *path, uint64_t set, bool recursive, struct aegis_error *err)
{
	struct mount_attr attr = { .attr_set = set };

	if (syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0,
		    &attr, sizeof attr) < 0)
		return error_sys(err, "mount_setattr %s", path);
	return 0;
}

/* Every host path we expose is nosuid and nodev on top of its own flags:
 * a setuid binary gains nothing, a device node opens nothing. */
int mounts_bind(const char *src, const char *dst, bool rdonly, struct aegis_error *err)
{
	uint64_t set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
		return error_sys(err, "bind %s", src);
	if (rdonly)
		set |= MOUNT_ATTR_RDONLY;
	return mounts_setattr(dst, set, true, err);
}

int mounts_tmpfs(const char *dst, const char *opts, unsigned long flags, struct aegis_error *err)
{
	if (mount("tmpfs", dst, "tmpfs", flags, opts) < 0)
		return error_sys(err, "tmpfs %s", dst);
	return 0;
}

int mounts_mkdir(const char *path, struct aegis_error *err)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return error_sys(err, "mkdir %s", path);
	return 0;
}

int mounts_touch(const char *path, struct aegis_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);

	if (fd < 0)
		return error_sys(err, "create %s", path);
	close(fd);
	return 0;
}
