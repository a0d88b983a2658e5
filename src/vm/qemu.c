/* qemu.c — start, watch and end the QEMU process of one vm-backend guest.
 *
 * QEMU runs as root's child in its own process group, with nothing but
 * /dev/null and a log file as its standard descriptors and every other
 * descriptor closed. Its sockets and logs live in a private 0700 directory
 * that vm_qemu_stop removes. The machine is microvm booting the guest's
 * vmlinux through PVH: no firmware, no PCI, virtio-mmio devices found
 * through ACPI (Debian kernels need ACPI for that and to power off). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/util.h"
#include "vm.h"

#define QEMU_BIN "qemu-system-x86_64"
#define CONNECT_MS 5000		/* QEMU creates its socket within milliseconds */

bool vm_kvm_usable(char *why, size_t cap)
{
	_cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int v;

	if (fd < 0) {
		snprintf(why, cap, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	if ((v = ioctl(fd, KVM_GET_API_VERSION, 0)) != KVM_API_VERSION) {
		snprintf(why, cap, "/dev/kvm: KVM_GET_API_VERSION answered %d", v);
		return false;
	}
	return true;
}

int vm_accel(bool *kvm, char *why, size_t cap)
{
	const char *want = getenv("AEGIS_VM_ACCEL");

	if (!want || !*want || !strcmp(want, "auto")) {
		*kvm = vm_kvm_usable(why, cap);
		return 0;
	}
	if (!strcmp(want, "tcg"))
		return *kvm = false, 0;
	if (strcmp(want, "kvm")) {
		snprintf(why, cap, "AEGIS_VM_ACCEL=%s is none of auto, kvm, tcg", want);
		return -1;
	}
	/* Asked for the real boundary: no quiet fallback to emulation. */
	return (*kvm = vm_kvm_usable(why, cap)) ? 0 : -1;
}

const char *vm_qemu_path(void)
{
	static char found[4096];
	const char *path = getenv("PATH");
	char *copy, *save = NULL;

	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	if (!(copy = strdup(path)))
		return NULL;
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(found, sizeof found, "%s/%s", d, QEMU_BIN);
		if (access(found, X_OK) == 0) {
			free(copy);
			return found;
		}
	}
	free(copy);
	return NULL;
}

/* The host's TSC in kHz for tsc_early_khz=: without it about a third of TCG
 * boots hang calibrating delays. /proc/cpuinfo's "cpu MHz" is close enough. */
static unsigned long host_tsc_khz(void)
{
	char buf[8192], *p;
	double mhz;

	if (read_file_at(AT_FDCWD, "/proc/cpuinfo", buf, sizeof buf) < 0 || !(p = strstr(buf, "cpu MHz")) ||
	    !(p = strchr(p, ':')) || sscanf(p + 1, "%lf", &mhz) != 1 || mhz < 1)
		return 0;
	return (unsigned long)(mhz * 1000);
}

struct qemu_args {
	char *v[96];
	int n;
	char store[32][4300];
	int ns;
};

static void arg(struct qemu_args *a, const char *s)
{
	if (a->n < 95)
		a->v[a->n++] = (char *)s;
}

static void argf(struct qemu_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argf(struct qemu_args *a, const char *fmt, ...)
{
	va_list ap;

	if (a->ns >= 32)
		return;
	va_start(ap, fmt);
	vsnprintf(a->store[a->ns], sizeof a->store[0], fmt, ap);
	va_end(ap);
	arg(a, a->store[a->ns++]);
}

/* The guest's devices, the same set on every boot (a snapshot restores
 * into the same machine): the virtio-serial channel and one virtio-9p
 * device per share (shares.c). security_model=none: QEMU, root on the
 * host, gives files the guest creates the uid and gid the guest asks for
 * (sandbox root maps to the workspace's owner in there, spawn.c) and
 * ignores what it cannot set; multidevs=remap keeps inode numbers unique
 * when a share spans filesystems. */
void vm_qemu_devices(struct qemu_args *a, const struct vm_qemu *q, const struct vm_shares *sh)
{
	arg(a, "-device"), arg(a, "virtio-serial-device");
	/* wait=on: the guest starts only once we are connected, so nothing
	 * it says is written to an absent reader. */
	arg(a, "-chardev"), argf(a, "socket,id=aegis,path=%s/chan.sock,server=on,wait=on", q->dir);
	arg(a, "-device"), arg(a, "virtserialport,chardev=aegis,name=aegis");
	/* The network channel (netproxy.c), a second port, present whether
	 * or not this run uses it (--net allow): the device set must not
	 * depend on the run. The guest has no NIC either way. */
	arg(a, "-chardev"), argf(a, "socket,id=net,path=%s/net.sock,server=on,wait=on", q->dir);
	arg(a, "-device"), arg(a, "virtserialport,chardev=net,name=aegis-net");
	/* The control channel of an instance (ctlproxy.c: execs and --expose
	 * connections into the guest), a third port, present in every run
	 * for the same reason. */
	arg(a, "-chardev"), argf(a, "socket,id=ctl,path=%s/ctl.sock,server=on,wait=on", q->dir);
	arg(a, "-device"), arg(a, "virtserialport,chardev=ctl,name=aegis-ctl");
	/* The block slot (erofs.c): one virtio-blk device, read-only (the
	 * guest has no write path to the host's file), whose raw size is
	 * fixed here so the capacity the guest read at boot holds for every
	 * file a clone is given. */
	arg(a, "-blockdev");
	argf(a, "driver=file,node-name=slotfile,filename=%s,read-only=on", q->slot);
	arg(a, "-blockdev");
	argf(a, "driver=raw,node-name=slot,file=slotfile,read-only=on,size=%llu", (unsigned long long)VM_SLOT_BYTES);
	arg(a, "-device"), arg(a, "virtio-blk-device,drive=slot");
	for (int i = 0; i < sh->n; i++) {
		const struct vm_share *s = &sh->s[i];

		arg(a, "-fsdev");
		argf(a, "local,id=fs%d,path=%s,security_model=none,multidevs=remap%s", i, s->host,
		     s->ro ? ",readonly=on" : "");
		arg(a, "-device"), argf(a, "virtio-9p-device,fsdev=fs%d,mount_tag=%s", i, s->tag);
	}
}

/* The one command line of a guest, cold boot and restore alike (so a
 * restore has exactly the devices its snapshot was saved with): boot says
 * how RAM is backed and whether the state comes in by migration (NULL:
 * anonymous RAM, cold boot). */
static void qemu_argv(struct qemu_args *a, const char *qemu, const struct vm_qemu *q, const struct vm_guest *g,
		      const struct vm_opts *o, const struct vm_shares *sh, const struct vm_boot *boot)
{
	unsigned long khz = host_tsc_khz();
	unsigned long long mib = (unsigned long long)(o->memory_bytes >> 20);
	bool file_ram = boot && boot->ram_file;
	/* Kernel arguments added for debugging (and the tests of the guest
	 * panic path, e.g. rdinit=/nonexistent). */
	const char *extra = getenv("AEGIS_VM_KERNEL_ARGS");
	char tcg[96] = "";

	/* Under TCG only (KVM runs the guest on the real CPU and keeps the
	 * kernel's defaults):
	 * - tsc_early_khz: skips the delay calibration.
	 * - tsc=reliable: the guest's TSC is the host's, as steady as the
	 *   host's clock; its jiffies are not (timer interrupts come late
	 *   whenever the host is busy). Without it the clocksource watchdog
	 *   compares the two, declares the TSC unstable on a loaded host and
	 *   falls back to jiffies: 4 ms clock resolution and low-resolution
	 *   timers, for every clone of a snapshot built then.
	 * The guest kernel's speculative-execution defences stay on, even
	 * under TCG (~30 ms of a restore's CPU): translated guest code does
	 * run on the physical CPU, and the guest kernel is the boundary
	 * around the command there; the VM adds a boundary, it removes none. */
	if (!q->kvm && khz)
		snprintf(tcg, sizeof tcg, " tsc_early_khz=%lu tsc=reliable", khz);
	else if (!q->kvm)
		snprintf(tcg, sizeof tcg, " tsc=reliable");
	arg(a, qemu);
	/* No firmware ROMs, PIT or PIC: less to emulate and boot. The RTC stays
	 * (without it the kernel waits 1 s twice probing for it). The
	 * ISA serial stays: it is the kernel console, where a panic is told. */
	arg(a, "-M");
	argf(a, "%s%s", VM_QEMU_MACHINE, file_ram ? ",memory-backend=ram" : "");
	arg(a, "-nodefaults"), arg(a, "-no-user-config"), arg(a, "-nographic");
	arg(a, "-no-reboot");	/* panic=-1 reboots: with this QEMU exits instead */
	arg(a, "-accel"), arg(a, q->kvm ? "kvm" : "tcg");
	arg(a, "-cpu"), arg(a, VM_QEMU_CPU(q->kvm));
	arg(a, "-m"), argf(a, "%lluM", mib);
	/* Snapshots (snapshot.c): the template's RAM is written through to the
	 * file (share=on) so migration can skip it (x-ignore-shared); a clone
	 * maps the same file privately (share=off): its writes are
	 * copy-on-write pages of its own and the template never changes. */
	if (file_ram)
		arg(a, "-object"), argf(a, "memory-backend-file,id=ram,size=%lluM,mem-path=%s,share=%s", mib,
					boot->ram_file, boot->ram_shared ? "on" : "off");
	arg(a, "-smp"), argf(a, "%u", o->vcpus ? o->vcpus : 1);
	arg(a, "-kernel"), arg(a, g->vmlinux);
	arg(a, "-initrd"), arg(a, g->initramfs);
	arg(a, "-append");
	argf(a, "console=ttyS0 quiet cryptomgr.notests panic=-1 oops=panic%s%s%s", tcg,
	     extra && *extra ? " " : "", extra && *extra ? extra : "");
	/* The console goes to aegis, not to a file a guest could grow without
	 * bound: aegis keeps its tail. wait=on here too, so a panic during the
	 * boot is never printed to no one. */
	arg(a, "-chardev"), argf(a, "socket,id=con,path=%s/console.sock,server=on,wait=on", q->dir);
	arg(a, "-serial"), arg(a, "chardev:con");
	/* QMP: control (query-status; stop/cont for pause; snapshots). */
	arg(a, "-qmp"), argf(a, "unix:%s/qmp.sock,server=on,wait=off", q->dir);
	/* QEMU's own seccomp filter: no obsolete syscalls, no setuid, no
	 * exec, no priority or affinity games, should the guest break QEMU. */
	arg(a, "-sandbox"), arg(a, VM_QEMU_SANDBOX);
	vm_qemu_devices(a, q, sh);
	/* The device state comes later, by migrate-incoming from a descriptor. */
	if (boot && boot->incoming)
		arg(a, "-incoming"), arg(a, "defer");
	a->v[a->n] = NULL;
}

int vm_qemu_cmdline(char *out, size_t cap, const struct vm_guest *g, const struct vm_opts *o, bool kvm)
{
	const char *qemu = vm_qemu_path();
	static struct qemu_args a;	/* large: not on the stack */
	static struct vm_shares sh;
	struct vm_qemu q = { .dir = "@RUNDIR", .slot = "@SLOT", .kvm = kvm };
	struct vm_boot boot = { .ram_file = "@RAM", .ram_shared = true };
	size_t used = 0;

	if (!qemu)
		return -1;
	/* The template's own line, with placeholders for what differs per
	 * run: the run directory, the RAM file and the shares' host
	 * directories (vm_shares_placeholders). */
	memset(&a, 0, sizeof a);
	vm_shares_placeholders(&sh);
	qemu_argv(&a, qemu, &q, g, o, &sh, &boot);
	for (int i = 0; i < a.n; i++) {
		used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%s%s", i ? " " : "", a.v[i]);
		if (used >= cap)
			return -1;
	}
	return 0;
}

static const char *const run_files[] = { "chan.sock", "console.sock", "qemu.err", "qmp.sock", "net.sock",
					  "ctl.sock", "ctlmux.sock", "proxy.sock", "lock", "lock.new", NULL };
static const char *const run_trees[] = { "etc", "io", "empty", NULL };

/* The run directory's lock is held for the run's whole life (QEMU does
 * not inherit it): a directory whose lock is free belongs to an aegis that
 * was killed outright, and the next run removes it. */
static int qemu_lock(struct vm_qemu *q, struct aegis_error *err)
{
	char path[128], final[128];

	/* Locked before it is named "lock": a sweep never sees it free. */
	snprintf(path, sizeof path, "%s/lock.new", q->dir);
	snprintf(final, sizeof final, "%s/lock", q->dir);
	q->lock = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (q->lock < 0 || flock(q->lock, LOCK_EX | LOCK_NB) < 0 || rename(path, final) < 0)
		return error_sys(err, "vm: lock %s", final);
	return 0;
}

/* Remove the run directories of dead runs: ours (same uid, 0700, real
 * directories, not symlinks: /tmp is everyone's), with a lock file no one
 * holds. A directory without its lock is being born: left alone. */
void vm_qemu_sweep(void)
{
	DIR *tmp = opendir("/tmp");
	struct dirent *e;

	while (tmp && (e = readdir(tmp))) {
		struct stat st;
		int dfd, lfd;

		if (strncmp(e->d_name, "aegis-vm-", 9))
			continue;
		dfd = openat(dirfd(tmp), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0)
			continue;
		if (fstat(dfd, &st) == 0 && st.st_uid == getuid() && (st.st_mode & 07777) == 0700 &&
		    (lfd = openat(dfd, "lock", O_RDWR | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
			if (flock(lfd, LOCK_EX | LOCK_NB) == 0) {
				for (const char *const *f = run_files; *f; f++)
					unlinkat(dfd, *f, 0);
				for (const char *const *t = run_trees; *t; t++)
					vm_remove_tree(dfd, *t);
				unlinkat(dirfd(tmp), e->d_name, AT_REMOVEDIR);
			}
			close(lfd);
		}
		close(dfd);
	}
	if (tmp)
		closedir(tmp);
}

/* In the child: own process group, stdio to /dev/null and the log, exec. */
static void __attribute__((noreturn)) qemu_exec(char **argv, const char *dir, pid_t parent, const struct vm_opts *o)
{
	char log[128];
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	int errfd;
	sigset_t none;

	/* aegis blocks the signals it forwards to the guest; QEMU needs its own. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	snprintf(log, sizeof log, "%s/qemu.err", dir);
	errfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	setpgid(0, 0);
	/* An instance's QEMU is its sandbox: into the run's host cgroup
	 * (hostcg.c) before anything of it runs, or not at all. */
	for (int i = 0; i < o->ncgroup_join; i++)
		if (write(o->cgroup_join[i], "0", 1) != 1)
			_exit(126);
	/* An aegis killed outright takes its guest along, even a hung one (a
	 * live aegis-guest also powers off when the channel closes). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(126);
	if (null < 0 || errfd < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(errfd, 2) < 0)
		_exit(126);
	/* Nothing of aegis's reaches QEMU: fail rather than leak a descriptor. */
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
		_exit(126);
	execv(argv[0], argv);
	dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* QEMU creates its sockets in command-line order and waits (wait=on) on
 * each until we connect: the console first, then the guest's channel. */
static int qemu_connect(struct vm_qemu *q, const char *name, int *out, struct aegis_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t until = now_us() + CONNECT_MS * 1000ULL;
	char why[256];

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", q->dir, name);
	while (now_us() < until) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return error_sys(err, "vm: socket");
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
			return *out = fd, 0;
		close(fd);
		if (poll(&(struct pollfd){ q->pidfd, POLLIN, 0 }, 1, 1) > 0) {
			vm_qemu_diagnose(q, why, sizeof why);
			return error_set(err, AEGIS_E_SETUP, 0, "vm: QEMU exited before the guest started: %s", why);
		}
	}
	return error_set(err, AEGIS_E_SETUP, ETIMEDOUT, "vm: QEMU did not open %s within %d ms", name,
			 CONNECT_MS);
}

int vm_qemu_start(struct vm_qemu *q, const struct vm_guest *g, struct vm_opts *o, const struct vm_boot *boot,
		  struct aegis_error *err)
{
	const char *qemu = vm_qemu_path();
	static struct qemu_args a;	/* large: not on the stack */
	char why[256];
	pid_t parent;

	q->pid = -1, q->pidfd = -1, q->chan = -1, q->console = -1, q->lock = -1;
	q->status_known = false;
	q->net = q->ctl = -1;
	if (!qemu)
		return error_set(err, AEGIS_E_UNSUPPORTED, ENOENT,
				 "vm: %s not found on PATH (scripts/deps.sh vm installs qemu-system-x86)", QEMU_BIN);
	if (vm_accel(&q->kvm, why, sizeof why) < 0)
		return error_set(err, AEGIS_E_UNSUPPORTED, 0, "vm: %s", why);
	snprintf(q->dir, sizeof q->dir, "/tmp/aegis-vm-XXXXXX");
	vm_qemu_sweep();
	if (!mkdtemp(q->dir)) {	/* 0700: the sockets are reachable by us alone */
		q->dir[0] = '\0';
		return error_sys(err, "vm: run directory in /tmp");
	}
	if (qemu_lock(q, err) < 0 || vm_shares_prepare(&o->shares, q->dir, o->spec, &o->paths, err) < 0)
		return -1;
	/* A template being built gets the placeholder: its guest reads
	 * nothing of a run's image. QEMU opens the very file the caller
	 * checked, through our descriptor. */
	snprintf(q->slot, sizeof q->slot, "/proc/%d/fd/%d", (int)getpid(),
		 (boot && boot->ram_shared) || o->slot_image_fd < 0 ? o->slot_placeholder_fd : o->slot_image_fd);
	memset(&a, 0, sizeof a);
	qemu_argv(&a, qemu, q, g, o, &o->shares, boot);
	parent = getpid();
	if ((q->pid = fork()) < 0)
		return error_sys(err, "vm: fork");
	if (q->pid == 0)
		qemu_exec(a.v, q->dir, parent, o);
	setpgid(q->pid, q->pid);	/* both sides: no window where a kill(-pid) misses */
	if ((q->pidfd = (int)syscall(SYS_pidfd_open, q->pid, 0)) < 0)
		return error_sys(err, "vm: pidfd_open");
	if (qemu_connect(q, "console.sock", &q->console, err) < 0 || qemu_connect(q, "chan.sock", &q->chan, err) < 0)
		return -1;
	/* wait=on: QEMU waits for these too */
	return qemu_connect(q, "net.sock", &q->net, err) < 0 ? -1 : qemu_connect(q, "ctl.sock", &q->ctl, err);
}

void vm_qemu_console(struct vm_qemu *q)
{
	char buf[4096];
	ssize_t n = q->console >= 0 ? read(q->console, buf, sizeof buf) : 0;

	if (n < 0 && errno == EINTR)
		return;
	if (n <= 0) {
		if (q->console >= 0)
			close(q->console);
		q->console = -1;
		return;
	}
	if (q->tail_len + (size_t)n >= sizeof q->tail) {	/* keep the newest bytes */
		size_t drop = q->tail_len + (size_t)n - (sizeof q->tail - 1);
		memmove(q->tail, q->tail + drop, q->tail_len - drop);
		q->tail_len -= drop;
	}
	memcpy(q->tail + q->tail_len, buf, (size_t)n);
	q->tail_len += (size_t)n;
	q->tail[q->tail_len] = '\0';
}

/* The line of dir/name holding needle (NULL: the first line), trimmed. */
static bool log_line(const char *dir, const char *name, const char *needle, char *out, size_t cap)
{
	char path[128], buf[65536], *p;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (read_file_at(AT_FDCWD, path, buf, sizeof buf) <= 0)
		return false;
	if (!(p = needle ? strstr(buf, needle) : buf))
		return false;
	p[strcspn(p, "\r\n")] = '\0';
	snprintf(out, cap, "%s", p);
	return *out != '\0';
}

/* The console line holding needle, from the kept tail. */
static bool console_line(const struct vm_qemu *q, const char *needle, char *out, size_t cap)
{
	const char *p = memmem(q->tail, q->tail_len, needle, strlen(needle));

	if (!p)
		return false;
	snprintf(out, cap, "%.*s", (int)strcspn(p, "\r\n"), p);
	return true;
}

void vm_qemu_diagnose(struct vm_qemu *q, char *why, size_t cap)
{
	char line[200];
	int st = 0;

	while (q->console >= 0)	/* to its EOF: QEMU is ending */
		vm_qemu_console(q);

	if (q->pid > 0 && waitpid(q->pid, &st, 0) == q->pid) {
		q->pid = -1;
		q->status = st, q->status_known = true;
	} else {
		st = q->status_known ? q->status : 0;
	}
	while (q->console >= 0)	/* QEMU is gone: the rest, then EOF */
		vm_qemu_console(q);
	/* The kernel says why it panicked on its console, even when quiet. */
	if (console_line(q, "Kernel panic - not syncing", line, sizeof line))
		snprintf(why, cap, "guest panic: %s", line + strlen("Kernel panic - not syncing: "));
	else if (WIFSIGNALED(st) && log_line(q->dir, "qemu.err", "error: ", line, sizeof line))
		snprintf(why, cap, "QEMU was killed by signal %d: %s%s", WTERMSIG(st), line,
			 q->kvm ? " (KVM unusable? AEGIS_VM_ACCEL=tcg runs the test mode)" : "");
	else if (WIFSIGNALED(st))
		snprintf(why, cap, "QEMU was killed by signal %d", WTERMSIG(st));
	else if (WIFEXITED(st) && WEXITSTATUS(st) && log_line(q->dir, "qemu.err", NULL, line, sizeof line))
		snprintf(why, cap, "QEMU exited with status %d: %s", WEXITSTATUS(st), line);
	else if (console_line(q, "aegis-guest: ", line, sizeof line))
		snprintf(why, cap, "the guest powered off: %s", line);
	else
		snprintf(why, cap, "the guest powered off without an exit status");
}

static void remove_at(const char *dir, const char *name)
{
	char path[128];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	unlink(path);
}

void vm_qemu_stop(struct vm_qemu *q)
{
	if (q->pid > 0) {
		kill(-q->pid, SIGKILL);
		waitpid(q->pid, NULL, 0);
		q->pid = -1;
	}
	if (q->chan >= 0)
		close(q->chan);
	if (q->net >= 0)
		close(q->net);
	if (q->ctl >= 0)
		close(q->ctl);
	q->net = q->ctl = -1;
	if (q->console >= 0)
		close(q->console);
	if (q->pidfd >= 0)
		close(q->pidfd);
	q->chan = q->pidfd = q->console = -1;
	if (q->dir[0]) {
		int dfd = open(q->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);

		for (const char *const *f = run_files; *f; f++)
			remove_at(q->dir, *f);
		for (const char *const *t = run_trees; dfd >= 0 && *t; t++)
			vm_remove_tree(dfd, *t);
		if (dfd >= 0)
			close(dfd);
		if (rmdir(q->dir) < 0)
			fprintf(stderr, "aegis: vm: remove %s: %s\n", q->dir, strerror(errno));
		q->dir[0] = '\0';
	}
	if (q->lock >= 0)
		close(q->lock);
	q->lock = -1;
}
