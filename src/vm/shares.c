/* shares.c — the host directories a vm-backend guest sees, as 9p shares.
 *
 * Exactly what the namespace backend's host image takes (rootfs.c): /usr
 * read-only (the /bin, /lib, ... links are in the initramfs) and the /etc
 * allowlist, copied (once per content, into the state dir) because 9p
 * exports directories, not single files. Then the run's own: the workspace, the artifacts
 * directory and "io" (the engine's audit events). An image root is no
 * share: it is a block image (erofs.c). Never /, /root, /home, /tmp or
 * /var.
 *
 * The device set is the same on every boot — an unused share points at an
 * empty private directory — so a snapshot taken before the request still
 * matches the machine any request restores it into. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/hash.h"
#include "../common/paths.h"
#include "../sandbox/sandbox.h"
#include "vm.h"

#define COPY_DEPTH 8

static int copy_tree(int src_dir, const char *name, int dst_dir, int depth, struct aegis_error *err);

static int copy_file(int src_dir, const char *name, int dst_dir, const struct stat *st, struct aegis_error *err)
{
	_cleanup_close_ int in = openat(src_dir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_close_ int out = -1;
	off_t left = st->st_size;

	if (in < 0)
		return errno == EACCES ? 0 : error_sys(err, "vm: read /etc/.../%s", name);
	out = openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, st->st_mode & 0755);
	if (out < 0)
		return error_sys(err, "vm: copy %s", name);
	while (left > 0) {
		ssize_t n = sendfile(out, in, NULL, (size_t)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return error_sys(err, "vm: copy %s", name);
		left -= n;
	}
	return 0;
}

static int copy_dir(int src_dir, const char *name, int dst_dir, int depth, struct aegis_error *err)
{
	_cleanup_close_ int in = -1, out = -1;
	DIR *d;
	struct dirent *e;
	int r = 0;

	if (depth > COPY_DEPTH)
		return 0;
	if ((in = openat(src_dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return errno == EACCES ? 0 : error_sys(err, "vm: open %s", name);
	if (mkdirat(dst_dir, name, 0755) < 0 ||
	    (out = openat(dst_dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return error_sys(err, "vm: mkdir %s", name);
	if (!(d = fdopendir(in)))
		return error_sys(err, "vm: list %s", name);
	in = -1;	/* the DIR owns it */
	while (r == 0 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			r = copy_tree(dirfd(d), e->d_name, out, depth + 1, err);
	closedir(d);
	return r;
}

/* Symlinks as symlinks, files copied, directories recursively; sockets,
 * fifos and devices never. */
