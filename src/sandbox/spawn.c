/* spawn.c — aegis_run(): one command in a fresh sandbox, start to end.
 *
 * The two functions that matter read as the ordered list of containment
 * steps: sandbox_child() inside, aegis_run() in the supervisor. Review
 * changes to the order here as a whole. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/mount.h>
#include <linux/sched.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/util.h"
#include "../vm/vm.h"
#include "netrelay.h"
#include "netrules.h"
#include "sandbox.h"

/* clone() makes only the user and pid namespaces; the child unshares the
 * rest itself (they are owned by its user namespace all the same), so the
 * namespaces are built while the supervisor writes the id maps and the
 * cgroup: two cores, half the wait. The network namespace comes from a
 * helper, in parallel with the root filesystem (netns.c). */
#define CLONE_NAMESPACES (CLONE_NEWUSER | CLONE_NEWPID)
#define CHILD_NAMESPACES (CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)

/* Keep the sync channel as fd 3 and close every other descriptor: nothing
 * of the supervisor's (cgroup dirs, workspace tree, host files) crosses. */
static int close_fds(struct sandbox_ctx *ctx, struct aegis_error *err)
{
	if (ctx->sync_fd != 3) {
		if (dup3(ctx->sync_fd, 3, O_CLOEXEC) < 0)
			return error_sys(err, "dup sync channel");
		ctx->sync_fd = 3;
	}
	if (syscall(SYS_close_range, 4, ~0U, 0) < 0)
		return error_sys(err, "close_range");
	return 0;
}

/* Give the supervisor a descriptor made in here (fd < 0: making it failed,
 * err says why) and close ours. */
static int hand_over(const struct sandbox_ctx *ctx, enum sync_kind kind, int fd, const char *what,
		     struct aegis_error *err)
{
	struct sync_msg msg = { .kind = kind };
	int r = 0;

	if (fd < 0)
		return -1;
	if (sync_send_fd(ctx->sync_fd, &msg, fd) < 0)
		r = error_sys(err, "hand %s to the supervisor", what);
	close(fd);
	return r;
}

static bool supervisor_gone(int sync_fd)
{
	struct pollfd p = { .fd = sync_fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) != 0;
}

