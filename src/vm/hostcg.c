/* hostcg.c — the host cgroup QEMU runs in when the run is an instance's.
 *
 * An instance is paused with the cgroup freezer on its run cgroup,
 * run-<supervisor pid> (aegisd: aegis_freeze_run; for a vm instance after
 * QMP stop, src/daemon/pause.c), and that cgroup is also
 * where `instance info` reads its memory and CPU and what aegisd kills when
 * the shim was killed. On the ns backend the engine puts the sandbox there;
 * on the vm backend the sandbox is the whole QEMU process, so QEMU joins
 * the same cgroup (before it execs: every page and thread of it is
 * counted). The daemon's pause, resume, usage and cleanup paths then work
 * as for ns: a frozen QEMU runs no vCPU and no thread of its own, and the
 * guest's memory stays where it is. The run's own limits are enforced in
 * the guest's cgroup; this one only bounds QEMU as a whole. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "../common/error.h"
#include "../sandbox/sandbox.h"
#include "vm.h"

/* QEMU itself beside the guest's RAM: TCG's translation cache alone may
 * grow to 1 GiB (QEMU's default tb-size); with KVM far less is used. */
#define QEMU_OVERHEAD (1024ULL << 20)
/* QEMU's threads: vCPUs, its I/O worker pool (9p), the main loop. */
#define QEMU_PIDS 1024

int vm_hostcg_create(struct cgroup *cg, struct vm_opts *o, struct aegis_error *err)
{
	struct aegis_spec host = *o->spec;
	char path[600];

	host.limits.memory_bytes = o->memory_bytes + QEMU_OVERHEAD;
	host.limits.pids = QEMU_PIDS;
	host.limits.cpu_ms = 0;	/* the engine in the guest counts the command's CPU */
	host.freezable = true;
	if (cgroup_create(cg, &host, err) < 0)
		return error_prefix(err, "vm: QEMU's host cgroup");
	o->ncgroup_join = 0;
	/* opened here, written by QEMU's child before it execs (nothing but a
	 * write between fork and exec) */
	for (int i = 0; i < (cg->version == 2 ? 1 : cg->nv1) && i < VM_CGROUP_JOIN_MAX; i++) {
		int fd;

		if (cg->version == 2)
			snprintf(path, sizeof path, "/sys/fs/cgroup%s/cgroup.procs", cg->rel);
		else
			snprintf(path, sizeof path, "/sys/fs/cgroup/%s%s/cgroup.procs", cg->v1[i], cg->rel);
		if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
			error_sys(err, "vm: QEMU's host cgroup: open %s", path);
			vm_hostcg_destroy(cg, o);
			return -1;
		}
		o->cgroup_join[o->ncgroup_join++] = fd;
	}
	return 0;
}

void vm_hostcg_destroy(struct cgroup *cg, struct vm_opts *o)
{
	for (int i = 0; i < o->ncgroup_join; i++)
		close(o->cgroup_join[i]);
	o->ncgroup_join = 0;
	cgroup_destroy(cg);	/* QEMU is reaped by now: the cgroup is empty */
}
