/* erofs.c — an image root for a vm guest as a read-only block image.
 *
 * The guest's root of an --image run is an EROFS image of the image's
 * merged root (mkfs.erofs, Debian's erofs-utils), built on the host once
 * per image and ownership and kept in <state dir>/vm-erofs/, attached on
 * the guest's one virtio-blk device and mounted read-only there as the
 * lower layer of the run's overlay. A block image is one file QEMU reads
 * by offset: no 9p round trip per lookup, and the guest's page cache
 * works as on any disk.
 *
 * microvm has no hotplug and a restored clone must have its snapshot's
 * devices, so the device is a fixed slot of the template: a sparse file of
 * VM_SLOT_BYTES (the placeholder, zeros) when the template boots and for
 * runs without an image, the run's EROFS file otherwise, itself extended
 * (sparse) to exactly that size, so the capacity the guest read at boot
 * stays true.
 *
 * Ownership: sandbox root in the guest is the workspace's owner, or the
 * store's user without a workspace (spawn.c), and must own the image's
 * files as the ns backend's idmapped layers show them. The store's files
 * are all its user's (unpack.c applies no owner), so the image is built
 * with every file the target owner's (--force-uid/--force-gid) and keyed
 * on that owner. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/hash.h"
#include "../common/paths.h"
#include "../common/util.h"
#include "vm.h"

#define EROFS_FORMAT "aegis vm erofs 1"
#define EROFS_MAGIC 0xE0F5E1E2u	/* the superblock's first word, at 1024 */
#define LAYERS_MAX 128

/* <state>/vm-erofs, made 0700 and ours. */
static int erofs_root(char *out, size_t cap, struct aegis_error *err)
{
	char state[4096];

	if (paths_state(state, sizeof state, err) < 0 || paths_private_dir(state, err) < 0)
		return -1;
	snprintf(out, cap, "%s/vm-erofs", state);
	return paths_private_dir(out, err);
}

/* A file of ours in the cache, 0600, regular, exactly the slot's size. */
static bool slot_file_ok(const struct stat *st)
{
	return S_ISREG(st->st_mode) && st->st_uid == geteuid() && !(st->st_mode & 077) &&
	       (uint64_t)st->st_size == VM_SLOT_BYTES;
}