/* Inside the new namespaces, between clone and the command. */
__attribute__((noreturn)) static void sandbox_child(struct sandbox_ctx *ctx)
{
	struct sync_msg msg = { 0 };
	struct aegis_error *err = &msg.err;
	struct rlimit no_core = { 0, 0 };
	struct rlimit nofile = { ctx->spec->limits.nofile, ctx->spec->limits.nofile };
	struct netns_prep net;
	int upper = -1;

	/* 0. die with the supervisor: a killed `aegis run` leaves nothing running
	 * (if it is already gone, the sync channel below reads EOF) */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		_exit(125);
	/* 1. mount, ipc and uts namespaces, while the supervisor works */
	if (unshare(CHILD_NAMESPACES) < 0) {
		msg.kind = SYNC_ERROR;
		error_sys(err, "create namespaces");
		goto fail;
	}
	/* wait until the supervisor has mapped our ids and placed us in the cgroup */
	if (sync_recv(ctx->sync_fd, &msg) != 1 || msg.kind != SYNC_GO)
		_exit(125);
	msg.kind = SYNC_ERROR;
	/* 2. become root of the user namespace (an unprivileged uid on the host).
	 * Raw syscalls: glibc's wrappers would apply the change to every thread
	 * it believes we have, and a thread the caller was still starting when
	 * we were cloned would be waited for forever (we are a raw clone). */
	if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0) {
		error_sys(err, "become sandbox root");
		goto fail;
	}
	/* The kernel clears the parent-death signal on a uid change: arm it
	 * again, then make sure the supervisor did not die in between. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || supervisor_gone(ctx->sync_fd))
		_exit(125);
	/* 3. cgroup namespace rooted at the run's own cgroup: no view of the host's tree */
	if (unshare(CLONE_NEWCGROUP) < 0) {
		error_sys(err, "cgroup namespace");
		goto fail;
	}
	/* 4. network namespace with loopback only, made alongside step 6
	 * (none and allow modes; host mode keeps the host's, as asked) */
	if (ctx->net != NET_HOST && netns_prepare(&net, err) < 0)
		goto fail;
	/* 5. own hostname */
	if (sethostname(ctx->spec->hostname, strlen(ctx->spec->hostname)) < 0) {
		error_sys(err, "sethostname");
		goto fail;
	}
	/* 6. own root filesystem, old root detached; denied paths hidden; an
	 * overlay workspace's changes readable by the supervisor */
	if (rootfs_build(ctx, &upper, err) < 0 || rootfs_hide(ctx->spec->policy, err) < 0)
		goto fail;
	if (upper >= 0 && hand_over(ctx, SYNC_UPPER, upper, "the overlay layer", err) < 0)
		goto fail;
	if (ctx->net != NET_HOST && netns_join(&net, err) < 0)
		goto fail;
	/* low ports open in our own network namespace; /proc/sys read-only */
	if (procfs_seal(ctx->net != NET_HOST, err) < 0)
		goto fail;
	/* allow mode: the supervisor's proxy listens inside our namespace */
	if (ctx->net == NET_ALLOW &&
	    hand_over(ctx, SYNC_PROXY, netns_proxy_listener(err), "the proxy socket", err) < 0)
		goto fail;
	if (ctx->workspace_fd >= 0)
		close(ctx->workspace_fd);
	/* 7. new session: no controlling terminal to inject keystrokes into */
	if (setsid() < 0) {
		error_sys(err, "setsid");
		goto fail;
	}
	/* 8. no core dumps leave the sandbox's memory on disk; bounded fds */
	if (setrlimit(RLIMIT_CORE, &no_core) < 0) {
		error_sys(err, "RLIMIT_CORE");
		goto fail;
	}
	if (setrlimit(RLIMIT_NOFILE, &nofile) < 0) {
		error_sys(err, "RLIMIT_NOFILE %llu", (unsigned long long)nofile.rlim_max);
		goto fail;
	}
	/* 9. no capabilities, and nothing (setuid, file caps) can give any back */
	if (caps_drop_all(err) < 0)
		goto fail;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		error_sys(err, "no_new_privs");
		goto fail;
	}
	/* 10. the policy's command and file rules, in the kernel */
	if (ctx->landlock_abi && landlock_apply(ctx->spec->policy, ctx->landlock_abi, err) < 0)
		goto fail;
	/* 11. only 0, 1, 2 (and our sync channel, close-on-exec) stay open */
	if (close_fds(ctx, err) < 0)
		goto fail;
	/* 12. seccomp last: everything above needed syscalls it refuses; then
	 * every exec waits for the supervisor's exec watcher */
	if (seccomp_apply(err) < 0)
		goto fail;
	if (hand_over(ctx, SYNC_LISTENER, seccomp_exec_listener(err), "the exec watch", err) < 0)
		goto fail;
	/* 13. PID 1 runs the command */
	harness_run(ctx);
fail:
	sync_send(ctx->sync_fd, &msg);
	_exit(125);
}

static int check_spec(const struct aegis_spec *spec, struct aegis_error *err)
{
	struct stat st;

	if (!spec->argv || !spec->argv[0] || !spec->argv[0][0])
		return error_set(err, AEGIS_E_INVALID, 0, "no command given");
	if (!spec->cwd || spec->cwd[0] != '/')
		return error_set(err, AEGIS_E_INVALID, 0, "cwd must be an absolute path inside the sandbox: %s",
				 spec->cwd ? spec->cwd : "(none)");
	if (strncmp(spec->cwd, "/proc", 5) == 0 && (spec->cwd[5] == '/' || !spec->cwd[5]))
		return error_set(err, AEGIS_E_INVALID, 0, "cwd may not be under /proc: %s", spec->cwd);
	if (spec->limits.memory_bytes < (4u << 20))
		return error_set(err, AEGIS_E_INVALID, 0, "memory limit below 4 MiB");
	if (spec->limits.pids < 2)
		return error_set(err, AEGIS_E_INVALID, 0, "pids limit must be at least 2");
	if (spec->limits.nofile < 16 || spec->limits.nofile > (1 << 20))
		return error_set(err, AEGIS_E_INVALID, 0, "nofile limit must be between 16 and 1048576");
	if (spec->limits.output_bytes == 0)
		return error_set(err, AEGIS_E_INVALID, 0, "output limit must be positive");
	if (spec->limits.disk_bytes == 0)
		return error_set(err, AEGIS_E_INVALID, 0, "disk limit must be positive");
	if (!spec->hostname || !spec->hostname[0] || strlen(spec->hostname) > 63)
		return error_set(err, AEGIS_E_INVALID, 0, "hostname must be 1 to 63 characters");
	if (secretfs_check(spec->secret_files, err) < 0)
		return -1;
	if (spec->net_upstream) {
		struct sockaddr_storage up;
		socklen_t len;

		if (netns_mode(spec->policy) != NET_ALLOW)
			return error_set(err, AEGIS_E_INVALID, 0, "a net relay needs the allow network mode");
		if (netrelay_parse(spec->net_upstream, &up, &len, err) < 0)
			return -1;
	}
	if (spec->image_layers) {
		if (!spec->image_layers[0])
			return error_set(err, AEGIS_E_INVALID, 0, "an image needs at least one layer");
		for (char *const *l = spec->image_layers; *l; l++)
			if ((*l)[0] != '/')
				return error_set(err, AEGIS_E_INVALID, 0, "image layer paths are absolute: %s", *l);
	}
	if (spec->workspace_overlay && (!spec->workspace || spec->workspace_ro))
		return error_set(err, AEGIS_E_INVALID, 0, "overlay mode needs a read-write host workspace");
	if (spec->workspace_overlay && !spec->artifacts_dir)
		return error_set(err, AEGIS_E_INVALID, 0,
				 "overlay mode needs --artifacts DIR to keep the changes for review");
	if (spec->workspace_fd > 0 && !spec->workspace)
		return error_set(err, AEGIS_E_INVALID, 0, "an opened workspace needs its name (spec.workspace)");
	if (spec->workspace) {
		if ((spec->workspace_fd > 0 ? fstat(spec->workspace_fd, &st) : stat(spec->workspace, &st)) < 0)
			return error_set(err, AEGIS_E_INVALID, errno, "workspace %s", spec->workspace);
		if (!S_ISDIR(st.st_mode))
			return error_set(err, AEGIS_E_INVALID, 0, "workspace %s is not a directory",
					 spec->workspace);
	}
	return 0;
}

