/* run_vm.c — what `aegis run --backend vm` cannot honour yet.
 *
 * The vm backend takes the spec run.c builds, like the namespace backend
 * (aegis_run with spec.backend = AEGIS_BACKEND_VM), so every flag works in
 * the guest unless it is listed here; those are refused by name, in one
 * line, never dropped silently (docs/vm.md):
 *   --cgroup-parent         a host cgroup path: the guest's tree is its own
 * (--net host is refused by the backend itself, for the API too.) */
#include <stdio.h>
#include <string.h>

#include "../common/error.h"
#include "run_flags.h"

static const char *const vm_refused_flags[] = { "cgroup-parent", NULL };

static bool refused(const char *name)
{
	for (const char *const *v = vm_refused_flags; *v; v++)
		if (!strcmp(*v, name))
			return true;
	return false;
}

int run_vm_check(const struct run_flags *f, struct aegis_error *err)
{
	char copy[sizeof f->given], out[512], *save = NULL;
	size_t used = 0;

	snprintf(copy, sizeof copy, "%s", f->given);
	out[0] = '\0';
	for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
		if (refused(w + 2) && !strstr(out, w))
			used += (size_t)snprintf(out + used, used < sizeof out ? sizeof out - used : 0, "%s%s",
						 used ? ", " : "", w);
	if (used)
		return error_set(err, AEGIS_E_UNSUPPORTED, 0, "run --backend vm: not supported yet: %s (docs/vm.md)",
				 out);
	return 0;
}
