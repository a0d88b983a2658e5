/* guestbuild.c — in a vm guest, a mount the sandbox's child would make in
 * its user namespace, made by the guest's root before clone instead: an
 * image root (imageroot.c), an overlay workspace (overlay.c).
 *
 * Why: an overlay mounted in the sandbox's user namespace must use
 * userxattr and keeps its whiteouts' and opaque directories' marks as
 * user.overlay.* in its upper layer, a tmpfs; the guest's kernel (Debian
 * 12's 6.1) has user xattrs on tmpfs only from 6.6 on, so those marks
 * fail with EIO. The guest's root, in the initial user namespace, mounts
 * an overlay that marks them trusted.overlay.*, which 6.1's tmpfs holds.
 *
 * A short-lived helper process builds it in a mount namespace of its own,
 * so neither the staging mounts nor its working directory touch the
 * engine's, and hands back descriptors (the mount as a detached tree, which
 * the child attaches). The staging mounts go with the helper: what was
 * built holds its own references to them. */
#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/error.h"
#include "sandbox.h"

/* The helper's side: a private mount namespace, then build(). */
static int build_in_own_namespace(const struct sandbox_ctx *ctx, const char *what,
				  int (*build)(const struct sandbox_ctx *, int *, struct aegis_error *),
				  int *fds, struct aegis_error *err)
{
	/* the staging mounts never show in the guest's namespace */
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return error_sys(err, "%s: a mount namespace to build it in", what);
	return build(ctx, fds, err);
}

int guestbuild_run(const struct sandbox_ctx *ctx, const char *what,
		   int (*build)(const struct sandbox_ctx *, int *, struct aegis_error *), int *fds, int nfds,
		   struct aegis_error *err)
{
	struct sync_msg msg = { 0 };
	int sv[2], status = 0, got, passed[SYNC_FDS_MAX], have = 0;
	pid_t pid;

	if (nfds < 1 || nfds > SYNC_FDS_MAX)
		return error_set(err, AEGIS_E_SETUP, EINVAL, "%s: %d descriptors to build", what, nfds);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return error_sys(err, "%s: socketpair", what);
	if ((pid = fork()) < 0) {
		error_sys(err, "%s: fork to build it", what);
		close(sv[0]), close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		struct sync_msg out = { .kind = SYNC_GO };
		int built[SYNC_FDS_MAX];

		close(sv[0]);
		if (build_in_own_namespace(ctx, what, build, built, &out.err) < 0) {
			out.kind = SYNC_ERROR;
			_exit(sync_send(sv[1], &out) < 0 ? 2 : 1);
		}
		_exit(sync_sendv(sv[1], &out, NULL, built, nfds) < 0 ? 2 : 0);
	}
	close(sv[1]);
	got = sync_recvv(sv[0], &msg, NULL, 0, passed);
	close(sv[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	for (int i = 0; i < SYNC_FDS_MAX; i++)
		have += passed[i] >= 0;
	if (got == 1 && msg.kind == SYNC_GO && have == nfds) {
		for (int i = 0; i < nfds; i++)
			fds[i] = passed[i];
		return 0;
	}
	for (int i = 0; i < SYNC_FDS_MAX; i++)
		if (passed[i] >= 0)
			close(passed[i]);
	if (got == 1 && msg.kind == SYNC_ERROR) {
		*err = msg.err;
		return -1;
	}
	return error_set(err, AEGIS_E_SETUP, 0, "%s: its builder ended without an answer (wait status %d)", what,
			 status);
}
