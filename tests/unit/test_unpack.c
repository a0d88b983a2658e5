/* test_unpack.c — unpacking layers: content, modes and links as the tar
 * says; OCI whiteouts as overlayfs ones; and every hostile entry (paths
 * out of the layer, writes through symlinks, hardlinks out, devices,
 * setuid, huge sizes) neutralised, with nothing written outside. The tars
 * are made here with libarchive's writer, the one with a huge declared
 * size by hand. */
#define OPENSSL_API_COMPAT 10101
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../../src/common/hash.h"
#include "../../src/image/fsutil.h"
#include "../../src/image/unpack.h"
#include "tap.h"

struct ent {
	const char *path;
	mode_t type;
	mode_t perm;
	const char *data;	/* file content, symlink target or hardlink target */
	dev_t rdev;
};

#define FILE_(p, d) { p, AE_IFREG, 0644, d, 0 }
#define DIR_(p) { p, AE_IFDIR, 0755, NULL, 0 }
#define LINK(p, t) { p, AE_IFLNK, 0777, t, 0 }
#define HARD(p, t) { p, 0, 0644, t, 0 }

static char dir[256];

static void make_tar(const char *file, const char *filter, const struct ent *e, size_t n)
{
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();

	archive_write_set_format_pax_restricted(a);
	if (!strcmp(filter, "gzip"))
		archive_write_add_filter_gzip(a);
	else if (!strcmp(filter, "zstd"))
		archive_write_add_filter_zstd(a);
	archive_write_open_filename(a, file);
	for (size_t i = 0; i < n; i++) {
		archive_entry_clear(ae);
		archive_entry_set_pathname(ae, e[i].path);
		archive_entry_set_mtime(ae, 1700000000, 0);
		if (e[i].type == 0) {
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_hardlink(ae, e[i].data);
		} else {
			archive_entry_set_filetype(ae, e[i].type);
		}
		archive_entry_set_perm(ae, e[i].perm);
		archive_entry_set_uid(ae, 1234);
		if (e[i].type == AE_IFLNK)
			archive_entry_set_symlink(ae, e[i].data);
		if (e[i].type == AE_IFCHR || e[i].type == AE_IFBLK)
			archive_entry_set_rdev(ae, e[i].rdev);
		if (e[i].type == AE_IFREG)
			archive_entry_set_size(ae, (la_int64_t)strlen(e[i].data));
		archive_write_header(a, ae);
		if (e[i].type == AE_IFREG)
			archive_write_data(a, e[i].data, strlen(e[i].data));
	}
	archive_entry_free(ae);
	archive_write_close(a);
	archive_write_free(a);
}

/* Unpack file into a fresh <dir>/layer; returns its fd (or -1) and res. */
static int unpack(const char *file, uint64_t max, struct unpack_result *res, int confined)
{
	char layer[300];
	int blob = open(file, O_RDONLY | O_CLOEXEC), d, r;
	struct aegis_error err = { 0 };

	snprintf(layer, sizeof layer, "%s/layer", dir);
	rmtree_at(AT_FDCWD, layer);
	mkdir(layer, 0755);
	d = open(layer, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r = confined ? unpack_run(blob, d, max, res, &err) : unpack_stream(blob, d, max, res);
	if (confined && r == 0 && !res->ok)
		r = -1;
	close(blob);
	if (r < 0) {
		close(d);
		return -1;
	}
	return d;
}

static void file_digest(const char *file, char out[72])
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	char hex[HASH_HEX_LEN + 1];

	hash_sha256_fd(fd, hex);
	close(fd);
	snprintf(out, 72, "sha256:%s", hex);
}

