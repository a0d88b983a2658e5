/* mcp_files.c — file_read, file_write and file_list in a workspace: an
 * instance's (what it has at /workspace) or a named one.
 *
 * The workspace's directory is opened once; every path below it is then
 * resolved by the kernel with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS) from that descriptor, never by joining strings
 * onto a host path. An absolute path (other than /workspace/...), a ".."
 * component, a symlink that leads out (absolute, or up past the top) or a
 * /proc magic link fail, whatever the sandbox left in the workspace and
 * however it swaps things while we look (HOSTILE.md A-07, E-05, E-06).
 * Writes are whole: a temporary file beneath the same directory, renamed
 * over the name (a symlink there is replaced, never written through), owned
 * by the workspace's owner, whom the sandbox sees as its root. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../common/logrecord.h"
#include "../common/util.h"
#include "../common/workspaces.h"
#include "mcp.h"

#define READ_DEFAULT (256u << 10)
#define LIST_DEFAULT 200
#define LIST_DEPTH 16
#define PATH_LEN_MAX 4095
#define NAME_LEN_MAX 255

/* A workspace, open. */
struct ws {
	int fd;				/* its top directory (O_PATH) */
	bool ro;
	struct workspace_hold hold;	/* a named one is held (a delete waits) */
	char what[96];			/* for messages: "instance web's workspace" */
};

static int beneath(int dirfd, const char *rel, int flags, mode_t mode, uint64_t resolve)
{
	struct open_how how = { .flags = (uint64_t)(flags | O_CLOEXEC), .mode = mode,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | resolve };

	return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
}

/* What an openat2 beneath the workspace failing means, for the model. */
static const char *why_not(int e)
{
	switch (e) {
	case EXDEV: return "it leads out of the workspace (a symlink out, or ..): refused";
	case ELOOP: return "too many symlinks, or a symlink where none may be";
	case ENOENT: return "no such file or directory";
	case ENOTDIR: return "a part of the path is not a directory";
	case EISDIR: return "it is a directory";
	case ENAMETOOLONG: return "the name is too long";
	case EACCES: case EPERM: return "permission denied";
	case ENOSPC: case EDQUOT: return "the workspace is full";
	case EROFS: return "the workspace is read-only";
	default: return strerror(e);
	}
}

/* The path as asked, made relative to the workspace's top: "/workspace/x"
 * (the path inside the sandbox) is "x". NULL with why when it is not one
 * a workspace can hold. */
static const char *relative(const char *path, bool top_ok, char *why, size_t len)
{
	const char *p = path, *c;

	if (!strncmp(p, "/workspace", 10) && (p[10] == '/' || !p[10]))
		p += 10;
	while (*p == '/' && p != path)
		p++;
	if (*p == '/') {
		snprintf(why, len, "\"%.100s\": an absolute path; paths are relative to /workspace", path);
		return NULL;
	}
	if (strlen(p) > PATH_LEN_MAX) {
		snprintf(why, len, "the path is longer than %d bytes", PATH_LEN_MAX);
		return NULL;
	}
	for (c = p; *c; c += strcspn(c, "/"), c += *c == '/') {
		size_t n = strcspn(c, "/");
		if (n == 2 && !strncmp(c, "..", 2)) {
			snprintf(why, len, "\"%.100s\": '..' is not allowed in a path", path);
			return NULL;
		}
		if (n > NAME_LEN_MAX) {
			snprintf(why, len, "a name in the path is longer than %d bytes", NAME_LEN_MAX);
			return NULL;
		}
	}
	if (!*p && !top_ok) {
		snprintf(why, len, "\"%.100s\" is the workspace itself, not a file in it", path);
		return NULL;
	}
	return *p ? p : ".";
}

/* The workspace of instance name (its info says which), or the named
 * workspace ws. */
