/* procfs.c — a fresh /proc for the sandbox's pid namespace, with the kernel
 * files that leak host state or allow host changes masked or read-only
 * (the lists runc and Docker apply). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <linux/mount.h>

#include "../common/error.h"
#include "../common/util.h"
#include "sandbox.h"

/* Hidden: host memory, keys, timers and hardware details. */
static const char *const masked[] = {
	"acpi", "asound", "interrupts", "kcore", "keys", "latency_stats", "sched_debug",
	"scsi", "timer_list", "timer_stats", NULL,
};

/* Readable but never writable: host-wide kernel knobs (and "sys", which
 * procfs_seal makes so once the network namespace has its setting). */
static const char *const readonly[] = { "bus", "fs", "irq", "sysrq-trigger", NULL };

int procfs_mount(const char *root, struct aegis_error *err)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof path, "%s/proc", root);
	if (mounts_mkdir(path, err) < 0)
		return -1;
	if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return error_sys(err, "mount /proc");
	for (int i = 0; masked[i]; i++) {
		snprintf(path, sizeof path, "%s/proc/%s", root, masked[i]);
		if (lstat(path, &st) < 0)
			continue;	/* not on this kernel */
		if (S_ISDIR(st.st_mode)) {
			if (mounts_tmpfs(path, "size=0,nr_inodes=1", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, err) < 0)
				return -1;
		} else if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0) {
			return error_sys(err, "mask /proc/%s", masked[i]);
		}
	}
	for (int i = 0; readonly[i]; i++) {
		snprintf(path, sizeof path, "%s/proc/%s", root, readonly[i]);
		if (lstat(path, &st) < 0)
			continue;
		if (mounts_bind(path, path, true, err) < 0)
			return -1;
	}
	return 0;
}

/* After the network namespace is joined, with the new root in place: in
 * the sandbox's own namespace (none and allow modes), ports below 1024 are
 * open to its processes, which keep no capability, as Docker (20.10 on)
 * and Podman set it, so `python3 -m http.server 80` runs as on a machine
 * of one's own; the ports are that namespace's alone and reach the host
 * only through what --expose forwards. A net sysctl is the opener's
 * namespace's, chosen when the file is opened, hence here and not at the
 * mount. Then /proc/sys is made read-only for good. host mode keeps the
 * host's setting (the sandbox could not change it anyway). */
int procfs_seal(bool own_netns, struct aegis_error *err)
{
	static const char port_start[] = "/proc/sys/net/ipv4/ip_unprivileged_port_start";

	/* absent before Linux 4.11: low ports stay root's there */
	if (own_netns && write_file_at(AT_FDCWD, port_start, "0\n", 2) < 0 && errno != ENOENT)
		return error_sys(err, "write %s", port_start);
	return mounts_bind("/proc/sys", "/proc/sys", true, err);
}
