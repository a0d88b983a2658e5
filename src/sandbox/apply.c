/* apply.c — `aegis apply DIR`: bring the reviewed changes of an overlay run
 * into the host workspace.
 *
 * Nothing is written unless every change still applies cleanly: a file the
 * run modified must still have the content it had before the run (its
 * sha256 in changes.json), an added one must still be absent. Every host
 * path is resolved beneath the workspace with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS), so neither changes.json nor a symlink in the
 * workspace can direct a write elsewhere. Files land by rename, whole. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/hash.h"
#include "../common/util.h"
#include "sandbox.h"

/* Relative, no empty, "." or ".." component: anything else is refused. */
static bool rel_ok(const char *rel)
{
	const char *p = rel;

	if (!*rel || *rel == '/')
		return false;
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n + (p[n] == '/');
	}
	return rel[strlen(rel) - 1] != '/';
}

/* The parent directory of rel (opened beneath root) and rel's last name. */
static int open_parent(int root, const char *rel, const char **name)
{
	char dir[4096];
	const char *slash = strrchr(rel, '/');

	if (!slash) {
		*name = rel;
		return fcntl(root, F_DUPFD_CLOEXEC, 0);
	}
	snprintf(dir, sizeof dir, "%.*s", (int)(slash - rel), rel);
	*name = slash + 1;
	return open_beneath(root, dir, O_RDONLY | O_DIRECTORY, 0);
}

static int remove_tree(int parent, const char *name)
{
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;
	struct dirent *e;

	if (fd < 0)
		return unlinkat(parent, name, 0) == 0 || errno == ENOENT ? 0 : -1;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return -1;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && remove_tree(dirfd(d), e->d_name) < 0) {
			closedir(d);
			return -1;
		}
	closedir(d);
	return unlinkat(parent, name, AT_REMOVEDIR);
}

