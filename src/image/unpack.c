/* unpack.c — one layer tar into one directory, for overlayfs.
 *
 * Layers come from anywhere, so the tar is hostile until proven otherwise.
 * Entries are written by hand, relative to the layer directory, never by
 * path from the root of the host:
 *  - names are cleaned: a leading '/' is dropped (as tar does), '.' parts
 *    go, and a name with a '..' part is refused;
 *  - parents are opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
 *    so nothing is ever written through a symlink, the layer's own or not;
 *  - files are created O_EXCL after removing what was there, so a write
 *    never lands in an existing inode (a hardlink planted earlier);
 *  - hardlinks point only at entries of this layer, resolved the same way;
 *  - ownership, xattrs and setuid/setgid bits are not applied; device
 *    nodes, fifos and sockets are skipped;
 *  - sizes are bounded (the layer's limit per file and in all), and the
 *    uncompressed stream must hash to the config's diff_id (checked by
 *    the caller with the digest reported here).
 * OCI whiteouts become overlayfs ones: ".wh.NAME" a 0:0 character device,
 * ".wh..wh..opq" the xattr user.overlay.opaque=y (the engine mounts with
 * userxattr). The whole of it runs in a child with no capabilities, no new
 * privileges and, where the kernel has landlock, no write access outside
 * the layer directory: a bug here still cannot write elsewhere. */
#define OPENSSL_API_COMPAT 10101
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/util.h"
#include "fsutil.h"
#include "unpack.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"
#define WH_META ".wh..wh."

struct dirfix {
	char *path;
	mode_t mode;
	struct timespec mtime;
};

struct unpacker {
	int root;
	struct archive *outer;	/* the blob: decompressed, as one raw stream */
	struct archive *tar;	/* the tar, read from the outer stream */
	SHA256_CTX sha;
	uint64_t max, written;
	struct dirfix *dirs;
	size_t n_dirs, cap_dirs;
	struct unpack_result *res;
	char buf[128 << 10];
};

static int fail(struct unpack_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct unpack_result *res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->msg, sizeof res->msg, fmt, ap);
	va_end(ap);
	res->ok = 0;
	return -1;
}

/* The tar reads the decompressed stream through here, which hashes it. */
static la_ssize_t feed(struct archive *a, void *arg, const void **out)
{
	struct unpacker *u = arg;
	la_ssize_t n = archive_read_data(u->outer, u->buf, sizeof u->buf);

	(void)a;
	if (n < 0) {
		archive_set_error(a, archive_errno(u->outer), "%s", archive_error_string(u->outer));
		return -1;
	}
	SHA256_Update(&u->sha, u->buf, (size_t)n);
	u->res->bytes += (uint64_t)n;
	*out = u->buf;
	return n;
}

/* Clean a tar name into a relative path: 0, or -1 when it has a ".." part
 * or is too long. An empty result is the layer's root. */
static int clean_name(const char *name, char *out, size_t len)
{
	size_t o = 0;

	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return -1;
		if (n && !(n == 1 && p[0] == '.')) {
			if (o + n + 2 > len)
				return -1;
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p += n;
		while (*p == '/')
			p++;
	}
	out[o] = '\0';
	return 0;
}

/* dirfd/name as a directory, made (0755, as tar makes missing parents)
 * when absent; never a symlink. */
static int step_into(int dirfd, const char *name)
{
	int fd = open_beneath(dirfd, name, O_PATH | O_DIRECTORY, 0);

	if (fd < 0 && errno == ENOENT && (mkdirat(dirfd, name, 0755) == 0 || errno == EEXIST))
		fd = open_beneath(dirfd, name, O_PATH | O_DIRECTORY, 0);
	return fd;
}

/* The directory that will hold path's last part, its missing parents
 * created one name at a time (a multi-part name given to mkdirat would
 * follow a symlink on the way). */
