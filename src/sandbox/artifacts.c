/* artifacts.c — `--artifacts DIR`: what a run leaves for review and replay.
 *
 *   DIR/stdout, DIR/stderr   the command's output (as far as the output limit)
 *   DIR/audit.jsonl          the run's audit events
 *   DIR/result.json          the run as asked (argv, env, workspace, policy,
 *                            limits: enough for `aegis replay`) and its result
 *   DIR/changes.json         a host workspace's changes, with sizes and sha256
 *   DIR/changes.diff         a unified diff of the text changes (rw mode: of
 *                            added files only, there is no copy of the old)
 *   DIR/upper/               overlay mode: the changed files, for `aegis apply`
 *
 * The overlay's upper layer is read through the fd PID 1 handed over (in a
 * vm guest, the one the guest root's builder kept: its opaque directories
 * are marked trusted.overlay.opaque there, overlay.c); every name in it is
 * opened relative to its parent with O_NOFOLLOW, so nothing the sandbox put
 * there can steer the copy outside DIR/upper. Only the opaque mark of the
 * namespace the overlay used counts. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/hash.h"
#include "../common/policy.h"
#include "../common/util.h"
#include "sandbox.h"

#define WALK_MAX_ENTRIES 100000	/* an inode bomb ends the listing, not the host */
#define WALK_MAX_DEPTH 128
#define DIFF_MAX_SIZE (1 << 20)	/* larger files are listed, not diffed */

struct walk {
	struct artifacts *a;
	const struct aegis_spec *spec;
	struct record *rec;
	json_t *changes;
	int diff_fd;
	size_t entries;
	bool complete;
};

