/* vm.h — the vm backend: one sandbox per QEMU microvm guest (docs/vm.md).
 *
 * The host half: find the guest kernel and initramfs (scripts/vm-guest.sh),
 * start QEMU with KVM when /dev/kvm works and TCG (a test mode, not a
 * security boundary) otherwise, and speak the exec stream with aegis-guest
 * over a virtio-serial port on a unix socket. */
#ifndef AEGIS_VM_VM_H
#define AEGIS_VM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <aegis/aegis.h>
#include <jansson.h>

#include "../common/error.h"
#include "../sandbox/proxy.h"

/* Where the guest's files are: $AEGIS_VM_DIR, else vm/ beside the aegis binary. */
struct vm_guest {
	char vmlinux[4096];
	char initramfs[4096];
	char release[128];	/* the guest kernel's release, from vm-guest.sh */
};

/* KVM usable: /dev/kvm opens and KVM_GET_API_VERSION answers 12. why: when not. */
bool vm_kvm_usable(char *why, size_t cap);
/* Every guest's machine, CPU model and QEMU seccomp (qemu.c), the KVM
 * trial's too. */
#define VM_QEMU_MACHINE "microvm,x-option-roms=off,pit=off,pic=off"
#define VM_QEMU_CPU(kvm) ((kvm) ? "host" : "max")
#define VM_QEMU_SANDBOX "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
struct vm_guest;
/* kvmtrial.c: boot g's kernel under KVM as a run would, for at most
 * bound_ms: 1 its kernel ran, 0 KVM is unusable (why: QEMU's reason), -1
 * no trial could be made (why). For aegis doctor: a run does not try. */
int vm_kvm_trial(const struct vm_guest *g, unsigned bound_ms, char *why, size_t cap);
/* The guest files found and readable. -1 with err naming what is missing. */
int vm_guest_find(struct vm_guest *g, struct aegis_error *err);
/* The accelerator: $AEGIS_VM_ACCEL auto (default: KVM if usable, else
 * TCG), kvm (fail without it) or tcg (the test mode). -1 with why. */
int vm_accel(bool *kvm, char *why, size_t cap);
/* The QEMU binary on PATH, or NULL. */
const char *vm_qemu_path(void);

/* Where the run's shares are in the guest. The workspace and the
 * artifacts directory are mounted at their host paths (made absolute), so
 * what the engine records (audit, result.json, changes.json) names the
 * host's directories and `aegis apply` works on a vm run's artifacts. */
#define VM_GUEST_IO "/aegis/io"
#define VM_GUEST_AUDIT VM_GUEST_IO "/audit.jsonl"

/* shares.c: one 9p export (tag) of a host directory, mounted at guest. */
struct vm_share {
	char tag[8];
	char host[4200];
	char guest[4096];
	bool ro;
	bool used;		/* mounted by this run's request (the device exists either way) */
};

/* The guest paths of the workspace and artifacts (absolute host paths). */
struct vm_paths {
	char workspace[4096];
	char artifacts[4096];
};

#define VM_SHARES_MAX 8
struct vm_shares {
	struct vm_share s[VM_SHARES_MAX];
	int n;
};

/* The fixed set of shares for spec in the run directory dir (its etc copy,
 * io and empty directories made there). -1 with err. */
int vm_shares_prepare(struct vm_shares *sh, const char *dir, const struct aegis_spec *spec,
		      const struct vm_paths *paths, struct aegis_error *err);
/* The guest paths of spec's workspace and artifacts directory (after the
 * artifacts directory exists). -1 with err for one the guest cannot take. */
int vm_paths_of(struct vm_paths *paths, const struct aegis_spec *spec, struct aegis_error *err);
/* The fixed device set with placeholders for every host directory: the
 * shares as a snapshot's key sees them (they differ per run). */
void vm_shares_placeholders(struct vm_shares *sh);
/* The request's "mounts": the shares this run uses. */
json_t *vm_shares_mounts(const struct vm_shares *sh);
/* rm -r of dirfd/name without following links. */
void vm_remove_tree(int dirfd, const char *name);