static int ws_open(struct mcp_server *s, json_t *args, struct ws *w, char *why, size_t len)
{
	const char *name = mcp_arg_str(args, "name"), *named = mcp_arg_str(args, "workspace"), *given = NULL;
	struct aegis_error err = { 0 };
	char path[4400];
	json_t *info = NULL;
	int status;

	*w = (struct ws){ .fd = -1, .hold = { .lock_fd = -1, .data_fd = -1 } };
	if (!!name == !!named)
		return snprintf(why, len, "give either name (an instance) or workspace (a named workspace)"), -1;
	if (named) {
		if (!name_valid(named))
			return snprintf(why, len, "workspace: \"%.80s\" is not a workspace name", named), -1;
		given = named;
		snprintf(w->what, sizeof w->what, "workspace %s", named);
	} else {
		if (!mcp_name_ok(name, why, len))
			return -1;
		snprintf(path, sizeof path, "/v1/instances/%s", name);
		if (mcp_api(s, "GET", path, NULL, 10000, &info, &status, why, len) < 0) {
			if (status == 404)
				snprintf(why, len, "no instance named %s (instance_list shows them)", name);
			return -1;
		}
		given = json_string_value(json_object_get(info, "workspace"));
		w->ro = json_is_true(json_object_get(info, "workspace_ro"));
		snprintf(w->what, sizeof w->what, "instance %s's workspace", name);
	}
	if (given && workspace_is_name(given)) {
		if (workspace_hold(s->state, given, &w->hold, &err) < 0) {
			snprintf(why, len, "%s", err.msg);
			json_decref(info);
			return -1;
		}
		w->fd = fcntl(w->hold.data_fd, F_DUPFD_CLOEXEC, 3);
	} else if (given) {
		/* a host directory the instance was created with (by a person,
		 * or by us beneath --workspace-root): as its shim mounts it */
		w->fd = open(given, O_PATH | O_DIRECTORY | O_CLOEXEC);
	} else {
		snprintf(path, sizeof path, "%s/instances/%s/workspace", s->state, name);
		w->fd = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (w->fd < 0 && errno == ENOENT) {
			json_decref(info);
			return snprintf(why, len, "instance %s has no workspace yet (it has not started)", name), -1;
		}
	}
	json_decref(info);
	if (w->fd < 0) {
		snprintf(why, len, "%s: %s", w->what, strerror(errno));
		workspace_release(&w->hold);
		return -1;
	}
	return 0;
}

static void ws_close(struct ws *w)
{
	if (w->fd >= 0)
		close(w->fd);
	workspace_release(&w->hold);
}

/* Valid UTF-8 without NUL: what can go back as text. */
static bool is_text(const char *b, size_t n)
{
	json_t *j;

	if (memchr(b, '\0', n))
		return false;
	j = json_stringn(b, n);
	json_decref(j);
	return j != NULL;
}

static json_t *read_open(struct ws *w, const char *rel, const char *path, int *fd, struct stat *st)
{
	char self[64];
	int p = beneath(w->fd, rel, O_PATH, 0, 0);

	if (p < 0)
		return mcp_fail("file_read %s: %s", path, why_not(errno));
	if (fstat(p, st) < 0) {
		close(p);
		return mcp_fail("file_read %s: %s", path, why_not(errno));
	}
	if (!S_ISREG(st->st_mode)) {
		close(p);
		return mcp_fail("file_read %s: %s", path, S_ISDIR(st->st_mode) ? "it is a directory (file_list lists it)"
									   : "not a regular file");
	}
	/* the inode just checked, reopened for reading: a FIFO or device put
	 * there meanwhile cannot be what gets opened */
	snprintf(self, sizeof self, "/proc/self/fd/%d", p);
	*fd = open(self, O_RDONLY | O_NOCTTY | O_CLOEXEC);
	close(p);
	return *fd < 0 ? mcp_fail("file_read %s: %s", path, why_not(errno)) : NULL;
}