/* Does the host still look as the run found it, for this change? */
static const char *conflict(int ws, json_t *c)
{
	const char *rel = json_string_value(json_object_get(c, "path"));
	const char *kind = json_string_value(json_object_get(c, "kind"));
	const char *before = json_string_value(json_object_get(c, "before_sha256"));
	const char *type = json_string_value(json_object_get(c, "type"));
	char sha[HASH_HEX_LEN + 1];
	struct stat st;
	int fd;

	if (!rel || !kind || !type || !rel_ok(rel))
		return "malformed entry in changes.json";
	fd = open_beneath(ws, rel, O_PATH, 0);
	if (fd < 0 && errno != ENOENT)
		return errno == ELOOP || errno == EXDEV ? "path leaves the workspace (symlink)" : "cannot open";
	if (!strcmp(kind, "added")) {
		bool ok = fd < 0 || (!strcmp(type, "dir") && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode));
		if (fd >= 0)
			close(fd);
		return ok ? NULL : "added by the run, but now exists in the workspace";
	}
	if (!strcmp(kind, "modified") && before) {
		int rfd = fd >= 0 ? open_beneath(ws, rel, O_RDONLY, 0) : -1;
		bool same = rfd >= 0 && hash_sha256_fd(rfd, sha) == 0 && !strcmp(sha, before);
		if (rfd >= 0)
			close(rfd);
		if (fd >= 0)
			close(fd);
		return same ? NULL : "changed in the workspace since the run";
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int copy_in(int ws, int upper, const char *rel, const char *type, struct aegis_error *err)
{
	const char *name;
	char tmp[300], link[4096];
	int parent = open_parent(ws, rel, &name), in = -1, out = -1, r = -1;
	struct stat st;
	ssize_t n;

	if (parent < 0)
		return error_sys(err, "apply %s: open its directory", rel);
	if (!strcmp(type, "dir")) {
		r = mkdirat(parent, name, 0755) == 0 || errno == EEXIST ? 0 : error_sys(err, "apply %s", rel);
		goto out;
	}
	snprintf(tmp, sizeof tmp, ".aegis-apply.%d", (int)getpid());
	if (!strcmp(type, "symlink")) {
		if ((n = readlinkat(upper, rel, link, sizeof link - 1)) < 0)
			goto fail;
		link[n] = '\0';
		unlinkat(parent, tmp, 0);
		if (symlinkat(link, parent, tmp) < 0)
			goto fail;
	} else {
		in = openat(upper, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (in < 0 || fstat(in, &st) < 0)
			goto fail;
		out = openat(parent, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 0777);
		if (out < 0)
			goto fail;
		for (char buf[65536]; (n = read(in, buf, sizeof buf)) > 0;)
			if (write_all(out, buf, (size_t)n) < 0)
				goto fail;
		if (n < 0 || fsync(out) < 0)
			goto fail;
	}
	if (renameat(parent, tmp, parent, name) < 0)
		goto fail;
	r = 0;
	goto out;
fail:
	error_sys(err, "apply %s", rel);
	unlinkat(parent, tmp, 0);
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	close(parent);
	return r;
}

static int apply_one(int ws, int upper, json_t *c, struct aegis_error *err)
{
	const char *rel = json_string_value(json_object_get(c, "path"));
	const char *kind = json_string_value(json_object_get(c, "kind"));
	const char *type = json_string_value(json_object_get(c, "type"));
	const char *name;
	int parent, r = 0;

	if (!strcmp(kind, "deleted") || !strcmp(kind, "replaced")) {
		if ((parent = open_parent(ws, rel, &name)) < 0)
			return errno == ENOENT ? 0 : error_sys(err, "apply %s", rel);
		if (remove_tree(parent, name) < 0 && errno != ENOENT)
			r = error_sys(err, "apply: remove %s", rel);
		close(parent);
		if (r < 0 || !strcmp(kind, "deleted"))
			return r;
	}
	return copy_in(ws, upper, rel, type, err);
}

static json_t *load(int dirfd, const char *name, struct aegis_error *err)
{
	json_error_t je;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	json_t *j;

	if (fd < 0)
		return error_set(err, AEGIS_E_INVALID, errno, "%s", name), NULL;
	j = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
	close(fd);
	if (!j)
		error_set(err, AEGIS_E_INVALID, 0, "%s: line %d: %s", name, je.line, je.text);
	return j;
}

int aegis_apply(const char *dir, struct aegis_apply_report *rep, struct aegis_error *err)
{
	json_t *changes = NULL, *result = NULL, *list, *c;
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ws = -1, upper = -1, r = -1;
	const char *wspath, *why;
	size_t i;

	memset(rep, 0, sizeof *rep);
	if (dirfd < 0)
		return error_set(err, AEGIS_E_INVALID, errno, "artifacts %s", dir);
	if (faccessat(dirfd, "applied", F_OK, 0) == 0) {
		error_set(err, AEGIS_E_INVALID, 0, "%s was applied already", dir);
		goto out;
	}
	if (!(changes = load(dirfd, "changes.json", err)) || !(result = load(dirfd, "result.json", err))) {
		error_prefix(err, "%s is not the artifacts of an overlay run", dir);
		goto out;
	}
	if (strcmp(json_string_value(json_object_get(changes, "mode")) ?: "", "overlay")) {
		error_set(err, AEGIS_E_INVALID, 0,
			  "%s: nothing to apply, the run wrote its workspace directly (not overlay mode)", dir);
		goto out;
	}
	wspath = json_string_value(json_object_get(changes, "workspace"));
	list = json_object_get(changes, "changes");
	if (!wspath || !json_is_array(list) || !json_is_true(json_object_get(changes, "complete"))) {
		error_set(err, AEGIS_E_INVALID, 0, "%s/changes.json is incomplete or malformed", dir);
		goto out;
	}
	ws = open(wspath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	upper = openat(dirfd, "upper", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (ws < 0 || upper < 0) {
		error_set(err, AEGIS_E_INVALID, errno, "apply: open %s", ws < 0 ? wspath : "upper/");
		goto out;
	}
	json_array_foreach(list, i, c) {
		if ((why = conflict(ws, c))) {
			error_set(err, AEGIS_E_INVALID, 0, "nothing applied: %s: %s",
				  json_string_value(json_object_get(c, "path")) ?: "?", why);
			goto out;
		}
	}
	json_array_foreach(list, i, c) {
		if (apply_one(ws, upper, c, err) < 0)
			goto out;
		rep->applied++;
	}
	rep->workspace = strdup(wspath);
	/* applied once: a second apply would replay changes onto themselves */
	if ((r = openat(dirfd, "applied", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0)
		close(r);
	r = 0;
out:
	json_decref(changes);
	json_decref(result);
	if (ws >= 0)
		close(ws);
	if (upper >= 0)
		close(upper);
	close(dirfd);
	return r;
}
