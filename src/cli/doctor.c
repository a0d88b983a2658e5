/* doctor.c — `aegis doctor`: what this host supports and which mode runs. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_doctor(int argc, char **argv)
{
	struct aegis_host h;
	bool json = argc > 1 && !strcmp(argv[1], "--json");
	bool ok;

	if (argc > 2 || (argc == 2 && !json))
		return cli_usage_error("doctor: unknown argument '%s' (usage: aegis doctor [--json])", argv[argc - 1]);
	aegis_doctor(&h);
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
	printf("mode: %s\n", ok ? "ns (namespaces + cgroup + seccomp): ready" : "unavailable: see the lines in capitals above");
	return ok ? 0 : 1;
}
