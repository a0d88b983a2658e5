/* pause.c — pausing and resuming an instance's run (docs/vm.md, Instances).
 *
 * An ns instance is frozen whole by the host cgroup freezer on its run
 * cgroup. A vm instance's run cgroup holds QEMU, and it gets two steps:
 * QMP stop, then the same freezer; resuming, the thaw, then QMP cont. The
 * shim owns QEMU and its QMP socket: aegisd asks it over the instance's
 * control socket ({"vm": "stop"}, {"vm": "cont"}; src/vm/ctlproxy.c),
 * and after the cont the shim sets the guest's wall clock to the host's.
 *
 * Why both: QMP stop is the machine's own pause — no vCPU runs, QEMU
 * drains its devices' I/O and the guest's virtual clock stands, so the
 * guest resumes where it was, its timers not firing for the time it stood
 * (only its wall clock is behind, and that is set). A frozen QEMU alone
 * is stopped wherever its threads were, with its devices mid-request, and
 * the guest sees the whole pause pass at once on thaw. The freezer then
 * takes what QMP stop leaves: QEMU's main loop and helper threads use no
 * CPU, and the daemon's usage, wake and cleanup paths stay the ns ones. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <aegis/aegis.h>
#include "../common/util.h"
#include "control.h"
#include "daemon.h"
#include "pause.h"

/* The shim's answer: QMP takes ~2 s per reply at worst (qmp.c), and a
 * cont waits for the guest to take its clock (5 s at worst). */
#define VM_CALL_MS 15000
/* The request's "by_us": the shim acts only before it and undoes what it
 * did after it (ctlproxy.c), leaving the guest's clock (5 s) and the
 * answer's way back inside VM_CALL_MS. So a shim that hung (stopped,
 * starved) and comes back after aegisd gave up does not pause or resume
 * a guest aegisd has reported unchanged. */
#define VM_ACT_MS (VM_CALL_MS - 6000)

/* {"vm": op} to the instance's shim. -1 with err (its reason, or none came). */
static int vm_call(const char *dir, const char *op, struct aegis_error *err)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	json_t *req = json_pack("{s:s,s:I}", "vm", op, "by_us", (json_int_t)(now_us() + VM_ACT_MS * 1000ull));
	json_t *ans = NULL;
	const char *clock;
	int rc = -1;

	if (dfd >= 0 && req)
		ans = control_call(dfd, req, NULL, VM_CALL_MS);
	if (dfd >= 0)
		close(dfd);
	json_decref(req);
	if (!ans) {
		error_set(err, AEGIS_E_SETUP, 0, "vm: QMP %s: the instance's shim did not answer", op);
		err->sys_errno = ETIMEDOUT;
	} else if (!json_is_true(json_object_get(ans, "ok"))) {
		/* the shim's message names its errno already */
		error_set(err, AEGIS_E_SETUP, 0, "%s",
			  json_string_value(json_object_get(ans, "error")) ?: "vm: QMP: the shim refused");
		err->sys_errno = (int)json_integer_value(json_object_get(ans, "errno"));
	} else {
		/* the guest runs again; only its wall clock is behind */
		if ((clock = json_string_value(json_object_get(ans, "clock_error"))))
			daemon_log("warn", "instance resumed", "error", clock);
		rc = 0;
	}
	json_decref(ans);
	return rc;
}

int pause_run(const char *dir, pid_t shim, const char *cgroup_parent, bool vm, bool pause, struct aegis_error *err)
{
	struct aegis_error undo = { 0 };

	if (!vm)
		return aegis_freeze_run((int)shim, cgroup_parent, pause, err);
	if (!pause) {	/* thawed first: a frozen QEMU cannot answer QMP */
		if (aegis_freeze_run((int)shim, cgroup_parent, false, err) < 0)
			return -1;
		return vm_call(dir, "cont", err) < 0 ? error_prefix(err, "resume") : 0;
	}
	if (vm_call(dir, "stop", err) < 0)
		return error_prefix(err, "pause");
	if (aegis_freeze_run((int)shim, cgroup_parent, true, err) == 0)
		return 0;
	/* not half paused: a freeze that failed may have left it freezing */
	aegis_freeze_run((int)shim, cgroup_parent, false, &undo);
	vm_call(dir, "cont", &undo);
	return -1;
}