static int copy_tree(int src_dir, const char *name, int dst_dir, int depth, struct aegis_error *err)
{
	struct stat st;
	char target[PATH_MAX];
	ssize_t n;

	if (fstatat(src_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : error_sys(err, "vm: stat %s", name);
	if (S_ISLNK(st.st_mode)) {
		if ((n = readlinkat(src_dir, name, target, sizeof target - 1)) < 0)
			return error_sys(err, "vm: readlink %s", name);
		target[n] = '\0';
		return symlinkat(target, dst_dir, name) < 0 ? error_sys(err, "vm: symlink %s", name) : 0;
	}
	if (S_ISREG(st.st_mode))
		return copy_file(src_dir, name, dst_dir, &st, err);
	if (S_ISDIR(st.st_mode))
		return copy_dir(src_dir, name, dst_dir, depth, err);
	return 0;
}

/* What the copy of the /etc allowlist depends on: every entry's path,
 * type, mode, size, times, inode and link target, one line each, walked
 * as copy_tree walks (lstat only: ~1,600 entries cost a few ms, while
 * copying them cost ~0.4 s per run — most of a restore). */
struct etc_sum {
	char *buf;
	size_t len, cap;
};

static void sum_line(struct etc_sum *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sum_line(struct etc_sum *m, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!m->buf)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(m->buf + m->len, m->cap - m->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			free(m->buf), m->buf = NULL;
			return;
		}
		if ((size_t)n < m->cap - m->len) {
			m->len += (size_t)n;
			return;
		}
		char *b = realloc(m->buf, m->cap * 2 + (size_t)n);
		if (!b) {
			free(m->buf), m->buf = NULL;
			return;
		}
		m->buf = b, m->cap = m->cap * 2 + (size_t)n;
	}
}

static void sum_tree(struct etc_sum *m, int dir, const char *rel, const char *name, int depth)
{
	char path[PATH_MAX], target[PATH_MAX] = "";
	struct stat st;
	ssize_t n;

	snprintf(path, sizeof path, "%s/%s", rel, name);
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		sum_line(m, "%s -%d\n", path, errno);
		return;
	}
	if (S_ISLNK(st.st_mode) && (n = readlinkat(dir, name, target, sizeof target - 1)) >= 0)
		target[n] = '\0';
	sum_line(m, "%s %o %lld %lld.%ld %lld.%ld %llu %s\n", path, st.st_mode, (long long)st.st_size,
		 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec,
		 (unsigned long long)st.st_ino, target);
	if (S_ISDIR(st.st_mode) && depth <= COPY_DEPTH) {
		int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		DIR *d = fd < 0 ? NULL : fdopendir(fd);
		struct dirent *e;

		if (!d) {
			if (fd >= 0)
				close(fd);
			sum_line(m, "%s unreadable\n", path);
			return;
		}
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				sum_tree(m, dirfd(d), path, e->d_name, depth + 1);
		closedir(d);
	}
}

/* The copy of the host's /etc allowlist the guest's /etc share shows: made
 * once per content and kept in <state dir>/vm-etc/<sum> (0700, ours), so
 * a run only walks /etc to see whether it changed. A copy is built beside
 * and renamed into place: a killed build is never used, and two runs
 * building at once both end up with one. Old copies stay (a running guest
 * may still export one). */