/* erofs.c: the guest's one block device, a fixed slot of the machine
 * (a snapshot restores into the same devices): its size never changes,
 * its file does. */
#define VM_SLOT_BYTES (64ULL << 30)
#define VM_GUEST_IMAGE "/aegis/image"	/* where the guest mounts an image's EROFS root */
/* The slot's placeholder, a sparse file of zeros (the template's, and a
 * run's without an image), opened read-only into *fd. -1 with err. */
int vm_slot_placeholder(int *fd, struct aegis_error *err);
/* spec's image as an EROFS root in the slot's size, built on first need
 * and cached in <state>/vm-erofs (a damaged one is rebuilt), opened
 * read-only into *fd; *build_us: how long this call built it (0: cached).
 * -1 with err. */
int vm_erofs_image(const struct aegis_spec *spec, int *fd, uint64_t *build_us, struct aegis_error *err);
/* Under the state dir state: remove each cached EROFS root whose layers
 * the image store no longer has (an image removed, pruned); *freed and
 * *removed grow by what went. -1 (errno) when the cache cannot be read. */
int vm_erofs_sweep(const char *state, uint64_t *freed, size_t *removed);

#define VM_CGROUP_JOIN_MAX 5	/* v1: memory, pids, cpu, freezer, cpuacct */
struct auditrelay;
struct vm_opts {
	const struct aegis_spec *spec;	/* the host's spec (paths are the host's) */
	uint64_t memory_bytes;		/* the VM's RAM */
	unsigned vcpus;
	uint64_t timeout_ms;	/* the host's own deadline, past the engine's; 0: none */
	bool capture;		/* keep stdout/stderr instead of passing them */
	size_t capture_max;
	int out_fd, err_fd;	/* where passed output goes */
	struct vm_shares shares;	/* filled by vm_run once the run directory exists */
	/* The block slot (erofs.c): the template always gets the placeholder,
	 * the run its image's EROFS root (or the placeholder too). */
	int slot_placeholder_fd;
	int slot_image_fd;	/* -1: no image */
	uint64_t image_build_us;	/* this run built the EROFS root (0: cached) */
	struct vm_paths paths;
	/* An instance's run (spec.freezable): the cgroup.procs files QEMU
	 * joins before it execs (hostcg.c); none for a one-shot run. */
	int cgroup_join[VM_CGROUP_JOIN_MAX];
	int ncgroup_join;
	/* --net allow: the egress proxy's rules, and where each connection's
	 * report goes (netproxy.c). NULL rules: the channel's port exists
	 * but nothing serves it. */
	const struct net_rules *net_rules;
	proxy_report_fn net_report;
	void *net_report_arg;
	/* --audit: the engine's events into the host's log as they come
	 * (auditrelay.c); NULL: none kept. */
	struct auditrelay *audit;
};

enum vm_end { VM_EXITED, VM_SIGNALED, VM_TIMEOUT };
enum vm_start { VM_COLD, VM_RESTORE };

struct vm_result {
	enum vm_end end;	/* VM_TIMEOUT: the host's deadline, no RESULT */
	int exit_code;
	int term_signal;
	bool kvm;
	char kernel[128];	/* the guest's uname -r */
	uint64_t boot_us;	/* QEMU start to the guest's greeting (cold) or running again (restore) */
	enum vm_start start;
	uint64_t restore_us;	/* restore: QEMU start to the guest running (0: cold) */
	uint64_t setup_us;	/* the guest's own count, request to engine started (STARTED) */
	uint64_t build_us;	/* this run built the snapshot first: how long it took (0: it did not) */
	char start_why[256];	/* cold although snapshots are on: why ("" otherwise) */
	uint64_t wall_us;
	char *result;		/* the RESULT frame's JSON text (malloc'd) */
	char *out, *err;	/* capture: the bytes kept */
	size_t out_len, err_len;
	bool out_truncated, err_truncated;
	char net_error[200];	/* why the network channel ended early, or "" */
	bool image_erofs;	/* the image root came as an EROFS block image */
	uint64_t image_build_us;	/* and this run built it first */
};

