/* caps.c — the sandbox keeps no capability at all, in any set.
 *
 * Root inside the user namespace starts with every capability over the
 * namespace; the bounding set is emptied first (so nothing can be regained
 * through exec of a file with capabilities), then ambient, then the rest. */
#include <errno.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <linux/securebits.h>

#include "../common/error.h"
#include "sandbox.h"

int caps_drop_all(struct aegis_error *err)
{
	cap_t empty;
	int r;

	/* Root in the namespace gets no capabilities back on exec, ever. */
	if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
		  SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED,
		  0, 0, 0) < 0)
		return error_sys(err, "set securebits");
	for (int c = 0; c < 64; c++) {
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0)
			continue;
		if (errno == EINVAL)
			break;	/* past the last capability this kernel knows */
		return error_sys(err, "drop capability %d from the bounding set", c);
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return error_sys(err, "clear ambient capabilities");
	empty = cap_init();
	if (!empty)
		return error_sys(err, "cap_init");
	r = cap_set_proc(empty);
	cap_free(empty);
	if (r < 0)
		return error_sys(err, "drop capabilities");
	return 0;
}
