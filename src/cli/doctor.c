/* doctor.c — `aegis doctor`: what this host supports and which mode runs. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "../vm/vm.h"

/* The vm backend (docs/vm.md): optional, so it never makes the host unready. */
#define KVM_TRIAL_MS 3000	/* a guest's first line comes in ~0.1 s under KVM */

struct doctor_vm {
	const char *qemu;
	bool kvm;		/* /dev/kvm answers KVM_GET_API_VERSION */
	char kvm_why[160];
	int trial;		/* a trial guest under KVM: 1 ran, 0 did not, -1 not tried */
	char trial_why[200];
	bool use_kvm;		/* what a run would use ($AEGIS_VM_ACCEL) */
	bool accel_bad;		/* $AEGIS_VM_ACCEL cannot be honoured */
	char accel_why[160];
	bool guest;
	struct vm_guest g;
	struct aegis_error gerr;
	long long image_kib;	/* the guest image (initramfs: PID 1 aegis-guest), -1 unreadable */
};

static void doctor_vm(struct doctor_vm *v)
{
	v->qemu = vm_qemu_path();
	v->kvm = vm_kvm_usable(v->kvm_why, sizeof v->kvm_why);
	if (vm_accel(&v->use_kvm, v->accel_why, sizeof v->accel_why) < 0)
		v->use_kvm = false, v->accel_bad = true;
	v->guest = vm_guest_find(&v->g, &v->gerr) == 0;
	v->image_kib = -1;
	if (v->guest) {
		struct stat st;

		if (stat(v->g.initramfs, &st) == 0)
			v->image_kib = (long long)(st.st_size + 1023) / 1024;
	}
	/* /dev/kvm answering is not KVM running a guest (some nested hosts
	 * abort at the first vCPU): a short, bounded trial says which. */
	v->trial = -1;
	if (v->kvm && v->qemu && v->guest)
		v->trial = vm_kvm_trial(&v->g, KVM_TRIAL_MS, v->trial_why, sizeof v->trial_why);
}

/* What a run does and, when that fails here, what to set. */
static const char *doctor_vm_advice(const struct doctor_vm *v)
{
	if (v->accel_bad && v->kvm)
		return "set AEGIS_VM_ACCEL to auto, kvm or tcg";
	if (v->accel_bad)
		return "runs fail: no usable /dev/kvm (AEGIS_VM_ACCEL=tcg runs the test mode)";
	if (v->use_kvm && v->trial == 0)
		return "runs fail here: KVM does not run a guest (AEGIS_VM_ACCEL=tcg runs the test mode; "
		       "auto never falls back by itself)";
	return NULL;
}

static json_t *doctor_vm_json(const struct doctor_vm *v)
{
	json_t *o = json_pack("{s:s?, s:b, s:s?, s:s?, s:s?, s:s}", "qemu", v->qemu, "kvm", v->kvm, "kvm_problem",
			      v->kvm ? NULL : v->kvm_why, "guest_kernel", v->guest ? v->g.release : NULL,
			      "guest_problem", v->guest ? NULL : v->gerr.msg,
			      "accel", v->accel_bad ? "none" : v->use_kvm ? "kvm" : "tcg (test mode, not a security boundary)");

	/* "usable", "unusable" or null (no trial: no /dev/kvm, QEMU or guest) */
	json_object_set_new(o, "kvm_trial", v->trial < 0 ? json_null() : json_string(v->trial ? "usable" : "unusable"));
	if (v->trial >= 0)
		json_object_set_new(o, "kvm_trial_detail", json_string(v->trial_why));
	if (v->guest)
		json_object_set_new(o, "guest", json_pack("{s:s, s:s, s:I}", "vmlinux", v->g.vmlinux, "image",
							   v->g.initramfs, "image_kib", (json_int_t)v->image_kib));
	if (v->accel_bad)
		json_object_set_new(o, "accel_problem", json_string(v->accel_why));
	if (doctor_vm_advice(v))
		json_object_set_new(o, "advice", json_string(doctor_vm_advice(v)));
	return o;
}

