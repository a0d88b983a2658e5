/* snapshot.c — fast start: a template of a booted guest, restored per run.
 *
 * A template is a guest that has booted, greeted (HELLO) and waits for its
 * REQUEST, saved in three files: ram (guest RAM: QEMU ran it as a shared
 * file mapping, so it is simply the file), state (the device state, saved
 * by QMP migrate with x-ignore-shared, which leaves that RAM out) and meta
 * (the key, the state's sha256, the guest kernel), written last. A run
 * maps ram privately (copy-on-write: the template is never written),
 * loads state by migrate-incoming and sends its request to a guest that
 * is already up. The request carries a fresh RNG seed and the host's clock
 * (session.c): every clone starts from the same memory.
 *
 * The cache is <state dir>/vm-snapshots, 0700 and ours; one snapshot per
 * accelerator, memory size and vCPU count, each keyed by everything it
 * depends on. Builds happen under a lock in a .build-* directory renamed
 * into place when whole; one that is stale or broken is dropped and built
 * again, never used. QEMU gets the state file by descriptor (getfd), so it
 * opens nothing itself: no exec: or file: URI is needed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/frames.h"
#include "../common/hash.h"
#include "../common/paths.h"
#include "../common/util.h"
#include "vm.h"

#define SNAPSHOT_FORMAT "aegis-vm-snapshot.1"	/* bump when the files' meaning changes */
#define MIGRATE_MS 60000	/* a stopped guest's device state saves or loads in milliseconds */
#define POLL_US 2000

bool vm_snapshot_enabled(void)
{
	const char *v = getenv("AEGIS_VM_SNAPSHOT");

	return !v || strcmp(v, "0");
}

/* A file's identity: a replaced QEMU, kernel or initramfs changes it (a
 * package upgrade writes a new inode), without hashing 30 MB per run. */
static int stat_line(char *out, size_t cap, const char *what, const char *path)
{
	struct stat st;

	if (!path || stat(path, &st) < 0)
		return -1;
	snprintf(out, cap, "%s %s %llu:%llu %lld %lld.%09ld\n", what, path, (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
		 st.st_mtim.tv_nsec);
	return 0;
}

int vm_snapshot_init(struct vm_snapshot *s, const struct vm_guest *g, const struct vm_opts *o, bool kvm, char *why,
		     size_t cap)
{
	static char text[24576];
	char state[4096], line[3][8400];
	struct aegis_error err = { 0 };
	int n;

	memset(s, 0, sizeof *s);
	s->lock = -1;
	s->memory_bytes = o->memory_bytes;
	if (paths_state(state, sizeof state, &err) < 0 || paths_private_dir(state, &err) < 0)
		return snprintf(why, cap, "%s", err.msg), -1;
	snprintf(s->root, sizeof s->root, "%s/vm-snapshots", state);
	if (paths_private_dir(s->root, &err) < 0)
		return snprintf(why, cap, "%s", err.msg), -1;
	if (stat_line(line[0], sizeof line[0], "qemu", vm_qemu_path()) < 0 ||
	    stat_line(line[1], sizeof line[1], "vmlinux", g->vmlinux) < 0 ||
	    stat_line(line[2], sizeof line[2], "initramfs", g->initramfs) < 0)
		return snprintf(why, cap, "the QEMU binary or a guest file cannot be examined"), -1;
	n = snprintf(text, sizeof text, "%s\nframes %s\n%s%s%scmdline ", SNAPSHOT_FORMAT, FRAMES_VERSION, line[0],
		     line[1], line[2]);
	if (n < 0 || (size_t)n >= sizeof text || vm_qemu_cmdline(text + n, sizeof text - (size_t)n, g, o, kvm) < 0)
		return snprintf(why, cap, "the QEMU command line does not fit the snapshot key"), -1;
	hash_sha256_hex(text, strlen(text), s->key);
	/* The key in the name: a snapshot of other guest files or another QEMU
	 * is never even opened; the size prefix lets a build prune its stale
	 * predecessors (one snapshot per accelerator, size and vCPU count). */
	snprintf(s->prefix, sizeof s->prefix, "%s-%llum-%ucpu-", kvm ? "kvm" : "tcg",
		 (unsigned long long)(o->memory_bytes >> 20), o->vcpus ? o->vcpus : 1);
	snprintf(s->dir, sizeof s->dir, "%s/%s%.16s", s->root, s->prefix, s->key);
	return 0;
}

/* Ours, and nobody else may read or write it: RAM holds what the guest did. */
static bool private_stat(const struct stat *st, mode_t type)
{
	return (st->st_mode & S_IFMT) == type && st->st_uid == geteuid() && !(st->st_mode & 077);
}

/* Open dirfd/name read-only as a private regular file, or -1. */
static int open_private(int dirfd, const char *name, struct stat *st)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0 && (fstat(fd, st) < 0 || !private_stat(st, S_IFREG))) {
		close(fd);
		return errno = EPERM, -1;
	}
	return fd;
}

