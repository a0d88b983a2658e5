/* cgroup.c — the run's cgroup: memory (no swap) and pids bounds, on v1 and v2.
 *
 * Without it a fork bomb or a memory hog inside the sandbox would take the
 * host down, so a run whose cgroup cannot be made does not start. CI hosts
 * here are v1 (one hierarchy per controller); most users are on v2. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "../common/error.h"
#include "../common/util.h"
#include "sandbox.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

/* v1: each controller is its own hierarchy; a run joins memory and pids,
 * and cpu / cpuacct only when a CPU limit asks for them. */
static void choose_v1_controllers(struct cgroup *cg, const struct aegis_limits *l, bool freezable)
{
	struct stat cpu, acct;

	cg->nv1 = 0;
	cg->v1[cg->nv1++] = "memory";
	cg->v1[cg->nv1++] = "pids";
	if (l->cpus_milli)
		cg->v1[cg->nv1++] = "cpu";
	if (freezable)
		cg->v1[cg->nv1++] = "freezer";
	/* cpu and cpuacct are often one hierarchy under two names; a long-lived
	 * (freezable) run is accounted for `instance info` */
	if ((l->cpu_ms || freezable) && !(l->cpus_milli && stat(CGROUP_ROOT "/cpu", &cpu) == 0 &&
			   stat(CGROUP_ROOT "/cpuacct", &acct) == 0 &&
			   cpu.st_ino == acct.st_ino && cpu.st_dev == acct.st_dev))
		cg->v1[cg->nv1++] = "cpuacct";
}

/* The host's cgroup layout does not change under a running process: look
 * once (the start path asks several times). */
int cgroup_version(void)
{
	static int version = -1;
	struct statfs sfs;

	if (version >= 0)
		return version;
	if (statfs(CGROUP_ROOT, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC)
		version = 2;
	else if (statfs(CGROUP_ROOT "/memory", &sfs) == 0 && sfs.f_type == CGROUP_SUPER_MAGIC)
		version = 1;
	else
		version = 0;
	return version;
}

/* The cgroup this process is in, for the given v1 controller or v2 ("").
 * Rootless runs go below it, where a delegating manager gave us rights. */
static int own_cgroup(const char *controller, char *out, size_t len)
{
	char buf[4096], *line, *save = NULL;

	if (read_file_at(AT_FDCWD, "/proc/self/cgroup", buf, sizeof buf) < 0)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *ctrls = strchr(line, ':'), *path;
		if (!ctrls || !(path = strchr(ctrls + 1, ':')))
			continue;
		*path++ = '\0';
		ctrls++;
		if (*controller == '\0' ? *ctrls == '\0' : strstr(ctrls, controller) != NULL) {
			snprintf(out, len, "%s", path);
			return 0;
		}
	}
	return -1;
}

static void default_parent(int version, char *out, size_t len)
{
	char *slash;

	if (geteuid() == 0) {
		snprintf(out, len, "/aegis");
		return;
	}
	if (own_cgroup(version == 2 ? "" : "memory", out, len) < 0) {
		snprintf(out, len, "/");
		return;
	}
	/* v2 forbids processes in inner nodes: go beside our own leaf, not below it. */
	if (version == 2 && (slash = strrchr(out, '/')) && slash != out)
		*slash = '\0';
}

/* The parent of a run's cgroup: the one it was given, or the default;
 * "" for the root. */
static void run_parent(const char *given, int version, char *out, size_t len)
{
	if (given)
		snprintf(out, len, "%s", given);
	else
		default_parent(version, out, len);
	if (strcmp(out, "/") == 0)
		out[0] = '\0';
}

static int write_knob(const char *dir, const char *knob, const char *val, bool optional,
		      struct aegis_error *err)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", dir, knob);
	if (write_file_at(AT_FDCWD, path, val, strlen(val)) == 0)
		return 0;
	if (optional && errno == ENOENT)
		return 0;
	return error_sys(err, "cgroup: set %s", path);
}

