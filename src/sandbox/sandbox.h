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
#include <pthread.h>
#include <sys/types.h>

#include <aegis/aegis.h>

/* Everything the child needs, computed by the parent before clone. */
struct sandbox_ctx {
	const struct aegis_spec *spec;
	char **envp;		/* final environment of the command */
	int sync_fd;		/* SOCK_SEQPACKET to the supervisor */
	int workspace_fd;	/* detached (idmapped) tree for /workspace, or -1 */
	int *layer_fds;		/* root: an image's layers as idmapped trees; NULL rootless */
	int image_root_fd;	/* vm guest: the image's root, built by the guest's root; else -1 */
	int overlay_tree_fd;	/* vm guest: the overlay workspace, built by the guest's root; else -1 */
	int landlock_abi;	/* 0: no landlock rules to apply */
	enum net_mode { NET_NONE, NET_ALLOW, NET_HOST } net;
	uid_t host_uid;		/* what sandbox root maps to on the host */
	gid_t host_gid;
};

/* sync.c — messages between the sandbox's PID 1 and its supervisor.
 * SYNC_EXEC* are the exec protocol: the supervisor asks PID 1 to start a
 * command beside the main one (payload: struct exec_wire and strings,
 * descriptors: its stdin, stdout, stderr); PID 1 answers STARTED (err set
 * if it could not) and, when reaped, EXEC_EXIT. */
enum sync_kind { SYNC_GO = 1, SYNC_ERROR, SYNC_EXIT, SYNC_LIMIT, SYNC_LISTENER, SYNC_UPPER, SYNC_PROXY,
		 SYNC_EXEC, SYNC_EXEC_STARTED, SYNC_EXEC_EXIT, SYNC_EXEC_SIGNAL,
		 /* a TCP connection to 127.0.0.1:port inside (wait_status: the
		  * port); CONNECTED answers with it, or wait_status an errno */
		 SYNC_CONNECT, SYNC_CONNECTED };
struct sync_msg {
	enum sync_kind kind;
	int wait_status;		/* SYNC_EXIT, SYNC_EXEC_EXIT: wait status; EXEC_SIGNAL: the signal */
	uint32_t exec_id;		/* SYNC_EXEC*: which exec */
	uint32_t payload_len;		/* bytes after the struct in the same message */
	char limit[16];			/* SYNC_LIMIT, SYNC_EXIT: a limit PID 1 saw, e.g. disk_full */
	struct aegis_error err;		/* SYNC_ERROR */
};
int sync_send(int fd, const struct sync_msg *msg);
int sync_recv(int fd, struct sync_msg *msg);	/* 1 got one, 0 EOF, -1 error */
int sync_send_fd(int fd, const struct sync_msg *msg, int passed);
int sync_recv_fd(int fd, struct sync_msg *msg, int *passed);	/* *passed -1 if none */
/* A message with a payload and up to SYNC_FDS_MAX descriptors. */
#define SYNC_FDS_MAX 3
#define SYNC_PAYLOAD_MAX (64 * 1024)
int sync_sendv(int fd, const struct sync_msg *msg, const void *payload, const int *fds, int nfds);
/* 1 got one (payload NUL-terminated in buf, fds[] -1 where none), 0 EOF, -1 error */
int sync_recvv(int fd, struct sync_msg *msg, char *buf, size_t cap, int fds[SYNC_FDS_MAX]);

/* What an exec asks PID 1 for; followed by cwd, argv[], env[] as
 * NUL-terminated strings. */
struct exec_wire {
	uint32_t argc, envc;
	uint32_t tty;			/* make stdin the controlling terminal */
};

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
	const char *v1[5];	/* v1: the hierarchies the run joined */
	int nv1;
};
int cgroup_version(void);
int cgroup_create(struct cgroup *cg, const struct aegis_spec *spec, struct aegis_error *err);
int cgroup_enter(struct cgroup *cg, pid_t pid, struct aegis_error *err);
uint64_t cgroup_peak_memory(struct cgroup *cg);
bool cgroup_oom_killed(struct cgroup *cg);
bool cgroup_pids_hit(struct cgroup *cg);
uint64_t cgroup_memory_current(struct cgroup *cg);
struct memory_sample;
void cgroup_memory_sample(struct cgroup *cg, struct memory_sample *s);
uint64_t cgroup_cpu_usage_us(struct cgroup *cg);
void cgroup_destroy(struct cgroup *cg);
bool cgroup_can_create(const char *parent, char *controllers, size_t len);

