/* wsimage.c — the size-limited workspace image (wsimage.h): mkfs.ext4,
 * a loop device, a mount on data/.
 *
 * A write past the size fails with ENOSPC inside the sandbox and what is
 * already there stays. The file system's root belongs to whoever made the
 * workspace (mkfs -E root_owner), as an ordinary workspace's data/ does,
 * so the idmapped mount gives it to sandbox root. The mount is nosuid and
 * nodev like every workspace (HOSTILE.md E-22, E-23). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <linux/mount.h>

#include "cleanup.h"
#include "error.h"
#include "wsimage.h"

#define IMAGE "image"
#define DATA "data"
#define LOOP_MAJOR 7
#define ATTACH_TRIES 16

bool wsimage_privileged(void)
{
	cap_flag_value_t v = CAP_CLEAR;
	cap_t caps = cap_get_proc();

	if (caps) {
		cap_get_flag(caps, CAP_SYS_ADMIN, CAP_EFFECTIVE, &v);
		cap_free(caps);
	}
	return v == CAP_SET;
}

/* The first line the tool wrote on fd, for the error; all of it is read,
 * so the tool never blocks on a full pipe. */
static void first_line(int fd, char *out, size_t cap)
{
	char buf[4096];
	size_t len = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
		for (ssize_t i = 0; i < n && len + 1 < cap; i++)
			out[len++] = buf[i];
	out[len] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

/* mkfs.ext4 on the image (given as fd 3), by fork and exec of the
 * distribution's tool: no shell, a fixed environment, nothing of ours
 * open in it but the image. */
static int mkfs(int img, struct aegis_error *err)
{
	static const char *const tools[] = { "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", NULL };
	char opts[96], why[200];
	char *argv[] = { "mkfs.ext4", "-q", "-F", "-m", "0", "-L", "aegis-workspace", "-E", opts,
			 "/dev/fd/3", NULL };
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };
	_cleanup_close_ int image = -1, out = -1, in = -1;
	posix_spawn_file_actions_t fa;
	const char *tool = NULL;
	int p[2], status, r;
	pid_t pid;

	for (int i = 0; tools[i] && !tool; i++)
		if (access(tools[i], X_OK) == 0)
			tool = tools[i];
	if (!tool)
		return error_set(err, AEGIS_E_UNSUPPORTED, 0, "mkfs.ext4 not found (install e2fsprogs)");
	if (pipe2(p, O_CLOEXEC) < 0)
		return error_sys(err, "mkfs.ext4: pipe");
	in = p[0];
	/* above 0-3, so placing one cannot clobber the other */
	out = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
	close(p[1]);
	image = fcntl(img, F_DUPFD_CLOEXEC, 10);
	if (out < 0 || image < 0)
		return error_sys(err, "mkfs.ext4: descriptors");
	/* no reserved blocks: the whole size is the workspace's */
	snprintf(opts, sizeof opts, "root_owner=%u:%u,nodiscard", (unsigned)geteuid(), (unsigned)getegid());
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out, 2);
	posix_spawn_file_actions_adddup2(&fa, image, 3);
	posix_spawn_file_actions_addclosefrom_np(&fa, 4);
	r = posix_spawn(&pid, tool, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return error_set(err, AEGIS_E_SETUP, r, "run %s", tool);
	close(out);
	out = -1;
	first_line(in, why, sizeof why);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return error_sys(err, "wait for mkfs.ext4");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return error_set(err, AEGIS_E_SETUP, 0, "mkfs.ext4 failed (status %d): %s",
				 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
				 why[0] ? why : "no message");
	return 0;
}

int wsimage_make(int wsdir, uint64_t bytes, struct aegis_error *err)
{
	_cleanup_close_ int img = openat(wsdir, IMAGE, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
					 0600);

	if (img < 0)
		return error_sys(err, "workspace image: create");
	/* sparse: the host's disk is used as the workspace fills */
	if (ftruncate(img, (off_t)bytes) < 0)
		return error_sys(err, "workspace image: size it to %llu bytes", (unsigned long long)bytes);
	return mkfs(img, err);
}

/* A free loop device with the image attached, cleared by the kernel once
 * nothing uses it (the mount made next, or nothing if that fails). */
static int loop_attach(int img, char *dev, size_t len, struct aegis_error *err)
{
	struct loop_config cfg = { .fd = (__u32)img, .info = { .lo_flags = LO_FLAGS_AUTOCLEAR } };
	_cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);

	if (ctl < 0)
		return error_sys(err, "open /dev/loop-control");
	/* another process may take the free device between the two calls:
	 * then ask again */
	for (int tries = 0; tries < ATTACH_TRIES; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE), fd, e;

		if (n < 0)
			return error_sys(err, "no free loop device");
		snprintf(dev, len, "/dev/loop%d", n);
		if ((fd = open(dev, O_RDWR | O_CLOEXEC)) < 0)
			return error_sys(err, "open %s", dev);
		if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
			return fd;
		e = errno;
		close(fd);
		if (e != EBUSY)
			return error_set(err, AEGIS_E_SETUP, e, "attach the workspace image to %s", dev);
	}
	return error_set(err, AEGIS_E_SETUP, EBUSY, "no free loop device after %d tries", ATTACH_TRIES);
}