/* Run by root, the workspace is attached through an idmapped mount: files
 * owned by the directory's owner appear owned by sandbox root, so the
 * sandbox can work in it while its uid stays unprivileged on the host.
 * (Rootless, a plain bind inside already shows our own uid as root.) */
static int workspace_prepare(const struct sandbox_ctx *ctx, struct aegis_error *err)
{
	const struct aegis_spec *spec = ctx->spec;
	struct mount_attr attr = {
		.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
			    (spec->workspace_ro || spec->workspace_overlay ? MOUNT_ATTR_RDONLY : 0),
	};
	_cleanup_close_ int tree = -1, userns = -1;
	struct stat st;

	/* an opened workspace: exactly that directory, not a path looked up again */
	if (spec->workspace_fd > 0)
		tree = (int)syscall(SYS_open_tree, spec->workspace_fd, "",
				    AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	else
		tree = (int)syscall(SYS_open_tree, AT_FDCWD, spec->workspace,
				    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		return error_sys(err, "workspace %s: open_tree", spec->workspace);
	if (fstat(tree, &st) < 0)
		return error_sys(err, "workspace %s: stat", spec->workspace);
	userns = userns_idmap_fd(st.st_uid, st.st_gid, ctx->host_uid, ctx->host_gid, err);
	if (userns < 0)
		return error_prefix(err, "workspace %s", spec->workspace);
	attr.userns_fd = (uint64_t)userns;
	if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
		return error_sys(err, "workspace %s: idmapped mount (filesystem unsupported?)",
				 spec->workspace);
	return steal_fd(&tree);
}

static bool in_vm_guest;

void sandbox_in_vm_guest(void)
{
	in_vm_guest = true;
}

bool sandbox_is_vm_guest(void)
{
	return in_vm_guest;
}

/* In a vm-backend guest the workspace is a 9p share, which has no
 * idmapped mounts: sandbox root becomes the owner itself (the uid and gid
 * the host's idmapped mount would show it as), and the child mounts the
 * share as a rootless run does. Files it creates get that owner on the
 * host (QEMU's security_model=none applies the guest's ids). */
static int workspace_owner_ids(struct sandbox_ctx *ctx, struct aegis_error *err)
{
	struct stat st;

	if (stat(ctx->spec->workspace, &st) < 0)
		return error_sys(err, "workspace %s", ctx->spec->workspace);
	ctx->host_uid = st.st_uid;
	ctx->host_gid = st.st_gid;
	return 0;
}

static int layers_owner_ids(struct sandbox_ctx *ctx, struct aegis_error *err)
{
	struct stat st;

	if (stat(ctx->spec->image_layers[0], &st) < 0)
		return error_sys(err, "image layer %s", ctx->spec->image_layers[0]);
	ctx->host_uid = st.st_uid;
	ctx->host_gid = st.st_gid;
	return 0;
}

static pid_t clone_sandbox(struct cgroup *cg, int *pidfd)
{
	struct clone_args args = {
		.flags = CLONE_NAMESPACES | CLONE_PIDFD,
		.pidfd = (uint64_t)(uintptr_t)pidfd,
		.exit_signal = SIGCHLD,
	};

	if (cg->version == 2) {
		args.flags |= CLONE_INTO_CGROUP;
		args.cgroup = (uint64_t)cg->dirfd;
	}
	return (pid_t)syscall(SYS_clone3, &args, sizeof args);
}

int aegis_run(const struct aegis_spec *spec, struct aegis_result *res, struct aegis_error *err)
{
	struct sandbox_ctx ctx = { .spec = spec, .workspace_fd = -1, .image_root_fd = -1, .overlay_tree_fd = -1 };
	struct supervise_io io = { -1, -1 };
	struct cgroup cg = { .dirfd = -1 };
	struct record rec;
	struct artifacts arts;
	struct net_rules rules = { 0 };
	bool have_rules = false;
	struct run_parts parts = { .cg = &cg, .rec = &rec, .arts = &arts, .rules = &rules };
	int sv[2] = { -1, -1 }, out[2] = { -1, -1 }, errp[2] = { -1, -1 };
	int pidfd = -1, rc = -1, status;
	sigset_t forward, saved;
	struct rusage ru;
	pid_t pid;

	if (spec->backend == AEGIS_BACKEND_VM)
		return vm_aegis_run(spec, res, err);
	memset(res, 0, sizeof *res);
	if (check_spec(spec, err) < 0)
		return -1;
	/* Root's supplementary groups would follow the sandbox (a user namespace
	 * cannot drop them once setgroups is denied): shed them first. */
	if (geteuid() == 0 && setgroups(0, NULL) < 0)
		return error_sys(err, "drop supplementary groups");
	userns_host_ids(&ctx.host_uid, &ctx.host_gid);
	ctx.net = netns_mode(spec->policy);
	/* A rule the kernel cannot enforce fails the run, unless the policy
	 * says best-effort; then the result says what was not enforced. */
	if (landlock_needed(spec->policy)) {
		ctx.landlock_abi = landlock_abi();
		if (!ctx.landlock_abi && !spec->policy->best_effort)
			return error_set(err, AEGIS_E_UNSUPPORTED, 0,
					 "policy needs landlock for its command/file rules and this kernel has none "
					 "(set \"enforcement\": \"best-effort\" to run without them)");
		if (!ctx.landlock_abi)
			res->unenforced = "commands.allow, files.read, files.write (no landlock)";
	}
	if (!(ctx.envp = env_build(spec, err)))
		return -1;
	/* Nothing runs unless its start is on record. */
	if (artifacts_open(spec, &arts, err) < 0 ||
	    record_start(&rec, spec, cgroup_version() == 2 ? "v2" : "v1", err) < 0) {
		artifacts_close(&arts);
		env_free(ctx.envp);
		return -1;
	}
	/* allow mode: bad rules fail the run before anything starts */
	if (ctx.net == NET_ALLOW) {
		if (netrules_load(spec->policy, &rules, err) < 0)
			goto out;
		have_rules = true;
	}
	/* v2 places the child at clone (CLONE_INTO_CGROUP): the cgroup comes first. */
	if (cgroup_version() == 2 && cgroup_create(&cg, spec, err) < 0)
		goto out;
	if (spec->workspace && geteuid() == 0 && in_vm_guest) {
		if (workspace_owner_ids(&ctx, err) < 0)
			goto out;
	} else if (spec->workspace && geteuid() == 0 && (ctx.workspace_fd = workspace_prepare(&ctx, err)) < 0) {
		goto out;
	}
	/* In a guest an overlay workspace is built by the guest's root too
	 * (guestbuild.c says why), after the owner's ids it gives its upper
	 * layer; the supervisor reads the changes through the builder's fd. */
	if (spec->workspace_overlay && geteuid() == 0 && in_vm_guest) {
		if (overlay_prepare_guest(&ctx, &ctx.overlay_tree_fd, &arts.upper_fd, err) < 0)
			goto out;
		arts.opaque_xattr = OVERLAY_TRUSTED_OPAQUE;
	}
	/* In a guest the image is one EROFS tree the host built (no idmapped
	 * mounts there): without a workspace sandbox root is its files'
	 * owner, as the idmapped mount shows it on the host; with one the
	 * host built it with the workspace's owner as theirs (src/vm/erofs.c),
	 * so they are sandbox root's either way. The guest's root builds the
	 * overlay root (imageroot.c says why), so the ids come first. */
	if (spec->image_layers && geteuid() == 0 && in_vm_guest) {
		if ((!spec->workspace && layers_owner_ids(&ctx, err) < 0) ||
		    imageroot_prepare_guest(&ctx, &ctx.image_root_fd, err) < 0)
			goto out;
	} else if (spec->image_layers && geteuid() == 0) {
		if (!(ctx.layer_fds = calloc(imageroot_count(spec), sizeof *ctx.layer_fds))) {
			error_set(err, AEGIS_E_SETUP, ENOMEM, "image layers");
			goto out;
		}
		if (imageroot_prepare(&ctx, ctx.layer_fds, err) < 0) {
			free(ctx.layer_fds);
			ctx.layer_fds = NULL;
			goto out;
		}
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		error_sys(err, "socketpair");
		goto out;
	}
	/* stdout and stderr always come through us: that is where the output
	 * limit is counted, whether the bytes are passed on or captured. */
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		error_sys(err, "output pipes");
		goto out;
	}
	sigemptyset(&forward);
	for (int s = 1; s < 32; s++)
		if (s == SIGINT || s == SIGTERM || s == SIGHUP || s == SIGQUIT ||
		    s == SIGUSR1 || s == SIGUSR2 || s == SIGWINCH)
			sigaddset(&forward, s);
	sigprocmask(SIG_BLOCK, &forward, &saved);

	pid = clone_sandbox(&cg, &pidfd);
	if (pid == 0) {
		/* The forwarded signals stay blocked until PID 1 reads them from
		 * its signalfd (harness_run): a namespace's PID 1 drops a signal
		 * left at its default action, and the supervisor forwards from the
		 * moment the run counts as started (on_started, right after GO),
		 * while the sandbox is still being built. Unblocked, a SIGTERM in
		 * that window (~0.5 s in a TCG guest) was lost and a stop waited
		 * for its SIGKILL; blocked, it is queued and reaches the command.
		 * The command itself starts with an empty mask (command_launch). */
		close(sv[0]);
		ctx.sync_fd = sv[1];
		if (dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0)
			_exit(125);
		sandbox_child(&ctx);
	}
	if (pid < 0) {
		error_sys(err, "clone into new namespaces");
		goto restore;
	}
	close(sv[1]);
	sv[1] = -1;
	close(out[1]);
	close(errp[1]);
	out[1] = errp[1] = -1;
	io.out_fd = out[0];
	io.err_fd = errp[0];
	out[0] = errp[0] = -1;
	{
		struct sync_msg go = { .kind = SYNC_GO };
		bool v1 = cg.version != 2;
		if ((v1 && cgroup_create(&cg, spec, err) < 0) ||
		    userns_write_maps(pid, ctx.host_uid, ctx.host_gid, err) < 0 ||
		    (v1 && cgroup_enter(&cg, pid, err) < 0) ||
		    (sync_send(sv[0], &go) < 0 && error_sys(err, "start sandbox"))) {
			syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			waitpid(pid, &status, 0);
			goto restore;
		}
	}
	res->cgroup_mode = cg.version == 2 ? "v2" : "v1";
	if (spec->on_started)
		spec->on_started(spec->on_started_arg);
	rc = supervise(pid, pidfd, sv[0], spec, &parts, &io, res, err);
	while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
		;
	res->user_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec;
	res->sys_us = (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
	res->peak_memory_bytes = cgroup_peak_memory(&cg);
	if (!res->peak_memory_bytes)
		res->peak_memory_bytes = (uint64_t)ru.ru_maxrss * 1024u;
restore:
	sigprocmask(SIG_SETMASK, &saved, NULL);
out:
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0) close(sv[i]);
		if (out[i] >= 0) close(out[i]);
		if (errp[i] >= 0) close(errp[i]);
	}
	if (io.out_fd >= 0) close(io.out_fd);
	if (io.err_fd >= 0) close(io.err_fd);
	if (pidfd >= 0) close(pidfd);
	if (ctx.workspace_fd >= 0) close(ctx.workspace_fd);
	if (ctx.image_root_fd >= 0) close(ctx.image_root_fd);
	if (ctx.overlay_tree_fd >= 0) close(ctx.overlay_tree_fd);
	for (size_t i = 0; ctx.layer_fds && i < imageroot_count(spec); i++)
		close(ctx.layer_fds[i]);
	free(ctx.layer_fds);
	cgroup_destroy(&cg);
	env_free(ctx.envp);
	if (rc == 0 && artifacts_finish(spec, res, &arts, &rec, err) < 0)
		rc = -1;
	record_end(&rec, res, rc < 0 ? err : NULL);
	artifacts_close(&arts);
	if (have_rules)
		netrules_free(&rules);
	return rc;
}

void aegis_result_free(struct aegis_result *res)
{
	free(res->out.data);
	free(res->err.data);
	res->out.data = res->err.data = NULL;
}