/* rootfs.c — the sandbox's own root: host image, /etc, /tmp, /workspace. */
int rootfs_build(const struct sandbox_ctx *ctx, int *upper_fd, struct aegis_error *err);
/* What the host image takes from the host: system directories (usr, bin,
 * ...) and the /etc allowlist, NULL-terminated names. The vm backend
 * exports exactly these to its guest (src/vm/shares.c). */
extern const char *const rootfs_host_dirs[];
extern const char *const rootfs_etc_allow[];
/* The /etc files that describe the sandbox itself, written per run. */
extern const char *const rootfs_etc_identity[];
/* aegis-guest calls this once before aegis_run: the engine then runs as
 * PID 1's child in a vm-backend guest, where the workspace is a 9p share
 * (no idmapped mounts): sandbox root is mapped straight to the workspace
 * owner's uid and gid instead, which is what the idmapped mount shows the
 * sandbox on the host. */
void sandbox_in_vm_guest(void);
bool sandbox_is_vm_guest(void);

/* imageroot.c — an OCI image's layers as the root (spec.image_layers). */
size_t imageroot_count(const struct aegis_spec *spec);
/* Root, before clone: the layers as idmapped trees into fds[count]. */
int imageroot_prepare(const struct sandbox_ctx *ctx, int *fds, struct aegis_error *err);
/* vm guest, as its root, before clone: the image's root (its overlays
 * and real_dirs replaced) as a detached tree into *root_fd. */
int imageroot_prepare_guest(const struct sandbox_ctx *ctx, int *root_fd, struct aegis_error *err);
/* In the child: the overlay root assembled on a tmpfs at stage (or, in a
 * vm guest, ctx->image_root_fd attached there); cwd is the new root
 * afterwards, its mount points real directories. */
int imageroot_build(const struct sandbox_ctx *ctx, const char *stage, struct aegis_error *err);

/* overlay.c — a copy-on-write workspace; *layer_fd: its upper dir (O_PATH). */
int overlay_mount(const struct sandbox_ctx *ctx, int lower_tree, const char *target, int *layer_fd,
		  struct aegis_error *err);
/* vm guest, as its root, before clone: the overlay workspace as a detached
 * tree into *tree_fd, its upper dir (O_PATH) into *layer_fd; the upper
 * layer's marks are then OVERLAY_TRUSTED_OPAQUE, not user.overlay.*. */
int overlay_prepare_guest(const struct sandbox_ctx *ctx, int *tree_fd, int *layer_fd, struct aegis_error *err);
/* In the child, instead of overlay_mount: that tree attached at target. */
int overlay_attach(const struct sandbox_ctx *ctx, const char *target, struct aegis_error *err);
#define OVERLAY_USER_OPAQUE "user.overlay.opaque"
#define OVERLAY_TRUSTED_OPAQUE "trusted.overlay.opaque"

/* guestbuild.c — vm guest, as its root, before clone: build() run in a
 * helper with a mount namespace of its own, its nfds descriptors (at most
 * SYNC_FDS_MAX) handed back into fds[]; what prefixes the errors. */
int guestbuild_run(const struct sandbox_ctx *ctx, const char *what,
		   int (*build)(const struct sandbox_ctx *, int *, struct aegis_error *), int *fds, int nfds,
		   struct aegis_error *err);
/* The options of an overlay the guest's root mounts for the sandbox, on
 * top of its layers: every feature that would make it behave otherwise
 * than the ns backend's userxattr overlay off, by name rather than by the
 * kernel's defaults: redirect_dir (a directory of a lower layer renamed
 * gives EXDEV, as there; nofollow: no redirect in a layer is followed
 * either), index, metacopy. */
