/* aegis.h — the public interface of libaegis, the sandbox engine.
 *
 * One call runs one command in a fresh, disposable sandbox:
 *   struct aegis_spec spec = AEGIS_SPEC_DEFAULT;  spec.argv = argv;
 *   aegis_run(&spec, &result, &err);
 * Front ends (CLI, daemon, MCP) only build specs and read results. */
#ifndef AEGIS_AEGIS_H
#define AEGIS_AEGIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AEGIS_VERSION "0.1.0"

enum aegis_errc {
	AEGIS_OK = 0,
	AEGIS_E_INVALID,	/* the spec or a flag is wrong */
	AEGIS_E_SETUP,		/* building the sandbox failed */
	AEGIS_E_UNSUPPORTED,	/* the host lacks a required feature */
	AEGIS_E_NOTFOUND,	/* the command does not exist (exit 127) */
	AEGIS_E_NOEXEC,		/* the command cannot be executed (exit 126) */
};

struct aegis_error {
	enum aegis_errc code;
	int sys_errno;
	char msg[256];
};

/* Resource limits of one sandbox. Where 0 means "none" it says so. */
struct aegis_limits {
	uint64_t wall_ms;	/* wall-clock time; 0: none */
	uint64_t cpu_ms;	/* total CPU time of everything in the sandbox; 0: none */
	uint32_t cpus_milli;	/* CPU bandwidth in thousandths of a CPU; 0: none */
	uint64_t memory_bytes;	/* cgroup memory, no swap */
	uint64_t pids;		/* processes and threads */
	uint64_t disk_bytes;	/* each writable layer: /tmp, an ephemeral /workspace, overlay upper */
	uint64_t output_bytes;	/* per stream (stdout, stderr); the rest is cut and flagged */
	uint64_t nofile;	/* RLIMIT_NOFILE */
	uint64_t execs;		/* execve calls in the run; 0: none */
};

#define AEGIS_LIMITS_DEFAULT { \
	.memory_bytes = 1ULL << 30, .pids = 512, .disk_bytes = 256ULL << 20, \
	.output_bytes = 16ULL << 20, .nofile = 1024 }

/* Bit per limit, for "which limits did this policy set". */
enum aegis_limit_bit {
	AEGIS_LIMIT_WALL = 1 << 0, AEGIS_LIMIT_CPU = 1 << 1, AEGIS_LIMIT_CPUS = 1 << 2,
	AEGIS_LIMIT_MEMORY = 1 << 3, AEGIS_LIMIT_PIDS = 1 << 4, AEGIS_LIMIT_DISK = 1 << 5,
	AEGIS_LIMIT_OUTPUT = 1 << 6, AEGIS_LIMIT_NOFILE = 1 << 7, AEGIS_LIMIT_EXECS = 1 << 8,
};

/* The policy part of a spec (DESIGN.md §2). Lists are NULL-terminated and
 * NULL when absent. Paths are paths inside the sandbox. */
struct aegis_policy {
	char *name;			/* "default", "strict" or the file it came from */
	char **cmd_allow;		/* executables (paths or globs); NULL: no allowlist */
	char **cmd_deny;		/* executables refused even if allowed */
	char **argv_deny;		/* argv prefixes refused at exec, e.g. "git push" */
	char **files_read;		/* readable paths (besides the system dirs) */
	char **files_write;		/* writable paths */
	char **files_deny;		/* hidden paths */
	char *net_mode;			/* "none" (default), "allow" (egress proxy) or "host" */
	char **net_allow;		/* allow mode: rules (docs/network.md), e.g. "*.github.com:443" */
	char **net_deny;		/* rules refused even when allowed */
	char **net_hosts;		/* "name=ip" entries the proxy resolves itself */
	bool best_effort;		/* "enforcement": "best-effort" */
	struct aegis_limits limits;	/* those named in limits_set */
	uint32_t limits_set;		/* enum aegis_limit_bit */
};

/* Where a run's sandbox lives. */
enum aegis_backend {
	AEGIS_BACKEND_NS = 0,	/* namespaces on the host's kernel (default) */
	AEGIS_BACKEND_VM,	/* the same engine inside a QEMU microvm guest (docs/vm.md) */
};