/* Boot a guest, send it the spec, relay, tear everything down. 0 with r
 * filled (RESULT came, or the host's deadline passed); -1 with err when
 * the VM failed (QEMU would not start, guest panic, hung guest, QEMU
 * killed). */
int vm_run(struct vm_opts *o, struct vm_result *r, struct aegis_error *err);
void vm_result_free(struct vm_result *r);

/* backend.c: the REQUEST for o (the spec with the guest's paths, the
 * shares to mount, the host's clock and a fresh seed). */
json_t *vm_request(const struct vm_opts *o);
/* backend.c: how the guest came up, into o: "start" ("restore" from a
 * snapshot or "cold"), "restore_ms" (null when cold), "snapshot_build_ms"
 * when this run built the snapshot, "start_reason" when it booted cold
 * although snapshots are on. For --json, result.json and the audit. */
void vm_start_json(json_t *o, bool restored, uint64_t restore_us, uint64_t build_us, const char *why);
/* backend.c: an image root's form: "image_root": "erofs" and, when this
 * run built it, "image_build_ms". Nothing without an image. */
void vm_image_json(json_t *o, bool erofs, uint64_t build_us);
/* backend.c: aegis_run() for spec.backend == AEGIS_BACKEND_VM. */
int vm_aegis_run(const struct aegis_spec *spec, struct aegis_result *res, struct aegis_error *err);

/* hostcg.c: the host's run cgroup (run-<our pid>, where aegisd's pause,
 * usage and cleanup look) for QEMU, bounding it as a whole; fills
 * o->cgroup_join. -1 with err. Destroy after QEMU is reaped. */
struct cgroup;
int vm_hostcg_create(struct cgroup *cg, struct vm_opts *o, struct aegis_error *err);
void vm_hostcg_destroy(struct cgroup *cg, struct vm_opts *o);

/* qmp.c: QEMU's control socket (dir/qmp.sock). */
struct vm_qmp {
	int fd;
	size_t len;
	char buf[65536];
};

/* Connect, read the greeting, leave negotiation mode. -1 with err. */
int vm_qmp_open(struct vm_qmp *m, const char *path, struct aegis_error *err);
/* Run a command without arguments ("stop", "cont", "quit", "query-status");
 * *ret (if given) gets its "return" value. -1 with err (QEMU's desc). */
int vm_qmp_execute(struct vm_qmp *m, const char *command, json_t **ret, struct aegis_error *err);
/* The same with arguments (args is borrowed). */
int vm_qmp_call(struct vm_qmp *m, const char *command, json_t *args, json_t **ret, struct aegis_error *err);
/* Hand QEMU a descriptor under name (getfd: it arrives by SCM_RIGHTS with
 * the command), for "fd:NAME" URIs: QEMU opens nothing itself, so this
 * works under -sandbox spawn=deny and inside a mount namespace alike. */
int vm_qmp_getfd(struct vm_qmp *m, const char *name, int fd, struct aegis_error *err);
/* query-status: "running", "paused", "internal-error", ... into out. */
int vm_qmp_status(struct vm_qmp *m, char *out, size_t cap, struct aegis_error *err);
void vm_qmp_close(struct vm_qmp *m);
/* One command without arguments ("stop", "cont") on a connection of its
 * own to dir/qmp.sock (QEMU serves one client at a time: none is held).
 * -1 with err. */
int vm_qmp_once(const char *dir, const char *command, struct aegis_error *err);

/* How a guest's RAM is backed and how it starts (NULL or zeroed:
 * anonymous RAM, cold boot). */
struct vm_boot {
	const char *ram_file;	/* RAM is this file's mapping */
	bool ram_shared;	/* share=on: writes reach the file (a template being built);
				 * off: private copy-on-write pages (a clone) */
	bool incoming;		/* -incoming defer: the state comes by migrate-incoming */
};