static int shares_etc(char *out, size_t cap, struct aegis_error *err)
{
	char state[4096], root[4200], build[4300], sum[HASH_HEX_LEN + 1];
	struct etc_sum m = { .buf = malloc(1 << 16), .cap = 1 << 16 };
	_cleanup_close_ int etc = open("/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int dst = -1;
	struct stat st;

	if (etc < 0)
		return free(m.buf), error_sys(err, "vm: open /etc");
	/* Copies of another layout (before the identity placeholders) differ. */
	sum_line(&m, "layout 2: allowlist, empty identity files\n");
	for (int i = 0; rootfs_etc_allow[i]; i++)
		sum_tree(&m, etc, "", rootfs_etc_allow[i], 0);
	if (!m.buf)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "vm: /etc: out of memory");
	hash_sha256_hex(m.buf, m.len, sum);
	free(m.buf);
	if (paths_state(state, sizeof state, err) < 0 || paths_private_dir(state, err) < 0)
		return -1;
	snprintf(root, sizeof root, "%s/vm-etc", state);
	if (paths_private_dir(root, err) < 0)
		return -1;
	snprintf(out, cap, "%s/%.32s", root, sum);
	if (lstat(out, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid())
		return 0;
	snprintf(build, sizeof build, "%s/.build-%.32s-%d", root, sum, (int)getpid());
	_cleanup_close_ int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (rootfd < 0)
		return error_sys(err, "vm: open %s", root);
	vm_remove_tree(rootfd, strrchr(build, '/') + 1);
	if (mkdir(build, 0755) < 0 || (dst = open(build, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return error_sys(err, "vm: mkdir %s", build);
	for (int i = 0; rootfs_etc_allow[i]; i++)
		if (copy_tree(etc, rootfs_etc_allow[i], dst, 0, err) < 0) {
			vm_remove_tree(rootfd, strrchr(build, '/') + 1);
			return -1;
		}
	/* Empty stand-ins for the files that describe the sandbox (passwd,
	 * hosts, ...): the engine in the guest binds this directory whole as
	 * the sandbox's /etc and its own identity files over these. Nothing
	 * of the host's accounts is copied. */
	for (int i = 0; rootfs_etc_identity[i]; i++) {
		int fd = openat(dst, rootfs_etc_identity[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);

		if (fd < 0) {
			error_sys(err, "vm: %s/%s", build, rootfs_etc_identity[i]);
			vm_remove_tree(rootfd, strrchr(build, '/') + 1);
			return -1;
		}
		close(fd);
	}
	if (rename(build, out) < 0) {
		int e = errno;

		vm_remove_tree(rootfd, strrchr(build, '/') + 1);
		if (e != EEXIST && e != ENOTEMPTY)	/* another run built the same one first */
			return errno = e, error_sys(err, "vm: rename %s", build);
	}
	return 0;
}

/* The fixed device set, in device order: its tags are all a guest (and a
 * snapshot) knows of the shares until it mounts them. */
enum { SHARE_USR, SHARE_ETC, SHARE_WS, SHARE_ART, SHARE_IO, SHARE_COUNT };
static const char *const share_tags[SHARE_COUNT] = { "usr", "etc", "ws", "art", "io" };

static void shares_tag(struct vm_shares *sh)
{
	for (int i = 0; i < SHARE_COUNT; i++)
		snprintf(sh->s[i].tag, sizeof sh->s[i].tag, "%s", share_tags[i]);
	sh->n = SHARE_COUNT;
}

static void share(struct vm_share *s, const char *host, const char *guest, bool ro, bool used)
{
	snprintf(s->host, sizeof s->host, "%s", host);
	snprintf(s->guest, sizeof s->guest, "%s", guest);
	s->ro = ro;
	s->used = used;
}

/* A host directory's path in the guest: absolute, and not over anything
 * the guest itself needs. */
static int guest_path(const char *host, const char *what, char *out, size_t cap, struct aegis_error *err)
{
	static const char *const taken[] = { "/usr", "/etc", "/proc", "/sys", "/dev", "/aegis", "/bin", "/sbin",
					     "/lib", "/lib64", NULL };
	char real[PATH_MAX];

	out[0] = '\0';
	if (!host)
		return 0;
	if (!realpath(host, real))
		return error_sys(err, "%s %s", what, host);
	if (!strcmp(real, "/"))
		return error_set(err, AEGIS_E_INVALID, 0, "the vm backend cannot share / as the %s", what);
	for (const char *const *t = taken; *t; t++) {
		size_t n = strlen(*t);
		if (!strncmp(real, *t, n) && (real[n] == '/' || !real[n]))
			return error_set(err, AEGIS_E_UNSUPPORTED, 0, "the vm backend cannot share %s as the %s "
					 "(the guest has its own %s)", real, what, *t);
	}
	snprintf(out, cap, "%s", real);
	return 0;
}

/* An image root's layers are the store's unpacked layers, STORE/layers/ID,
 * from which the host builds the guest's EROFS root (erofs.c). Layers
 * given elsewhere, or by a path that is not canonical, are refused. */
static int layers_dir(const struct aegis_spec *spec, char *out, size_t cap, struct aegis_error *err)
{
	char parent[PATH_MAX], real[PATH_MAX], *slash;

	out[0] = '\0';
	if (!spec->image_layers || !spec->image_layers[0])
		return 0;
	snprintf(parent, sizeof parent, "%s", spec->image_layers[0]);
	if (!(slash = strrchr(parent, '/')) || slash == parent)
		return error_set(err, AEGIS_E_INVALID, 0, "image layer %s: not in an image store", parent);
	*slash = '\0';
	if (strcmp(slash - 7 > parent ? slash - 7 : parent, "/layers"))
		return error_set(err, AEGIS_E_UNSUPPORTED, 0, "the vm backend takes image layers from the image "
				 "store only, not %s", spec->image_layers[0]);
	for (char *const *l = spec->image_layers; *l; l++) {
		size_t n = strlen(parent);
		if (strncmp(*l, parent, n) || (*l)[n] != '/' || strchr(*l + n + 1, '/') || !realpath(*l, real) ||
		    strcmp(real, *l))
			return error_set(err, AEGIS_E_UNSUPPORTED, 0, "the vm backend takes image layers from one "
					 "image store's layers directory only, not %s", *l);
	}
	return guest_path(parent, "image layers directory", out, cap, err);
}

int vm_paths_of(struct vm_paths *paths, const struct aegis_spec *spec, struct aegis_error *err)
{
	char layers[PATH_MAX];

	if (guest_path(spec->workspace, "workspace", paths->workspace, sizeof paths->workspace, err) < 0 ||
	    layers_dir(spec, layers, sizeof layers, err) < 0)
		return -1;
	return guest_path(spec->artifacts_dir, "artifacts directory", paths->artifacts, sizeof paths->artifacts, err);
}

int vm_shares_prepare(struct vm_shares *sh, const char *dir, const struct aegis_spec *spec,
		      const struct vm_paths *paths, struct aegis_error *err)
{
	char empty[128], io[128], etc[4200], ws[4200];
	bool ws_ro = spec->workspace_ro || spec->workspace_overlay;

	snprintf(empty, sizeof empty, "%s/empty", dir);
	snprintf(io, sizeof io, "%s/io", dir);
	if (mkdir(empty, 0555) < 0 || mkdir(io, 0700) < 0)
		return error_sys(err, "vm: run directory %s", dir);
	if (shares_etc(etc, sizeof etc, err) < 0)
		return -1;
	/* A named workspace: exactly the directory the caller opened and
	 * checked, through our descriptor (QEMU resolves it once, at start). */
	if (spec->workspace && spec->workspace_fd > 0)
		snprintf(ws, sizeof ws, "/proc/%d/fd/%d", (int)getpid(), spec->workspace_fd);
	else
		snprintf(ws, sizeof ws, "%s", spec->workspace ? spec->workspace : empty);
	share(&sh->s[SHARE_USR], "/usr", "/usr", true, true);
	share(&sh->s[SHARE_ETC], etc, "/etc", true, true);
	share(&sh->s[SHARE_WS], ws, paths->workspace, spec->workspace ? ws_ro : true, spec->workspace != NULL);
	share(&sh->s[SHARE_ART], spec->artifacts_dir ? spec->artifacts_dir : empty, paths->artifacts,
	      !spec->artifacts_dir, spec->artifacts_dir != NULL);
	/* io carries the engine's audit events only: without an audit log
	 * the guest need not mount it (each 9p mount is on the run's path). */
	share(&sh->s[SHARE_IO], io, VM_GUEST_IO, false, spec->audit_path != NULL);
	shares_tag(sh);
	return 0;
}

void vm_shares_placeholders(struct vm_shares *sh)
{
	char host[16];

	memset(sh, 0, sizeof *sh);
	for (int i = 0; i < SHARE_COUNT; i++) {
		snprintf(host, sizeof host, "@%s", share_tags[i]);
		share(&sh->s[i], host, "", false, false);
	}
	shares_tag(sh);
}

json_t *vm_shares_mounts(const struct vm_shares *sh)
{
	json_t *a = json_array();

	for (int i = 0; i < sh->n; i++)
		if (sh->s[i].used)
			json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "tag", sh->s[i].tag, "path",
							   sh->s[i].guest, "ro", sh->s[i].ro));
	return a;
}

/* Everything under dir/name, then it: the run directory's copies and the
 * guest's io files (no symlink is followed: unlinkat removes links). */
void vm_remove_tree(int dirfd_, const char *name)
{
	int fd = openat(dirfd_, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	DIR *d;
	struct dirent *e;

	if (fd < 0) {
		unlinkat(dirfd_, name, 0);
		return;
	}
	if (!(d = fdopendir(fd))) {
		close(fd);
		return;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			vm_remove_tree(dirfd(d), e->d_name);
	closedir(d);
	unlinkat(dirfd_, name, AT_REMOVEDIR);
}