static int make_dir(const char *path, bool may_exist, struct aegis_error *err)
{
	if (mkdir(path, 0755) == 0 || (may_exist && errno == EEXIST))
		return 0;
	/* A run cgroup left by a supervisor that was killed, whose pid came
	 * round again: an empty one can go; a populated one is not ours. */
	if (!may_exist && errno == EEXIST && rmdir(path) == 0 && mkdir(path, 0755) == 0)
		return 0;
	return error_sys(err, "cgroup: mkdir %s", path);
}

static int create_v1(struct cgroup *cg, const char *parent, const struct aegis_spec *spec,
		     struct aegis_error *err)
{
	const struct aegis_limits *l = &spec->limits;
	char dir[512], val[32];

	choose_v1_controllers(cg, l, spec->freezable);
	for (int i = 0; i < cg->nv1; i++) {
		snprintf(dir, sizeof dir, CGROUP_ROOT "/%s%s", cg->v1[i], parent);
		if (make_dir(dir, true, err) < 0)
			return -1;
		snprintf(dir, sizeof dir, CGROUP_ROOT "/%s%s", cg->v1[i], cg->rel);
		if (make_dir(dir, false, err) < 0)
			return -1;
		cg->created = true;
	}
	snprintf(dir, sizeof dir, CGROUP_ROOT "/memory%s", cg->rel);
	snprintf(val, sizeof val, "%llu", (unsigned long long)l->memory_bytes);
	if (write_knob(dir, "memory.limit_in_bytes", val, false, err) < 0)
		return -1;
	/* memsw exists only with swap accounting; where it does, no swap. */
	if (write_knob(dir, "memory.memsw.limit_in_bytes", val, true, err) < 0)
		return -1;
	snprintf(dir, sizeof dir, CGROUP_ROOT "/pids%s", cg->rel);
	snprintf(val, sizeof val, "%llu", (unsigned long long)l->pids);
	if (write_knob(dir, "pids.max", val, false, err) < 0)
		return -1;
	if (l->cpus_milli) {
		snprintf(dir, sizeof dir, CGROUP_ROOT "/cpu%s", cg->rel);
		snprintf(val, sizeof val, "%u", (unsigned)l->cpus_milli * 100u);
		if (write_knob(dir, "cpu.cfs_period_us", "100000", false, err) < 0 ||
		    write_knob(dir, "cpu.cfs_quota_us", val, false, err) < 0)
			return -1;
	}
	return 0;
}

static int create_v2(struct cgroup *cg, const char *parent, const struct aegis_spec *spec,
		     struct aegis_error *err)
{
	char dir[512], val[32];

	snprintf(dir, sizeof dir, CGROUP_ROOT "%s", parent);
	if (make_dir(dir, true, err) < 0)
		return -1;
	const char *ctrls = spec->limits.cpus_milli || spec->limits.cpu_ms ? "+memory +pids +cpu"
									   : "+memory +pids";
	if (geteuid() == 0) {
		/* Root owns the tree: make sure the controllers reach our parent. */
		if (write_knob(CGROUP_ROOT, "cgroup.subtree_control", ctrls, false, err) < 0)
			return -1;
	}
	if (write_knob(dir, "cgroup.subtree_control", ctrls, false, err) < 0)
		return -1;
	snprintf(dir, sizeof dir, CGROUP_ROOT "%s", cg->rel);
	if (make_dir(dir, false, err) < 0)
		return -1;
	cg->created = true;
	snprintf(val, sizeof val, "%llu", (unsigned long long)spec->limits.memory_bytes);
	if (write_knob(dir, "memory.max", val, false, err) < 0 ||
	    write_knob(dir, "memory.swap.max", "0", true, err) < 0 ||
	    write_knob(dir, "memory.oom.group", "1", false, err) < 0)
		return -1;
	snprintf(val, sizeof val, "%llu", (unsigned long long)spec->limits.pids);
	if (write_knob(dir, "pids.max", val, false, err) < 0)
		return -1;
	if (spec->limits.cpus_milli) {
		snprintf(val, sizeof val, "%u 100000", (unsigned)spec->limits.cpus_milli * 100u);
		if (write_knob(dir, "cpu.max", val, false, err) < 0)
			return -1;
	}
	cg->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg->dirfd < 0)
		return error_sys(err, "cgroup: open %s", dir);
	return 0;
}

