/* test_workspaces.c — the pure parts of named workspaces: which names are
 * names (HOSTILE.md ), which --workspace arguments are paths,
 * and the bounded tree walks that count and remove what a sandbox left
 * without following it out (symlinks to outside, depth beyond the walk's
 * descriptor budget: R-04). The store as a whole is tested end to end in
 * tests/integration/test_workspaces.py. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/common/fdtree.h"
#include "../../src/common/util.h"
#include "../../src/common/workspaces.h"
#include "tap.h"

static char base[] = "/tmp/aegis-ws-unit-XXXXXX";

static void names(void)
{
	static const char *const good[] = { "a", "myapp", "0", "a-b", "a-", "x123456789012345678901234567890"
					    "12345678901234567890123456789012", NULL };
	static const char *const bad[] = { "", ".", "..", "../x", "a/b", "/etc", "-x", "A", "caf\xc3\xa9",
					   "%2e%2e", "a b", "a\nb", "\x1b[2J", "$(id)", "a;b", "a_b", "a.b",
					   "x1234567890123456789012345678901234567890123456789012345678901234", NULL };

	for (int i = 0; good[i]; i++)
		ok(name_valid(good[i]), "name: '%s' is one", good[i]);
	for (int i = 0; bad[i]; i++)
		ok(!name_valid(bad[i]), "name: bad #%d refused", i);
	ok(workspace_is_name("myapp"), "'myapp' names a workspace");
	ok(workspace_is_name("UPPER"), "'UPPER' is taken as a (bad) name, not a path");
	ok(!workspace_is_name("./code"), "'./code' is a path");
	ok(!workspace_is_name(".."), "'..' is a path");
	ok(!workspace_is_name(".hidden"), "'.hidden' is a path");
	ok(!workspace_is_name("~/code"), "'~/code' is a path");
	ok(!workspace_is_name("a/b"), "'a/b' is a path");
	ok(!workspace_is_name("/abs"), "'/abs' is a path");
}

static int fd_of(const char *rel)
{
	char p[512];

	snprintf(p, sizeof p, "%s/%s", base, rel);
	return open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void mk(const char *rel)
{
	char p[512];

	snprintf(p, sizeof p, "%s/%s", base, rel);
	mkdir(p, 0755);
}

static void put(const char *rel, size_t bytes)
{
	char p[512], buf[4096] = { 1 };
	int fd;

	snprintf(p, sizeof p, "%s/%s", base, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	for (size_t n = 0; fd >= 0 && n < bytes; n += sizeof buf)
		(void)!write(fd, buf, sizeof buf);
	if (fd >= 0)
		close(fd);
}

static void link_to(const char *target, const char *rel)
{
	char p[512];

	snprintf(p, sizeof p, "%s/%s", base, rel);
	(void)!symlink(target, p);
}

static bool exists(const char *rel)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof p, "%s/%s", base, rel);
	return lstat(p, &st) == 0;
}

/* A tree with symlinks out of it: counted and removed as links, while
 * what they point at (outside/, 1 MiB) is neither. */
static void symlinks_not_followed(void)
{
	struct fdtree_usage u;
	char p[512];
	int fd;

	mk("outside");
	put("outside/canary", 1 << 20);
	mk("ws");
	mk("ws/dir");
	put("ws/dir/small", 4096);
	snprintf(p, sizeof p, "%s/outside", base);
	link_to(p, "ws/evil");
	link_to("/", "ws/dir/evil2");
	link_to("../outside", "ws/rel");
	fd = fd_of("ws");
	fdtree_usage(fd, &u);
	ok(u.complete && u.entries == 5, "usage: 5 entries, complete (%llu)", (unsigned long long)u.entries);
	ok(u.bytes < (512u << 10), "usage: the 1 MiB outside is not counted (%llu bytes)",
	   (unsigned long long)u.bytes);
	ok(fdtree_remove(fd) == 0, "remove: everything below ws/");
	close(fd);
	ok(!exists("ws/evil") && !exists("ws/dir") && exists("ws"), "remove: links and dirs gone, ws/ kept");
	ok(exists("outside/canary"), "remove: the canary outside survives");
}

/* Deeper than the removal's descriptor budget: moved up and removed in
 * later passes; deeper than the count's: counted as far as it goes. */
static void deep_tree(void)
{
	struct fdtree_usage u;
	int fd, top, depth = 300;

	mk("deep");
	top = fd_of("deep");
	fd = dup(top);
	for (int i = 0; i < depth; i++) {
		int sub;
		mkdirat(fd, "d", 0755);
		sub = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		close(fd);
		fd = sub;
	}
	close(openat(fd, "leaf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	close(fd);
	fdtree_usage(top, &u);
	ok(!u.complete && u.entries >= 100, "usage: a %d-deep tree is cut short (%llu entries)", depth,
	   (unsigned long long)u.entries);
	ok(fdtree_remove(top) == 0, "remove: a %d-deep tree goes", depth);
	ok(!exists("deep/d") && exists("deep"), "remove: nothing left below deep/");
	close(top);
}

int main(void)
{
	char cmd[600];

	if (!mkdtemp(base))
		return perror("mkdtemp"), 1;
	names();
	symlinks_not_followed();
	deep_tree();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	(void)!system(cmd);
	return tap_done();
}
