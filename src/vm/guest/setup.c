/* setup.c — the guest's own set-up, in two halves around the greeting.
 *
 * Before it (guest_prepare): what no request changes — the tmpfs root,
 * cgroup2 with its controllers, overcommit, loopback. A snapshot is taken
 * after the greeting, so every clone starts with this done instead of
 * doing it again under emulation on each run's path.
 *
 * After the REQUEST (guest_setup): the host's clock and entropy, the
 * 9p shares and an image's EROFS root. A guest waiting for its request
 * has no 9p share mounted and has touched nothing under /usr, so QEMU
 * can snapshot it there (a mounted 9p share blocks migration) and many
 * runs can be restored from one snapshot, each reseeded here. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/random.h>

#include "../../common/cleanup.h"
#include "../../common/ctlwire.h"
#include "../../common/error.h"
#include "../../common/logrecord.h"
#include "guest.h"

#define GUEST_SLOT_DEV "/dev/vda"	/* the machine's one virtio-blk device */

/* The host's time, once ctlwire has checked it (why: what is wrong with
 * it, prefixed by where it came from). */
static int clock_take(const char *why, const char *from, const struct timespec *ts, struct aegis_error *err)
{
	if (why)
		return error_set(err, AEGIS_E_INVALID, EINVAL, "%s%s", from, why);
	if (clock_settime(CLOCK_REALTIME, ts) < 0)
		return error_sys(err, "set the clock");
	return 0;
}

/* The guest's clock starts from the RTC (whole seconds) or, restored from
 * a snapshot, from whenever the snapshot was taken: the host's time wins. */
static int setup_clock(json_t *clock, struct aegis_error *err)
{
	struct timespec ts;
	const char *why = ctlwire_clock_value(clock, &ts);

	return clock_take(why, "request.", &ts, err);
}

/* After a resume (a FRAME_CLOCK or the shim's {"clock"}): the guest's
 * wall clock stood while the machine was stopped. */
int guest_clock_set(json_t *msg, struct aegis_error *err)
{
	struct timespec ts;
	const char *why = ctlwire_clock_parse(msg, &ts);

	return clock_take(why, "the host's ", &ts, err);
}

/* 32 bytes from the host's getrandom into the pool, credited, then a
 * reseed of the CRNG at once: guests restored from one snapshot would
 * otherwise share their random state until the kernel's next scheduled
 * reseed, and the little interrupt timing a clone has by then is no
 * secret's worth of entropy. */
static int setup_seed(const char *b64, struct aegis_error *err)
{
	struct {
		struct rand_pool_info info;
		unsigned char bytes[48];
	} pool = { 0 };
	_cleanup_close_ int fd = -1;
	ssize_t n;

	if (!b64 || strlen(b64) != 44 || (n = logrecord_b64_decode(b64, 44, pool.bytes)) != 32)
		return error_set(err, AEGIS_E_INVALID, EINVAL, "request.seed: base64 of 32 bytes expected");
	pool.info.entropy_count = 256;
	pool.info.buf_size = 32;
	fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool.info) < 0) {
		explicit_bzero(&pool, sizeof pool);
		return error_sys(err, "add the host's seed to the entropy pool");
	}
	explicit_bzero(&pool, sizeof pool);
	if (ioctl(fd, RNDRESEEDCRNG) < 0)
		return error_sys(err, "reseed the CRNG from the host's seed");
	return 0;
}