int cgroup_create(struct cgroup *cg, const struct aegis_spec *spec, struct aegis_error *err)
{
	char parent[200];

	cg->dirfd = -1;
	cg->created = false;
	cg->version = cgroup_version();
	if (cg->version == 0)
		return error_set(err, AEGIS_E_UNSUPPORTED, 0,
				 "cgroup: no cgroup v1 or v2 hierarchy at " CGROUP_ROOT);
	if (spec->cgroup_parent) {
		if (spec->cgroup_parent[0] != '/' || strstr(spec->cgroup_parent, ".."))
			return error_set(err, AEGIS_E_INVALID, 0,
					 "cgroup parent must be an absolute cgroup path without '..': %s",
					 spec->cgroup_parent);
		snprintf(parent, sizeof parent, "%s", spec->cgroup_parent);
	} else {
		default_parent(cg->version, parent, sizeof parent);
	}
	if (strcmp(parent, "/") == 0)
		parent[0] = '\0';
	snprintf(cg->rel, sizeof cg->rel, "%s/run-%d", parent, (int)getpid());
	if ((cg->version == 1 ? create_v1(cg, parent, spec, err) : create_v2(cg, parent, spec, err)) < 0) {
		cgroup_destroy(cg);
		return error_prefix(err, "cannot bound the sandbox (use --cgroup-parent for a delegated cgroup)");
	}
	return 0;
}

int cgroup_enter(struct cgroup *cg, pid_t pid, struct aegis_error *err)
{
	char path[512], val[16];

	snprintf(val, sizeof val, "%d", (int)pid);
	if (cg->version == 2) {
		snprintf(path, sizeof path, CGROUP_ROOT "%s/cgroup.procs", cg->rel);
		if (write_file_at(AT_FDCWD, path, val, strlen(val)) < 0)
			return error_sys(err, "cgroup: enter %s", path);
		return 0;
	}
	for (int i = 0; i < cg->nv1; i++) {
		snprintf(path, sizeof path, CGROUP_ROOT "/%s%s/cgroup.procs", cg->v1[i], cg->rel);
		if (write_file_at(AT_FDCWD, path, val, strlen(val)) < 0)
			return error_sys(err, "cgroup: enter %s", path);
	}
	return 0;
}

static uint64_t read_u64(const char *path)
{
	char buf[64];

	if (read_file_at(AT_FDCWD, path, buf, sizeof buf) <= 0)
		return 0;
	return strtoull(buf, NULL, 10);
}

/* A knob of the run's cgroup: on v2 in its one directory, on v1 in the
 * given controller's hierarchy (some knobs have another name there). */
static void knob_path(const struct cgroup *cg, const char *controller, const char *v2_knob,
		      const char *v1_knob, char *out, size_t len)
{
	if (cg->version == 2)
		snprintf(out, len, CGROUP_ROOT "%s/%s", cg->rel, v2_knob);
	else
		snprintf(out, len, CGROUP_ROOT "/%s%s/%s", controller, cg->rel, v1_knob);
}

uint64_t cgroup_peak_memory(struct cgroup *cg)
{
	char path[512];

	knob_path(cg, "memory", "memory.peak", "memory.max_usage_in_bytes", path, sizeof path);
	return read_u64(path);
}