static int open_parent(struct unpacker *u, char *path, const char **base)
{
	char *slash = strrchr(path, '/');
	int fd;

	*base = slash ? slash + 1 : path;
	if (!slash)
		return fcntl(u->root, F_DUPFD_CLOEXEC, 0);
	*slash = '\0';
	fd = open_beneath(u->root, path, O_PATH | O_DIRECTORY, 0);
	if (fd < 0 && errno == ENOENT) {
		char *part = path, *next;
		fd = fcntl(u->root, F_DUPFD_CLOEXEC, 0);
		for (; fd >= 0 && part; part = next) {
			int sub;
			if ((next = strchr(part, '/')))
				*next = '\0';
			sub = step_into(fd, part);
			close(fd);
			fd = sub;
			if (next)
				*next++ = '/';
		}
	}
	*slash = '/';
	return fd;
}

/* Make room for a new entry: whatever has the name goes (a directory
 * stays when a directory comes). */
static int clear_name(int parent, const char *name, bool keep_dir)
{
	struct stat st;

	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (keep_dir && S_ISDIR(st.st_mode))
		return 1;
	return rmtree_at(parent, name);
}

static int write_file(struct unpacker *u, struct archive_entry *e, int parent, const char *name,
		      const char *path)
{
	int64_t size = archive_entry_size(e);
	_cleanup_close_ int fd = -1;
	const void *block;
	size_t len;
	la_int64_t off;
	int r;

	if (size < 0 || (uint64_t)size > u->max || u->written + (uint64_t)size > u->max)
		return fail(u->res, "layer entry '%.100s' declares %lld bytes, over the limit of %llu", path,
			    (long long)size, (unsigned long long)u->max);
	fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(u->res, "create '%.100s': %s", path, strerror(errno));
	while ((r = archive_read_data_block(u->tar, &block, &len, &off)) == ARCHIVE_OK) {
		if (off < 0 || (uint64_t)off + len > (uint64_t)size)
			return fail(u->res, "layer entry '%.100s' has data beyond its size", path);
		if (pwrite(fd, block, len, off) != (ssize_t)len)
			return fail(u->res, "write '%.100s': %s", path, strerror(errno));
	}
	if (r != ARCHIVE_EOF)
		return fail(u->res, "layer entry '%.100s': %s", path, archive_error_string(u->tar));
	u->written += (uint64_t)size;
	/* sparse files end in a hole */
	if (ftruncate(fd, size) < 0)
		return fail(u->res, "write '%.100s': %s", path, strerror(errno));
	{
		struct timespec t[2] = { { 0, UTIME_OMIT },
			{ archive_entry_mtime(e), archive_entry_mtime_nsec(e) } };
		if (fchmod(fd, archive_entry_perm(e) & 01777) < 0 || futimens(fd, t) < 0)
			return fail(u->res, "'%.100s': %s", path, strerror(errno));
	}
	return 0;
}

static int add_dirfix(struct unpacker *u, const char *path, struct archive_entry *e)
{
	if (u->n_dirs == u->cap_dirs) {
		size_t cap = u->cap_dirs ? 2 * u->cap_dirs : 64;
		struct dirfix *d = realloc(u->dirs, cap * sizeof *d);
		if (!d)
			return fail(u->res, "out of memory");
		u->dirs = d;
		u->cap_dirs = cap;
	}
	if (!(u->dirs[u->n_dirs].path = strdup(path)))
		return fail(u->res, "out of memory");
	u->dirs[u->n_dirs].mode = archive_entry_perm(e) & 01777;
	u->dirs[u->n_dirs].mtime.tv_sec = archive_entry_mtime(e);
	u->dirs[u->n_dirs].mtime.tv_nsec = archive_entry_mtime_nsec(e);
	u->n_dirs++;
	return 0;
}

/* A hardlink to an entry already unpacked in this layer; anything else
 * (outside, through a symlink, not there yet, a directory) is refused. */