/* data/ itself: never a symlink, never through one. */
static int open_data(int wsdir, int flags, struct aegis_error *err)
{
	int fd = openat(wsdir, DATA, flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return error_set(err, AEGIS_E_SETUP, errno, "workspace data/ (%s)",
				 errno == ELOOP || errno == ENOTDIR ? "not a directory, a symlink?: refused"
								    : "cannot open");
	return fd;
}

int wsimage_mount(int wsdir, bool fresh, struct aegis_error *err)
{
	_cleanup_close_ int img = -1, loop = -1, fs = -1, mnt = -1, data = -1, root = -1;
	char dev[32];
	struct stat st;

	img = openat(wsdir, IMAGE, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (img < 0 || fstat(img, &st) < 0)
		return error_sys(err, "workspace image: open");
	if (!S_ISREG(st.st_mode))
		return error_set(err, AEGIS_E_SETUP, 0, "workspace image: not a regular file");
	if ((data = open_data(wsdir, O_PATH, err)) < 0)
		return -1;
	if ((loop = loop_attach(img, dev, sizeof dev, err)) < 0)
		return -1;
	/* the new mount API: the target is the descriptor checked above,
	 * not a path looked up again */
	fs = (int)syscall(SYS_fsopen, "ext4", FSOPEN_CLOEXEC);
	if (fs < 0 || syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return error_sys(err, "workspace image: mount ext4 from %s", dev);
	mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	if (mnt < 0)
		return error_sys(err, "workspace image: fsmount");
	if (syscall(SYS_move_mount, mnt, "", data, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return error_sys(err, "workspace image: mount on data/");
	if (!fresh)
		return 0;
	if ((root = open_data(wsdir, O_RDONLY, err)) < 0)
		return -1;
	if (unlinkat(root, "lost+found", AT_REMOVEDIR) < 0 && errno != ENOENT)
		return error_sys(err, "workspace image: remove lost+found");
	return 0;
}

/* Is the mount with device dev the image's? Its loop device's backing
 * file must be the image (same device and inode). */
static bool backed_by_image(int wsdir, unsigned major_, unsigned minor_)
{
	char path[128], backing[PATH_MAX];
	struct stat img, st;
	ssize_t n;
	int fd;

	if (major_ != LOOP_MAJOR || fstatat(wsdir, IMAGE, &img, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	snprintf(path, sizeof path, "/sys/dev/block/%u:%u/loop/backing_file", major_, minor_);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, backing, sizeof backing - 1);
	close(fd);
	if (n <= 0)
		return false;
	backing[n] = '\0';
	backing[strcspn(backing, "\n")] = '\0';
	return stat(backing, &st) == 0 && st.st_dev == img.st_dev && st.st_ino == img.st_ino;
}

int wsimage_mounted(int wsdir, struct aegis_error *err)
{
	_cleanup_close_ int data = open_data(wsdir, O_PATH, err);
	struct statx stx;
	struct statfs sfs;

	if (data < 0)
		return -1;
	if (statx(data, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) < 0 || fstatfs(data, &sfs) < 0)
		return error_sys(err, "workspace data/: stat");
	if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
		return error_set(err, AEGIS_E_UNSUPPORTED, 0, "workspace data/: the kernel cannot tell mount points");
	if (!(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
		return 0;
	/* only ever the image: anything else mounted there would not hold
	 * the size limit, or would not be the workspace at all */
	if ((unsigned long)sfs.f_type != EXT4_SUPER_MAGIC ||
	    !backed_by_image(wsdir, stx.stx_dev_major, stx.stx_dev_minor))
		return error_set(err, AEGIS_E_SETUP, 0,
				 "workspace data/ has something other than its image mounted on it: refused");
	return 1;
}

int wsimage_unmount(int wsdir, struct aegis_error *err)
{
	char self[64], dir[PATH_MAX], path[PATH_MAX + 8];
	ssize_t n;
	int r = wsimage_mounted(wsdir, err);

	if (r <= 0)
		return r;
	/* umount2 needs a path, and a descriptor into the mount would keep
	 * it busy: the path of our own directory descriptor, data/ not followed */
	snprintf(self, sizeof self, "/proc/self/fd/%d", wsdir);
	if ((n = readlink(self, dir, sizeof dir - 1)) < 0)
		return error_sys(err, "workspace directory: its path");
	dir[n] = '\0';
	snprintf(path, sizeof path, "%s/" DATA, dir);
	if (umount2(path, UMOUNT_NOFOLLOW) == 0)
		return 0;
	if (errno == EBUSY)	/* the caller's to sort out, not the host's failure */
		return error_set(err, AEGIS_E_INVALID, EBUSY,
				 "unmount the workspace image: something on the host has files open in it");
	return error_sys(err, "unmount the workspace image");
}