int vm_slot_placeholder(int *fd, struct aegis_error *err)
{
	char root[4200], path[4300], tmp[4300];
	_cleanup_close_ int f = -1;
	struct stat st;

	if (erofs_root(root, sizeof root, err) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/slot", root);
	f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	/* holes only: nothing of anyone's in it */
	if (f >= 0 && fstat(f, &st) == 0 && slot_file_ok(&st) && st.st_blocks == 0)
		return *fd = steal_fd(&f), 0;
	if (f >= 0)
		close(f), f = -1;
	/* made beside and renamed: a run never sees a short one */
	snprintf(tmp, sizeof tmp, "%s/.slot-%d", root, (int)getpid());
	unlink(tmp);
	if ((f = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0 ||
	    ftruncate(f, (off_t)VM_SLOT_BYTES) < 0 || rename(tmp, path) < 0) {
		error_sys(err, "vm: the block slot's placeholder %s", path);
		unlink(tmp);
		return -1;
	}
	close(f);
	if ((f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return error_sys(err, "vm: open %s", path);
	return *fd = steal_fd(&f), 0;
}

/* The owner the image's files get: the workspace's when it has one of its
 * own (sandbox root is that owner in the guest), else the store's user. */
static int erofs_owner(const struct aegis_spec *spec, uid_t *uid, gid_t *gid, struct aegis_error *err)
{
	struct stat st;

	if (spec->workspace) {
		if (spec->workspace_fd > 0 ? fstat(spec->workspace_fd, &st) : stat(spec->workspace, &st))
			return error_sys(err, "vm: workspace %s", spec->workspace);
	} else if (stat(spec->image_layers[0], &st) < 0) {
		return error_sys(err, "vm: image layer %s", spec->image_layers[0]);
	}
	*uid = st.st_uid, *gid = st.st_gid;
	return 0;
}

/* What the file's identity was when it was sealed: any write, truncation
 * or replacement since moves its ctime (or its inode), and the file is
 * rebuilt rather than used. */
static void identity(const struct stat *st, char *out, size_t cap)
{
	snprintf(out, cap, "%s\nino %llu\nsize %lld\nmtime %lld.%09ld\nctime %lld.%09ld\n", EROFS_FORMAT,
		 (unsigned long long)st->st_ino, (long long)st->st_size, (long long)st->st_mtim.tv_sec,
		 st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

/* The sealed image at path (its seal at path.id): 1 and *fd when whole, 0
 * when missing or not to use (why), -1 never (a damaged one is rebuilt). */
static int erofs_valid(const char *path, int *fd, char *why, size_t cap)
{
	char idpath[4400], want[256], have[256];
	_cleanup_close_ int f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_close_ int idf = -1;
	struct stat st, ist;
	unsigned char magic[4];
	ssize_t n;

	if (f < 0)
		return snprintf(why, cap, "none built"), 0;
	if (fstat(f, &st) < 0 || !slot_file_ok(&st))
		return snprintf(why, cap, "not a whole image"), 0;
	snprintf(idpath, sizeof idpath, "%s.id", path);
	if ((idf = open(idpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(idf, &ist) < 0 ||
	    !S_ISREG(ist.st_mode) || ist.st_uid != geteuid() || (n = read(idf, have, sizeof have - 1)) < 0)
		return snprintf(why, cap, "not sealed"), 0;
	have[n] = '\0';
	identity(&st, want, sizeof want);
	if (strcmp(want, have))
		return snprintf(why, cap, "changed since it was built"), 0;
	if (pread(f, magic, sizeof magic, 1024) != (ssize_t)sizeof magic ||
	    (magic[0] | magic[1] << 8 | magic[2] << 16 | (uint32_t)magic[3] << 24) != EROFS_MAGIC)
		return snprintf(why, cap, "no EROFS superblock"), 0;
	*fd = steal_fd(&f);
	return 1;
}

/* A new file of ours holding text, synced. */
static int write_file(const char *path, const char *text)
{
	_cleanup_close_ int f = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (f < 0 || write_all(f, text, strlen(text)) < 0 || fsync(f) < 0)
		return -1;
	return 0;
}

/* In the builder's child: a user namespace of our own ids alone (no
 * privilege over anything else of the host) with a mount namespace, the
 * layers merged there by a read-only overlay as the engine merges them
 * (userxattr: the store's opaque marks are user.overlay.*), and
 * mkfs.erofs over the merged tree. Never returns. */
static void __attribute__((noreturn)) builder(const struct aegis_spec *spec, const char *build, uid_t uid,
					       gid_t gid, pid_t parent)
{
	/* nothing here allocates: aegis may have threads (an instance's shim) */
	char map[64], stage[4400], name[16], lowers[LAYERS_MAX * 5 + 8], out[4400], fu[32], fg[32], opts[1024];
	char *argv[] = { "mkfs.erofs", "--preserve-mtime", fu, fg, out, "root", NULL };
	uid_t euid = geteuid();
	gid_t egid = getegid();
	size_t n = 0, off = 0;
	int log;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(126);
	snprintf(out, sizeof out, "%s/log", build);
	if ((log = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 || dup2(log, 2) < 0 ||
	    dup2(log, 1) < 0)
		_exit(126);
	while (spec->image_layers[n])
		n++;
	if (n > LAYERS_MAX) {
		dprintf(2, "more than %d layers\n", LAYERS_MAX);
		_exit(1);
	}
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) {
		dprintf(2, "unshare: %s\n", strerror(errno));
		_exit(1);
	}
	snprintf(map, sizeof map, "0 %u 1", (unsigned)euid);
	if (write_file_at(AT_FDCWD, "/proc/self/uid_map", map, strlen(map)) < 0 ||
	    write_file_at(AT_FDCWD, "/proc/self/setgroups", "deny", 4) < 0 ||
	    (snprintf(map, sizeof map, "0 %u 1", (unsigned)egid),
	     write_file_at(AT_FDCWD, "/proc/self/gid_map", map, strlen(map)) < 0)) {
		dprintf(2, "user namespace ids: %s\n", strerror(errno));
		_exit(1);
	}
	snprintf(stage, sizeof stage, "%s/stage", build);
	/* short names for the layers (lowerdir is bounded by a page) on a
	 * tmpfs of this namespace alone */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") < 0 || chdir(stage) < 0 ||
	    mkdir("root", 0700) < 0 || mkdir("empty", 0700) < 0) {
		dprintf(2, "staging %s: %s\n", stage, strerror(errno));
		_exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		size_t layer = n - 1 - i;	/* the top layer first */

		snprintf(name, sizeof name, "%zu", layer);
		if (mkdir(name, 0700) < 0 || mount(spec->image_layers[layer], name, NULL, MS_BIND, NULL) < 0) {
			dprintf(2, "layer %s: %s\n", spec->image_layers[layer], strerror(errno));
			_exit(1);
		}
		off += (size_t)sprintf(lowers + off, "%s%s", i ? ":" : "", name);
	}
	/* "empty" last: an overlay without an upper layer needs two lower ones */
	snprintf(opts, sizeof opts, "lowerdir=%s:empty,userxattr", lowers);
	if (mount("overlay", "root", "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0) {
		dprintf(2, "overlay of %zu layers: %s\n", n, strerror(errno));
		_exit(1);
	}
	snprintf(out, sizeof out, "%s/image", build);
	snprintf(fu, sizeof fu, "--force-uid=%u", (unsigned)uid);
	snprintf(fg, sizeof fg, "--force-gid=%u", (unsigned)gid);
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
		_exit(126);
	execvp(argv[0], argv);
	dprintf(2, "exec mkfs.erofs: %s\n", strerror(errno));
	_exit(127);
}

/* The builder's last line (mkfs.erofs says what went wrong last). */
static void last_line(const char *path, char *out, size_t cap)
{
	char buf[8192], *p;
	ssize_t n = read_file_at(AT_FDCWD, path, buf, sizeof buf);

	out[0] = '\0';
	if (n <= 0)
		return;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	p = memrchr(buf, '\n', (size_t)n);
	snprintf(out, cap, "%s", p ? p + 1 : buf);
}

/* Under the lock no build is live: what killed ones left goes. */
static void sweep_builds(int rootfd)
{
	DIR *d = opendir_at(rootfd);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, ".build-", 7))
			vm_remove_tree(rootfd, e->d_name);
	closedir(d);
}

/* root/<key>.layers: spec's layer directories, one per line. */
static int write_layers(const struct aegis_spec *spec, const char *build, const char *root, const char *key)
{
	char path[4400], final[4400];
	_cleanup_close_ int f = -1;

	snprintf(path, sizeof path, "%s/layers", build);
	if ((f = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
		return -1;
	for (char *const *l = spec->image_layers; *l; l++)
		if (dprintf(f, "%s\n", *l) < 0)
			return -1;
	snprintf(final, sizeof final, "%s/%s.layers", root, key);
	return fsync(f) < 0 || rename(path, final) < 0 ? -1 : 0;
}

/* Under the lock: build dir/<key>.erofs from spec's layers. -1 with err. */
static int erofs_build(const struct aegis_spec *spec, int rootfd, const char *root, const char *key, uid_t uid,
		       gid_t gid, struct aegis_error *err)
{
	char build[4300], path[4400], final[4400], text[256], line[256] = "";
	_cleanup_close_ int f = -1;
	struct stat st;
	pid_t pid;
	int status = 0;

	snprintf(build, sizeof build, "%s/.build-%d", root, (int)getpid());
	sweep_builds(rootfd);
	snprintf(path, sizeof path, "%s/stage", build);
	if (mkdir(build, 0700) < 0 || mkdir(path, 0700) < 0)
		return error_sys(err, "vm: image: mkdir %s", build);
	if ((pid = fork()) < 0) {
		error_sys(err, "vm: image: fork");
		goto fail;
	}
	if (pid == 0)
		builder(spec, build, uid, gid, getppid());
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(path, sizeof path, "%s/log", build);
		last_line(path, line, sizeof line);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
			error_set(err, AEGIS_E_UNSUPPORTED, ENOENT, "vm: image: mkfs.erofs not found on PATH "
				  "(scripts/deps.sh vm installs erofs-utils)");
		else if (WIFEXITED(status))
			error_set(err, AEGIS_E_SETUP, 0, "vm: image: building its EROFS root failed (status %d): %s",
				  WEXITSTATUS(status), line[0] ? line : "no reason given");
		else
			error_set(err, AEGIS_E_SETUP, 0, "vm: image: building its EROFS root: killed by signal %d",
				  WTERMSIG(status));
		goto fail;
	}
	snprintf(path, sizeof path, "%s/image", build);
	if ((f = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(f, &st) < 0) {
		error_sys(err, "vm: image: open %s", path);
		goto fail;
	}
	if ((uint64_t)st.st_size > VM_SLOT_BYTES) {
		error_set(err, AEGIS_E_UNSUPPORTED, EFBIG, "vm: image: its root is %lld bytes as EROFS, more than "
			  "the guest's block slot of %llu", (long long)st.st_size, (unsigned long long)VM_SLOT_BYTES);
		goto fail;
	}
	/* the slot's size exactly (sparse): the capacity the guest read */
	if (fchmod(f, 0600) < 0 || ftruncate(f, (off_t)VM_SLOT_BYTES) < 0 || fsync(f) < 0) {
		error_sys(err, "vm: image: %s", path);
		goto fail;
	}
	snprintf(final, sizeof final, "%s/%s.erofs", root, key);
	if (rename(path, final) < 0) {
		error_sys(err, "vm: image: rename into %s", final);
		goto fail;
	}
	/* sealed after the rename (which moves its ctime): until the seal is
	 * there the image is not used */
	if (fstat(f, &st) < 0) {
		error_sys(err, "vm: image: %s", final);
		goto fail;
	}
	/* which layers it was made of, for `aegis image rm`/`prune` to drop
	 * it with them (vm_erofs_sweep) */
	if (write_layers(spec, build, root, key) < 0) {
		error_sys(err, "vm: image: %s/%s.layers", root, key);
		goto fail;
	}
	identity(&st, text, sizeof text);
	snprintf(path, sizeof path, "%s/id", build);
	snprintf(final, sizeof final, "%s/%s.erofs.id", root, key);
	if (write_file(path, text) < 0 || rename(path, final) < 0) {
		error_sys(err, "vm: image: seal %s", final);
		goto fail;
	}
	fsync(rootfd);
	vm_remove_tree(rootfd, strrchr(build, '/') + 1);
	return 0;
fail:
	vm_remove_tree(rootfd, strrchr(build, '/') + 1);
	return -1;
}

int vm_erofs_image(const struct aegis_spec *spec, int *fd, uint64_t *build_us, struct aegis_error *err)
{
	char root[4200], text[8192], key[HASH_HEX_LEN + 1], path[4400], why[64];
	_cleanup_close_ int rootfd = -1, lock = -1;
	uid_t uid = 0;
	gid_t gid = 0;
	size_t off;
	uint64_t t0;
	int r;

	*build_us = 0;
	if (erofs_owner(spec, &uid, &gid, err) < 0 || erofs_root(root, sizeof root, err) < 0)
		return -1;
	/* the key: the image (its digest and its layers, content-addressed)
	 * and the owner its files get */
	off = (size_t)snprintf(text, sizeof text, "%s\nslot %llu\ndigest %s\nowner %u:%u\n", EROFS_FORMAT,
			       (unsigned long long)VM_SLOT_BYTES, spec->image_digest ? spec->image_digest : "-",
			       (unsigned)uid, (unsigned)gid);
	for (char *const *l = spec->image_layers; *l && off < sizeof text; l++)
		off += (size_t)snprintf(text + off, sizeof text - off, "layer %s\n", *l);
	if (off >= sizeof text)
		return error_set(err, AEGIS_E_INVALID, 0, "vm: image: too many layers");
	hash_sha256_hex(text, off, key);
	key[32] = '\0';
	snprintf(path, sizeof path, "%s/%s.erofs", root, key);
	if (erofs_valid(path, fd, why, sizeof why) == 1)
		return 0;
	/* built once: a second run waits for the first's build */
	if ((rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
	    (lock = openat(rootfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
		return error_sys(err, "vm: image: %s/lock", root);
	while ((r = flock(lock, LOCK_EX)) < 0 && errno == EINTR)
		;
	if (r < 0)
		return error_sys(err, "vm: image: lock %s", root);
	if (erofs_valid(path, fd, why, sizeof why) == 1)
		return 0;
	if (getenv("AEGIS_DEBUG"))
		fprintf(stderr, "aegis: debug: vm: building the image's EROFS root: %s\n", why);
	/* a damaged one goes: its seal first, so it is never taken as whole */
	snprintf(text, sizeof text, "%s.id", path);
	unlink(text);
	unlink(path);
	t0 = now_us();
	if (erofs_build(spec, rootfd, root, key, uid, gid, err) < 0)
		return -1;
	*build_us = now_us() - t0;
	if (erofs_valid(path, fd, why, sizeof why) != 1)
		return error_set(err, AEGIS_E_SETUP, 0, "vm: image: the EROFS root just built is %s", why);
	return 0;
}

/* Does every layer directory the sidecar names still exist? */
static bool layers_present(int rootfd, const char *sidecar)
{
	char buf[LAYERS_MAX * 4400 / 8], *line, *save = NULL;
	ssize_t n = read_file_at(rootfd, sidecar, buf, sizeof buf - 1);
	struct stat st;

	if (n <= 0 || (size_t)n >= sizeof buf - 1)
		return false;
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (stat(line, &st) < 0 || !S_ISDIR(st.st_mode))
			return false;
	return true;
}

int vm_erofs_sweep(const char *state, uint64_t *freed, size_t *removed)
{
	char root[4200], name[300];
	_cleanup_close_ int rootfd = -1, lock = -1;
	struct dirent *e;
	struct stat st;
	DIR *d;

	snprintf(root, sizeof root, "%s/vm-erofs", state);
	if ((rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return errno == ENOENT ? 0 : -1;
	/* no build half-sealed meanwhile: builds hold this lock */
	if ((lock = openat(rootfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0 ||
	    flock(lock, LOCK_EX) < 0 || !(d = opendir_at(rootfd)))
		return -1;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		bool image = len > 6 && !strcmp(e->d_name + len - 6, ".erofs");
		if (!image || len >= sizeof name - 16)
			continue;
		/* kept while its layers are: an image removed from the store
		 * takes them along (collect), a run of a kept one still has them */
		snprintf(name, sizeof name, "%.*s.layers", (int)(len - 6), e->d_name);
		if (layers_present(rootfd, name))
			continue;
		if (fstatat(rootfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			*freed += (uint64_t)st.st_blocks * 512;	/* sparse: what it held on disk */
		snprintf(name, sizeof name, "%s.id", e->d_name);
		unlinkat(rootfd, name, 0);	/* the seal first: never a whole-looking half */
		unlinkat(rootfd, e->d_name, 0);
		snprintf(name, sizeof name, "%.*s.layers", (int)(len - 6), e->d_name);
		unlinkat(rootfd, name, 0);
		(*removed)++;
	}
	closedir(d);
	return 0;
}