static int mkdirs(const char *path, struct aegis_error *err)
{
	char buf[4096];

	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
		return error_set(err, AEGIS_E_INVALID, ENAMETOOLONG, "mount point %s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return error_sys(err, "mkdir %s", buf);
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return error_sys(err, "mkdir %s", buf);
	return 0;
}

/* Each share QEMU exports (qemu.c): read-only ones are the host's system
 * directories, cached freely (they do not change under a run); writable
 * ones go uncached but mmap-able. nosuid, nodev: a host file's mode bits
 * give no one anything in here. */
static int setup_mounts(json_t *mounts, struct aegis_error *err)
{
	size_t i;
	json_t *m;

	if (!json_is_array(mounts))
		return error_set(err, AEGIS_E_INVALID, EINVAL, "request.mounts: not an array");
	json_array_foreach(mounts, i, m) {
		const char *tag = json_string_value(json_object_get(m, "tag"));
		const char *path = json_string_value(json_object_get(m, "path"));
		json_t *ro = json_object_get(m, "ro");
		char opts[128];

		if (!tag || !path || path[0] != '/' || !json_is_boolean(ro))
			return error_set(err, AEGIS_E_INVALID, EINVAL, "request.mounts[%zu]: tag, path, ro expected", i);
		snprintf(opts, sizeof opts, "trans=virtio,version=9p2000.L,msize=512000,cache=%s",
			 json_is_true(ro) ? "loose" : "mmap");
		if (mkdirs(path, err) < 0)
			return -1;
		if (mount(tag, path, "9p", MS_NOSUID | MS_NODEV | (json_is_true(ro) ? MS_RDONLY : 0), opts) < 0)
			return error_sys(err, "mount the host share %s at %s", tag, path);
	}
	return 0;
}

/* An image root: the EROFS image the host put in the block slot
 * (src/vm/erofs.c), mounted read-only at path, the one "layer" the engine
 * gets. The guest's block-device cache may still hold what the kernel's
 * partition scan read of the template's placeholder (zeros, where the
 * superblock is now): dropped first, or the mount reads those. nosuid,
 * nodev: the image's mode bits give no one anything beyond the sandbox's
 * own mounts. */
static int setup_image(json_t *image, struct aegis_error *err)
{
	const char *path = json_string_value(json_object_get(image, "path"));
	_cleanup_close_ int dev = -1;

	if (!image)
		return 0;
	if (!path || path[0] != '/')
		return error_set(err, AEGIS_E_INVALID, EINVAL, "request.image: path expected");
	if ((dev = open(GUEST_SLOT_DEV, O_RDONLY | O_CLOEXEC)) < 0 || ioctl(dev, BLKFLSBUF, 0) < 0)
		return error_sys(err, "the image's block device %s", GUEST_SLOT_DEV);
	if (mkdirs(path, err) < 0)
		return -1;
	if (mount(GUEST_SLOT_DEV, path, "erofs", MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
		return error_sys(err, "mount the image's EROFS root from %s at %s", GUEST_SLOT_DEV, path);
	return 0;
}

/* The initramfs is rootfs, which pivot_root cannot leave, and the engine
 * pivots into each sandbox's root: move the kernel filesystems onto a
 * tmpfs and make that the root (what switch_root does), with the
 * initramfs's merged-/usr links (/bin → usr/bin, ...). */
static int setup_root(struct aegis_error *err)
{
	static const char *const moved[] = { "proc", "sys", "dev", "tmp", NULL };
	static const char *const links[] = { "bin", "sbin", "lib", "lib32", "lib64", "libx32", NULL };
	char path[64], target[64];

	if (mkdir("/newroot", 0755) < 0 || mount("tmpfs", "/newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
		return error_sys(err, "the guest's root tmpfs");
	for (const char *const *m = moved; *m; m++) {
		snprintf(path, sizeof path, "/newroot/%s", *m);
		if (mkdir(path, 0755) < 0)
			return error_sys(err, "mkdir %s", path);
		snprintf(target, sizeof target, "/%s", *m);
		if (mount(target, path, NULL, MS_MOVE, NULL) < 0)
			return error_sys(err, "move /%s", *m);
	}
	for (const char *const *l = links; *l; l++) {
		ssize_t n;

		snprintf(path, sizeof path, "/%s", *l);
		if ((n = readlink(path, target, sizeof target - 1)) < 0)
			continue;
		target[n] = '\0';
		snprintf(path, sizeof path, "/newroot/%s", *l);
		if (symlink(target, path) < 0)
			return error_sys(err, "symlink %s", path);
	}
	if (mkdir("/newroot/usr", 0755) < 0 || mkdir("/newroot/etc", 0755) < 0 || chdir("/newroot") < 0 ||
	    mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
		return error_sys(err, "switch to the guest's root tmpfs");
	return 0;
}

static int enable_controllers(const char *dir, struct aegis_error *err)
{
	static const char ctrls[] = "+memory +pids +cpu";
	char path[128];
	_cleanup_close_ int fd = -1;

	snprintf(path, sizeof path, "%s/cgroup.subtree_control", dir);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0 ||
	    write(fd, ctrls, sizeof ctrls - 1) != (ssize_t)(sizeof ctrls - 1))
		return error_sys(err, "cgroup2: enable %s in %s", ctrls, dir);
	return 0;
}

/* The engine bounds each run with a cgroup of its own under /aegis, as on
 * the host (cgroup.c's parent for root); the controllers it uses must
 * reach there. The parent is made here, before the snapshot: the engine
 * finds it and makes only the run's own cgroup. */
static int setup_cgroup(struct aegis_error *err)
{
	if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate") < 0)
		return error_sys(err, "mount cgroup2");
	if (enable_controllers("/sys/fs/cgroup", err) < 0)
		return -1;
	if (mkdir("/sys/fs/cgroup/aegis", 0755) < 0)
		return error_sys(err, "cgroup2: mkdir /aegis");
	return enable_controllers("/sys/fs/cgroup/aegis", err);
}

/* The guest's RAM is the run's memory limit plus a little: the kernel's
 * heuristic overcommit would refuse one allocation larger than that with
 * ENOMEM, where the host (with its RAM) grants it and the run's cgroup
 * ends the command with an OOM kill. Always overcommit, so the limit acts
 * in the guest as it does on the host: through the cgroup. */
static int setup_overcommit(struct aegis_error *err)
{
	_cleanup_close_ int fd = open("/proc/sys/vm/overcommit_memory", O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, "1", 1) != 1)
		return error_sys(err, "vm.overcommit_memory");
	return 0;
}

static int setup_loopback(struct aegis_error *err)
{
	struct ifreq ifr = { 0 };
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return error_sys(err, "loopback");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return error_sys(err, "loopback up");
	return 0;
}

int guest_prepare(struct aegis_error *err)
{
	if (setup_root(err) < 0 || setup_cgroup(err) < 0 || setup_overcommit(err) < 0 || setup_loopback(err) < 0)
		return error_prefix(err, "guest");
	return 0;
}

int guest_setup(json_t *req, struct aegis_error *err)
{
	if (setup_clock(json_object_get(req, "clock"), err) < 0 ||
	    setup_seed(json_string_value(json_object_get(req, "seed")), err) < 0 ||
	    setup_mounts(json_object_get(req, "mounts"), err) < 0 || setup_image(json_object_get(req, "image"), err) < 0)
		return error_prefix(err, "guest");
	return 0;
}