int artifacts_open(const struct aegis_spec *spec, struct artifacts *a, struct aegis_error *err)
{
	DIR *d;
	struct dirent *e;

	memset(a, 0, sizeof *a);
	a->dirfd = a->out_fd = a->err_fd = a->upper_fd = a->ws_fd = -1;
	a->opaque_xattr = OVERLAY_USER_OPAQUE;
	if (!spec->artifacts_dir)
		return 0;
	if (mkdir(spec->artifacts_dir, 0700) < 0 && errno != EEXIST)
		return error_set(err, AEGIS_E_INVALID, errno, "artifacts %s", spec->artifacts_dir);
	a->dirfd = open(spec->artifacts_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (a->dirfd < 0)
		return error_set(err, AEGIS_E_INVALID, errno, "artifacts %s", spec->artifacts_dir);
	/* Never mix two runs, never overwrite what a review may still need. */
	if (!(d = opendir_at(a->dirfd)))
		return error_sys(err, "artifacts %s", spec->artifacts_dir);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			closedir(d);
			return error_set(err, AEGIS_E_INVALID, 0,
					 "artifacts %s is not empty (it holds another run)", spec->artifacts_dir);
		}
	closedir(d);
	a->out_fd = openat(a->dirfd, "stdout", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	a->err_fd = openat(a->dirfd, "stderr", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (a->out_fd < 0 || a->err_fd < 0)
		return error_sys(err, "artifacts %s: create stdout/stderr", spec->artifacts_dir);
	/* rw: the run writes the workspace itself; snapshot it to list changes */
	if (spec->workspace && !spec->workspace_ro && !spec->workspace_overlay) {
		a->ws_fd = spec->workspace_fd > 0
			   ? openat(spec->workspace_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
			   : open(spec->workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (a->ws_fd < 0)
			return error_sys(err, "workspace %s", spec->workspace);
		manifest_take(&a->before, a->ws_fd);
	}
	return 0;
}

void artifacts_close(struct artifacts *a)
{
	int *fds[] = { &a->dirfd, &a->out_fd, &a->err_fd, &a->upper_fd, &a->ws_fd };

	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	manifest_free(&a->before);
}

/* `diff -u` of the host's file against the changed one, appended to the
 * diff. A file opened safely beforehand is given as fd3 ("/dev/fd/3"). */
static void append_diff(struct walk *w, const char *rel, const char *before, const char *after,
			int fd3)
{
	char la[4200], lb[4200];
	char *argv[] = { "diff", "-u", "--label", la, "--label", lb, (char *)before, (char *)after, NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;

	snprintf(la, sizeof la, "a/%s", rel);
	snprintf(lb, sizeof lb, "b/%s", rel);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, w->diff_fd, 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (fd3 >= 0)
		posix_spawn_file_actions_adddup2(&fa, fd3, 3);
	if (posix_spawn(&pid, "/usr/bin/diff", &fa, NULL, argv, (char *[]){ "LC_ALL=C", NULL }) == 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	posix_spawn_file_actions_destroy(&fa);
}

static int copy_fd(int in, int out)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(in, buf, sizeof buf)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (write_all(out, buf, (size_t)n) < 0)
			return -1;
	}
	return 0;
}

static void add_change(struct walk *w, const char *rel, const char *kind, const char *type,
		       uint64_t size, const char *sha, const char *before_sha)
{
	json_t *c = json_pack("{s:s, s:s, s:s}", "path", rel, "kind", kind, "type", type);

	if (!c)
		return;	/* a name that is not UTF-8: json refuses it; skip it */
	if (sha) {
		json_object_set_new(c, "size", json_integer((json_int_t)size));
		json_object_set_new(c, "sha256", json_string(sha));
	}
	if (before_sha)
		json_object_set_new(c, "before_sha256", json_string(before_sha));
	json_array_append_new(w->changes, c);
	record_file_change(w->rec, rel, kind, size, sha);
}

/* A regular file of the upper layer: copied out, hashed, compared. */
static void file_change(struct walk *w, int dirfd, const char *name, const char *rel, int outdir,
			const struct stat *st)
{
	char host[8192], sha[HASH_HEX_LEN + 1], before[HASH_HEX_LEN + 1], copy[8192];
	int in = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), out, hf;
	bool existed;

	if (in < 0)
		return;
	out = openat(outdir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		     st->st_mode & 0777);
	if (out < 0 || copy_fd(in, out) < 0 || lseek(in, 0, SEEK_SET) < 0 || hash_sha256_fd(in, sha) < 0) {
		close(in);
		if (out >= 0)
			close(out);
		return;
	}
	close(in);
	close(out);
	snprintf(host, sizeof host, "%s/%s", w->spec->workspace, rel);
	hf = open(host, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	existed = hf >= 0 && hash_sha256_fd(hf, before) == 0;
	if (hf >= 0)
		close(hf);
	add_change(w, rel, existed ? "modified" : "added", "file", (uint64_t)st->st_size, sha,
		   existed ? before : NULL);
	if (st->st_size <= DIFF_MAX_SIZE) {
		snprintf(copy, sizeof copy, "%s/upper/%s", w->spec->artifacts_dir, rel);
		append_diff(w, rel, existed ? host : "/dev/null", copy, -1);
	}
}

static void walk_dir(struct walk *w, int dirfd, const char *rel, int outdir, int depth)
{
	DIR *d = depth < WALK_MAX_DEPTH ? opendir_at(dirfd) : NULL;
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) && w->entries++ < WALK_MAX_ENTRIES) {
		char path[4096], host[8192], link[4096];
		struct stat st, hst;
		int sub, subout;
		ssize_t n;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof path, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
		snprintf(host, sizeof host, "%s/%s", w->spec->workspace, path);
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISCHR(st.st_mode) && st.st_rdev == 0) {
			add_change(w, path, "deleted", "any", 0, NULL, NULL);	/* a whiteout */
		} else if (S_ISDIR(st.st_mode)) {
			char opaque[2] = "";
			sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				continue;
			if (lstat(host, &hst) < 0)
				add_change(w, path, "added", "dir", 0, NULL, NULL);
			else if (fgetxattr(sub, w->a->opaque_xattr, opaque, 1) == 1 && opaque[0] == 'y')
				add_change(w, path, "replaced", "dir", 0, NULL, NULL);
			mkdirat(outdir, e->d_name, 0755);
			subout = openat(outdir, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (subout >= 0) {
				walk_dir(w, sub, path, subout, depth + 1);
				close(subout);
			}
			close(sub);
		} else if (S_ISREG(st.st_mode)) {
			file_change(w, dirfd, e->d_name, path, outdir, &st);
		} else if (S_ISLNK(st.st_mode) && (n = readlinkat(dirfd, e->d_name, link, sizeof link - 1)) > 0) {
			link[n] = '\0';
			(void)!symlinkat(link, outdir, e->d_name);
			add_change(w, path, lstat(host, &hst) == 0 ? "modified" : "added", "symlink", 0, NULL, NULL);
		}
	}
	closedir(d);
}

static int write_json(int dirfd, const char *name, json_t *j, struct aegis_error *err)
{
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), r = 0;

	if (!text || fd < 0 || write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0)
		r = error_sys(err, "artifacts: write %s", name);
	free(text);
	if (fd >= 0)
		close(fd);
	return r;
}

static int open_changes(struct walk *w, struct aegis_error *err)
{
	w->changes = json_array();
	w->complete = true;
	w->diff_fd = openat(w->a->dirfd, "changes.diff", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->diff_fd < 0) {
		json_decref(w->changes);
		return error_sys(err, "artifacts: create changes.diff");
	}
	return 0;
}

static int close_changes(struct walk *w, const char *mode, struct aegis_error *err)
{
	json_t *doc = json_pack("{s:s, s:s, s:o, s:b}", "workspace", w->spec->workspace, "mode", mode,
				"changes", w->changes, "complete", w->complete);
	int r;

	close(w->diff_fd);
	r = write_json(w->a->dirfd, "changes.json", doc, err);
	json_decref(doc);
	return r;
}

/* Overlay: the upper layer is the change set; copy it out for `apply`. */
static int overlay_changes(struct walk *w, struct aegis_error *err)
{
	int upper, out;

	if (open_changes(w, err) < 0)
		return -1;
	if (mkdirat(w->a->dirfd, "upper", 0700) < 0 ||
	    (out = openat(w->a->dirfd, "upper", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		close(w->diff_fd);
		json_decref(w->changes);
		return error_sys(err, "artifacts: create upper/");
	}
	upper = openat(w->a->upper_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (upper >= 0) {
		walk_dir(w, upper, "", out, 0);
		close(upper);
	}
	close(out);
	w->complete = w->entries <= WALK_MAX_ENTRIES;
	return close_changes(w, "overlay", err);
}

static void rw_change(void *arg, const struct manifest_entry *e, const char *kind)
{
	struct walk *w = arg;
	const char *type = S_ISDIR(e->mode) ? "dir" : S_ISLNK(e->mode) ? "symlink" : S_ISREG(e->mode) ? "file" : "other";
	char sha[HASH_HEX_LEN + 1];
	int fd;

	if (strcmp(kind, "deleted") && S_ISREG(e->mode) &&
	    (fd = open_beneath(w->a->ws_fd, e->path, O_RDONLY, 0)) >= 0) {
		if (hash_sha256_fd(fd, sha) == 0) {
			add_change(w, e->path, kind, type, e->size, sha, NULL);
			/* no copy of the old content: added files get a diff */
			if (!strcmp(kind, "added") && e->size <= DIFF_MAX_SIZE && lseek(fd, 0, SEEK_SET) == 0)
				append_diff(w, e->path, "/dev/null", "/dev/fd/3", fd);
		}
		close(fd);
		return;
	}
	add_change(w, e->path, kind, type, 0, NULL, NULL);
}

/* rw: compare the workspace with its snapshot from before the run. */
static int rw_changes(struct walk *w, struct aegis_error *err)
{
	struct manifest after;

	if (open_changes(w, err) < 0)
		return -1;
	manifest_take(&after, w->a->ws_fd);
	manifest_diff(&w->a->before, &after, rw_change, w);
	w->complete = w->a->before.complete && after.complete;
	manifest_free(&after);
	return close_changes(w, "rw", err);
}

/* jansson refuses invalid UTF-8: such an argument is kept as "?". */
static json_t *string_or_mark(const char *s)
{
	json_t *j = json_string(s);

	return j ? j : json_string("?");
}

/* What `aegis replay` needs, and what happened. */
static json_t *result_json(const struct aegis_spec *spec, const struct aegis_result *res,
			   const struct record *rec)
{
	static const char *const ends[] = { "exited", "signaled", "timeout", "limit" };
	const struct aegis_limits *l = &spec->limits;
	json_t *argv = json_array(), *env = json_array(), *out;

	for (char *const *a = spec->argv; *a; a++)
		json_array_append_new(argv, string_or_mark(*a));
	for (char *const *e = spec->env; e && *e; e++)
		json_array_append_new(env, string_or_mark(*e));
	out = json_pack("{s:i, s:s, s:o, s:o, s:s, s:s, s:s, s:{s:s?, s:s}, s:o, s:{s:I, s:I, s:I, s:I, "
			 "s:I, s:I, s:I, s:I, s:I}, s:{s:i, s:s, s:o, s:o, s:f, s:f, s:I, s:I, s:b, s:b}}",
			 "version", 1, "run_id", rec->id, "argv", argv, "env", env, "cwd", spec->cwd,
			 "hostname", spec->hostname, "image", spec->image_ref ? spec->image_ref : "host",
			 "workspace", "path", spec->workspace, "mode", record_workspace_mode(spec),
			 "policy", spec->policy ? policy_to_json(spec->policy) : json_null(),
			 "limits", "wall_ms", (json_int_t)l->wall_ms, "cpu_ms", (json_int_t)l->cpu_ms,
			 "cpus_milli", (json_int_t)l->cpus_milli, "memory_bytes", (json_int_t)l->memory_bytes,
			 "pids", (json_int_t)l->pids, "disk_bytes", (json_int_t)l->disk_bytes,
			 "output_bytes", (json_int_t)l->output_bytes, "nofile", (json_int_t)l->nofile,
			 "execs", (json_int_t)l->execs,
			 "result", "exit_code", res->exit_code, "end", ends[res->end],
			 "signal", res->term_signal ? json_integer(res->term_signal) : json_null(),
			 "limit", res->limit ? json_string(res->limit) : json_null(),
			 "wall_ms", res->wall_us / 1000.0, "cpu_ms", (res->user_us + res->sys_us) / 1000.0,
			 "peak_memory_bytes", (json_int_t)res->peak_memory_bytes, "execs", (json_int_t)res->execs,
			 "stdout_truncated", res->out.truncated, "stderr_truncated", res->err.truncated);
	/* secrets: their names and how each was given, so a replay can ask
	 * for them the same way; never a value */
	if (record_has_secrets(spec)) {
		json_object_set_new(out, "secrets", record_secret_names(spec));
		json_object_set_new(out, "secrets_as", record_secret_as(spec));
	}
	if (spec->image_digest)	/* the exact image, for a replay to pin */
		json_object_set_new(out, "image_digest", json_string(spec->image_digest));
	/* a named workspace by its name, so a replay holds it as a run does */
	if (spec->workspace_name)
		json_object_set_new(json_object_get(out, "workspace"), "name", json_string(spec->workspace_name));
	return out;
}

int artifacts_finish(const struct aegis_spec *spec, const struct aegis_result *res,
		     struct artifacts *a, struct record *rec, struct aegis_error *err)
{
	struct walk w = { .a = a, .spec = spec, .rec = rec };
	json_t *doc;
	int r;

	if (a->dirfd < 0)
		return 0;
	if (spec->workspace_overlay && a->upper_fd >= 0 && overlay_changes(&w, err) < 0)
		return -1;
	if (a->ws_fd >= 0 && rw_changes(&w, err) < 0)
		return -1;
	doc = result_json(spec, res, rec);
	if (!doc)
		return error_set(err, AEGIS_E_SETUP, 0, "artifacts: result.json");
	r = write_json(a->dirfd, "result.json", doc, err);
	json_decref(doc);
	return r;
}
