/* backend.c — aegis_run() with spec.backend = AEGIS_BACKEND_VM.
 *
 * The host maps the spec's host paths to 9p shares (shares.c), sends the
 * spec to aegis-guest, where the engine runs it exactly as the namespace
 * backend would (its namespaces, seccomp, landlock, cgroup limits, exec
 * watch, secrets, overlay), relays the output, and turns the guest's
 * RESULT back into a struct aegis_result or the engine's own error. The
 * engine's audit events come back through the io share and are appended
 * to the host's log here, so the chain is the host's. With --net allow
 * the host's egress proxy serves the guest (netproxy.c); its net.connect
 * events are held here and go into the log among the engine's, by time. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/audit.h"
#include "../common/error.h"
#include "../common/logrecord.h"
#include "../common/specjson.h"
#include "../common/util.h"
#include "../sandbox/netrules.h"
#include "../sandbox/sandbox.h"
#include "vm.h"

/* RAM the guest kernel, PID 1, the engine and the 9p caches need beside
 * the run's own memory limit (its cgroup in the guest): the command's OOM
 * is the cgroup's, not the guest kernel's. */
#define GUEST_OVERHEAD (256ULL << 20)
/* Past the engine's own wall-clock limit (it ends the run in the guest and
 * reports "timeout"), the host gives a hung guest this long. */
#define HOST_GRACE_MS 30000

static const char *isolation(bool kvm)
{
	return kvm ? "vm" : "test mode: TCG emulation is not a security boundary";
}

/* What the vm backend cannot honour (yet): refused by name, never dropped. */
static int vm_check(const struct aegis_spec *spec, struct aegis_error *err)
{
	if (!spec->argv || !spec->argv[0] || !spec->argv[0][0])
		return error_set(err, AEGIS_E_INVALID, 0, "no command given");
	if (netns_mode(spec->policy) == NET_HOST)
		return error_set(err, AEGIS_E_UNSUPPORTED, 0,
				 "the vm backend refuses --net host: the guest never shares the host's network "
				 "(use --net allow)");
	if (spec->limits.memory_bytes < (4u << 20))
		return error_set(err, AEGIS_E_INVALID, 0, "memory limit below 4 MiB");
	return 0;
}

json_t *vm_request(const struct vm_opts *o)
{
	struct aegis_spec g = *o->spec;
	unsigned char seed[32];
	char b64[48];
	struct timespec now;
	json_t *req;

	/* The engine in the guest sees the shares where they are mounted. */
	g.backend = AEGIS_BACKEND_NS;
	g.workspace = o->spec->workspace ? o->paths.workspace : NULL;
	g.workspace_fd = 0;
	g.artifacts_dir = o->spec->artifacts_dir ? o->paths.artifacts : NULL;
	g.audit_path = o->spec->audit_path ? VM_GUEST_AUDIT : NULL;
	g.cgroup_parent = NULL;	/* the guest's cgroup tree is its own */
	if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed)
		return NULL;
	b64[logrecord_b64_encode(seed, sizeof seed, b64)] = '\0';
	explicit_bzero(seed, sizeof seed);
	clock_gettime(CLOCK_REALTIME, &now);
	req = json_pack("{s:o, s:o, s:{s:I, s:I}, s:s}", "spec", specjson_from_spec(&g), "mounts",
			vm_shares_mounts(&o->shares), "clock", "sec", (json_int_t)now.tv_sec, "nsec",
			(json_int_t)now.tv_nsec, "seed", b64);
	explicit_bzero(b64, sizeof b64);
	/* an instance: the guest's engine serves execs and connections over
	 * the "aegis-ctl" port (ctlproxy.c) */
	if (req && o->spec->control_fd > 0)
		json_object_set_new(req, "control", json_true());
	return req;
}

void vm_start_json(json_t *o, bool restored, uint64_t restore_us, uint64_t build_us, const char *why)
{
	json_object_set_new(o, "start", json_string(restored ? "restore" : "cold"));
	json_object_set_new(o, "restore_ms", restored ? json_real((double)restore_us / 1000.0) : json_null());
	if (build_us)
		json_object_set_new(o, "snapshot_build_ms", json_real((double)build_us / 1000.0));
	if (why && *why)
		json_object_set_new(o, "start_reason", json_string(why));
}

