/* rootfs.c — the sandbox's own root filesystem: the `host` image, or an
 * OCI image's layers (imageroot.c), plus what every sandbox gets.
 *
 * Built on a private tmpfs, then pivot_root'ed into with the old root
 * detached, so no host path outside the list below is reachable: the host's
 * /usr, /bin, /sbin, /lib* read-only, an allowlisted /etc, fresh /proc and
 * /dev, a size-limited /tmp and the /workspace; /run/secrets only when
 * secrets are given as files (secretfs.c). No /home, /root, /var. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mount.h>

#include "../common/error.h"
#include "../common/util.h"
#include "sandbox.h"

/* An empty mode-0 file in the root, mounted over every hidden file. */
#define HIDDEN ".aegis-hidden"

/* Where the new root is assembled in our private view of the host tree. */
#define STAGING "/tmp"

const char *const rootfs_host_dirs[] = { "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", NULL };

/* What programs need from /etc; nothing holding credentials or host config.
 * Files are copied (cheaper than a mount each, and nothing to tear down);
 * directories are bound read-only. */
const char *const rootfs_etc_allow[] = {
	"alternatives", "bash.bashrc", "debian_version", "inputrc", "ld.so.cache",
	"localtime", "mime.types", "nsswitch.conf", "os-release", "profile",
	"protocols", "services", "shells", "ssl", NULL,
};

const char *const rootfs_etc_identity[] = { "passwd", "group", "hosts", "hostname", NULL };

#define COPY_MAX (1 << 20)	/* larger regular files are bound instead */

/* Where a vm guest's identity files are written before being bound. */
#define IDENTITY_STAGE ".aegis-identity"

static int copy_symlink(const char *host, const char *dst, struct aegis_error *err)
{
	char target[PATH_MAX];
	ssize_t n = readlink(host, target, sizeof target - 1);

	if (n < 0)
		return error_sys(err, "readlink %s", host);
	target[n] = '\0';
	if (symlink(target, dst) < 0)
		return error_sys(err, "symlink %s", dst);
	return 0;
}

static int copy_file(const char *host, const char *dst, off_t size, struct aegis_error *err)
{
	int in = open(host, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), out = -1, r = -1;

	if (in < 0)
		return error_sys(err, "open %s", host);
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (out < 0) {
		error_sys(err, "create %s", dst);
		goto done;
	}
	while (size > 0) {
		ssize_t n = sendfile(out, in, NULL, (size_t)size);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			error_sys(err, "copy %s", host);
			goto done;
		}
		size -= n;
	}
	r = 0;
done:
	close(in);
	if (out >= 0)
		close(out);
	return r;
}

/* Mirror one host path read-only: symlinks as symlinks, small files
 * copied, directories and large files bound. */
static int expose_host_path(const char *host, const char *dst, bool copy_small,
			    struct aegis_error *err)
{
	struct stat st;

	if (lstat(host, &st) < 0)
		return errno == ENOENT ? 0 : error_sys(err, "stat %s", host);
	if (S_ISLNK(st.st_mode))
		return copy_symlink(host, dst, err);
	if (S_ISDIR(st.st_mode)) {
		if (mounts_mkdir(dst, err) < 0)
			return -1;
	} else if (S_ISREG(st.st_mode)) {
		if (copy_small && st.st_size <= COPY_MAX)
			return copy_file(host, dst, st.st_size, err);
		if (mounts_touch(dst, err) < 0)
			return -1;
	} else {
		return 0;	/* sockets, fifos, devices: never exposed */
	}
	return mounts_bind(host, dst, true, err);
}

static int write_new_file(const char *path, const char *content, struct aegis_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	int r;

	if (fd < 0)
		return error_sys(err, "create %s", path);
	r = write_all(fd, content, strlen(content));
	close(fd);
	return r < 0 ? error_sys(err, "write %s", path) : 0;
}

