/* secretfs.c — secrets given as files (spec.secret_files): /run/secrets/NAME,
 * mode 0400, owned by the command's user, on a small tmpfs of their own.
 *
 * The child writes them, before the root is pivoted into, from the values
 * in its own memory (a copy of the supervisor's): a value never passes
 * through an argv or a file on a host disk. tmpfs pages are memory charged
 * to the run's cgroup, and go with the sandbox's mount namespace. The
 * superblock is made read-only once they are written, so the command can
 * neither replace a file nor add one of its own for a later reader. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/secrets.h"
#include "../common/util.h"
#include "sandbox.h"

/* The name of a "NAME=value" entry into name; -1 if there is none. */
static int entry_name(const char *entry, char name[SECRET_NAME_MAX + 1])
{
	const char *eq = strchr(entry, '=');
	size_t n = eq ? (size_t)(eq - entry) : 0;

	if (n == 0 || n > SECRET_NAME_MAX)
		return -1;
	memcpy(name, entry, n);
	name[n] = '\0';
	return secrets_name_valid(name) ? 0 : -1;
}

int secretfs_check(char *const *files, struct aegis_error *err)
{
	char name[SECRET_NAME_MAX + 1], other[SECRET_NAME_MAX + 1];

	for (size_t i = 0; files && files[i]; i++) {
		/* the name becomes a path: nothing but [A-Za-z0-9_], so no "..", no "/" */
		if (entry_name(files[i], name) < 0)
			return error_set(err, AEGIS_E_INVALID, 0,
					 "secret file: an entry without a valid NAME= (^[A-Za-z_][A-Za-z0-9_]{0,127}$)");
		for (size_t j = 0; j < i; j++)
			if (entry_name(files[j], other) == 0 && strcmp(name, other) == 0)
				return error_set(err, AEGIS_E_INVALID, 0, "secret file %s given twice", name);
	}
	return 0;
}

/* tmpfs options sized to what is written: one page per started page of
 * each value, one inode each plus the root. */
static void tmpfs_options(char *const *files, char *opts, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = 1, n = 0;

	for (; files[n]; n++)
		pages += (strlen(strchr(files[n], '=') + 1) + page - 1) / page;
	/* mode 0700 while the files are written; 0500 once they are */
	snprintf(opts, len, "mode=0700,size=%zu,nr_inodes=%zu", pages * page, n + 1);
}

static int write_one(int dirfd, const char *entry, struct aegis_error *err)
{
	char name[SECRET_NAME_MAX + 1];
	const char *value = strchr(entry, '=') + 1;
	_cleanup_close_ int fd = -1;

	if (entry_name(entry, name) < 0)
		return error_set(err, AEGIS_E_INVALID, 0, "secret file: an entry without a valid NAME=");
	/* created here, never opened through a link: the directory is new */
	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
	if (fd < 0)
		return error_sys(err, "secret file /run/secrets/%s: create", name);
	if (write_all(fd, value, strlen(value)) < 0)
		return error_sys(err, "secret file /run/secrets/%s: write", name);
	/* 0400 whatever the umask was */
	if (fchmod(fd, 0400) < 0)
		return error_sys(err, "secret file /run/secrets/%s: chmod", name);
	return 0;
}

int secretfs_mount(const char *root, char *const *files, struct aegis_error *err)
{
	char run[256], dir[300], opts[128];
	_cleanup_close_ int dirfd = -1;

	snprintf(run, sizeof run, "%s/run", root);
	snprintf(dir, sizeof dir, "%s/secrets", run);
	tmpfs_options(files, opts, sizeof opts);
	if (mounts_mkdir(run, err) < 0 || mounts_mkdir(dir, err) < 0 ||
	    mounts_tmpfs(dir, opts, MS_NOSUID | MS_NODEV | MS_NOEXEC, err) < 0)
		return -1;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return error_sys(err, "open /run/secrets");
	for (size_t i = 0; files[i]; i++)
		if (write_one(dirfd, files[i], err) < 0)
			return -1;
	if (fchmod(dirfd, 0500) < 0)
		return error_sys(err, "chmod /run/secrets");
	/* The superblock read-only, not only this mount: no file can be added,
	 * replaced, rewritten or chmod'ed, through this mount or any other. */
	if (mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return error_sys(err, "make /run/secrets read-only");
	return 0;
}