/* "name N" from a flat keyed file such as pids.events; 0 if absent. */
static uint64_t read_key(const char *path, const char *name)
{
	char buf[1024], *p;
	size_t n = strlen(name);

	if (read_file_at(AT_FDCWD, path, buf, sizeof buf) <= 0)
		return 0;
	for (p = buf; (p = strstr(p, name)); p += n)
		if ((p == buf || p[-1] == '\n') && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	return 0;
}

bool cgroup_oom_killed(struct cgroup *cg)
{
	char path[512];

	knob_path(cg, "memory", "memory.events", "memory.oom_control", path, sizeof path);
	return read_key(path, "oom_kill") > 0;
}

/* v2: memory.pressure's "full" stall total (µs): the time every task of
 * the run waited on memory at once. v1 has no per-cgroup pressure: 0. */
static uint64_t memory_full_stall_us(struct cgroup *cg)
{
	char path[512], buf[512], *p;

	if (cg->version != 2)
		return 0;
	snprintf(path, sizeof path, CGROUP_ROOT "%s/memory.pressure", cg->rel);
	if (read_file_at(AT_FDCWD, path, buf, sizeof buf) <= 0 || !(p = strstr(buf, "full ")) ||
	    !(p = strstr(p, "total=")))
		return 0;
	return strtoull(p + 6, NULL, 10);
}

/* "name N" in a memory.stat already read; 0 if absent. */
static uint64_t stat_value(const char *stat, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = stat; (p = strstr(p, name)); p += n)
		if ((p == stat || p[-1] == '\n') && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	return 0;
}

/* The rest of what thrash.c judges (the caller read memory.current first:
 * the only file read far from the limit). v2's memory.stat counts the
 * run's whole subtree, v1's does under the total_ names; refaults are
 * counted in pages. */
void cgroup_memory_sample(struct cgroup *cg, struct memory_sample *s)
{
	char path[512], stat[8192];
	const char *pre = cg->version == 2 ? "" : "total_";
	char active[48], inactive[48], refault[48];

	s->full_stall_us = memory_full_stall_us(cg);
	s->file_lru = s->refault_bytes = 0;
	knob_path(cg, "memory", "memory.stat", "memory.stat", path, sizeof path);
	if (read_file_at(AT_FDCWD, path, stat, sizeof stat) <= 0)
		return;
	snprintf(active, sizeof active, "%sactive_file", pre);
	snprintf(inactive, sizeof inactive, "%sinactive_file", pre);
	snprintf(refault, sizeof refault, "%sworkingset_refault_file", pre);
	s->file_lru = stat_value(stat, active) + stat_value(stat, inactive);
	s->refault_bytes = stat_value(stat, refault) * (uint64_t)sysconf(_SC_PAGESIZE);
}

uint64_t cgroup_memory_current(struct cgroup *cg)
{
	char path[512];

	knob_path(cg, "memory", "memory.current", "memory.usage_in_bytes", path, sizeof path);
	return read_u64(path);
}

bool cgroup_pids_hit(struct cgroup *cg)
{
	char path[512];

	knob_path(cg, "pids", "pids.events", "pids.events", path, sizeof path);
	return read_key(path, "max") > 0;
}

uint64_t cgroup_cpu_usage_us(struct cgroup *cg)
{
	char path[512];

	if (cg->version == 2) {
		snprintf(path, sizeof path, CGROUP_ROOT "%s/cpu.stat", cg->rel);
		return read_key(path, "usage_usec");
	}
	for (int i = 0; i < cg->nv1; i++) {
		if (strcmp(cg->v1[i], "cpuacct") && strcmp(cg->v1[i], "cpu"))
			continue;
		snprintf(path, sizeof path, CGROUP_ROOT "/%s%s/cpuacct.usage", cg->v1[i], cg->rel);
		if (access(path, F_OK) == 0)
			return read_u64(path) / 1000;
	}
	return 0;
}

static void remove_dir(const char *dir)
{
	/* The pid namespace is gone by now (or its tasks were just killed),
	 * but they leave the cgroup a moment later; a v1 memcg may lag more. */
	for (int tries = 0; tries < 1000; tries++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			return;
		usleep(1000);
	}
}

void cgroup_destroy(struct cgroup *cg)
{
	char dir[512];

	if (cg->dirfd >= 0) {
		close(cg->dirfd);
		cg->dirfd = -1;
	}
	if (!cg->created)
		return;
	if (cg->version == 2) {
		snprintf(dir, sizeof dir, CGROUP_ROOT "%s", cg->rel);
		(void)write_knob(dir, "cgroup.kill", "1", true, NULL);
		remove_dir(dir);
	} else {
		for (int i = 0; i < cg->nv1; i++) {
			snprintf(dir, sizeof dir, CGROUP_ROOT "/%s%s", cg->v1[i], cg->rel);
			remove_dir(dir);
		}
	}
	cg->created = false;
}

/* For `aegis doctor`: which controllers are there and may we make a child? */
bool cgroup_can_create(const char *parent_override, char *controllers, size_t len)
{
	struct aegis_spec spec = AEGIS_SPEC_DEFAULT;
	struct aegis_error err;
	struct cgroup cg;
	int version = cgroup_version();

	controllers[0] = '\0';
	if (version == 2) {
		(void)read_file_at(AT_FDCWD, CGROUP_ROOT "/cgroup.controllers", controllers, len);
		controllers[strcspn(controllers, "\n")] = '\0';
	} else if (version == 1) {
		static const char *const all[] = { "cpu", "cpuacct", "cpuset", "memory", "pids",
						   "freezer", "devices", "blkio", NULL };
		for (int i = 0; all[i]; i++) {
			char path[128];
			snprintf(path, sizeof path, CGROUP_ROOT "/%s", all[i]);
			if (access(path, F_OK) == 0) {
				size_t n = strlen(controllers);
				snprintf(controllers + n, len - n, "%s%s", n ? " " : "", all[i]);
			}
		}
	}
	spec.cgroup_parent = parent_override;
	if (cgroup_create(&cg, &spec, &err) < 0)
		return false;
	cgroup_destroy(&cg);
	return true;
}

/* The run cgroup of a supervisor that was killed (it could not remove it):
 * removed once empty. For the daemon, after it kills a shim. */
/* SIGKILL every task of a v1 cgroup. They are sandbox processes whose
 * supervisor is gone; each is in the cgroup as we read it. */
static void kill_members(const char *dir)
{
	char path[600], buf[65536], *p, *end;

	snprintf(path, sizeof path, "%s/cgroup.procs", dir);
	if (read_file_at(AT_FDCWD, path, buf, sizeof buf) <= 0)
		return;
	for (p = buf; *p; p = end) {
		long pid = strtol(p, &end, 10);
		if (end == p)
			break;
		if (pid > 1)
			kill((pid_t)pid, SIGKILL);
		while (*end == '\n')
			end++;
	}
}

void aegis_cleanup_killed_run(int supervisor_pid, const char *cgroup_parent)
{
	static const char *const v1[] = { "memory", "pids", "cpu", "cpuacct", "freezer" };
	int version = cgroup_version();
	char parent[200], dir[512];

	run_parent(cgroup_parent, version, parent, sizeof parent);
	if (version == 2) {
		snprintf(dir, sizeof dir, CGROUP_ROOT "%s/run-%d", parent, supervisor_pid);
		(void)write_knob(dir, "cgroup.kill", "1", true, NULL);
		remove_dir(dir);
		return;
	}
	/* A paused run's tasks cannot even die: thaw them, then make sure
	 * none is left (v1 has no cgroup.kill). */
	snprintf(dir, sizeof dir, CGROUP_ROOT "/freezer%s/run-%d", parent, supervisor_pid);
	(void)write_knob(dir, "freezer.state", "THAWED", true, NULL);
	snprintf(dir, sizeof dir, CGROUP_ROOT "/pids%s/run-%d", parent, supervisor_pid);
	kill_members(dir);
	for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++) {
		snprintf(dir, sizeof dir, CGROUP_ROOT "/%s%s/run-%d", v1[i], parent, supervisor_pid);
		remove_dir(dir);
	}
}

