/* fdtree.c — bounded, descriptor-relative walks of untrusted trees
 * (fdtree.h): usage counts and removal. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fdtree.h"
#include "util.h"

#define USAGE_DEPTH_MAX 128		/* deeper levels are not counted (complete: false) */
#define USAGE_ENTRIES_MAX 2000000
/* Removal holds a descriptor per level; a directory deeper than this is
 * moved up to the top and removed on a later pass, so any depth goes. */
#define REMOVE_DEPTH_MAX 32
#define REMOVE_PASSES_MAX 1000000

/* The subdirectory name of dirfd, itself: ELOOP/ENOTDIR for a symlink or
 * anything else swapped in, EXDEV for a mount point. */
static int open_sub(int dirfd, const char *name)
{
	struct open_how how = {
		.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};

	return (int)syscall(SYS_openat2, dirfd, name, &how, sizeof how);
}

static bool dots(const char *name)
{
	return !strcmp(name, ".") || !strcmp(name, "..");
}

static void usage_dir(int dirfd, int depth, struct fdtree_usage *u)
{
	DIR *d = opendir_at(dirfd);
	struct dirent *e;

	if (!d) {
		u->complete = false;
		return;
	}
	while ((e = readdir(d))) {
		struct stat st;
		int sub;

		if (dots(e->d_name))
			continue;
		if (u->entries >= USAGE_ENTRIES_MAX) {
			u->complete = false;
			break;
		}
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;	/* gone meanwhile */
		u->entries++;
		u->bytes += (uint64_t)st.st_blocks * 512u;
		if (!S_ISDIR(st.st_mode))
			continue;	/* a symlink counts as itself, whatever it names */
		if (depth + 1 >= USAGE_DEPTH_MAX) {
			u->complete = false;
			continue;
		}
		if ((sub = open_sub(dirfd, e->d_name)) < 0) {
			/* a mount point is another file system's, not ours to
			 * count; a symlink swapped in meanwhile is not followed */
			if (errno != EXDEV && errno != ELOOP && errno != ENOTDIR && errno != ENOENT)
				u->complete = false;
			continue;
		}
		usage_dir(sub, depth + 1, u);
		close(sub);
	}
	closedir(d);
}

void fdtree_usage(int dirfd, struct fdtree_usage *u)
{
	*u = (struct fdtree_usage){ .complete = true };
	usage_dir(dirfd, 0, u);
}

struct removal {
	int top;
	int first_errno;
	unsigned long hoisted;	/* names made for directories moved up */
	bool again;		/* something was moved up: another pass */
};

static void note(struct removal *r, int e)
{
	if (!r->first_errno)
		r->first_errno = e;
}

/* Move the too-deep directory name of dirfd up to the top, under a name
 * of ours, for the next pass. */
static void hoist(struct removal *r, int dirfd, const char *name)
{
	char to[64];

	for (int tries = 0; tries < 1000; tries++) {
		snprintf(to, sizeof to, ".aegis-deep-%lu", r->hoisted++);
		if (renameat2(dirfd, name, r->top, to, RENAME_NOREPLACE) == 0) {
			r->again = true;
			return;
		}
		if (errno != EEXIST) {
			note(r, errno);
			return;
		}
	}
	note(r, EEXIST);
}

static void remove_dir(struct removal *r, int dirfd, int depth)
{
	DIR *d = opendir_at(dirfd);
	struct dirent *e;

	if (!d) {
		note(r, errno);
		return;
	}
	while ((e = readdir(d))) {
		int sub;

		if (dots(e->d_name))
			continue;
		/* files, symlinks (the link itself), fifos, sockets, devices */
		if (unlinkat(dirfd, e->d_name, 0) == 0 || errno == ENOENT)
			continue;
		if (errno != EISDIR) {
			note(r, errno);
			continue;
		}
		if (depth + 1 >= REMOVE_DEPTH_MAX) {
			hoist(r, dirfd, e->d_name);
			continue;
		}
		if ((sub = open_sub(dirfd, e->d_name)) < 0) {
			/* swapped for a symlink since unlinkat said "directory":
			 * remove the link; a mount point stays, unentered */
			if ((errno == ELOOP || errno == ENOTDIR) && unlinkat(dirfd, e->d_name, 0) == 0)
				continue;
			note(r, errno);
			continue;
		}
		remove_dir(r, sub, depth + 1);
		close(sub);
		if (unlinkat(dirfd, e->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			note(r, errno);
	}
	closedir(d);
}

int fdtree_remove(int dirfd)
{
	struct removal r = { .top = dirfd };

	for (long pass = 0; pass < REMOVE_PASSES_MAX; pass++) {
		r.again = false;
		remove_dir(&r, dirfd, 0);
		if (!r.again)
			break;
	}
	if (r.again)
		note(&r, ELOOP);
	if (r.first_errno) {
		errno = r.first_errno;
		return -1;
	}
	return 0;
}
