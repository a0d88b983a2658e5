/* workspaces.c — the named workspaces store (workspaces.h): create, list,
 * info, delete, and holding one for a run or an instance. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "fdtree.h"
#include "paths.h"
#include "util.h"
#include "workspaces.h"
#include "wsimage.h"

#define STORE "workspaces"
#define META "meta.json"
#define LOCKFILE "lock"
#define DATA "data"
#define USE_BYTE 0		/* read: anyone in it (a user, info); write: delete */
#define MOUNT_BYTE 1		/* write: checking or making the image's mount */
#define RUN_BYTE 2		/* read: a run or an instance, for its life (in_use) */
#define NAME_RULE "^[a-z0-9][a-z0-9-]{0,62}$"

/* The caller's mistake, of the kind class (workspaces.h). */
#define ws_error(err, class, ...) \
	(error_set((err), AEGIS_E_INVALID, 0, __VA_ARGS__), (err)->sys_errno = (class), -1)

static bool is(const struct aegis_error *err, int class)
{
	return err->code == AEGIS_E_INVALID && err->sys_errno == class;
}

bool workspace_is_name(const char *arg)
{
	return !strchr(arg, '/') && arg[0] != '.' && arg[0] != '~';
}

/* name as a one-line message may show it: printable ASCII, the rest as
 * \xNN, cut short (HOSTILE.md A-08: what is logged is escaped). */
static const char *shown(const char *name, char *buf, size_t cap)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t o = 0;

	for (; *p && o + 8 < cap; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\' && *p != '\'')
			buf[o++] = (char)*p;
		else
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p);
	}
	snprintf(buf + o, cap - o, "%s", *p ? "..." : "");
	return buf;
}

static int bad_name(const char *name, struct aegis_error *err)
{
	char b[96];

	return ws_error(err, EINVAL, "not a workspace name: '%s' (names match %s)", shown(name, b, sizeof b),
			NAME_RULE);
}

static int no_such(const char *name, struct aegis_error *err)
{
	return ws_error(err, ENOENT, "no workspace named '%s'", name);
}

/* <state>/workspaces, ours alone: nobody else may list the names or swap
 * an entry. ENOENT (as the caller's mistake) when there is none yet. */
