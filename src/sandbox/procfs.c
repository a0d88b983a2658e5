/* procfs.c — a fresh /proc for the sandbox's pid namespace, with the kernel
 * files that leak host state or allow host changes masked or read-only
 * (the lists runc and Docker apply). */
#include <errno.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <linux/mount.h>

#include "../common/error.h"
#include "sandbox.h"

/* Hidden: host memory, keys, timers and hardware details. */
static const char *const masked[] = {
	"acpi", "asound", "interrupts", "kcore", "keys", "latency_stats", "sched_debug",
	"scsi", "timer_list", "timer_stats", NULL,
};

/* Readable but never writable: host-wide kernel knobs. */
static const char *const readonly[] = { "bus", "fs", "irq", "sys", "sysrq-trigger", NULL };

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