/* qemu.c: one QEMU process and its private run directory. */
struct vm_qemu {
	pid_t pid;		/* leader of its own process group */
	int pidfd;		/* readable when QEMU exits */
	int chan;		/* connected to the guest's "aegis" port */
	int net;		/* the "aegis-net" port (served only with --net allow) */
	int ctl;		/* the "aegis-ctl" port (served only for an instance: ctlproxy.c) */
	int console;		/* the guest's serial console (-1 at its EOF) */
	char tail[16384];	/* its last bytes: bounded, however much the guest prints */
	size_t tail_len;
	char dir[64];		/* 0700 run directory: sockets and logs */
	int lock;		/* dir/lock, flocked while the run lives */
	char slot[64];		/* the block slot's file as QEMU opens it: /proc/<us>/fd/N */
	bool kvm;
	bool status_known;	/* vm_qemu_diagnose reaped it: */
	int status;		/* its wait status */
};

/* Prepare o's shares in a fresh run directory and start QEMU (boot: NULL
 * for a cold boot). -1 with err. */
int vm_qemu_start(struct vm_qemu *q, const struct vm_guest *g, struct vm_opts *o, const struct vm_boot *boot,
		  struct aegis_error *err);
/* The template's QEMU command line for these options, with placeholders
 * for what differs per run (run directory, RAM file, the shares' host
 * directories): what a snapshot's key covers. -1 if no QEMU. */
int vm_qemu_cmdline(char *out, size_t cap, const struct vm_guest *g, const struct vm_opts *o, bool kvm);
/* QEMU's device arguments for the channel and the shares: the one place
 * they are built (a restored snapshot must get the same set). */
struct qemu_args;
void vm_qemu_devices(struct qemu_args *a, const struct vm_qemu *q, const struct vm_shares *sh);
/* Read what the console has into the tail (call when it polls readable). */
void vm_qemu_console(struct vm_qemu *q);
/* Why QEMU ended: "guest panic: ...", "QEMU was killed by signal N", its
 * stderr's first line, ... into why. Waits for QEMU (it must be ending). */
void vm_qemu_diagnose(struct vm_qemu *q, char *why, size_t cap);
/* Remove the run directories that dead runs left (ours, lock free): every
 * vm_qemu_start does; aegisd too once it finds a vm instance's shim killed. */
void vm_qemu_sweep(void);
/* Kill the process group, reap, remove the run directory. Idempotent. */
void vm_qemu_stop(struct vm_qemu *q);

/* snapshot.c: templates of a greeted guest, restored copy-on-write. */
struct vm_snapshot {
	char root[4096];	/* <state>/vm-snapshots: 0700, ours */
	char prefix[64];	/* <accel>-<MiB>m-<vcpus>cpu- */
	char dir[4200];		/* root/<prefix><key's first 16>: meta, state, ram */
	char key[65];		/* sha256 of what the snapshot depends on */
	char kernel[128];	/* the guest's uname -r, from its greeting at build time */
	uint64_t memory_bytes;
	dev_t ram_dev;		/* the RAM file validated */
	ino_t ram_ino;
	int lock;		/* root/lock while building */
};

/* Snapshots unless AEGIS_VM_SNAPSHOT=0. */
bool vm_snapshot_enabled(void);
/* Work out s's key and place. -1 with why when snapshots cannot be used at
 * all here (the cache directory is not ours or open to others, ...). */
int vm_snapshot_init(struct vm_snapshot *s, const struct vm_guest *g, const struct vm_opts *o, bool kvm, char *why,
		     size_t cap);
/* 1: the snapshot there is whole and its key matches. 0: none, or one not
 * to use (why: "key mismatch", "state file damaged", ...): rebuild it. -1:
 * refused (not ours, open to others): neither used nor touched. */
