/* landlock.c — the policy's command and file rules, enforced by the kernel
 * for every process in the sandbox (not only the first), whatever the exec
 * watcher sees or misses.
 *
 * Landlock grants rights beneath paths; anything not granted is refused.
 * So an allowlist of commands becomes EXECUTE beneath those paths (plus the
 * dynamic loader's directories, which the kernel opens for exec too), a
 * files.read list READ beneath the system directories and the listed ones,
 * a files.write list WRITE beneath the listed ones. Refusing one path
 * inside an allowed tree is not expressible here: denied commands and
 * files.deny are hidden by mounts instead (rootfs_hide). */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../common/error.h"
#include "sandbox.h"

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

#define ACCESS_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define ACCESS_WRITE_V1 (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR | \
			 LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR | \
			 LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG | \
			 LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | \
			 LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM)

/* Readable whenever reads are restricted: what every program needs, and
 * the secrets the run was given as files (when it was: a missing path
 * adds no rule). */
static const char *const system_read[] = { "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32",
					   "/etc", "/proc", "/dev", "/run/secrets", NULL };
/* Executable whenever execs are restricted: the loader lives here. */
static const char *const loader_dirs[] = { "/usr/lib", "/usr/lib64", "/lib", "/lib64", NULL };
/* Writable whenever writes are restricted: /dev/null, ttys, /dev/shm. */
static const char *const system_write[] = { "/dev", NULL };

int landlock_abi(void)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

	return abi > 0 ? (int)abi : 0;
}

static int add_rule(int ruleset, const char *path, uint64_t access, uint64_t handled,
		    struct aegis_error *err)
{
	struct landlock_path_beneath_attr rule = { .allowed_access = access & handled };
	int fd = open(path, O_PATH | O_CLOEXEC), r;

	if (fd < 0)
		return errno == ENOENT ? 0 : error_sys(err, "landlock: open %s", path);
	rule.parent_fd = fd;
	/* Rights that only make sense on directories are refused on files. */
	if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0 &&
	    errno == EINVAL) {
		rule.allowed_access &= LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
				       LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE;
		r = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
		if (r < 0) {
			close(fd);
			return error_sys(err, "landlock: rule for %s", path);
		}
	}
	close(fd);
	return 0;
}

/* A path or a glob, matched inside the sandbox. "dir/ *" means the dir. */
static int add_pattern(int ruleset, const char *pattern, uint64_t access, uint64_t handled,
		       struct aegis_error *err)
{
	size_t n = strlen(pattern);
	glob_t g;
	int r = 0;

	if (n > 2 && strcmp(pattern + n - 2, "/*") == 0 && !strpbrk(pattern, "?[") &&
	    !memchr(pattern, '*', n - 1)) {
		char dir[4096];
		snprintf(dir, sizeof dir, "%.*s", (int)(n - 2), pattern);
		return add_rule(ruleset, dir, access, handled, err);
	}
	if (!strpbrk(pattern, "*?["))
		return add_rule(ruleset, pattern, access, handled, err);
	if (glob(pattern, GLOB_NOSORT, NULL, &g) != 0)
		return 0;	/* nothing matches: nothing to allow */
	for (size_t i = 0; i < g.gl_pathc && r == 0; i++)
		r = add_rule(ruleset, g.gl_pathv[i], access, handled, err);
	globfree(&g);
	return r;
}

static int add_list(int ruleset, char *const *list, uint64_t access, uint64_t handled,
		    struct aegis_error *err)
{
	for (; list && *list; list++)
		if (add_pattern(ruleset, *list, access, handled, err) < 0)
			return -1;
	return 0;
}

bool landlock_needed(const struct aegis_policy *p)
{
	return p && (p->cmd_allow || p->files_read || p->files_write);
}

int landlock_apply(const struct aegis_policy *p, int abi, struct aegis_error *err)
{
	uint64_t write = ACCESS_WRITE_V1 | (abi >= 2 ? LANDLOCK_ACCESS_FS_REFER : 0) |
			 (abi >= 3 ? LANDLOCK_ACCESS_FS_TRUNCATE : 0);
	struct landlock_ruleset_attr attr = { 0 };
	int ruleset, r = -1;

	if (!landlock_needed(p))
		return 0;
	if (p->cmd_allow)
		attr.handled_access_fs |= LANDLOCK_ACCESS_FS_EXECUTE;
	if (p->files_read)
		attr.handled_access_fs |= ACCESS_READ;
	if (p->files_write)
		attr.handled_access_fs |= write;
	ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (ruleset < 0)
		return error_set(err, AEGIS_E_UNSUPPORTED, errno, "landlock: create ruleset");
	if (p->cmd_allow && (add_list(ruleset, p->cmd_allow, LANDLOCK_ACCESS_FS_EXECUTE,
				      attr.handled_access_fs, err) < 0 ||
			     add_list(ruleset, (char *const *)loader_dirs, LANDLOCK_ACCESS_FS_EXECUTE,
				      attr.handled_access_fs, err) < 0))
		goto out;
	if (p->files_read && (add_list(ruleset, (char *const *)system_read, ACCESS_READ,
				       attr.handled_access_fs, err) < 0 ||
			      add_list(ruleset, p->files_read, ACCESS_READ, attr.handled_access_fs, err) < 0 ||
			      add_list(ruleset, p->files_write, ACCESS_READ, attr.handled_access_fs, err) < 0))
		goto out;
	if (p->files_write && (add_list(ruleset, (char *const *)system_write, write,
					attr.handled_access_fs, err) < 0 ||
			       add_list(ruleset, p->files_write, write, attr.handled_access_fs, err) < 0))
		goto out;
	if (syscall(SYS_landlock_restrict_self, ruleset, 0) < 0) {
		error_sys(err, "landlock: restrict");
		goto out;
	}
	r = 0;
out:
	close(ruleset);
	return r;
}