/* Identity files describe the sandbox, never the host's accounts. */
static int write_identity(const struct aegis_spec *spec, const char *dir, struct aegis_error *err)
{
	char path[128], hosts[256];

	snprintf(hosts, sizeof hosts,
		 "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n",
		 spec->hostname);
	snprintf(path, sizeof path, "%s/passwd", dir);
	if (write_new_file(path,
			   "root:x:0:0:root:/root:/bin/sh\n"
			   "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", err) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/group", dir);
	if (write_new_file(path, "root:x:0:\nnogroup:x:65534:\n", err) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/hosts", dir);
	if (write_new_file(path, hosts, err) < 0)
		return -1;
	snprintf(hosts, sizeof hosts, "%s\n", spec->hostname);
	snprintf(path, sizeof path, "%s/hostname", dir);
	return write_new_file(path, hosts, err);
}

/* In a vm guest /etc is the host's copy of exactly the allowlist, with an
 * empty file for each identity file (src/vm/shares.c): it is bound whole,
 * read-only, in one mount rather than one lookup and mount per entry
 * (each a 9p round trip under emulation), and the sandbox's identity
 * files, written on a tmpfs of their own, are bound read-only over the
 * empty ones. The tmpfs is then detached from the root: the binds keep
 * its files, nothing else of it stays visible. */
static int build_etc_vm(const struct aegis_spec *spec, struct aegis_error *err)
{
	char src[128], dst[128];

	if (mounts_mkdir("etc", err) < 0 || mounts_bind("/etc", "etc", true, err) < 0 ||
	    mounts_mkdir(IDENTITY_STAGE, err) < 0 ||
	    mounts_tmpfs(IDENTITY_STAGE, "mode=0755,size=64k,nr_inodes=16", MS_NOSUID | MS_NODEV | MS_NOEXEC, err) < 0 ||
	    write_identity(spec, IDENTITY_STAGE, err) < 0)
		return -1;
	for (int i = 0; rootfs_etc_identity[i]; i++) {
		snprintf(src, sizeof src, IDENTITY_STAGE "/%s", rootfs_etc_identity[i]);
		snprintf(dst, sizeof dst, "etc/%s", rootfs_etc_identity[i]);
		if (mounts_bind(src, dst, true, err) < 0)
			return -1;
	}
	if (umount2(IDENTITY_STAGE, MNT_DETACH) < 0 || rmdir(IDENTITY_STAGE) < 0)
		return error_sys(err, "remove " IDENTITY_STAGE);
	return 0;
}

static int build_etc(const struct aegis_spec *spec, struct aegis_error *err)
{
	char host[PATH_MAX], dst[PATH_MAX];

	/* (The vm backend refuses host network mode, whose resolver is below.) */
	if (sandbox_is_vm_guest() && netns_mode(spec->policy) != NET_HOST)
		return build_etc_vm(spec, err);
	if (mounts_mkdir("etc", err) < 0)
		return -1;
	/* An instance (freezable: long-lived) binds them instead: a copy is
	 * tmpfs memory (~180 KiB) charged for as long as it lives. */
	for (int i = 0; rootfs_etc_allow[i]; i++) {
		snprintf(host, sizeof host, "/etc/%s", rootfs_etc_allow[i]);
		snprintf(dst, sizeof dst, "etc/%s", rootfs_etc_allow[i]);
		if (expose_host_path(host, dst, !spec->freezable, err) < 0)
			return -1;
	}
	/* host network mode: the host's resolver too (followed if a symlink,
	 * e.g. into /run, which the sandbox does not have) */
	if (netns_mode(spec->policy) == NET_HOST) {
		char real[PATH_MAX];
		struct stat st;
		if (realpath("/etc/resolv.conf", real) && stat(real, &st) == 0 && S_ISREG(st.st_mode) &&
		    copy_file(real, "etc/resolv.conf", st.st_size, err) < 0)
			return -1;
	}
	return write_identity(spec, "etc", err);
}

static bool same_dir(int a, int b)
{
	struct stat sa, sb;

	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && S_ISDIR(sa.st_mode) &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The host workspace as a detached mount tree, taken before anything is
 * mounted over the host view (the staging tmpfs would hide a workspace
 * under /tmp). Run by root the supervisor already made it, idmapped. */
static int workspace_tree(const struct sandbox_ctx *ctx, struct aegis_error *err)
{
	const struct aegis_spec *spec = ctx->spec;
	struct mount_attr attr = {
		.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
			    (spec->workspace_ro || spec->workspace_overlay ? MOUNT_ATTR_RDONLY : 0),
	};
	int tree;

	if (ctx->workspace_fd >= 0 || !spec->workspace)
		return ctx->workspace_fd;
	/* An opened workspace's descriptor belongs to the host's mount
	 * namespace, where we may not clone mounts: the path again, its last
	 * step not followed, and it must still be that same directory. */
	tree = (int)syscall(SYS_open_tree, AT_FDCWD, spec->workspace,
			    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE |
			    (spec->workspace_fd > 0 ? AT_SYMLINK_NOFOLLOW : 0));
	if (tree < 0)
		return error_sys(err, "workspace %s", spec->workspace);
	if (spec->workspace_fd > 0 && !same_dir(tree, spec->workspace_fd)) {
		close(tree);
		return error_set(err, AEGIS_E_SETUP, 0, "workspace %s changed since it was opened: refused",
				 spec->workspace);
	}
	if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
		error_sys(err, "workspace %s: set mount flags", spec->workspace);
		close(tree);
		return -1;
	}
	return tree;
}

static int mount_workspace(const struct sandbox_ctx *ctx, int tree, int *upper_fd,
			   struct aegis_error *err)
{
	char opts[64];

	if (mounts_mkdir("workspace", err) < 0)
		return -1;
	/* vm guest: the guest's root built the overlay; the supervisor has its
	 * upper layer already */
	if (ctx->overlay_tree_fd >= 0)
		return overlay_attach(ctx, "workspace", err);
	if (tree >= 0 && ctx->spec->workspace_overlay)
		return overlay_mount(ctx, tree, "workspace", upper_fd, err);
	if (tree >= 0) {
		if (syscall(SYS_move_mount, tree, "", AT_FDCWD, "workspace", MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return error_sys(err, "workspace: attach %s", ctx->spec->workspace);
		return 0;
	}
	snprintf(opts, sizeof opts, "mode=0755,size=%llu", (unsigned long long)ctx->spec->limits.disk_bytes);
	return mounts_tmpfs("workspace", opts, MS_NOSUID | MS_NODEV, err);
}

/* The host image: the host's system directories and a filtered /etc on a
 * small tmpfs at STAGING (cwd afterwards). */
static int host_image(const struct sandbox_ctx *ctx, struct aegis_error *err)
{
	char dst[32], host[32];

	if (mounts_tmpfs(STAGING, "mode=0755,size=1m,nr_inodes=4096", MS_NOSUID | MS_NODEV, err) < 0)
		return -1;
	if (chdir(STAGING) < 0)
		return error_sys(err, "chdir " STAGING);
	for (int i = 0; rootfs_host_dirs[i]; i++) {
		snprintf(host, sizeof host, "/%s", rootfs_host_dirs[i]);
		snprintf(dst, sizeof dst, "%s", rootfs_host_dirs[i]);
		if (expose_host_path(host, dst, false, err) < 0)
			return -1;
	}
	if (build_etc(ctx->spec, err) < 0)
		return -1;
	/* root's home lives in the sandbox's own /tmp, never the host's /root. */
	if (symlink("tmp", "root") < 0)
		return error_sys(err, "symlink /root");
	return 0;
}

int rootfs_build(const struct sandbox_ctx *ctx, int *upper_fd, struct aegis_error *err)
{
	bool image = ctx->spec->image_layers != NULL;
	char opts[64];
	int tree = -1;

	/* Nothing we mount propagates to the host, nothing of the host's to us. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return error_sys(err, "make mounts private");
	if (ctx->overlay_tree_fd < 0 && (tree = workspace_tree(ctx, err)) < 0 && ctx->spec->workspace)
		return -1;
	/* the root's own files: cwd is the new root afterwards */
	if ((image ? imageroot_build(ctx, STAGING, err) : host_image(ctx, err)) < 0)
		return -1;
	if (devfs_mount(".", err) < 0 || procfs_mount(".", err) < 0)
		return -1;
	snprintf(opts, sizeof opts, "mode=1777,size=%llu", (unsigned long long)ctx->spec->limits.disk_bytes);
	if (mounts_mkdir("tmp", err) < 0 || mounts_tmpfs("tmp", opts, MS_NOSUID | MS_NODEV, err) < 0)
		return -1;
	if (mount_workspace(ctx, tree, upper_fd, err) < 0)
		return -1;
	if (ctx->spec->secret_files && ctx->spec->secret_files[0] &&
	    secretfs_mount(".", ctx->spec->secret_files, err) < 0)
		return -1;
	/* what hidden files are replaced by: empty, unreadable, unwritable */
	if (mounts_touch(HIDDEN, err) < 0 || chmod(HIDDEN, 0) < 0)
		return error_sys(err, "create " HIDDEN);
	/* pivot_root(".", ".") stacks the old root on top; detaching it leaves
	 * no path back to the host tree (bubblewrap and runc do the same). */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return error_sys(err, "pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		return error_sys(err, "detach old root");
	if (chdir("/") < 0)
		return error_sys(err, "chdir /");
	/* an image's root is the run's to change (in its own layer); the host
	 * image's is read-only */
	return image ? 0 : mounts_setattr("/", MOUNT_ATTR_RDONLY, false, err);
}

/* Make every directory above path a mount point (bound onto itself), so
 * none can be renamed, removed or swapped for a symlink (EBUSY): the hidden
 * path keeps naming what was hidden (HOSTILE.md E-40). */
static int pin_ancestors(const char *path, struct aegis_error *err)
{
	char dir[4096], *slash;
	struct statx stx;

	snprintf(dir, sizeof dir, "%s", path);
	while ((slash = strrchr(dir, '/')) && slash != dir) {
		*slash = '\0';
		if (statx(AT_FDCWD, dir, 0, 0, &stx) == 0 &&
		    (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
		    (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
			break;	/* a mount point already, and so is everything above */
		/* recursive, so paths hidden below it stay hidden */
		if (mount(dir, dir, NULL, MS_BIND | MS_REC, NULL) < 0)
			return error_sys(err, "pin %s", dir);
	}
	return 0;
}

static int hide_one(const char *path, struct aegis_error *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return 0;	/* nothing there to hide */
	if (pin_ancestors(path, err) < 0)
		return -1;
	if (S_ISDIR(st.st_mode)) {
		if (mounts_tmpfs(path, "mode=000,size=0,nr_inodes=1",
				 MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, err) < 0)
			return -1;
		return 0;
	}
	if (mount("/" HIDDEN, path, NULL, MS_BIND, NULL) < 0)
		return error_sys(err, "hide %s", path);
	return mounts_setattr(path, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOSUID |
			      MOUNT_ATTR_NODEV, false, err);
}

/* Denied commands and files.deny disappear under a mount: unreadable, not
 * executable, not writable, and (being mount points) not renamed or removed,
 * so a symlink swap cannot point the path elsewhere. Globs are matched
 * inside the sandbox; symlinks are followed, so every name of a denied
 * binary is covered. */
int rootfs_hide(const struct aegis_policy *p, struct aegis_error *err)
{
	char *const *lists[2] = { p ? p->cmd_deny : NULL, p ? p->files_deny : NULL };

	for (int l = 0; l < 2; l++) {
		for (char *const *e = lists[l]; e && *e; e++) {
			glob_t g;
			int r = 0;
			if (!strpbrk(*e, "*?[")) {
				if (hide_one(*e, err) < 0)
					return -1;
				continue;
			}
			if (glob(*e, GLOB_NOSORT, NULL, &g) != 0)
				continue;
			for (size_t i = 0; i < g.gl_pathc && r == 0; i++)
				r = hide_one(g.gl_pathv[i], err);
			globfree(&g);
			if (r < 0)
				return -1;
		}
	}
	return 0;
}