#define GUESTBUILD_OVERLAY_OPTS "redirect_dir=nofollow,index=off,metacopy=off"
/* Hide the policy's denied commands and files.deny (after pivot). */
int rootfs_hide(const struct aegis_policy *p, struct aegis_error *err);

/* secretfs.c — spec.secret_files at /run/secrets. check: the names are
 * safe as file names and given once (before clone); mount: relative to the
 * root being built, read-only once written. */
int secretfs_check(char *const *files, struct aegis_error *err);
int secretfs_mount(const char *root, char *const *files, struct aegis_error *err);

/* procfs.c, devfs.c — run inside rootfs_build, paths relative to the new root. */
int procfs_mount(const char *root, struct aegis_error *err);
int procfs_seal(bool own_netns, struct aegis_error *err);
int devfs_mount(const char *root, struct aegis_error *err);

/* mounts.c — small wrappers that carry context into errors. */
int mounts_bind(const char *src, const char *dst, bool rdonly, struct aegis_error *err);
int mounts_tmpfs(const char *dst, const char *opts, unsigned long flags, struct aegis_error *err);
int mounts_setattr(const char *path, uint64_t set, bool recursive, struct aegis_error *err);
int mounts_mkdir(const char *path, struct aegis_error *err);
int mounts_touch(const char *path, struct aegis_error *err);

/* netns.c — made by a helper in parallel with the root filesystem, or
 * by PID 1 itself (in_place) when there is one CPU to run on. */
struct netns_prep {
	bool in_place;
	pid_t pid;
	int pidfd, ready_fd, release_fd;
};
int netns_prepare(struct netns_prep *prep, struct aegis_error *err);
int netns_join(struct netns_prep *prep, struct aegis_error *err);
/* allow mode: the proxy's listening socket, 127.0.0.1:PROXY_PORT inside. */
int netns_proxy_listener(struct aegis_error *err);
enum net_mode netns_mode(const struct aegis_policy *policy);

/* caps.c */
int caps_drop_all(struct aegis_error *err);

/* landlock.c — command and file rules. */
int landlock_abi(void);
bool landlock_needed(const struct aegis_policy *p);
int landlock_apply(const struct aegis_policy *p, int abi, struct aegis_error *err);

/* seccomp.c */
int seccomp_apply(struct aegis_error *err);
int seccomp_exec_listener(struct aegis_error *err);

/* execwatch.c — the supervisor's side of the exec listener. */
struct record;
struct execwatch {
	int fd;				/* listener, -1 until PID 1 sends it */
	uint64_t count;			/* execs seen */
	const struct aegis_spec *spec;
	struct record *rec;
};
/* Answer one exec; returns "execs" when that limit was hit, else NULL. */
const char *execwatch_handle(struct execwatch *w);

/* command.c — start a command from PID 1: the main one, or an exec.
 * -1 with *err an errno and *step the step that failed. */
struct launch {
	char *const *argv;
	char *const *envp;
	const char *cwd;	/* chdir here first; NULL: stay */
	int stdio[3];		/* an exec's stdin, stdout, stderr; -1: inherit ours */
	bool tty;		/* stdin is a terminal: make it the controlling one */
};
enum { LAUNCH_EXEC, LAUNCH_CHDIR };
pid_t command_launch(const struct launch *l, const sigset_t *mask, int *err, int *step);

/* harness.c — PID 1 inside the sandbox. Never returns. */
__attribute__((noreturn)) void harness_run(const struct sandbox_ctx *ctx);

/* env.c */
char **env_build(const struct aegis_spec *spec, struct aegis_error *err);
void env_free(char **envp);

struct record;

/* manifest.c — stat snapshots of a host workspace (rw-mode change lists). */
struct manifest_entry {
	char *path;		/* relative to the workspace */
	uint64_t size, ino;
	int64_t mtime_s, mtime_ns;
	uint32_t mode;
};
struct manifest {
	struct manifest_entry *e;
	size_t n, cap;
	bool complete;		/* false: too many entries, or unreadable parts */
};
void manifest_take(struct manifest *m, int root);
void manifest_diff(const struct manifest *before, const struct manifest *after,
		   void (*report)(void *arg, const struct manifest_entry *e, const char *kind), void *arg);