static void doctor_vm_print(const struct doctor_vm *v)
{
	const char *env = getenv("AEGIS_VM_ACCEL");

	printf("  vm backend         QEMU %s; /dev/kvm %s\n", v->qemu ? v->qemu : "not installed",
	       v->kvm ? "answers" : v->kvm_why);
	if (v->trial > 0)
		printf("                     KVM: usable (%s)\n", v->trial_why);
	else if (v->trial == 0)
		printf("                     KVM: unusable: %s\n", v->trial_why);
	else if (v->kvm)
		printf("                     KVM: not tried (%s)\n", !v->qemu ? "no QEMU" : "no guest kernel");
	if (v->accel_bad)
		printf("                     AEGIS_VM_ACCEL=%s: %s\n", env ? env : "", v->accel_why);
	else
		printf("                     runs use %s (AEGIS_VM_ACCEL=%s)\n",
		       v->use_kvm ? "KVM" : "TCG: a test mode, not a security boundary", env && *env ? env : "auto");
	if (doctor_vm_advice(v))
		printf("                     %s\n", doctor_vm_advice(v));
	printf("                     guest kernel %s%s\n", v->guest ? v->g.release : v->gerr.msg,
	       v->guest ? " (Debian generic, unpacked by scripts/vm-guest.sh, not installed)" : "");
	if (v->guest)
		printf("                     guest image %s (%lld KiB: aegis-guest as PID 1, built by "
		       "scripts/vm-guest.sh)\n", v->g.initramfs, v->image_kib);
}

int cmd_doctor(int argc, char **argv)
{
	struct aegis_host h;
	struct doctor_vm v = { 0 };
	bool json = argc > 1 && !strcmp(argv[1], "--json");
	bool ok;

	if (argc > 2 || (argc == 2 && !json))
		return cli_usage_error("doctor: unknown argument '%s' (usage: aegis doctor [--json])", argv[argc - 1]);
	aegis_doctor(&h);
	doctor_vm(&v);
	ok = h.userns && h.cgroup_writable && h.seccomp_filter;
	if (json) {
		json_t *o = json_pack("{s:b, s:b, s:i, s:s, s:s, s:b, s:i, s:b, s:b, s:b, s:b, s:s, s:b}",
				      "rootless", h.rootless, "user_namespaces", h.userns,
				      "max_user_namespaces", h.max_user_namespaces,
				      "cgroup_version", h.cgroup_version,
				      "cgroup_controllers", h.cgroup_controllers,
				      "cgroup_writable", h.cgroup_writable, "landlock_abi", h.landlock_abi,
				      "seccomp_filter", h.seccomp_filter, "seccomp_user_notif", h.seccomp_notify,
				      "overlayfs", h.overlayfs, "idmapped_mounts", h.idmapped_mounts,
				      "mode", ok ? "ns" : "unavailable", "ready", ok);
		json_object_set_new(o, "vm", doctor_vm_json(&v));
		json_dumpf(o, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(o);
		return ok ? 0 : 1;
	}
	printf("aegis %s\n", AEGIS_VERSION);
	printf("  running as         %s\n", h.rootless ? "an unprivileged user (rootless)" : "root");
	printf("  user namespaces    %s (max %d)\n", h.userns ? "yes" : "NO", h.max_user_namespaces);
	printf("  cgroup             %s [%s]%s\n", h.cgroup_version, h.cgroup_controllers,
	       h.cgroup_writable ? ", run cgroups can be created" : ", CANNOT create run cgroups (use --cgroup-parent with a delegated cgroup)");
	printf("  landlock           %s", h.landlock_abi ? "yes" : "no");
	if (h.landlock_abi)
		printf(" (ABI %d)", h.landlock_abi);
	printf("\n  seccomp            %s, user notification %s\n", h.seccomp_filter ? "filter" : "NO",
	       h.seccomp_notify ? "yes" : "no");
	printf("  overlayfs          %s\n", h.overlayfs ? "yes" : "no");
	printf("  idmapped mounts    %s\n", h.idmapped_mounts ? "yes" : "no");
	doctor_vm_print(&v);
	printf("mode: %s\n", ok ? "ns (namespaces + cgroup + seccomp): ready" : "unavailable: see the lines in capitals above");
	return ok ? 0 : 1;
}