static json_t *tool_read(struct mcp_server *s, json_t *args)
{
	const char *path = mcp_arg_str(args, "path"), *rel, *enc = mcp_arg_str(args, "encoding");
	size_t max = (size_t)mcp_arg_int(args, "max_bytes", READ_DEFAULT), len;
	off_t off = (off_t)mcp_arg_int(args, "offset", 0);
	char why[MCP_WHY_MAX], *buf = NULL, *b64 = NULL;
	struct stat st;
	struct ws w;
	json_t *r;
	ssize_t n;
	bool text, cut;
	int fd = -1;

	if (!(rel = relative(path, false, why, sizeof why)))
		return mcp_fail("file_read: %s", why);
	if (ws_open(s, args, &w, why, sizeof why) < 0)
		return mcp_fail("file_read: %s", why);
	if ((r = read_open(&w, rel, path, &fd, &st)) || !(buf = malloc(max + 1))) {
		ws_close(&w);
		return r ? r : mcp_fail("file_read: out of memory");
	}
	n = pread(fd, buf, max + 1, off);
	close(fd);
	ws_close(&w);
	if (n < 0) {
		free(buf);
		return mcp_fail("file_read %s: %s", path, why_not(errno));
	}
	cut = (size_t)n > max;
	len = cut ? max : (size_t)n;
	/* a cut inside a character: that character waits for the next offset */
	if (cut && logrecord_utf8_cut(buf, len) > 0)
		len = logrecord_utf8_cut(buf, len);
	text = !(enc && !strcmp(enc, "base64")) && is_text(buf, len);
	if (!text) {
		len = cut ? max : (size_t)n;
		if (!(b64 = malloc((len + 2) / 3 * 4 + 1))) {
			free(buf);
			return mcp_fail("file_read: out of memory");
		}
		b64[logrecord_b64_encode((unsigned char *)buf, len, b64)] = '\0';
	}
	buf[len] = '\0';
	r = json_pack("{s:s, s:I, s:I, s:I, s:b, s:s, s:s%}", "path", path, "size", (json_int_t)st.st_size,
		      "offset", (json_int_t)off, "length", (json_int_t)len, "truncated", cut,
		      "encoding", text ? "utf-8" : "base64", "content", text ? buf : b64, text ? len : strlen(b64));
	r = mcp_ok(s, r, text ? buf : b64, "%s: %zu of %lld bytes from offset %lld%s%s", path, len,
		   (long long)st.st_size, (long long)off, text ? "" : ", base64 (not UTF-8 text)",
		   cut ? "; truncated: read on from offset + length" : "");
	free(buf);
	free(b64);
	return r;
}

/* The directory for a new file, its parents made if asked (owned like
 * the workspace's top). */
static int parent_open(struct ws *w, const char *dir, bool make, const struct stat *top, char *why, size_t len)
{
	char prefix[PATH_LEN_MAX + 1];
	const char *c;
	int fd;

	if ((fd = beneath(w->fd, dir, O_PATH | O_DIRECTORY, 0, 0)) >= 0)
		return fd;
	if (!make || errno != ENOENT) {
		int e = errno;
		snprintf(why, len, "%s: %s%s", dir, why_not(e), e == ENOENT ? " (create_dirs: true makes it)" : "");
		return -1;
	}
	for (c = dir; *c; c += strcspn(c, "/"), c += *c == '/') {
		int at;
		size_t end = (size_t)(c - dir) + strcspn(c, "/");
		snprintf(prefix, sizeof prefix, "%.*s", (int)end, dir);
		if ((fd = beneath(w->fd, prefix, O_PATH | O_DIRECTORY, 0, 0)) >= 0) {
			close(fd);
			continue;
		}
		if (errno != ENOENT) {
			snprintf(why, len, "%s: %s", prefix, why_not(errno));
			return -1;
		}
		/* the parent of this step, then the step made in it by name */
		snprintf(prefix, sizeof prefix, "%.*s", (int)(c - dir), dir);
		if ((at = beneath(w->fd, *prefix ? prefix : ".", O_PATH | O_DIRECTORY, 0, 0)) < 0) {
			snprintf(why, len, "%s: %s", dir, why_not(errno));
			return -1;
		}
		snprintf(prefix, sizeof prefix, "%.*s", (int)strcspn(c, "/"), c);
		if ((mkdirat(at, prefix, 0755) < 0 && errno != EEXIST) ||
		    (geteuid() == 0 && fchownat(at, prefix, top->st_uid, top->st_gid, AT_SYMLINK_NOFOLLOW) < 0)) {
			snprintf(why, len, "%s: cannot make it: %s", dir, why_not(errno));
			close(at);
			return -1;
		}
		close(at);
	}
	if ((fd = beneath(w->fd, dir, O_PATH | O_DIRECTORY, 0, 0)) < 0)
		snprintf(why, len, "%s: %s", dir, why_not(errno));
	return fd;
}

/* The bytes to write: the text as it is, or base64 decoded. */
static char *content_of(json_t *args, size_t *n, char *why, size_t len)
{
	const char *enc = mcp_arg_str(args, "encoding");
	json_t *c = json_object_get(args, "content");
	size_t clen = json_string_length(c);
	char *out = malloc(clen + 1);
	ssize_t k;

	if (!out)
		return snprintf(why, len, "out of memory"), NULL;
	if (!enc || !strcmp(enc, "utf-8")) {
		memcpy(out, json_string_value(c), clen);
		*n = clen;
	} else if ((k = logrecord_b64_decode(json_string_value(c), clen, (unsigned char *)out)) < 0) {
		free(out);
		return snprintf(why, len, "content: not base64"), NULL;
	} else {
		*n = (size_t)k;
	}
	if (*n > MCP_WRITE_MAX) {
		free(out);
		return snprintf(why, len, "content: %zu bytes, over the %u-byte limit of one write", *n, MCP_WRITE_MAX), NULL;
	}
	return out;
}