/* The host proxy's net.connect events, held until the engine's come back
 * (the proxy's threads report while the run goes on). */
struct net_heard {
	pthread_mutex_t lock;
	json_t *events;		/* [{"ts", "event"}], in the order heard */
	size_t next;		/* the first not yet in the log */
	char id[64];		/* the run's id, from the engine's run.start */
};

/* proxy_report_fn: one connection through the host's proxy. */
static void net_heard(void *arg, const struct proxy_conn_report *c)
{
	struct net_heard *h = arg;
	char ts[32];

	audit_timestamp(ts);
	pthread_mutex_lock(&h->lock);
	json_array_append_new(h->events, json_pack("{s:s, s:o}", "ts", ts, "event", record_connection_json("", c)));
	pthread_mutex_unlock(&h->lock);
}

/* The held net.connect events up to the time before (NULL: all), into
 * the log with the run's id. The guest's clock is the host's, set by the
 * REQUEST, so the two sets of times compare. */
static void net_flush(struct audit_log *log, struct net_heard *h, const char *before)
{
	struct aegis_error ignored;

	for (; h && h->next < json_array_size(h->events); h->next++) {
		json_t *e = json_array_get(h->events, h->next), *ev;

		if (before && strcmp(json_string_value(json_object_get(e, "ts")), before) > 0)
			break;
		ev = json_deep_copy(json_object_get(e, "event"));
		if (h->id[0])
			json_object_set_new(ev, "id", json_string(h->id));
		else
			json_object_del(ev, "id");
		audit_append(log, "net.connect", ev, &ignored);
	}
}

/* The guest's audit events, appended to the host's log: its chain, its
 * sequence and its clock; run.start says how the guest ran. The host
 * proxy's net.connect events go in among them by time, after run.start
 * and before run.end. A run that failed before the engine said anything
 * still gets its start and end on record. */
static void audit_relay(struct audit_log *log, const struct vm_result *r, const struct aegis_error *failure,
			struct net_heard *net)
{
	static const char *const reserved[] = { "v", "seq", "ts", "type", "prev", NULL };
	struct aegis_error ignored;
	bool started = false, ended = false;
	char *save = NULL;