int vm_snapshot_valid(struct vm_snapshot *s, char *why, size_t cap)
{
	_cleanup_close_ int dfd = -1, meta = -1, state = -1, ram = -1;
	char buf[512], key[80], sum[80], kernel[128], actual[HASH_HEX_LEN + 1];
	struct stat st;
	ssize_t n;

	if (lstat(s->dir, &st) < 0)
		return snprintf(why, cap, "no snapshot yet"), 0;
	if (!private_stat(&st, S_IFDIR))
		return snprintf(why, cap, "snapshot %s refused: not a directory of ours closed to others", s->dir), -1;
	if ((dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return snprintf(why, cap, "snapshot %s: %s", s->dir, strerror(errno)), 0;
	if ((meta = open_private(dfd, "meta", &st)) < 0 || (n = read(meta, buf, sizeof buf - 1)) <= 0)
		return snprintf(why, cap, "snapshot without a readable private meta file"), 0;
	buf[n] = '\0';
	if (sscanf(buf, "key %64s\nstate %64s\nkernel %127s\n", key, sum, kernel) != 3)
		return snprintf(why, cap, "snapshot meta file damaged"), 0;
	if (strcmp(key, s->key))
		return snprintf(why, cap, "snapshot key mismatch (QEMU, guest files or options changed)"), 0;
	if ((ram = open_private(dfd, "ram", &st)) < 0 || (uint64_t)st.st_size != s->memory_bytes)
		return snprintf(why, cap, "snapshot RAM file missing, not private or of the wrong size"), 0;
	s->ram_dev = st.st_dev, s->ram_ino = st.st_ino;
	/* The state is small (device state only): check it whole every time. */
	if ((state = open_private(dfd, "state", &st)) < 0 || hash_sha256_fd(state, actual) < 0 ||
	    strcmp(actual, sum))
		return snprintf(why, cap, "snapshot state file missing or damaged"), 0;
	snprintf(s->kernel, sizeof s->kernel, "%s", kernel);
	return 1;
}

int vm_snapshot_lock(struct vm_snapshot *s, struct aegis_error *err)
{
	char path[4200];

	snprintf(path, sizeof path, "%s/lock", s->root);
	s->lock = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (s->lock < 0 || flock(s->lock, LOCK_EX) < 0)
		return error_sys(err, "vm: snapshot lock %s", path);
	return 0;
}

void vm_snapshot_unlock(struct vm_snapshot *s)
{
	if (s->lock >= 0)
		close(s->lock);
	s->lock = -1;
}

/* Remove a snapshot or build directory: its few plain files, then itself. */
static void remove_tree(int parent, const char *name)
{
	int dfd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *e;

	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	if (d)
		closedir(d);
	else if (dfd >= 0)
		close(dfd);
	unlinkat(parent, name, AT_REMOVEDIR);
}

void vm_snapshot_drop(struct vm_snapshot *s)
{
	_cleanup_close_ int root = open(s->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	const char *name = strrchr(s->dir, '/') + 1;
	char trash[64];
	DIR *d;
	struct dirent *e;

	if (root < 0)
		return;
	/* Out of the way in one step: a run validating it now sees it gone,
	 * and a clone that has its RAM mapped keeps its pages (unlinked, never
	 * truncated). */
	snprintf(trash, sizeof trash, ".trash-%d", (int)getpid());
	if (renameat(root, name, root, trash) == 0)
		remove_tree(root, trash);
	/* What killed builds and drops left (we hold the lock: none is live),
	 * and this size's snapshots of older keys (guest files or QEMU since
	 * replaced): they would never be used again. */
	if (!(d = fdopendir(dup(root))))
		return;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, ".build-", 7) || !strncmp(e->d_name, ".trash-", 7) ||
		    (!strncmp(e->d_name, s->prefix, strlen(s->prefix)) && strcmp(e->d_name, name)))
			remove_tree(root, e->d_name);
	closedir(d);
}

int vm_snapshot_begin(struct vm_snapshot *s, char *build, size_t cap, char *ram, size_t ramcap,
		      struct aegis_error *err)
{
	_cleanup_close_ int fd = -1;

	snprintf(build, cap, "%s/.build-XXXXXX", s->root);
	if (!mkdtemp(build)) {	/* 0700 */
		error_sys(err, "vm: snapshot build directory in %s", s->root);
		build[0] = '\0';
		return -1;
	}
	snprintf(ram, ramcap, "%s/ram", build);
	fd = open(ram, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)s->memory_bytes) < 0)	/* sparse: only pages the guest touched use disk */
		return error_sys(err, "vm: snapshot RAM file %s", ram);
	return 0;
}