int vm_snapshot_valid(struct vm_snapshot *s, char *why, size_t cap);
/* Take the build lock (blocks while another run builds). -1 with err. */
int vm_snapshot_lock(struct vm_snapshot *s, struct aegis_error *err);
void vm_snapshot_unlock(struct vm_snapshot *s);
/* Under the lock: remove s's snapshot (stale or broken) and dead builds. */
void vm_snapshot_drop(struct vm_snapshot *s);
/* Under the lock: a fresh build directory with an empty RAM file of the
 * right size; ram gets its path. -1 with err. */
int vm_snapshot_begin(struct vm_snapshot *s, char *build, size_t cap, char *ram, size_t ramcap,
		      struct aegis_error *err);
/* q has greeted and waits for its request: stop it and save its device
 * state (RAM stays in the shared file) into build. -1 with err. */
int vm_snapshot_save(struct vm_qemu *q, const char *build, struct aegis_error *err);
/* Seal build (key file last, fsync) and rename it into place. -1 with err. */
int vm_snapshot_commit(struct vm_snapshot *s, const char *build, const char *kernel, struct aegis_error *err);
/* Remove a build directory that will not be committed. */
void vm_snapshot_abort(const char *build);
/* The RAM file of s, for vm_boot. */
void vm_snapshot_ram(const struct vm_snapshot *s, char *out, size_t cap);
/* q was started with s's RAM privately and -incoming defer: load the state
 * and run the guest. -1 with err. */
int vm_snapshot_load(struct vm_qemu *q, const struct vm_snapshot *s, struct aegis_error *err);

/* netproxy.c: the host's end of the network channel (--net allow). Serve
 * the guest's streams on chan through the egress proxy (its socket in
 * dir) with rules; each connection reported to report. -1 with err. */
struct netproxy;
int netproxy_start(struct netproxy **out, int chan, const char *dir, const struct net_rules *rules,
		   proxy_report_fn report, void *report_arg, struct aegis_error *err);
/* Stop and free (NULL: nothing). 0, or -1 with why the channel had ended
 * early (the guest broke the protocol) in why. */
int netproxy_stop(struct netproxy *np, char *why, size_t cap);

/* auditrelay.c: the engine's audit events, from the guest's
 * io/audit.jsonl (hostile input, bounded) into log as they come, with the
 * host proxy's net.connect events (net: held, by time). Thread-safe. */
struct audit_log;
struct auditrelay *auditrelay_new(struct audit_log *log, bool net);
void auditrelay_free(struct auditrelay *a);
/* proxy_report_fn, arg an auditrelay made with net */
void auditrelay_net_heard(void *arg, const struct proxy_conn_report *c);
/* The guest runs in dir and started as r says (r outlives the relay's use). */
void auditrelay_begin(struct auditrelay *a, const char *dir, const struct vm_result *r);
/* The new complete lines onto the chain (run.end held for the end); held
 * net.connect events old enough too. NULL: nothing. */
void auditrelay_poll(struct auditrelay *a);
void auditrelay_poll_hook(void *a);
/* The run is over (r final; failure: why it failed, or NULL): the rest of
 * the file, the net events left, run.end; a run.start and run.end of the
 * host's own when the engine said nothing. */
void auditrelay_end(struct auditrelay *a, const struct vm_result *r, const struct aegis_error *failure);

/* ctlproxy.c: the host's end of an instance's control channel. Each
 * connection to listen_fd (the shim's control.sock: aegisd's execs and
 * --expose connections) becomes a stream over the "aegis-ctl" port chan to
 * the guest's engine. audit (NULL: none) takes the guest's new events
 * before an exec's bytes go to its user. aegisd's {"vm": "stop"} and
 * {"vm": "cont"} (pause, resume) are served here, by QMP on dir/qmp.sock.
 * -1 with err. */
struct ctlproxy;
int ctlproxy_start(struct ctlproxy **out, int chan, int listen_fd, const char *dir, struct auditrelay *audit,
		   struct aegis_error *err);
/* The guest is ending: execs still running are told the instance stopped;
 * every connection is closed. NULL: nothing to do. */
void ctlproxy_stop(struct ctlproxy *px);

#endif