/* Write data as base in dir, whole (temp file + rename). -1 with why. */
static int write_whole(int dir, const char *base, const char *data, size_t n, const struct stat *top, bool replace,
		       char *why, size_t len)
{
	unsigned char rnd[8];
	char tmp[64];
	int fd, e;

	if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
		return snprintf(why, len, "getrandom: %s", strerror(errno)), -1;
	snprintf(tmp, sizeof tmp, ".aegis-mcp-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
		 rnd[4], rnd[5], rnd[6], rnd[7]);
	/* one plain name made new in dir: nothing there can be followed */
	if ((fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0)
		return snprintf(why, len, "%s", why_not(errno)), -1;
	if (write_all(fd, data, n) < 0 || fchmod(fd, 0644) < 0 ||
	    (geteuid() == 0 && fchown(fd, top->st_uid, top->st_gid) < 0) || fsync(fd) < 0) {
		e = errno;
		close(fd);
		unlinkat(dir, tmp, 0);
		return snprintf(why, len, "%s", why_not(e)), -1;
	}
	close(fd);
	if (syscall(SYS_renameat2, dir, tmp, dir, base, replace ? 0 : RENAME_NOREPLACE) < 0) {
		e = errno;
		unlinkat(dir, tmp, 0);
		return snprintf(why, len, "%s", e == EEXIST ? "it exists (overwrite is false)" : why_not(e)), -1;
	}
	return 0;
}

static json_t *tool_write(struct mcp_server *s, json_t *args)
{
	const char *path = mcp_arg_str(args, "path"), *rel, *base;
	char why[MCP_WHY_MAX], dir[PATH_LEN_MAX + 1], *data;
	struct stat top, before;
	struct ws w;
	size_t n;
	bool existed;
	int pfd, rc;

	if (!(rel = relative(path, false, why, sizeof why)))
		return mcp_fail("file_write: %s", why);
	base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
	if (!*base || !strcmp(base, "."))
		return mcp_fail("file_write %s: name a file, not a directory", path);
	snprintf(dir, sizeof dir, "%.*s", (int)(base - rel), rel);
	if (!(data = content_of(args, &n, why, sizeof why)))
		return mcp_fail("file_write %s: %s", path, why);
	if (ws_open(s, args, &w, why, sizeof why) < 0) {
		free(data);
		return mcp_fail("file_write: %s", why);
	}
	if (w.ro || fstat(w.fd, &top) < 0) {
		ws_close(&w);
		free(data);
		return mcp_fail("file_write %s: %s is read-only", path, w.what);
	}
	if ((pfd = parent_open(&w, *dir ? dir : ".", mcp_arg_bool(args, "create_dirs", false), &top, why,
			       sizeof why)) < 0) {
		ws_close(&w);
		free(data);
		return mcp_fail("file_write %s: %s", path, why);
	}
	existed = fstatat(pfd, base, &before, AT_SYMLINK_NOFOLLOW) == 0;
	rc = write_whole(pfd, base, data, n, &top, mcp_arg_bool(args, "overwrite", true), why, sizeof why);
	close(pfd);
	ws_close(&w);
	free(data);
	if (rc < 0)
		return mcp_fail("file_write %s: %s", path, why);
	return mcp_ok(s, json_pack("{s:s, s:I, s:b}", "path", path, "bytes", (json_int_t)n, "created", !existed), NULL,
		      "%s: %zu bytes written%s", path, n, existed ? " (replaced)" : "");
}

struct listing {
	json_t *entries;
	size_t max;
	bool truncated;
	FILE *text;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One entry: type, size, time, a symlink's target (not followed). */
static void list_one(struct listing *l, int dfd, const char *name, const char *shown, bool *is_dir)
{
	struct stat st;
	char target[4096] = "";
	const char *type;
	json_t *e;
	ssize_t n;

	*is_dir = false;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	type = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : S_ISLNK(st.st_mode) ? "symlink" : "other";
	*is_dir = S_ISDIR(st.st_mode);
	if (S_ISLNK(st.st_mode) && (n = readlinkat(dfd, name, target, sizeof target - 1)) > 0)
		target[n] = '\0';
	e = json_pack("{s:s, s:s, s:I, s:I}", "path", shown, "type", type, "size", (json_int_t)st.st_size, "mtime",
		      (json_int_t)st.st_mtime);
	if (!e)	/* a name that is not UTF-8 */
		e = json_pack("{s:s, s:s, s:I, s:I}", "path", "(name not UTF-8)", "type", type, "size",
			      (json_int_t)st.st_size, "mtime", (json_int_t)st.st_mtime);
	if (*target)	/* (NULL, not set, for a target that is not UTF-8) */
		json_object_set_new(e, "target", json_string(target));
	json_array_append_new(l->entries, e);
	fprintf(l->text, "%-7s %10lld  %s%s%s%s\n", type, (long long)st.st_size, shown, *is_dir ? "/" : "",
		*target ? " -> " : "", target);
}

/* dfd's entries, sorted, into l; below into subdirectories to depth. */
static void list_dir(struct listing *l, int dfd, const char *prefix, int depth)
{
	DIR *d = opendir_at(dfd);
	struct dirent *e;
	char **names = NULL, shown[PATH_LEN_MAX + 1];
	size_t n = 0, room = l->max - json_array_size(l->entries) + 1;

	if (!d)
		return;
	while ((e = readdir(d)) && n < room) {
		char **grown;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!(grown = realloc(names, (n + 1) * sizeof *names)) || !(grown[n] = strdup(e->d_name))) {
			names = grown ? grown : names;
			break;
		}
		names = grown;
		n++;
	}
	l->truncated |= e != NULL;
	closedir(d);
	qsort(names, n, sizeof *names, by_name);
	for (size_t i = 0; i < n; i++) {
		bool is_dir;
		int sub;
		if (json_array_size(l->entries) >= l->max) {
			l->truncated = true;
			break;
		}
		snprintf(shown, sizeof shown, "%s%s%s", prefix, *prefix ? "/" : "", names[i]);
		list_one(l, dfd, names[i], shown, &is_dir);
		/* below: never through a symlink, whatever it points at */
		if (is_dir && depth > 0 && (sub = beneath(dfd, names[i], O_RDONLY | O_DIRECTORY, 0,
							  RESOLVE_NO_SYMLINKS)) >= 0) {
			list_dir(l, sub, shown, depth - 1);
			close(sub);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static json_t *tool_list(struct mcp_server *s, json_t *args)
{
	const char *path = mcp_arg_str(args, "path") ?: ".", *rel;
	struct listing l = { .entries = json_array(), .max = (size_t)mcp_arg_int(args, "max_entries", LIST_DEFAULT) };
	char why[MCP_WHY_MAX], *text = NULL;
	size_t size = 0;
	struct ws w;
	json_t *r;
	int dfd;

	if (!(rel = relative(path, true, why, sizeof why)))
		return json_decref(l.entries), mcp_fail("file_list: %s", why);
	if (ws_open(s, args, &w, why, sizeof why) < 0)
		return json_decref(l.entries), mcp_fail("file_list: %s", why);
	if ((dfd = beneath(w.fd, rel, O_RDONLY | O_DIRECTORY, 0, 0)) < 0) {
		ws_close(&w);
		return json_decref(l.entries), mcp_fail("file_list %s: %s", path, why_not(errno));
	}
	if (!(l.text = open_memstream(&text, &size))) {
		close(dfd);
		ws_close(&w);
		return json_decref(l.entries), mcp_fail("file_list: out of memory");
	}
	list_dir(&l, dfd, "", mcp_arg_bool(args, "recursive", false) ? LIST_DEPTH : 0);
	fclose(l.text);
	close(dfd);
	ws_close(&w);
	r = mcp_ok(s, json_pack("{s:s, s:o, s:b}", "path", path, "entries", l.entries, "truncated", l.truncated), text,
		   "%s: %zu entr%s%s", path, json_array_size(l.entries), json_array_size(l.entries) == 1 ? "y" : "ies",
		   l.truncated ? " (more left out: max_entries)" : "");
	free(text);
	return r;
}

int mcp_root_open(struct mcp_server *s, const char *path, char *real, size_t rlen, char *why, size_t len)
{
	char resolved[4096];

	if (!s->nroots)
		return snprintf(why, len, "workspace \"%.100s\": host directories are not allowed by this server "
				"(it was started without --workspace-root); use a named workspace", path), -1;
	if (path[0] != '/' || !realpath(path, resolved))
		return snprintf(why, len, "workspace \"%.100s\": %s", path,
				path[0] != '/' ? "a host directory is an absolute path" : strerror(errno)), -1;
	for (size_t i = 0; i < s->nroots; i++) {
		size_t n = strlen(s->roots[i]);
		const char *rest = resolved + n;
		int fd;
		if (strcmp(s->roots[i], "/") ? strncmp(resolved, s->roots[i], n) || (*rest && *rest != '/')
					     : resolved[0] != '/')
			continue;
		while (*rest == '/')
			rest++;
		/* the resolved path has no symlink left: one there now is a swap */
		fd = beneath(s->root_fds[i], *rest ? rest : ".", O_PATH | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
		if (fd < 0)
			return snprintf(why, len, "workspace \"%.100s\": %s", path, why_not(errno)), -1;
		snprintf(real, rlen, "%s", resolved);
		return fd;
	}
	return snprintf(why, len, "workspace \"%.100s\": not beneath a directory this server allows (--workspace-root)",
			path), -1;
}

#define WHERE \
	" \"name\": {\"type\": \"string\", \"maxLength\": 63, \"description\": \"the instance whose /workspace it is\"}," \
	" \"workspace\": {\"type\": \"string\", \"maxLength\": 63, \"description\": \"or a named workspace instead of " \
	"an instance\"},"

static const char read_schema[] = "{"
	"\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"path\"],"
	"\"properties\": {" WHERE
	" \"path\": {\"type\": \"string\", \"maxLength\": 4106, \"description\": \"relative to /workspace (or "
	"/workspace/...)\"},"
	" \"offset\": {\"type\": \"integer\", \"minimum\": 0, \"description\": \"byte to start at (default 0)\"},"
	" \"max_bytes\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1048576, \"description\": \"bytes read "
	"(default 262144)\"},"
	" \"encoding\": {\"type\": \"string\", \"enum\": [\"auto\", \"base64\"], \"description\": \"auto (default): UTF-8 "
	"text as it is, anything else base64\"}"
	"}}";

static const char write_schema[] = "{"
	"\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"path\", \"content\"],"
	"\"properties\": {" WHERE
	" \"path\": {\"type\": \"string\", \"maxLength\": 4106, \"description\": \"relative to /workspace (or "
	"/workspace/...)\"},"
	" \"content\": {\"type\": \"string\", \"description\": \"the whole new content (at most 4 MiB once decoded)\"},"
	" \"encoding\": {\"type\": \"string\", \"enum\": [\"utf-8\", \"base64\"], \"description\": \"of content "
	"(default utf-8)\"},"
	" \"create_dirs\": {\"type\": \"boolean\", \"description\": \"make missing parent directories (default false)\"},"
	" \"overwrite\": {\"type\": \"boolean\", \"description\": \"replace an existing file (default true)\"}"
	"}}";

static const char list_schema[] = "{"
	"\"type\": \"object\", \"additionalProperties\": false,"
	"\"properties\": {" WHERE
	" \"path\": {\"type\": \"string\", \"maxLength\": 4106, \"description\": \"a directory relative to /workspace "
	"(default: the top)\"},"
	" \"recursive\": {\"type\": \"boolean\", \"description\": \"also list subdirectories, 16 levels deep at most "
	"(default false)\"},"
	" \"max_entries\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 5000, \"description\": \"default 200\"}"
	"}}";

const struct mcp_tool mcp_file_tools[] = {
	{ "file_read", "Read a file in a workspace",
	  "Read a file from an instance's /workspace (or a named workspace): UTF-8 text as it is, other bytes as "
	  "base64. Bounded by max_bytes; truncated says when there is more, read on with offset.",
	  read_schema, MCP_READ_ONLY | MCP_IDEMPOTENT, tool_read },
	{ "file_write", "Write a file in a workspace",
	  "Write a whole file into an instance's /workspace (or a named workspace), atomically (mode 0644). The "
	  "sandbox sees it at once. Paths stay inside the workspace: absolute paths, '..' and symlinks leading out "
	  "are refused; a symlink at the path is replaced, not written through.",
	  write_schema, MCP_IDEMPOTENT, tool_write },
	{ "file_list", "List files in a workspace",
	  "List a directory of an instance's /workspace (or a named workspace): each entry's path, type (file, dir, "
	  "symlink, other), size and mtime; symlinks are shown, not followed.",
	  list_schema, MCP_READ_ONLY | MCP_IDEMPOTENT, tool_list },
	{ 0 },
};