static int content_is(int d, const char *path, const char *want)
{
	char buf[256] = "";
	int fd = openat(d, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;

	if (fd >= 0)
		close(fd);
	return n >= 0 && !strcmp(buf, want);
}

static int absent(int d, const char *path)
{
	struct stat st;

	return fstatat(d, path, &st, AT_SYMLINK_NOFOLLOW) < 0;
}

/* Every name in dir: only "layer" (and the tar files) may be there. */
static int dir_holds_only_ours(void)
{
	static const char *const ours[] = { "layer", "a.tar", "a.tar.gz", "a.tar.zst", "canary", NULL };
	char cmd[400];
	FILE *p;
	char line[256];
	int clean = 1;

	snprintf(cmd, sizeof cmd, "ls -A %s", dir);
	p = popen(cmd, "r");
	while (p && fgets(line, sizeof line, p)) {
		int known = 0;
		line[strcspn(line, "\n")] = '\0';
		for (int i = 0; ours[i]; i++)
			known |= !strcmp(line, ours[i]);
		if (!known) {
			printf("# unexpected %s/%s\n", dir, line);
			clean = 0;
		}
	}
	if (p)
		pclose(p);
	return clean;
}

static void test_basic(void)
{
	static const struct ent e[] = {
		DIR_("./"), DIR_("a/"), { "a/f", AE_IFREG, 04755, "hello", 0 }, FILE_("b", "bee"),
		LINK("l", "/etc/passwd"), HARD("a/h", "a/f"), { "p", AE_IFIFO, 0644, NULL, 0 },
		{ "c", AE_IFCHR, 0644, NULL, (1 << 8) | 3 }, { "blk", AE_IFBLK, 0644, NULL, 8 << 8 },
		FILE_("x/y/z", "deep"), { "ro/", AE_IFDIR, 0555, NULL, 0 }, FILE_("ro/in", "inside"),
		{ "sg", AE_IFREG, 02755, "g", 0 },
	};
	char tar[300], want[72], target[64] = "";
	struct unpack_result res;
	struct stat a, b;
	int d;

	snprintf(tar, sizeof tar, "%s/a.tar", dir);
	make_tar(tar, "", e, sizeof e / sizeof e[0]);
	file_digest(tar, want);
	d = unpack(tar, 1 << 20, &res, 0);
	ok(d >= 0 && res.ok, "plain layer unpacks (%s)", res.msg);
	ok(!strcmp(res.diff_id, want), "diff_id is the tar's sha256");
	ok(content_is(d, "a/f", "hello") && content_is(d, "b", "bee") && content_is(d, "x/y/z", "deep"),
	   "files and missing parents");
	ok(fstatat(d, "a/f", &a, 0) == 0 && (a.st_mode & 07777) == 0755, "setuid bit stripped");
	ok(fstatat(d, "sg", &a, 0) == 0 && (a.st_mode & 07777) == 0755, "setgid bit stripped");
	ok(a.st_uid == getuid(), "tar ownership not applied");
	ok(readlinkat(d, "l", target, sizeof target - 1) > 0 && !strcmp(target, "/etc/passwd"),
	   "symlink kept as it is");
	ok(fstatat(d, "a/f", &a, 0) == 0 && fstatat(d, "a/h", &b, 0) == 0 && a.st_ino == b.st_ino,
	   "hardlink inside the layer");
	ok(absent(d, "p") && absent(d, "c") && absent(d, "blk"), "fifo and device nodes skipped");
	ok(res.neutralised == 3, "three entries neutralised (%llu)", (unsigned long long)res.neutralised);
	ok(fstatat(d, "ro", &a, 0) == 0 && (a.st_mode & 0777) == 0555 && content_is(d, "ro/in", "inside"),
	   "a read-only dir still took its entries");
	ok(fstatat(d, "b", &a, 0) == 0 && a.st_mtime == 1700000000, "mtime applied");
	close(d);

	snprintf(tar, sizeof tar, "%s/a.tar.gz", dir);
	make_tar(tar, "gzip", e, sizeof e / sizeof e[0]);
	d = unpack(tar, 1 << 20, &res, 0);
	ok(d >= 0 && !strcmp(res.diff_id, want), "gzip layer: same diff_id");
	close(d);
	snprintf(tar, sizeof tar, "%s/a.tar.zst", dir);
	make_tar(tar, "zstd", e, sizeof e / sizeof e[0]);
	d = unpack(tar, 1 << 20, &res, 0);
	ok(d >= 0 && !strcmp(res.diff_id, want), "zstd layer: same diff_id");
	close(d);
	d = unpack(tar, 1 << 20, &res, 1);
	ok(d >= 0 && res.ok && content_is(d, "a/f", "hello"), "confined child unpacks too (%s)", res.msg);
	close(d);
}

static void test_whiteouts(int confined)
{
	static const struct ent e[] = {
		DIR_("d/"), FILE_("d/.wh..wh..opq", ""), FILE_("d/keep", "k"), FILE_(".wh.gone", ""),
		FILE_("e/.wh.sub", ""), FILE_(".wh..wh.plnk", ""), FILE_("f", "x"), FILE_(".wh.f", ""),
	};
	char tar[300], val[8] = "";
	struct unpack_result res;
	struct stat st;
	int d, fd;

	snprintf(tar, sizeof tar, "%s/a.tar", dir);
	make_tar(tar, "", e, sizeof e / sizeof e[0]);
	d = unpack(tar, 1 << 20, &res, confined);
	ok(d >= 0 && res.ok, "%s: whiteout layer unpacks (%s)", confined ? "confined" : "in-process", res.msg);
	ok(fstatat(d, "gone", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0),
	   "%s: .wh.gone became a 0:0 character device", confined ? "confined" : "in-process");
	ok(fstatat(d, "e/sub", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode), "whiteout in a subdir");
	fd = openat(d, "d", O_RDONLY | O_DIRECTORY);
	ok(fd >= 0 && fgetxattr(fd, "user.overlay.opaque", val, sizeof val) == 1 && val[0] == 'y',
	   "%s: opaque dir has user.overlay.opaque=y", confined ? "confined" : "in-process");
	if (fd >= 0)
		close(fd);
	ok(content_is(d, "d/keep", "k"), "entries of an opaque dir in the same layer stay");
	ok(absent(d, ".wh.gone") && absent(d, "d/.wh..wh..opq") && absent(d, ".wh..wh.plnk") &&
	   absent(d, "plnk"), "no .wh. names in the layer");
	ok(fstatat(d, "f", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode),
	   "a whiteout replaces an earlier entry of the same name");
	close(d);
}

static void test_hostile(void)
{
	static const struct ent e[] = {
		FILE_("../evil1", "x"), FILE_("/abs/evil2", "inside"), LINK("link", "/"),
		FILE_("link/evil3", "x"), FILE_("link/tmp/evil3b", "x"), FILE_("dir/../../evil4", "x"),
		LINK("up", "../../"), FILE_("up/evil5", "x"), HARD("hl", "../../canary"),
		HARD("hl2", "/etc/passwd"), HARD("hl3", "link/etc/passwd"), FILE_("t", "orig"),
		HARD("h", "t"), FILE_("h", "new"), LINK("s", "../canary"), FILE_("s", "replaced"),
		FILE_("deep/../../../evil6", "x"), { "..", AE_IFDIR, 0755, NULL, 0 },
		{ "link/.wh..wh..opq", AE_IFREG, 0644, "", 0 }, FILE_("link/.wh.etc", ""),
	};
	char tar[300], canary[300], buf[32] = "";
	struct unpack_result res;
	struct stat st;
	int d, fd;

	snprintf(canary, sizeof canary, "%s/canary", dir);
	fd = open(canary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	(void)!write(fd, "canary", 6);
	close(fd);
	snprintf(tar, sizeof tar, "%s/a.tar", dir);
	make_tar(tar, "", e, sizeof e / sizeof e[0]);
	for (int confined = 0; confined < 2; confined++) {
		const char *how = confined ? "confined" : "in-process";
		d = unpack(tar, 1 << 20, &res, confined);
		ok(d >= 0 && res.ok, "%s: hostile layer unpacks what is safe (%s)", how, res.msg);
		ok(content_is(d, "abs/evil2", "inside"), "%s: absolute path lands inside the layer", how);
		ok(content_is(d, "t", "orig") && content_is(d, "h", "new"),
		   "%s: a file over a planted hardlink does not write through it", how);
		ok(fstatat(d, "s", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode),
		   "%s: a file over a planted symlink replaces the symlink", how);
		ok(absent(d, "hl") && absent(d, "hl2") && absent(d, "hl3"), "%s: hardlinks out refused", how);
		ok(res.neutralised >= 10, "%s: escapes counted as neutralised (%llu)", how,
		   (unsigned long long)res.neutralised);
		ok(dir_holds_only_ours(), "%s: nothing written next to the layer", how);
		fd = open(canary, O_RDONLY | O_CLOEXEC);
		ok(read(fd, buf, sizeof buf) == 6 && !memcmp(buf, "canary", 6), "%s: canary unchanged", how);
		close(fd);
		ok(access("/evil3", F_OK) < 0 && access("/tmp/evil3b", F_OK) < 0 && access("/etc/.wh.etc", F_OK) < 0,
		   "%s: nothing through the symlink to /", how);
		if (d >= 0)
			close(d);
	}
}

/* A ustar header saying 7 GiB, and no data: the limit stops it at once. */
static void test_huge(void)
{
	unsigned char blk[512 * 3] = { 0 };
	char tar[300];
	struct unpack_result res;
	unsigned sum = 0;
	int fd;

	memcpy(blk, "huge", 4);
	memcpy(blk + 100, "0000644", 7);
	memcpy(blk + 108, "0000000", 7);
	memcpy(blk + 116, "0000000", 7);
	memcpy(blk + 124, "70000000000", 11);
	memcpy(blk + 136, "14000000000", 11);
	memset(blk + 148, ' ', 8);
	blk[156] = '0';
	memcpy(blk + 257, "ustar", 6);
	memcpy(blk + 263, "00", 2);
	for (int i = 0; i < 512; i++)
		sum += blk[i];
	snprintf((char *)blk + 148, 8, "%06o", sum);
	snprintf(tar, sizeof tar, "%s/a.tar", dir);
	fd = open(tar, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	(void)!write(fd, blk, sizeof blk);
	close(fd);
	ok(unpack(tar, 1 << 20, &res, 0) < 0 && strstr(res.msg, "over the limit"),
	   "huge declared size refused: %s", res.msg);
	ok(unpack(tar, 16ULL << 30, &res, 0) < 0 && res.msg[0], "a declared size with no data fails: %s",
	   res.msg);
	ok(unpack("/dev/null", 1 << 20, &res, 0) < 0 && res.msg[0], "empty blob fails: %s", res.msg);
}

int main(void)
{
	snprintf(dir, sizeof dir, "%s/test-unpack-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : ".");
	if (!mkdtemp(dir))
		return perror("mkdtemp"), 1;
	test_basic();
	test_whiteouts(0);
	test_whiteouts(1);
	test_hostile();
	test_huge();
	rmtree_at(AT_FDCWD, dir);
	return tap_done();
}