void manifest_free(struct manifest *m);

/* artifacts.c — what a run leaves in --artifacts DIR. */
struct artifacts {
	int dirfd;		/* DIR */
	int out_fd, err_fd;	/* DIR/stdout, DIR/stderr */
	int upper_fd;		/* overlay upper layer, handed over by PID 1 (or the vm guest's builder) */
	const char *opaque_xattr;	/* OVERLAY_USER_OPAQUE, or _TRUSTED_ for the guest builder's */
	int ws_fd;		/* rw mode: the host workspace */
	struct manifest before;	/* rw mode: the workspace before the run */
};
int artifacts_open(const struct aegis_spec *spec, struct artifacts *a, struct aegis_error *err);
int artifacts_finish(const struct aegis_spec *spec, const struct aegis_result *res,
		     struct artifacts *a, struct record *rec, struct aegis_error *err);
void artifacts_close(struct artifacts *a);

/* thrash.c — a run at its memory limit that lives on re-reading what
 * reclaim took, counted as out of memory. */
struct memory_sample {
	uint64_t at_us;		/* when it was taken */
	uint64_t current;	/* bytes charged to the run */
	uint64_t file_lru;	/* bytes of page cache it could give back */
	uint64_t refault_bytes;	/* re-read soon after eviction, in total */
	uint64_t full_stall_us;	/* v2: all its tasks waited on memory, in total; 0 on v1 */
};
struct thrash_watch {
	uint64_t next_us;	/* when to look again */
	struct memory_sample last;
	bool have_last;
	unsigned windows;	/* thrashing windows in a row */
};
bool thrash_near_limit(uint64_t current, uint64_t limit);
bool thrash_due(const struct thrash_watch *w, uint64_t now_us);
bool thrash_update(struct thrash_watch *w, const struct memory_sample *now, uint64_t limit);

/* supervise.c — the parent side after clone. */
struct supervise_io {
	int out_fd, err_fd;	/* read ends of the command's stdout and stderr pipes */
};
struct record;
struct net_rules;
/* What a run owns besides the sandbox itself. */
struct run_parts {
	struct cgroup *cg;
	struct record *rec;
	struct artifacts *arts;
	const struct net_rules *rules;	/* allow mode, else NULL */
};
int supervise(pid_t pid, int pidfd, int sync_fd, const struct aegis_spec *spec,
	      struct run_parts *parts, struct supervise_io *io, struct aegis_result *res,
	      struct aegis_error *err);

/* record.c — the run's audit events (nothing when no audit path). */
struct audit_log;
#define RECORD_LOGS 2
struct record {
	struct audit_log *logs[RECORD_LOGS];	/* --audit file, artifacts copy */
	char id[17];		/* random run id, hex */
	pthread_mutex_t lock;	/* proxy threads report connections too */
};
int record_start(struct record *r, const struct aegis_spec *spec, const char *cgroup_mode,
		 struct aegis_error *err);
/* An event from outside the engine (the daemon's: wake, idle pause...);
 * fields (a JSON object) is taken. */
struct json_t;
void record_event(struct record *r, const char *type, struct json_t *fields);
void record_end(struct record *r, const struct aegis_result *res, const struct aegis_error *failure);
void record_exec(struct record *r, int pid, const char *path, char **argv, int argc, const char *rule);
void record_file_change(struct record *r, const char *path, const char *kind, uint64_t size,
			const char *sha256);
#include <jansson.h>
json_t *record_limits_json(const struct aegis_limits *l);
const char *record_workspace_mode(const struct aegis_spec *spec);
/* The secrets a run was given, for secret.use and result.json: names only,
 * and how each was given ({"NAME": "env" | "file"}). */
bool record_has_secrets(const struct aegis_spec *spec);
json_t *record_secret_names(const struct aegis_spec *spec);
json_t *record_secret_as(const struct aegis_spec *spec);
struct proxy_conn_report;
void record_connection(void *record, const struct proxy_conn_report *c);
/* The fields of that net.connect event, for a backend with an audit log of its own (vm). */
json_t *record_connection_json(const char *id, const struct proxy_conn_report *c);

#endif
