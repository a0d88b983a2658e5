/* devfs.c — a minimal /dev: a handful of harmless host device nodes, a
 * private devpts instance, a size-limited /dev/shm; nothing else exists,
 * so no disk, memory, kvm or tun device can be opened. */
#include <errno.h>
#include <stdio.h>
#include <sys/mount.h>
#include <unistd.h>
#include <linux/mount.h>

#include "../common/error.h"
#include "sandbox.h"

static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty", NULL };

static const char *const links[][2] = {
	{ "pts/ptmx", "ptmx" }, { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
	{ "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
};

int devfs_mount(const char *root, struct aegis_error *err)
{
	char dev[256], path[300], host[64];

	snprintf(dev, sizeof dev, "%s/dev", root);
	if (mounts_mkdir(dev, err) < 0 ||
	    mounts_tmpfs(dev, "mode=0755,size=64k,nr_inodes=64", MS_NOSUID | MS_NOEXEC, err) < 0)
		return -1;
	for (int i = 0; nodes[i]; i++) {
		snprintf(path, sizeof path, "%s/%s", dev, nodes[i]);
		snprintf(host, sizeof host, "/dev/%s", nodes[i]);
		if (mounts_touch(path, err) < 0)
			return -1;
		/* Device nodes cannot be made in a user namespace: bind the host's.
		 * (A node is never executable or setuid, so no flags to add.) */
		if (mount(host, path, NULL, MS_BIND, NULL) < 0)
			return error_sys(err, "bind %s", host);
	}
	snprintf(path, sizeof path, "%s/pts", dev);
	if (mounts_mkdir(path, err) < 0)
		return -1;
	if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC,
		  "newinstance,ptmxmode=0666,mode=0620") < 0)
		return error_sys(err, "mount /dev/pts");
	snprintf(path, sizeof path, "%s/shm", dev);
	if (mounts_mkdir(path, err) < 0 ||
	    mounts_tmpfs(path, "mode=1777,size=64m", MS_NOSUID | MS_NODEV | MS_NOEXEC, err) < 0)
		return -1;
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dev, links[i][1]);
		if (symlink(links[i][0], path) < 0)
			return error_sys(err, "symlink %s", path);
	}
	/* The directory itself is fixed from here on; pts and shm stay usable. */
	return mounts_setattr(dev, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false, err);
}