#define FREEZE_ATTEMPTS 20
#define FREEZE_WAIT_MS 50

int aegis_freeze_run(int supervisor_pid, const char *cgroup_parent, bool frozen, struct aegis_error *err)
{
	int version = cgroup_version();
	char parent[200], dir[512], knob[560], state[32];

	run_parent(cgroup_parent, version, parent, sizeof parent);
	if (version == 2) {
		snprintf(dir, sizeof dir, CGROUP_ROOT "%s/run-%d", parent, supervisor_pid);
		return write_knob(dir, "cgroup.freeze", frozen ? "1" : "0", false, err);
	}
	snprintf(dir, sizeof dir, CGROUP_ROOT "/freezer%s/run-%d", parent, supervisor_pid);
	if (!frozen)
		return write_knob(dir, "freezer.state", "THAWED", false, err);
	/* v1 passes through FREEZING, done when every task is stopped. A task
	 * frozen between vfork and exec holds its parent unfreezable in
	 * FREEZING for good: thaw and try again, and never leave the run
	 * half frozen. */
	snprintf(knob, sizeof knob, "%s/freezer.state", dir);
	for (int attempt = 0; attempt < FREEZE_ATTEMPTS; attempt++) {
		if (write_knob(dir, "freezer.state", "FROZEN", false, err) < 0)
			return -1;
		/* with the anchor held a freeze takes tens of µs: look soon, then less often */
		for (uint64_t waited = 0, step = 20; waited < FREEZE_WAIT_MS * 1000ULL; waited += step) {
			if (read_file_at(AT_FDCWD, knob, state, sizeof state) > 0 && !strncmp(state, "FROZEN", 6))
				return 0;
			usleep((useconds_t)step);
			if (step < 1000)
				step *= 2;
		}
		if (write_knob(dir, "freezer.state", "THAWED", false, err) < 0)
			return -1;
		usleep(1000);
	}
	return error_set(err, AEGIS_E_SETUP, 0, "cgroup: %s did not freeze (left running)", dir);
}

