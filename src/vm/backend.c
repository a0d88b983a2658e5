/* backend.c — aegis_run() with spec.backend = AEGIS_BACKEND_VM.
 *
 * The host maps the spec's host paths to 9p shares (shares.c), sends the
 * spec to aegis-guest, where the engine runs it exactly as the namespace
 * backend would (its namespaces, seccomp, landlock, cgroup limits, exec
 * watch, secrets, overlay), relays the output, and turns the guest's
 * RESULT back into a struct aegis_result or the engine's own error. The
 * engine's audit events come back through the io share and are appended
 * to the host's log as they come (auditrelay.c), so the chain is the
 * host's. With --net allow the host's egress proxy serves the guest
 * (netproxy.c); its net.connect events go into the log among the
 * engine's, by time. */
#include <errno.h>
#include <fcntl.h>
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
	static char *const image[] = { VM_GUEST_IMAGE, NULL };
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
	/* an image root: one tree, already merged, the EROFS image the guest
	 * mounts from its block slot (erofs.c) */
	g.image_layers = o->spec->image_layers ? image : NULL;
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
	if (req && o->spec->image_layers)
		json_object_set_new(req, "image", json_pack("{s:s}", "path", VM_GUEST_IMAGE));
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

void vm_image_json(json_t *o, bool erofs, uint64_t build_us)
{
	if (!erofs)
		return;
	json_object_set_new(o, "image_root", json_string("erofs"));
	if (build_us)
		json_object_set_new(o, "image_build_ms", json_real((double)build_us / 1000.0));
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
		vm_image_json(doc, res->vm_image_erofs, res->vm_image_build_us);
		if (ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0)
			json_dumpfd(doc, fd, JSON_INDENT(2));
	}
	json_decref(doc);
	close(fd);
}

static void slot_close(struct vm_opts *o)
{
	if (o->slot_placeholder_fd >= 0)
		close(o->slot_placeholder_fd);
	if (o->slot_image_fd >= 0)
		close(o->slot_image_fd);
	o->slot_placeholder_fd = o->slot_image_fd = -1;
}

int vm_aegis_run(const struct aegis_spec *spec, struct aegis_result *res, struct aegis_error *err)
{
	struct vm_opts *o;
	struct vm_result r;
	struct audit_log *log = NULL;
	struct cgroup cg;
	struct net_rules rules = { 0 };
	struct auditrelay *relay = NULL;
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
	o->slot_placeholder_fd = o->slot_image_fd = -1;
	/* the block slot's files: the placeholder always (a template's), the
	 * image's EROFS root built now if it is not cached */
	if (vm_paths_of(&o->paths, spec, err) < 0 || vm_slot_placeholder(&o->slot_placeholder_fd, err) < 0 ||
	    (spec->image_layers && vm_erofs_image(spec, &o->slot_image_fd, &o->image_build_us, err) < 0)) {
		slot_close(o);
		free(o);
		goto early;
	}
	if (log && !(relay = auditrelay_new(log, allow))) {
		slot_close(o);
		free(o);
		error_set(err, AEGIS_E_SETUP, ENOMEM, "vm: audit relay");
		goto early;
	}
	o->audit = relay;
	if (allow) {
		o->net_rules = &rules;
		if (relay)
			o->net_report = auditrelay_net_heard, o->net_report_arg = relay;
	}
	o->memory_bytes = spec->limits.memory_bytes + GUEST_OVERHEAD;
	o->vcpus = spec->limits.cpus_milli ? (spec->limits.cpus_milli + 999) / 1000 : 1;
	o->timeout_ms = spec->limits.wall_ms ? spec->limits.wall_ms + 2 * HOST_GRACE_MS : 0;
	o->capture = spec->capture;
	o->capture_max = spec->capture_max;
	o->out_fd = spec->out_fd ? spec->out_fd : 1;
	o->err_fd = spec->err_fd ? spec->err_fd : 2;
	/* An instance is paused by QMP stop and freezing its run cgroup
	 * (src/daemon/pause.c): QEMU goes there;
	 * and --cgroup-parent (a delegated tree, rootless) is where QEMU's
	 * own cgroup goes, bounding it as a whole. */
	hostcg = spec->freezable || spec->cgroup_parent;
	if (hostcg && vm_hostcg_create(&cg, o, err) < 0) {
		slot_close(o);
		free(o);
		auditrelay_free(relay);
		netrules_free(&rules);
		if (log)
			audit_close(log);
		return -1;
	}
	rc = vm_run(o, &r, err);	/* the proxy is stopped when it returns: nothing more is heard */
	if (hostcg)
		vm_hostcg_destroy(&cg, o);
	slot_close(o);	/* QEMU is gone: it opened them through these */
	free(o);
	netrules_free(&rules);
	if (log) {
		auditrelay_end(relay, &r, rc < 0 ? err : NULL);
		auditrelay_free(relay);
		audit_close(log);
	}
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
		res->vm_image_erofs = r.image_erofs;
		res->vm_image_build_us = r.image_build_us;
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