	for (char *line = r->audit ? strtok_r(r->audit, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		json_t *ev = json_loads(line, 0, NULL);
		const char *t = json_string_value(json_object_get(ev, "type"));
		const char *ts = json_string_value(json_object_get(ev, "ts"));
		char type[64], when[40];

		if (!t || !json_is_object(ev) || strlen(t) >= sizeof type) {
			json_decref(ev);
			continue;
		}
		snprintf(type, sizeof type, "%s", t);
		snprintf(when, sizeof when, "%s", ts ? ts : "");
		for (const char *const *k = reserved; *k; k++)
			json_object_del(ev, *k);
		if (strcmp(type, "run.start"))
			net_flush(log, net, !strcmp(type, "run.end") ? NULL : when);
		if (!strcmp(type, "run.start")) {
			const char *id = json_string_value(json_object_get(ev, "id"));

			if (net && id)
				snprintf(net->id, sizeof net->id, "%s", id);
			started = true;
			json_object_set_new(ev, "backend", json_string("vm"));
			json_object_set_new(ev, "accel", json_string(r->kvm ? "kvm" : "tcg"));
			json_object_set_new(ev, "isolation", json_string(isolation(r->kvm)));
			json_object_set_new(ev, "guest_kernel", json_string(r->kernel));
			json_object_set_new(ev, "host_uid", json_integer((json_int_t)getuid()));
			vm_start_json(ev, r->start == VM_RESTORE, r->restore_us, r->build_us, r->start_why);
		} else if (!strcmp(type, "run.end")) {
			ended = true;
			json_object_set_new(ev, "boot_ms", json_real((double)r->boot_us / 1000.0));
			if (r->setup_us)
				json_object_set_new(ev, "guest_setup_ms", json_real((double)r->setup_us / 1000.0));
			vm_start_json(ev, r->start == VM_RESTORE, r->restore_us, r->build_us, r->start_why);
			if (r->net_error[0])
				json_object_set_new(ev, "net_error", json_string(r->net_error));
		}
		audit_append(log, type, ev, &ignored);
	}
	if (!started)
		audit_append(log, "run.start", json_pack("{s:o, s:s, s:s, s:s, s:s}", "argv", json_array(),
						   "backend", "vm", "accel", r->kvm ? "kvm" : "tcg",
						   "isolation", isolation(r->kvm), "guest_kernel", r->kernel), &ignored);
	net_flush(log, net, NULL);
	if (!ended) {
		json_t *ev = failure ? json_pack("{s:s, s:s}", "end", "error", "error", failure->msg)
				     : json_pack("{s:s, s:i}", "end", "timeout", "exit_code", 124);

		if (r->net_error[0])
			json_object_set_new(ev, "net_error", json_string(r->net_error));
		audit_append(log, "run.end", ev, &ignored);
	}
}

/* The guest's RESULT: the engine's result, or its error as it was. */
static int take_result(struct vm_result *r, struct aegis_result *res, struct aegis_error *err)
{
	static __thread char unenforced[256];
	struct specjson_result d;
	json_t *j = r->result ? json_loads(r->result, 0, NULL) : NULL, *e;
	int rc = -1;

	if (!j)
		return error_set(err, AEGIS_E_SETUP, EPROTO, "vm: the guest's result is not JSON");
	if ((e = json_object_get(j, "error"))) {
		const char *msg = json_string_value(json_object_get(e, "message"));
		json_int_t code = json_integer_value(json_object_get(e, "code"));

		if (code < AEGIS_E_INVALID || code > AEGIS_E_NOEXEC)
			code = AEGIS_E_SETUP;
		/* as the engine wrote it: the message already names the errno */
		err->code = (enum aegis_errc)code;
		err->sys_errno = (int)json_integer_value(json_object_get(e, "errno"));
		snprintf(err->msg, sizeof err->msg, "%s", msg ? msg : "the guest's engine failed");
	} else if (specjson_to_result(json_object_get(j, "result"), &d, err) == 0) {
		*res = d.result;
		if (d.result.unenforced) {
			snprintf(unenforced, sizeof unenforced, "%s", d.unenforced_buf);
			res->unenforced = unenforced;
		}
		rc = 0;
	} else {
		error_prefix(err, "vm: the guest's result");
	}
	json_decref(j);
	return rc;
}

/* result.json in the artifacts says how the guest ran, as --json does.
 * The guest wrote that directory: the file is opened without following a
 * link (one aimed at a host file must not be rewritten) and must be a
 * regular file. */
static void artifacts_note(const struct aegis_spec *spec, const struct aegis_result *res)
{
	char path[4200];
	struct stat st;
	json_t *doc = NULL;
	int fd;

	if (!spec->artifacts_dir)
		return;
	snprintf(path, sizeof path, "%s/result.json", spec->artifacts_dir);
	if ((fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)) < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < (1 << 20))
		doc = json_loadfd(fd, JSON_DISABLE_EOF_CHECK, NULL);
	if (json_is_object(doc)) {
		json_object_set_new(doc, "backend", json_string("vm"));
		json_object_set_new(doc, "accel", json_string(res->vm_kvm ? "kvm" : "tcg"));
		json_object_set_new(doc, "isolation", json_string(isolation(res->vm_kvm)));
		json_object_set_new(doc, "guest_kernel", json_string(res->vm_kernel));
		json_object_set_new(doc, "boot_ms", json_real((double)res->vm_boot_us / 1000.0));
		if (res->vm_guest_setup_us)
			json_object_set_new(doc, "guest_setup_ms", json_real((double)res->vm_guest_setup_us / 1000.0));
		vm_start_json(doc, res->vm_restored, res->vm_restore_us, res->vm_snapshot_build_us, res->vm_start_why);
		if (ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0)
			json_dumpfd(doc, fd, JSON_INDENT(2));
	}
	json_decref(doc);
	close(fd);
}