int aegis_run_usage(int supervisor_pid, const char *cgroup_parent, struct aegis_usage *u)
{
	struct cgroup cg = { .version = cgroup_version(), .dirfd = -1,
			     .v1 = { "memory", "pids", "cpuacct" }, .nv1 = 3 };
	char parent[200], path[512];

	memset(u, 0, sizeof *u);
	run_parent(cgroup_parent, cg.version, parent, sizeof parent);
	snprintf(cg.rel, sizeof cg.rel, "%s/run-%d", parent, supervisor_pid);
	knob_path(&cg, "memory", "memory.current", "memory.usage_in_bytes", path, sizeof path);
	if (access(path, F_OK) < 0)
		return -1;
	u->memory_bytes = read_u64(path);
	u->memory_peak_bytes = cgroup_peak_memory(&cg);
	u->cpu_us = cgroup_cpu_usage_us(&cg);
	knob_path(&cg, "pids", "pids.current", "pids.current", path, sizeof path);
	u->pids = read_u64(path);
	return 0;
}

void aegis_freezer_anchor(const char *cgroup_parent)
{
	char parent[200], dir[512];

	if (cgroup_version() != 1)
		return;	/* v2's cgroup.freeze has no global switch */
	run_parent(cgroup_parent, 1, parent, sizeof parent);
	snprintf(dir, sizeof dir, CGROUP_ROOT "/freezer%s/anchor", parent);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return;
	(void)write_knob(dir, "freezer.state", "FROZEN", true, NULL);
}