static int make_link(struct unpacker *u, const char *target, int parent, const char *name)
{
	char clean[PATH_MAX];
	const char *tbase;
	_cleanup_close_ int tparent = -1;
	struct stat st;

	if (clean_name(target, clean, sizeof clean) < 0 || !clean[0])
		return 1;
	{
		char *slash = strrchr(clean, '/');
		if (slash) {
			*slash = '\0';
			tparent = open_beneath(u->root, clean, O_PATH | O_DIRECTORY, 0);
			tbase = slash + 1;
		} else {
			tparent = fcntl(u->root, F_DUPFD_CLOEXEC, 0);
			tbase = clean;
		}
	}
	if (tparent < 0 || fstatat(tparent, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
		return 1;
	return linkat(tparent, tbase, parent, name, 0) < 0 ? 1 : 0;
}

static int whiteout(struct unpacker *u, int parent, const char *base, const char *path)
{
	if (!strcmp(base, WH_OPAQUE)) {
		_cleanup_close_ int dir = -1;
		char *slash = strrchr(path, '/');
		/* the opaque marker applies to its directory, reopened for the xattr */
		if (slash) {
			char d[PATH_MAX];
			snprintf(d, sizeof d, "%.*s", (int)(slash - path), path);
			dir = open_beneath(u->root, d, O_RDONLY | O_DIRECTORY, 0);
		} else {
			dir = fcntl(u->root, F_DUPFD_CLOEXEC, 0);
		}
		if (dir < 0 || fsetxattr(dir, "user.overlay.opaque", "y", 1, 0) < 0)
			return fail(u->res, "opaque whiteout '%.100s': %s", path, strerror(errno));
		return 0;
	}
	if (!strncmp(base, WH_META, strlen(WH_META)))
		return 1;	/* aufs bookkeeping (.wh..wh.plnk...): not content */
	base += strlen(WH_PREFIX);
	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return 1;
	if (clear_name(parent, base, false) < 0 ||
	    mknodat(parent, base, S_IFCHR | 0, makedev(0, 0)) < 0)
		return fail(u->res, "whiteout '%.100s': %s", path, strerror(errno));
	return 0;
}

/* One entry: 0 written, 1 neutralised (skipped), -1 the layer fails. */
static int unpack_entry(struct unpacker *u, struct archive_entry *e)
{
	const char *raw = archive_entry_pathname(e), *link = archive_entry_hardlink(e), *base;
	char path[PATH_MAX];
	_cleanup_close_ int parent = -1;
	mode_t type = archive_entry_filetype(e);
	int r;

	if (!raw || clean_name(raw, path, sizeof path) < 0)
		return 1;
	if (!path[0]) {
		if (type == AE_IFDIR && !link)
			return add_dirfix(u, ".", e);
		return 1;
	}
	if (!link && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
		return 1;	/* devices, fifos, sockets */
	if ((parent = open_parent(u, path, &base)) < 0)
		return 1;	/* a parent is a symlink or a file */
	if (!strncmp(base, WH_PREFIX, strlen(WH_PREFIX)))
		return whiteout(u, parent, base, path);
	if ((r = clear_name(parent, base, type == AE_IFDIR && !link)) < 0)
		return fail(u->res, "replace '%.100s': %s", path, strerror(errno));
	if (link)
		return make_link(u, link, parent, base);
	switch (type) {
	case AE_IFDIR:
		if (r == 0 && mkdirat(parent, base, 0700) < 0)
			return fail(u->res, "mkdir '%.100s': %s", path, strerror(errno));
		return add_dirfix(u, path, e);
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);
		struct timespec t[2] = { { 0, UTIME_OMIT },
			{ archive_entry_mtime(e), archive_entry_mtime_nsec(e) } };
		/* kept as it is: it is resolved inside the sandbox's root */
		if (!target || !*target || symlinkat(target, parent, base) < 0)
			return 1;
		utimensat(parent, base, t, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	default:
		return write_file(u, e, parent, base, path);
	}
}

/* Directory modes last (a 0555 dir still takes its entries), deepest first. */
static int fix_dirs(struct unpacker *u)
{
	for (size_t i = u->n_dirs; i-- > 0;) {
		struct dirfix *d = &u->dirs[i];
		struct timespec t[2] = { { 0, UTIME_OMIT }, d->mtime };
		_cleanup_close_ int fd = !strcmp(d->path, ".") ? fcntl(u->root, F_DUPFD_CLOEXEC, 0) :
			open_beneath(u->root, d->path, O_RDONLY | O_DIRECTORY, 0);
		if (fd < 0)
			continue;	/* replaced by a later entry */
		if (fchmod(fd, d->mode) < 0 || futimens(fd, t) < 0)
			return fail(u->res, "'%.100s': %s", d->path, strerror(errno));
	}
	return 0;
}

static int open_archives(struct unpacker *u, int blob_fd)
{
	struct archive_entry *raw;

	u->outer = archive_read_new();
	u->tar = archive_read_new();
	if (!u->outer || !u->tar)
		return fail(u->res, "out of memory");
	/* only what the image spec allows: plain, gzip, zstd */
	archive_read_support_filter_gzip(u->outer);
	archive_read_support_filter_zstd(u->outer);
	archive_read_support_format_raw(u->outer);
	archive_read_support_format_tar(u->tar);
	if (archive_read_open_fd(u->outer, blob_fd, sizeof u->buf) != ARCHIVE_OK ||
	    archive_read_next_header(u->outer, &raw) != ARCHIVE_OK)
		return fail(u->res, "layer: %s", archive_error_string(u->outer));
	if (archive_filter_count(u->outer) > 2)
		return fail(u->res, "layer: more than one compression (%s over %s)",
			    archive_filter_name(u->outer, 0), archive_filter_name(u->outer, 1));
	if (archive_read_open(u->tar, u, NULL, feed, NULL) != ARCHIVE_OK)
		return fail(u->res, "layer: %s", archive_error_string(u->tar));
	return 0;
}

static int unpack_all(struct unpacker *u)
{
	struct archive_entry *e;
	unsigned char md[SHA256_DIGEST_LENGTH];
	la_ssize_t n;
	int r;

	while ((r = archive_read_next_header(u->tar, &e)) == ARCHIVE_OK ||
	       r == ARCHIVE_WARN) {
		int w = unpack_entry(u, e);
		if (w < 0)
			return -1;
		if (w > 0)
			u->res->neutralised++;
		else
			u->res->entries++;
	}
	if (r != ARCHIVE_EOF)
		return fail(u->res, "layer is not a valid tar: %s", archive_error_string(u->tar));
	/* the padding after the end marker is part of the diff_id */
	while ((n = archive_read_data(u->outer, u->buf, sizeof u->buf)) > 0) {
		SHA256_Update(&u->sha, u->buf, (size_t)n);
		u->res->bytes += (uint64_t)n;
	}
	if (n < 0)
		return fail(u->res, "layer: %s", archive_error_string(u->outer));
	if (fix_dirs(u) < 0)
		return -1;
	SHA256_Final(md, &u->sha);
	strcpy(u->res->diff_id, "sha256:");
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		sprintf(u->res->diff_id + 7 + 2 * i, "%02x", md[i]);
	return 0;
}

int unpack_stream(int blob_fd, int dir_fd, uint64_t max_bytes, struct unpack_result *res)
{
	struct unpacker *u = calloc(1, sizeof *u);
	int r;

	memset(res, 0, sizeof *res);
	if (!u)
		return fail(res, "out of memory");
	u->root = dir_fd;
	u->max = max_bytes;
	u->res = res;
	SHA256_Init(&u->sha);
	r = open_archives(u, blob_fd) < 0 ? -1 : unpack_all(u);
	if (u->tar)
		archive_read_free(u->tar);
	if (u->outer)
		archive_read_free(u->outer);
	for (size_t i = 0; i < u->n_dirs; i++)
		free(u->dirs[i].path);
	free(u->dirs);
	free(u);
	res->ok = r == 0;
	return r;
}

/* Landlock: all file access handled, all of it granted beneath the layer
 * directory only. 0 also where the kernel has no landlock (openat2 and
 * the checks above are the confinement; this is the second wall). */
static int confine_fs(int dir_fd, struct unpack_result *res)
{
	uint64_t all = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	struct landlock_ruleset_attr attr;
	struct landlock_path_beneath_attr rule;
	_cleanup_close_ int rs = -1;

	if (abi <= 0)
		return 0;
	if (abi >= 2)
		all |= 1ULL << 13;	/* REFER */
	if (abi >= 3)
		all |= 1ULL << 14;	/* TRUNCATE */
	attr = (struct landlock_ruleset_attr){ .handled_access_fs = all };
	rule = (struct landlock_path_beneath_attr){ .allowed_access = all, .parent_fd = dir_fd };
	rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (rs < 0 || syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0 ||
	    syscall(SYS_landlock_restrict_self, rs, 0) < 0)
		return fail(res, "landlock: %s", strerror(errno));
	return 0;
}

/* The child's rights: nothing it does not need to unpack. */
static int confine(int dir_fd, uint64_t max_bytes, struct unpack_result *res)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = { 0 };
	struct rlimit fsize = { max_bytes, max_bytes };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(res, "no_new_privs: %s", strerror(errno));
	/* no capability: no writing past modes, no mknod but whiteouts, no chown */
	if (syscall(SYS_capset, &h, d) < 0)
		return fail(res, "drop capabilities: %s", strerror(errno));
	if (setrlimit(RLIMIT_FSIZE, &fsize) < 0)
		return fail(res, "RLIMIT_FSIZE: %s", strerror(errno));
	return confine_fs(dir_fd, res);
}

int unpack_spawn(int blob_fd, int dir_fd, uint64_t max_bytes, struct unpack_job *job,
		 struct aegis_error *err)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return error_sys(err, "unpack: pipe");
	if ((pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		return error_sys(err, "unpack: fork");
	}
	if (pid == 0) {
		struct unpack_result res = { 0 };
		/* the child dies with its parent: no orphan writing a layer */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGXFSZ, SIG_IGN);	/* over RLIMIT_FSIZE: EFBIG, an error we report */
		if (dup2(blob_fd, 3) < 0 || dup2(dir_fd, 4) < 0 || dup2(p[1], 5) < 0 ||
		    syscall(SYS_close_range, 6, ~0U, 0) < 0)
			_exit(126);
		if (confine(4, max_bytes, &res) == 0)
			unpack_stream(3, 4, max_bytes, &res);
		_exit(write_all(5, &res, sizeof res) == 0 ? 0 : 1);
	}
	close(p[1]);
	job->pid = pid;
	job->result_fd = p[0];
	return 0;
}

int unpack_wait(struct unpack_job *job, struct unpack_result *res, struct aegis_error *err)
{
	ssize_t n, got = 0;
	int status;

	memset(res, 0, sizeof *res);
	while (got < (ssize_t)sizeof *res &&
	       ((n = read(job->result_fd, (char *)res + got, sizeof *res - (size_t)got)) > 0 ||
		(n < 0 && errno == EINTR)))
		got += n > 0 ? n : 0;
	close(job->result_fd);
	job->result_fd = -1;
	while (waitpid(job->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != (ssize_t)sizeof *res)
		return error_set(err, AEGIS_E_SETUP, 0, "unpack: the unpacking process died (%s %d)",
				 WIFSIGNALED(status) ? "signal" : "status",
				 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	res->msg[sizeof res->msg - 1] = '\0';
	res->diff_id[sizeof res->diff_id - 1] = '\0';
	return 0;
}

int unpack_run(int blob_fd, int dir_fd, uint64_t max_bytes, struct unpack_result *res,
	       struct aegis_error *err)
{
	struct unpack_job job;

	if (unpack_spawn(blob_fd, dir_fd, max_bytes, &job, err) < 0)
		return -1;
	return unpack_wait(&job, res, err);
}