static int qmp_of(struct vm_qemu *q, struct vm_qmp *m, struct aegis_error *err)
{
	char path[128];

	snprintf(path, sizeof path, "%s/qmp.sock", q->dir);
	return vm_qmp_open(m, path, err);
}

/* x-ignore-shared: RAM in a shared file is left out of the stream (the
 * file is the RAM), on both sides. */
static int ignore_shared(struct vm_qmp *m, struct aegis_error *err)
{
	json_t *args = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", "x-ignore-shared", "state", 1);
	int r = vm_qmp_call(m, "migrate-set-capabilities", args, NULL, err);

	json_decref(args);
	return r;
}

/* Wait for an outgoing migration to end: query-migrate's status. */
static int migrate_wait(struct vm_qmp *m, struct aegis_error *err)
{
	uint64_t until = now_us() + MIGRATE_MS * 1000ULL;

	while (now_us() < until) {
		json_t *r;
		const char *status;

		if (vm_qmp_execute(m, "query-migrate", &r, err) < 0)
			return -1;
		status = json_string_value(json_object_get(r, "status"));
		if (status && !strcmp(status, "completed"))
			return json_decref(r), 0;
		if (status && (!strcmp(status, "failed") || !strcmp(status, "cancelled"))) {
			error_set(err, AEGIS_E_SETUP, 0, "vm: snapshot save %s: %s", status,
				  json_string_value(json_object_get(r, "error-desc")) ?: "no reason given");
			return json_decref(r), -1;
		}
		json_decref(r);
		usleep(POLL_US);
	}
	return error_set(err, AEGIS_E_SETUP, ETIMEDOUT, "vm: snapshot save did not end within %d ms", MIGRATE_MS);
}

static int sync_path(const char *path, int flags)
{
	_cleanup_close_ int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 || fsync(fd) < 0 ? -1 : 0;
}