static int store_open(const char *state, bool create, struct aegis_error *err)
{
	_cleanup_close_ int sfd = -1;
	struct stat st;
	int wfd;

	if (create && paths_private_dir(state, err) < 0)
		return -1;
	if ((sfd = open(state, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return errno == ENOENT ? ws_error(err, ENOENT, "no workspaces in %s", state)
				       : error_sys(err, "state directory %s", state);
	if (create && mkdirat(sfd, STORE, 0700) < 0 && errno != EEXIST)
		return error_sys(err, "create %s/" STORE, state);
	if ((wfd = openat(sfd, STORE, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return errno == ENOENT ? ws_error(err, ENOENT, "no workspaces in %s", state)
				       : error_set(err, AEGIS_E_SETUP, errno, "%s/" STORE " (a symlink?)", state);
	if (fstat(wfd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 077)) {
		close(wfd);
		return error_set(err, AEGIS_E_SETUP, 0, "%s/" STORE " must be ours and mode 0700: refused", state);
	}
	return wfd;
}

/* NAME/ in the store, never through a symlink; *store (if asked) gets the
 * store's descriptor. */
static int ws_open(const char *state, const char *name, int *store, struct aegis_error *err)
{
	int wfd, nfd, e;

	if (!name_valid(name))
		return bad_name(name, err);
	if ((wfd = store_open(state, false, err)) < 0)
		return is(err, ENOENT) ? no_such(name, err) : -1;
	if ((nfd = openat(wfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		e = errno;
		close(wfd);
		if (e == ENOENT)
			return no_such(name, err);
		return error_set(err, AEGIS_E_SETUP, e, "workspace '%s' (%s)", name,
				 e == ELOOP || e == ENOTDIR ? "not a directory, a symlink?: refused" : "cannot open");
	}
	if (store)
		*store = wfd;
	else
		close(wfd);
	return nfd;
}

static json_t *meta_load(int nfd, const char *name, struct aegis_error *err)
{
	_cleanup_close_ int fd = openat(nfd, META, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	json_t *m, *size;

	if (fd < 0) {
		error_set(err, AEGIS_E_SETUP, errno, "workspace '%s': meta.json", name);
		return NULL;
	}
	m = json_loadfd(fd, JSON_REJECT_DUPLICATES, NULL);
	size = json_object_get(m, "size_bytes");
	if (!json_is_integer(json_object_get(m, "created")) ||
	    !(json_is_null(size) || (json_is_integer(size) && json_integer_value(size) > 0))) {
		json_decref(m);
		error_set(err, AEGIS_E_SETUP, 0, "workspace '%s': meta.json is damaged", name);
		return NULL;
	}
	return m;
}

static uint64_t meta_size(json_t *meta)
{
	json_t *size = json_object_get(meta, "size_bytes");

	return json_is_integer(size) ? (uint64_t)json_integer_value(size) : 0;
}

/* meta.json whole: temp, fsync, rename, fsync of the directory. */
static int meta_save(int dirfd, json_t *meta)
{
	char *text = json_dumps(meta, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int fd = -1, r = -1;

	if (text && (fd = openat(dirfd, "." META ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
				 0600)) >= 0 &&
	    write_all(fd, text, strlen(text)) == 0 && fsync(fd) == 0 &&
	    renameat(dirfd, "." META ".tmp", dirfd, META) == 0 && fsync(dirfd) == 0)
		r = 0;
	if (fd >= 0)
		close(fd);
	free(text);
	return r;
}

static int lock_open(int nfd, const char *name, struct aegis_error *err)
{
	int fd = openat(nfd, LOCKFILE, O_RDWR | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return error_set(err, AEGIS_E_SETUP, errno, "workspace '%s': its lock", name);
	return fd;
}

/* An open file description lock on one byte: it goes with the last
 * descriptor of this open (a run's, an instance shim's), however that
 * process ends, and can be looked at without being taken. */
static int lock_byte(int fd, short type, off_t byte, bool wait)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
	int r;

	while ((r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl)) < 0 && errno == EINTR)
		;
	return r;
}

/* Does a run or a running instance hold the workspace now? (Only looks:
 * F_OFD_GETLK takes nothing.) */
static bool held_by_others(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = RUN_BYTE, .l_len = 1 };

	return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

/* A size-limited workspace is used through its image's mount, made here
 * by whoever comes first after a reboot; one at a time decides. */
static int ensure_mounted(int nfd, int lockfd, const char *name, struct aegis_error *err)
{
	int r;

	if (lock_byte(lockfd, F_WRLCK, MOUNT_BYTE, true) < 0)
		return error_sys(err, "workspace '%s': lock", name);
	r = wsimage_mounted(nfd, err);
	if (r == 0 && !wsimage_privileged())
		r = ws_error(err, EPERM, "workspace '%s' has a size limit and its image is not mounted "
			     "(after a reboot?); mounting it needs root", name);
	else if (r == 0)
		r = wsimage_mount(nfd, false, err);
	lock_byte(lockfd, F_UNLCK, MOUNT_BYTE, false);
	if (r < 0 && !is(err, EPERM))
		return error_prefix(err, "workspace '%s'", name);
	return r < 0 ? -1 : 0;
}

/* data/ as it may be used: a real directory (never a symlink, whatever
 * it points at), the image's mount when there is a size limit and no
 * mount at all otherwise. */
static int data_open(int nfd, bool sized, const char *name, struct aegis_error *err)
{
	struct statx stx;
	bool mounted;
	int fd = openat(nfd, DATA, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return error_set(err, AEGIS_E_SETUP, errno, "workspace '%s': data/ (%s)", name,
				 errno == ELOOP || errno == ENOTDIR
				 ? "not a directory, swapped for a symlink?: refused" : "cannot open");
	if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) < 0) {
		close(fd);
		return error_sys(err, "workspace '%s': data/", name);
	}
	mounted = stx.stx_attributes & STATX_ATTR_MOUNT_ROOT;
	if (mounted != sized) {
		close(fd);
		return error_set(err, AEGIS_E_SETUP, 0, "workspace '%s': %s: refused", name,
				 sized ? "its image is not mounted on data/" : "something is mounted on data/");
	}
	return fd;
}

/* The path of what fd names (its directory's, as the kernel sees it). */
static void fd_path(int fd, const char *suffix, char *out, size_t cap)
{
	char self[64];
	ssize_t n;

	snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
	n = readlink(self, out, cap - 1);
	out[n < 0 ? 0 : n] = '\0';
	if (suffix)
		snprintf(out + strlen(out), cap - strlen(out), "%s", suffix);
}

bool workspace_exists(const char *state, const char *name)
{
	struct aegis_error err;
	int nfd = ws_open(state, name, NULL, &err);

	if (nfd < 0)
		return false;
	close(nfd);
	return true;
}

/* Build NAME's contents in the temporary directory tfd. */
static int build(int tfd, const char *name, uint64_t size, struct aegis_error *err)
{
	int lock = openat(tfd, LOCKFILE, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	json_t *meta;
	int r;

	if (lock < 0)
		return error_sys(err, "workspace '%s': create its lock", name);
	close(lock);
	if (mkdirat(tfd, DATA, 0755) < 0)
		return error_sys(err, "workspace '%s': create data/", name);
	if (size && (wsimage_make(tfd, size, err) < 0 || wsimage_mount(tfd, true, err) < 0))
		return error_prefix(err, "workspace '%s'", name);
	meta = json_pack("{s:s, s:I, s:o}", "name", name, "created", (json_int_t)time(NULL), "size_bytes",
			 size ? json_integer((json_int_t)size) : json_null());
	r = meta ? meta_save(tfd, meta) : -1;
	json_decref(meta);
	return r < 0 ? error_sys(err, "workspace '%s': write meta.json", name) : 0;
}

/* Undo a create cut short: the image's mount, then the directory. */
static void discard(int wfd, const char *tmp, int tfd)
{
	struct aegis_error ignored;

	if (tfd >= 0) {
		if (wsimage_mounted(tfd, &ignored) == 1)
			wsimage_unmount(tfd, &ignored);
		fdtree_remove(tfd);
	}
	unlinkat(wfd, tmp, AT_REMOVEDIR);
}

/* Creates killed half-way leave ".new-NAME-PID-NONCE" (and maybe its
 * image's mount): those whose process is gone are undone here. */
static void discard_stale(int wfd)
{
	DIR *d = opendir_at(wfd);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		const char *dash = strrchr(e->d_name, '-');
		char *end;
		long pid;
		int tfd;
		if (strncmp(e->d_name, ".new-", 5) || !dash || dash == e->d_name)
			continue;
		/* the pid is the field before the nonce */
		for (const char *p = dash - 1; p > e->d_name && *p != '-'; p--)
			if (p[-1] == '-') {
				pid = strtol(p, &end, 10);
				if (end != dash || pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
					break;
				tfd = openat(wfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				discard(wfd, e->d_name, tfd);
				if (tfd >= 0)
					close(tfd);
				break;
			}
	}
	if (d)
		closedir(d);
}

int workspace_create(const char *state, const char *name, uint64_t size, struct aegis_error *err)
{
	_cleanup_close_ int wfd = -1, tfd = -1;
	unsigned int nonce = 0;
	char tmp[128];
	int r;

	if (!name_valid(name))
		return bad_name(name, err);
	if (size && (size < WORKSPACE_SIZE_MIN || size > WORKSPACE_SIZE_MAX))
		return ws_error(err, EINVAL, "size limit must be between 16m and 16t");
	/* refused before anything is made */
	if (size && !wsimage_privileged())
		return ws_error(err, EPERM, "a size limit needs root: the workspace is then a loop-mounted ext4 "
			        "image, and attaching and mounting it needs CAP_SYS_ADMIN");
	if ((wfd = store_open(state, true, err)) < 0)
		return -1;
	discard_stale(wfd);
	if (faccessat(wfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return ws_error(err, EEXIST, "workspace '%s' exists", name);
	/* built under a name of its own and renamed into place: a workspace
	 * is there whole or not at all, and one of racing creates wins */
	if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
		nonce = (unsigned int)now_us();
	snprintf(tmp, sizeof tmp, ".new-%s-%d-%08x", name, (int)getpid(), nonce);
	if (mkdirat(wfd, tmp, 0700) < 0)
		return error_sys(err, "workspace '%s': create", name);
	if ((tfd = openat(wfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		r = error_sys(err, "workspace '%s': create", name);
	else
		r = build(tfd, name, size, err);
	if (r == 0 && renameat2(wfd, tmp, wfd, name, RENAME_NOREPLACE) < 0)
		r = errno == EEXIST ? ws_error(err, EEXIST, "workspace '%s' exists", name)
				    : error_sys(err, "workspace '%s': put in place", name);
	if (r < 0) {
		discard(wfd, tmp, tfd);
		return -1;
	}
	fsync(wfd);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The valid names in the directory dirfd, sorted, as a JSON array. */
static json_t *names_in(int dirfd)
{
	DIR *d = opendir_at(dirfd);
	json_t *out = json_array();
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;

	while (d && (e = readdir(d))) {
		if (!name_valid(e->d_name))
			continue;	/* ".", "..", and the temporaries of creates */
		if (n == cap) {
			char **grown = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
			if (!grown)
				break;
			names = grown;
		}
		if ((names[n] = strdup(e->d_name)))
			n++;
	}
	if (d)
		closedir(d);
	if (n)
		qsort(names, n, sizeof *names, by_name);
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(out, json_string(names[i]));
		free(names[i]);
	}
	free(names);
	return out;
}

/* name, created, size_bytes; or name and the error when meta.json cannot be read. */
static json_t *summary(int wfd, const char *name)
{
	struct aegis_error err = { 0 };
	json_t *meta = NULL, *out;
	int nfd = openat(wfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (nfd < 0)
		error_set(&err, AEGIS_E_SETUP, errno, "workspace '%s'", name);
	else
		meta = meta_load(nfd, name, &err);
	if (nfd >= 0)
		close(nfd);
	if (!meta)
		return json_pack("{s:s, s:s}", "name", name, "error", err.msg);
	out = json_pack("{s:s, s:O, s:O}", "name", name, "created", json_object_get(meta, "created"),
			"size_bytes", json_object_get(meta, "size_bytes"));
	json_decref(meta);
	return out;
}

json_t *workspace_list(const char *state, struct aegis_error *err)
{
	_cleanup_close_ int wfd = store_open(state, false, err);
	json_t *names, *list, *v;
	size_t i;

	if (wfd < 0)
		return is(err, ENOENT) ? json_pack("{s:[]}", "workspaces") : NULL;
	names = names_in(wfd);
	list = json_array();
	json_array_foreach(names, i, v) {
		json_t *one = summary(wfd, json_string_value(v));
		if (one)
			json_array_append_new(list, one);
	}
	json_decref(names);
	return json_pack("{s:o}", "workspaces", list);
}

json_t *workspace_users(const char *state, const char *name)
{
	char dir[4200];
	_cleanup_close_ int idir = -1;
	json_t *names, *users = json_array(), *v;
	size_t i;

	snprintf(dir, sizeof dir, "%s/instances", state);
	if ((idir = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return users;
	names = names_in(idir);
	json_array_foreach(names, i, v) {
		int ifd = openat(idir, json_string_value(v), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int cfd = ifd >= 0 ? openat(ifd, "config.json", O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
		json_t *config = cfd >= 0 ? json_loadfd(cfd, 0, NULL) : NULL;
		const char *ws = json_string_value(json_object_get(config, "workspace"));

		if (ws && !strcmp(ws, name))
			json_array_append(users, v);
		json_decref(config);
		if (cfd >= 0)
			close(cfd);
		if (ifd >= 0)
			close(ifd);
	}
	json_decref(names);
	return users;
}

/* What info adds to meta: where, how much, who. */
static json_t *describe(const char *state, const char *name, json_t *meta, int data, bool in_use)
{
	struct fdtree_usage u;
	struct statvfs sv;
	char path[4200];

	fdtree_usage(data, &u);
	fd_path(data, NULL, path, sizeof path);
	json_object_set_new(meta, "name", json_string(name));
	json_object_set_new(meta, "path", json_string(path));
	json_object_set_new(meta, "used_bytes", json_integer((json_int_t)u.bytes));
	json_object_set_new(meta, "used_complete", json_boolean(u.complete));
	if (meta_size(meta) && fstatvfs(data, &sv) == 0)
		json_object_set_new(meta, "free_bytes", json_integer((json_int_t)(sv.f_bavail * sv.f_frsize)));
	json_object_set_new(meta, "instances", workspace_users(state, name));
	json_object_set_new(meta, "in_use", json_boolean(in_use));
	return meta;
}

json_t *workspace_info(const char *state, const char *name, struct aegis_error *err)
{
	_cleanup_close_ int nfd = -1, lock = -1, data = -1;
	json_t *meta;
	bool in_use;

	if ((nfd = ws_open(state, name, NULL, err)) < 0 || (lock = lock_open(nfd, name, err)) < 0)
		return NULL;
	in_use = held_by_others(lock);
	/* held like any user's while counting: a delete cannot pull the
	 * tree (or the image's mount) away halfway */
	if (lock_byte(lock, F_RDLCK, USE_BYTE, true) < 0) {
		error_sys(err, "workspace '%s': lock", name);
		return NULL;
	}
	if (!(meta = meta_load(nfd, name, err)))
		return NULL;
	if ((meta_size(meta) && ensure_mounted(nfd, lock, name, err) < 0) ||
	    (data = data_open(nfd, meta_size(meta) > 0, name, err)) < 0) {
		json_decref(meta);
		return NULL;
	}
	return describe(state, name, meta, data, in_use);
}

/* data/ and what is in it: the image unmounted first, then the contents,
 * never following a symlink the sandbox left there; a data/ that was
 * itself swapped for a symlink goes as the link. */
static int remove_data(int nfd, const char *name, struct aegis_error *err)
{
	_cleanup_close_ int data = -1;
	struct stat st;
	int mounted;

	if (fstatat(nfd, DATA, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : error_sys(err, "workspace '%s': data/", name);
	if (!S_ISDIR(st.st_mode))
		return unlinkat(nfd, DATA, 0) < 0 ? error_sys(err, "workspace '%s': remove data", name) : 0;
	if ((mounted = wsimage_mounted(nfd, err)) < 0 || (mounted && wsimage_unmount(nfd, err) < 0))
		return error_prefix(err, "workspace '%s'", name);
	/* no mount left on it: data_open refuses one */
	if ((data = data_open(nfd, false, name, err)) < 0)
		return -1;
	if (fdtree_remove(data) < 0)
		return error_sys(err, "workspace '%s': remove what is in data/", name);
	if (unlinkat(nfd, DATA, AT_REMOVEDIR) < 0)
		return error_sys(err, "workspace '%s': remove data/", name);
	return 0;
}

/* Refused while an instance's config names it. */
static int check_unused(const char *state, const char *name, struct aegis_error *err)
{
	json_t *users = workspace_users(state, name), *v;
	char list[200] = "";
	size_t i, n = json_array_size(users);

	json_array_foreach(users, i, v)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
			 json_string_value(v));
	json_decref(users);
	if (n)
		return ws_error(err, EBUSY, "workspace '%s' is used by instance%s %s (delete %s first)", name,
				n > 1 ? "s" : "", list, n > 1 ? "them" : "it");
	return 0;
}

int workspace_delete(const char *state, const char *name, struct aegis_error *err)
{
	_cleanup_close_ int wfd = -1, nfd = -1, lock = -1;

	if ((nfd = ws_open(state, name, &wfd, err)) < 0 || (lock = lock_open(nfd, name, err)) < 0)
		return -1;
	/* never waits: a workspace in use is refused, not pulled away; from
	 * here on new users wait, and find it gone */
	if (lock_byte(lock, F_WRLCK, USE_BYTE, false) < 0) {
		if (errno != EAGAIN && errno != EACCES)
			return error_sys(err, "workspace '%s': lock", name);
		/* a running instance is named; otherwise it is a run, or
		 * (for a moment) an info */
		if (check_unused(state, name, err) < 0)
			return -1;
		return held_by_others(lock) ? ws_error(err, EBUSY, "workspace '%s' is in use by a run", name)
		       : ws_error(err, EBUSY, "workspace '%s' is being read (workspace info); try again", name);
	}
	if (check_unused(state, name, err) < 0 || remove_data(nfd, name, err) < 0)
		return -1;
	/* the image, meta.json, the lock: nothing of the sandbox's is left */
	if (fdtree_remove(nfd) < 0)
		return error_sys(err, "workspace '%s': remove", name);
	if (unlinkat(wfd, name, AT_REMOVEDIR) < 0)
		return error_sys(err, "workspace '%s': remove", name);
	fsync(wfd);
	return 0;
}

int workspace_hold(const char *state, const char *name, struct workspace_hold *h, struct aegis_error *err)
{
	_cleanup_close_ int nfd = -1;
	struct stat st;
	json_t *meta;
	bool sized;

	*h = (struct workspace_hold){ .lock_fd = -1, .data_fd = -1 };
	if ((nfd = ws_open(state, name, NULL, err)) < 0 || (h->lock_fd = lock_open(nfd, name, err)) < 0)
		return -1;
	/* shared with every other user; a delete under way is waited out */
	if (lock_byte(h->lock_fd, F_RDLCK, USE_BYTE, true) < 0 ||
	    lock_byte(h->lock_fd, F_RDLCK, RUN_BYTE, true) < 0) {
		error_sys(err, "workspace '%s': lock", name);
		goto fail;
	}
	if (fstat(nfd, &st) < 0 || st.st_nlink == 0) {
		no_such(name, err);	/* deleted while we waited */
		goto fail;
	}
	if (!(meta = meta_load(nfd, name, err)))
		goto fail;
	sized = meta_size(meta) > 0;
	json_decref(meta);
	if ((sized && ensure_mounted(nfd, h->lock_fd, name, err) < 0) ||
	    (h->data_fd = data_open(nfd, sized, name, err)) < 0)
		goto fail;
	fd_path(nfd, "/" DATA, h->path, sizeof h->path);
	return 0;
fail:
	workspace_release(h);
	return -1;
}

void workspace_release(struct workspace_hold *h)
{
	if (h->data_fd >= 0)
		close(h->data_fd);
	if (h->lock_fd >= 0)
		close(h->lock_fd);
	h->data_fd = h->lock_fd = -1;
}