/* Defaults are safe: no network, bounded memory, pids, disk and output. */
struct aegis_spec {
	enum aegis_backend backend;
	char *const *argv;		/* command and arguments; argv[0] resolved on PATH */
	char *const *env;		/* extra "K=V" entries over the clean default env */
	/* "NAME=value" secrets, given to the command like env but written
	 * nowhere: the audit log (a secret.use event) and result.json get the
	 * names only; the run's stdout and stderr have the values redacted */
	char *const *secret_env;
	/* "NAME=value" secrets given as files instead: /run/secrets/NAME, mode
	 * 0400, owned by the command's user, on a tmpfs of their own that is
	 * read-only before the command starts; no host disk file, no argv,
	 * names only in the audit log and result.json, values redacted from
	 * the output as for secret_env. NAME as for the store
	 * (^[A-Za-z_][A-Za-z0-9_]{0,127}$), each once. NULL or empty: no
	 * /run/secrets at all */
	char *const *secret_files;
	/* An OCI image as the root instead of the host's directories: its
	 * unpacked layers (absolute host paths, bottom first, NULL-terminated)
	 * under a per-run writable layer of limits.disk_bytes; NULL: the host
	 * image. ref and digest go to the audit log and result.json. */
	char *const *image_layers;
	const char *image_ref;
	const char *image_digest;
	const char *cwd;		/* inside the sandbox; default /workspace */
	const char *workspace;		/* host dir bind-mounted at /workspace; NULL: empty tmpfs */
	/* > 0: that directory, opened and checked by the caller (a named
	 * workspace: reached through no symlink, held for the run); it is what
	 * gets mounted, and workspace is only its name in records */
	int workspace_fd;
	const char *workspace_name;	/* a named workspace's name: recorded, so a replay uses it again */
	bool workspace_ro;
	bool workspace_overlay;		/* copy-on-write over workspace; changes go to artifacts_dir */
	struct aegis_limits limits;
	const struct aegis_policy *policy;	/* NULL: the built-in default */
	const char *audit_path;		/* append the run's audit events here; NULL: none */
	const char *artifacts_dir;	/* stdout, stderr, result.json, audit.jsonl, changes; NULL: none */
	bool capture;			/* capture stdout/stderr into the result instead of passing them */
	int out_fd, err_fd;		/* where passed output goes; 0 means 1 and 2 */
	bool freezable;			/* join the freezer (v1) so the run can be paused */
	/* > 0: a listening SOCK_SEQPACKET socket for exec requests into the
	 * running sandbox (docs/api: the exec control protocol); 0: none */
	int control_fd;
	size_t capture_max;		/* bytes kept per stream when capturing */
	const char *cgroup_parent;	/* cgroup under which the run's cgroup is made; NULL: default */
	const char *hostname;
	/* Allow mode, internal: the engine inside a vm guest sets it, no flag
	 * or policy key reaches it. "ADDRESS:PORT" (numeric): the sandbox's
	 * 127.0.0.1:3128 is relayed there, in the supervisor's own network
	 * namespace, instead of being served by a proxy here; that upstream
	 * (the host's proxy) checks the rules and audits. NULL: the proxy. */
	const char *net_upstream;
	/* NULL, or called once in the caller's thread when the command has
	 * been started: the ns backend once its sandbox is let go, the vm
	 * backend once the guest's engine runs it (a boot, or building a
	 * snapshot first, can take seconds before that). An instance's shim
	 * tells aegisd: the instance is "running" (not "starting") and its
	 * idle clock runs only from then. */
	void (*on_started)(void *arg);
	void *on_started_arg;
};

#define AEGIS_SPEC_DEFAULT { \
	.cwd = "/workspace", .limits = AEGIS_LIMITS_DEFAULT, \
	.capture_max = 1 << 20, .hostname = "aegis" }

enum aegis_end {
	AEGIS_END_EXITED,	/* exit_code is the command's status */
	AEGIS_END_SIGNALED,	/* killed by term_signal; exit_code 128+N */
	AEGIS_END_TIMEOUT,	/* wall-clock limit; exit_code 124 */
	AEGIS_END_LIMIT,	/* another limit stopped the sandbox; exit_code 137 */
};

struct aegis_stream {
	char *data;		/* malloc'd, NUL-terminated; NULL unless captured */
	size_t len;
	bool truncated;
};