int vm_snapshot_save(struct vm_qemu *q, const char *build, struct aegis_error *err)
{
	struct vm_qmp m = { .fd = -1 };
	_cleanup_close_ int state = -1;
	char path[4200];
	json_t *args;
	int r = -1;

	snprintf(path, sizeof path, "%s/state", build);
	if (qmp_of(q, &m, err) < 0)
		return -1;
	if (ignore_shared(&m, err) < 0 || vm_qmp_execute(&m, "stop", NULL, err) < 0)
		goto out;
	if ((state = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
		error_sys(err, "vm: snapshot state file %s", path);
		goto out;
	}
	if (vm_qmp_getfd(&m, "snapshot", state, err) < 0)
		goto out;
	args = json_pack("{s:s}", "uri", "fd:snapshot");
	r = vm_qmp_call(&m, "migrate", args, NULL, err);
	json_decref(args);
	if (r == 0)
		r = migrate_wait(&m, err);
	/* On disk before meta names it: a crash never leaves a sealed snapshot
	 * whose files are short. */
	if (r == 0 && (fsync(state) < 0 || sync_path(build, O_RDONLY | O_DIRECTORY) < 0))
		r = error_sys(err, "vm: snapshot sync %s", build);
	if (r == 0) {
		snprintf(path, sizeof path, "%s/ram", build);
		if (sync_path(path, O_RDONLY) < 0)
			r = error_sys(err, "vm: snapshot sync %s", path);
	}
out:
	vm_qmp_close(&m);
	return r;
}

int vm_snapshot_commit(struct vm_snapshot *s, const char *build, const char *kernel, struct aegis_error *err)
{
	_cleanup_close_ int bfd = open(build, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_close_ int state = -1, meta = -1;
	char sum[HASH_HEX_LEN + 1], text[512];
	int n;

	if (bfd < 0 || (state = openat(bfd, "state", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
	    hash_sha256_fd(state, sum) < 0)
		return error_sys(err, "vm: snapshot state in %s", build);
	n = snprintf(text, sizeof text, "key %s\nstate %s\nkernel %s\n", s->key, sum, *kernel ? kernel : "unknown");
	meta = openat(bfd, "meta", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (meta < 0 || write_all(meta, text, (size_t)n) < 0 || fsync(meta) < 0 || fsync(bfd) < 0)
		return error_sys(err, "vm: snapshot meta in %s", build);
	/* Whole or absent: the directory appears under its name in one step. */
	if (rename(build, s->dir) < 0)
		return error_sys(err, "vm: snapshot %s", s->dir);
	if (sync_path(s->root, O_RDONLY | O_DIRECTORY) < 0)
		return error_sys(err, "vm: sync %s", s->root);
	snprintf(s->kernel, sizeof s->kernel, "%s", *kernel ? kernel : "unknown");
	return 0;
}

void vm_snapshot_abort(const char *build)
{
	char parent[4200], *slash;

	if (!build[0])
		return;
	snprintf(parent, sizeof parent, "%s", build);
	if (!(slash = strrchr(parent, '/')))
		return;
	*slash = '\0';
	_cleanup_close_ int root = open(parent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root >= 0)
		remove_tree(root, slash + 1);
}

void vm_snapshot_ram(const struct vm_snapshot *s, char *out, size_t cap)
{
	snprintf(out, cap, "%s/ram", s->dir);
}

/* Wait for the incoming state to load: query-status leaves "inmigrate". */
static int incoming_wait(struct vm_qmp *m, char *status, size_t cap, struct aegis_error *err)
{
	uint64_t until = now_us() + MIGRATE_MS * 1000ULL;

	while (now_us() < until) {
		if (vm_qmp_status(m, status, cap, err) < 0)
			return -1;
		if (strcmp(status, "inmigrate"))
			return 0;
		usleep(POLL_US);
	}
	return error_set(err, AEGIS_E_SETUP, ETIMEDOUT, "vm: snapshot load did not end within %d ms", MIGRATE_MS);
}

int vm_snapshot_load(struct vm_qemu *q, const struct vm_snapshot *s, struct aegis_error *err)
{
	struct vm_qmp m = { .fd = -1 };
	_cleanup_close_ int state = -1;
	char path[4300], status[64];
	struct stat st;
	json_t *args;
	int r = -1;

	snprintf(path, sizeof path, "%s/state", s->dir);
	if ((state = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return error_sys(err, "vm: snapshot state %s", path);
	if (qmp_of(q, &m, err) < 0)
		return -1;
	/* QEMU has mapped the RAM file by now (its monitor answers): the one
	 * validated, not one a concurrent rebuild put there since. */
	snprintf(path, sizeof path, "%s/ram", s->dir);
	if (stat(path, &st) < 0 || st.st_dev != s->ram_dev || st.st_ino != s->ram_ino) {
		error_set(err, AEGIS_E_SETUP, ESTALE, "vm: snapshot replaced while it was being restored");
		goto out;
	}
	if (ignore_shared(&m, err) < 0 || vm_qmp_getfd(&m, "snapshot", state, err) < 0)
		goto out;
	args = json_pack("{s:s}", "uri", "fd:snapshot");
	r = vm_qmp_call(&m, "migrate-incoming", args, NULL, err);
	json_decref(args);
	if (r < 0 || (r = incoming_wait(&m, status, sizeof status, err)) < 0)
		goto out;
	/* The template was saved stopped, so the clone arrives paused. */
	if (!strcmp(status, "paused"))
		r = vm_qmp_execute(&m, "cont", NULL, err);
	else if (strcmp(status, "running"))
		r = error_set(err, AEGIS_E_SETUP, 0, "vm: snapshot load left QEMU %s", status);
out:
	vm_qmp_close(&m);
	return r;
}
