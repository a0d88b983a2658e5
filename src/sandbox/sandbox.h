/* sandbox.h — internal interface between the engine's mechanisms.
 *
 * One file per kernel mechanism (nsjail's layout); spawn.c lists the order
 * in which they are applied. Child-side functions run between clone and
 * exec: they never exit on error, they fill the error and return -1. */
#ifndef AEGIS_SANDBOX_H
#define AEGIS_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>

#include <aegis/aegis.h>

/* Everything the child needs, computed by the parent before clone. */
struct sandbox_ctx {
	const struct aegis_spec *spec;
	char **envp;		/* final environment of the command */
	int sync_fd;		/* SOCK_SEQPACKET to the supervisor */
	int workspace_fd;	/* detached (idmapped) tree for /workspace, or -1 */
	uid_t host_uid;		/* what sandbox root maps to on the host */
	gid_t host_gid;
};

/* sync.c — messages from the sandbox to the supervisor. */
enum sync_kind { SYNC_GO = 1, SYNC_ERROR, SYNC_EXIT };
struct sync_msg {
	enum sync_kind kind;
	int wait_status;		/* SYNC_EXIT: the command's wait status */
	struct aegis_error err;		/* SYNC_ERROR */
};
int sync_send(int fd, const struct sync_msg *msg);
int sync_recv(int fd, struct sync_msg *msg);	/* 1 got one, 0 EOF, -1 error */

/* userns.c */
void userns_host_ids(uid_t *uid, gid_t *gid);
int userns_write_maps(pid_t pid, uid_t host_uid, gid_t host_gid, struct aegis_error *err);
int userns_idmap_fd(uid_t from_uid, gid_t from_gid, uid_t to_uid, gid_t to_gid,
		    struct aegis_error *err);

/* cgroup.c — one interface over cgroup v1 and v2. */
struct cgroup {
	int version;		/* 1 or 2 */
	char rel[256];		/* path below the hierarchy root, e.g. /aegis/run-123 */
	int dirfd;		/* v2: the run's cgroup dir (for CLONE_INTO_CGROUP) */
	bool created;
};
int cgroup_version(void);
int cgroup_create(struct cgroup *cg, const struct aegis_spec *spec, struct aegis_error *err);
int cgroup_enter(struct cgroup *cg, pid_t pid, struct aegis_error *err);
uint64_t cgroup_peak_memory(struct cgroup *cg);
bool cgroup_oom_killed(struct cgroup *cg);
void cgroup_destroy(struct cgroup *cg);
bool cgroup_can_create(const char *parent, char *controllers, size_t len);

/* rootfs.c — the sandbox's own root: host image, /etc, /tmp, /workspace. */
int rootfs_build(const struct sandbox_ctx *ctx, struct aegis_error *err);

/* procfs.c, devfs.c — run inside rootfs_build, paths relative to the new root. */
int procfs_mount(const char *root, struct aegis_error *err);
int devfs_mount(const char *root, struct aegis_error *err);

/* mounts.c — small wrappers that carry context into errors. */
int mounts_bind(const char *src, const char *dst, bool rdonly, struct aegis_error *err);
int mounts_tmpfs(const char *dst, const char *opts, unsigned long flags, struct aegis_error *err);
int mounts_setattr(const char *path, uint64_t set, bool recursive, struct aegis_error *err);
int mounts_mkdir(const char *path, struct aegis_error *err);
int mounts_touch(const char *path, struct aegis_error *err);

/* netns.c — made by a helper in parallel with the root filesystem. */
struct netns_prep {
	pid_t pid;
	int pidfd, ready_fd, release_fd;
};
int netns_prepare(struct netns_prep *prep, struct aegis_error *err);
int netns_join(struct netns_prep *prep, struct aegis_error *err);

/* caps.c */
int caps_drop_all(struct aegis_error *err);

/* seccomp.c */
int seccomp_apply(struct aegis_error *err);

/* command.c — start the command from PID 1; -1 with *err an errno. */
pid_t command_start(const struct sandbox_ctx *ctx, const sigset_t *mask, int *err);

/* harness.c — PID 1 inside the sandbox. Never returns. */
__attribute__((noreturn)) void harness_run(const struct sandbox_ctx *ctx);

/* env.c */
char **env_build(const struct aegis_spec *spec, struct aegis_error *err);
void env_free(char **envp);

/* supervise.c — the parent side after clone. */
struct supervise_io {
	int out_fd, err_fd;	/* read ends of capture pipes, or -1 */
};
int supervise(pid_t pid, int pidfd, int sync_fd, const struct aegis_spec *spec,
	      struct supervise_io *io, struct aegis_result *res, struct aegis_error *err);

#endif
