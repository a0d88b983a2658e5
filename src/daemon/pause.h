/* pause.h — pausing and resuming an instance's run (pause.c). */
#ifndef AEGIS_DAEMON_PAUSE_H
#define AEGIS_DAEMON_PAUSE_H

#include <stdbool.h>
#include <sys/types.h>

#include "../common/error.h"

/* Pause (pause true) or resume the run of the instance in dir: shim is its
 * shim's pid, cgroup_parent its cgroups' parent (NULL: the default), vm
 * whether its backend is vm (its shim's control channel is up: the
 * command runs). A pause is whole or not done: one that fails leaves the
 * instance running. A resume that fails leaves its guest stopped (the
 * instance is still paused; another resume tries again). -1 with err. */
int pause_run(const char *dir, pid_t shim, const char *cgroup_parent, bool vm, bool pause, struct aegis_error *err);

#endif
