/* manifest.c — what a host workspace looked like, to list what a run in
 * rw mode changed in it (--artifacts): before the run a stat of every
 * entry, after it another; entries that appeared, changed or went away.
 * Content is hashed only after the run, and only where something changed.
 * Everything is opened beneath the workspace, never through a symlink. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/util.h"
#include "sandbox.h"

#define MANIFEST_MAX_ENTRIES 100000	/* beyond this the list says it is incomplete */
#define MANIFEST_MAX_DEPTH 128

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct manifest_entry *)a)->path, ((const struct manifest_entry *)b)->path);
}

static void add(struct manifest *m, const char *path, const struct stat *st)
{
	struct manifest_entry *e;

	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 256;
		struct manifest_entry *grown = realloc(m->e, cap * sizeof *grown);
		if (!grown) {
			m->complete = false;
			return;
		}
		m->e = grown;
		m->cap = cap;
	}
	e = &m->e[m->n];
	if (!(e->path = strdup(path))) {
		m->complete = false;
		return;
	}
	e->size = (uint64_t)st->st_size;
	e->mtime_s = st->st_mtim.tv_sec;
	e->mtime_ns = st->st_mtim.tv_nsec;
	e->ino = st->st_ino;
	e->mode = st->st_mode;
	m->n++;
}

static void scan(struct manifest *m, int dirfd, const char *rel, int depth)
{
	DIR *d = depth < MANIFEST_MAX_DEPTH ? opendir_at(dirfd) : NULL;
	struct dirent *de;

	if (!d) {
		m->complete = false;
		return;
	}
	while ((de = readdir(d))) {
		char path[4096];
		struct stat st;
		int sub;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (m->n >= MANIFEST_MAX_ENTRIES) {
			m->complete = false;
			break;
		}
		snprintf(path, sizeof path, "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		add(m, path, &st);
		if (S_ISDIR(st.st_mode) &&
		    (sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
			scan(m, sub, path, depth + 1);
			close(sub);
		}
	}
	closedir(d);
}

void manifest_take(struct manifest *m, int root)
{
	memset(m, 0, sizeof *m);
	m->complete = true;
	scan(m, root, "", 0);
	qsort(m->e, m->n, sizeof *m->e, entry_cmp);
}

void manifest_free(struct manifest *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->e[i].path);
	free(m->e);
	memset(m, 0, sizeof *m);
}

static bool same(const struct manifest_entry *a, const struct manifest_entry *b)
{
	return a->size == b->size && a->mtime_s == b->mtime_s && a->mtime_ns == b->mtime_ns &&
	       a->ino == b->ino && a->mode == b->mode;
}

/* Calls report() for each difference, in path order. */
void manifest_diff(const struct manifest *before, const struct manifest *after,
		   void (*report)(void *arg, const struct manifest_entry *e, const char *kind), void *arg)
{
	size_t i = 0, j = 0;

	while (i < before->n || j < after->n) {
		int c = i == before->n ? 1 : j == after->n ? -1 : strcmp(before->e[i].path, after->e[j].path);
		if (c < 0) {
			report(arg, &before->e[i++], "deleted");
		} else if (c > 0) {
			report(arg, &after->e[j++], "added");
		} else {
			if (!same(&before->e[i], &after->e[j]) && !S_ISDIR(after->e[j].mode))
				report(arg, &after->e[j], "modified");
			i++;
			j++;
		}
	}
}