int vm_aegis_run(const struct aegis_spec *spec, struct aegis_result *res, struct aegis_error *err)
{
	struct vm_opts *o;
	struct vm_result r;
	struct audit_log *log = NULL;
	struct cgroup cg;
	struct net_rules rules = { 0 };
	struct net_heard heard = { .lock = PTHREAD_MUTEX_INITIALIZER };
	bool allow = netns_mode(spec->policy) == NET_ALLOW, hostcg;
	int rc;

	memset(res, 0, sizeof *res);
	if (vm_check(spec, err) < 0)
		return -1;
	/* allow mode: bad rules fail the run before anything starts, as in
	 * the ns backend; the host's proxy applies them (the guest relays). */
	if (allow && netrules_load(spec->policy, &rules, err) < 0)
		return -1;
	/* Nothing runs unless its start can go on record. */
	if (spec->audit_path && audit_open(spec->audit_path, &log, err) < 0) {
		netrules_free(&rules);
		return -1;
	}
	/* The artifacts directory must exist to be shared; the engine in the
	 * guest checks it is empty, as on the host. */
	if (spec->artifacts_dir && mkdir(spec->artifacts_dir, 0700) < 0 && errno != EEXIST) {
		error_sys(err, "artifacts %s", spec->artifacts_dir);
		goto early;
	}
	if (!(o = calloc(1, sizeof *o))) {	/* the shares' paths are large */
		error_set(err, AEGIS_E_SETUP, ENOMEM, "vm: options");
		goto early;
	}
	o->spec = spec;
	if (vm_paths_of(&o->paths, spec, err) < 0) {
		free(o);
		goto early;
	}
	if (allow) {
		o->net_rules = &rules;
		if (log && (heard.events = json_array()))
			o->net_report = net_heard, o->net_report_arg = &heard;
	}
	o->memory_bytes = spec->limits.memory_bytes + GUEST_OVERHEAD;
	o->vcpus = spec->limits.cpus_milli ? (spec->limits.cpus_milli + 999) / 1000 : 1;
	o->timeout_ms = spec->limits.wall_ms ? spec->limits.wall_ms + 2 * HOST_GRACE_MS : 0;
	o->capture = spec->capture;
	o->capture_max = spec->capture_max;
	o->out_fd = spec->out_fd ? spec->out_fd : 1;
	o->err_fd = spec->err_fd ? spec->err_fd : 2;
	/* An instance is paused by freezing its run cgroup: QEMU goes there;
	 * and --cgroup-parent (a delegated tree, rootless) is where QEMU's
	 * own cgroup goes, bounding it as a whole. */
	hostcg = spec->freezable || spec->cgroup_parent;
	if (hostcg && vm_hostcg_create(&cg, o, err) < 0) {
		free(o);
		netrules_free(&rules);
		if (log)
			audit_close(log);
		return -1;
	}
	rc = vm_run(o, &r, err);	/* the proxy is stopped when it returns: nothing more is heard */
	if (hostcg)
		vm_hostcg_destroy(&cg, o);
	free(o);
	netrules_free(&rules);
	if (log) {
		audit_relay(log, &r, rc < 0 ? err : NULL, heard.events ? &heard : NULL);
		audit_close(log);
	}
	json_decref(heard.events);
	if (rc == 0 && r.end == VM_TIMEOUT) {	/* the host's deadline: the guest never answered */
		res->end = AEGIS_END_TIMEOUT;
		res->exit_code = 124;
		res->limit = "timeout";
	} else if (rc == 0) {
		rc = take_result(&r, res, err);
	}
	if (rc == 0) {
		res->vm_kvm = r.kvm;
		res->vm_boot_us = r.boot_us;
		snprintf(res->vm_kernel, sizeof res->vm_kernel, "%s", r.kernel);
		res->vm_restored = r.start == VM_RESTORE;
		res->vm_restore_us = r.restore_us;
		res->vm_snapshot_build_us = r.build_us;
		res->vm_guest_setup_us = r.setup_us;
		snprintf(res->vm_start_why, sizeof res->vm_start_why, "%s", r.start_why);
		snprintf(res->vm_net_error, sizeof res->vm_net_error, "%s", r.net_error);
		if (spec->capture) {
			res->out = (struct aegis_stream){ r.out, r.out_len, res->out.truncated || r.out_truncated };
			res->err = (struct aegis_stream){ r.err, r.err_len, res->err.truncated || r.err_truncated };
			r.out = r.err = NULL;
		}
		artifacts_note(spec, res);
	}
	vm_result_free(&r);
	return rc;
early:
	netrules_free(&rules);
	if (log)
		audit_close(log);
	return -1;
}