struct aegis_result {
	enum aegis_end end;
	int exit_code;		/* what `aegis run` exits with */
	int term_signal;
	uint64_t wall_us, user_us, sys_us;
	uint64_t peak_memory_bytes;
	uint64_t execs;			/* execve calls seen */
	const char *unenforced;		/* best-effort policy: rules the kernel could not enforce */
	const char *cgroup_mode;	/* "v1" or "v2" */
	const char *limit;		/* first limit hit: timeout, oom, pids, disk_full,
					 * output_truncated, execs, cpu; NULL if none */
	struct aegis_stream out, err;
	/* backend vm: how the guest ran (vm_kernel is "" for the ns backend) */
	bool vm_kvm;			/* KVM; false: TCG, a test mode */
	uint64_t vm_boot_us;		/* QEMU start to the guest's greeting */
	char vm_kernel[64];		/* the guest kernel's release */
	bool vm_restored;		/* started from a snapshot; false: booted cold */
	uint64_t vm_restore_us;		/* restored: QEMU start to the guest running */
	uint64_t vm_snapshot_build_us;	/* this run built the snapshot first (0: it did not) */
	bool vm_image_erofs;		/* the image root was an EROFS block image */
	uint64_t vm_image_build_us;	/* this run built that image first (0: cached) */
	uint64_t vm_guest_setup_us;	/* the guest's request to its engine started (clock, seed, shares) */
	char vm_start_why[256];		/* cold although snapshots are on: why */
	char vm_net_error[200];		/* --net allow: why the network channel ended early, or "" */
};

/* spec.backend AEGIS_BACKEND_VM runs the same spec in a guest (docs/vm.md). */
int aegis_run(const struct aegis_spec *spec, struct aegis_result *result,
	      struct aegis_error *err);
void aegis_result_free(struct aegis_result *result);

/* Apply the changes of an overlay run (its --artifacts DIR) to the host
 * workspace: all of them or, if any no longer applies cleanly, none. */
struct aegis_apply_report {
	size_t applied;
	char *workspace;	/* malloc'd */
};
int aegis_apply(const char *artifacts_dir, struct aegis_apply_report *report, struct aegis_error *err);

/* Runs are named by their supervisor's pid and the spec.cgroup_parent they
 * were started with (NULL: the default). */

/* Pause (freeze) or resume a run; it must have been started with
 * spec.freezable. Memory is kept, no CPU is used. */
int aegis_freeze_run(int supervisor_pid, const char *cgroup_parent, bool frozen, struct aegis_error *err);

/* cgroup v1: freeze an empty cgroup beside the runs and leave it so. The
 * kernel's freezer switch then stays on, and pausing or resuming a run
 * costs microseconds instead of a switch flip (~1.2 ms) each time. Best
 * effort: without it pauses still work, only slower. It is left in place
 * when the daemon stops: another daemon may count on the same one. */
void aegis_freezer_anchor(const char *cgroup_parent);

/* Remove the run cgroup a killed supervisor (pid) left behind, once empty. */
void aegis_cleanup_killed_run(int supervisor_pid, const char *cgroup_parent);

/* What a running run uses now, from its cgroup. */
struct aegis_usage {
	uint64_t memory_bytes;		/* charged to it now (page cache included) */
	uint64_t memory_peak_bytes;
	uint64_t cpu_us;		/* CPU time since it started */
	uint64_t pids;			/* tasks now */
};
/* -1 when the run (by its supervisor's pid) has no cgroup (ended). */
int aegis_run_usage(int supervisor_pid, const char *cgroup_parent, struct aegis_usage *usage);

/* What this host supports; filled by aegis_doctor(). */
struct aegis_host {
	bool userns;			/* unprivileged or root user namespaces work */
	int max_user_namespaces;
	const char *cgroup_version;	/* "v2", "v1" or "none" */
	char cgroup_controllers[128];	/* usable controllers, space separated */
	bool cgroup_writable;		/* this user can create run cgroups */
	int landlock_abi;		/* 0: none */
	bool seccomp_filter;
	bool seccomp_notify;
	bool overlayfs;
	bool idmapped_mounts;
	bool rootless;
};

void aegis_doctor(struct aegis_host *host);

#endif
