/* run_flags.c — `aegis run` flags → struct run_flags (spec, policy, limits).
 *
 * Limits come from three places, later ones winning: the engine defaults,
 * the policy (--policy), then the flags on the command line. The network
 * flags work on the loaded policy too: --net replaces its mode, --allow,
 * --deny and --host add to its lists (docs/network.md). */
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/cleanup.h"
#include "../common/paths.h"
#include "../common/policy.h"
#include "../common/util.h"
#include "run_flags.h"
#include "../common/secretinject.h"

enum limit_kind { KIND_DURATION, KIND_SIZE, KIND_COUNT, KIND_CPUS };

struct limit_flag {
	const char *name;
	enum limit_kind kind;
	uint32_t bit;
	size_t offset;		/* into struct aegis_limits */
	uint64_t min;
};

#define LIMIT(n, k, b, field, m) { n, k, b, offsetof(struct aegis_limits, field), m }
static const struct limit_flag limit_flags[] = {
	LIMIT("timeout", KIND_DURATION, AEGIS_LIMIT_WALL, wall_ms, 1),
	LIMIT("cpu-time", KIND_DURATION, AEGIS_LIMIT_CPU, cpu_ms, 1),
	LIMIT("cpus", KIND_CPUS, AEGIS_LIMIT_CPUS, cpus_milli, 1),
	LIMIT("memory", KIND_SIZE, AEGIS_LIMIT_MEMORY, memory_bytes, 4 << 20),
	LIMIT("pids", KIND_COUNT, AEGIS_LIMIT_PIDS, pids, 2),
	LIMIT("disk", KIND_SIZE, AEGIS_LIMIT_DISK, disk_bytes, 1),
	LIMIT("tmp-size", KIND_SIZE, AEGIS_LIMIT_DISK, disk_bytes, 1),	/* older name of --disk */
	LIMIT("output", KIND_SIZE, AEGIS_LIMIT_OUTPUT, output_bytes, 1),
	LIMIT("nofile", KIND_COUNT, AEGIS_LIMIT_NOFILE, nofile, 16),
	LIMIT("execs", KIND_COUNT, AEGIS_LIMIT_EXECS, execs, 1),
};
#define NLIMITS (sizeof limit_flags / sizeof limit_flags[0])

enum { OPT_WORKSPACE = 256, OPT_WORKSPACE_RO, OPT_ENV, OPT_CWD, OPT_HOSTNAME, OPT_CGROUP_PARENT,
       OPT_JSON, OPT_OUTPUT_MAX, OPT_CMD, OPT_POLICY, OPT_AUDIT, OPT_ARTIFACTS, OPT_WS_MODE,
       OPT_NET, OPT_ALLOW, OPT_DENY, OPT_HOST, OPT_SECRET, OPT_IMAGE, OPT_BACKEND, OPT_LIMIT_BASE = 512 };

static const struct option plain_options[] = {
	{ "workspace", required_argument, NULL, OPT_WORKSPACE },
	{ "workspace-ro", required_argument, NULL, OPT_WORKSPACE_RO },
	{ "env", required_argument, NULL, OPT_ENV },
	{ "secret", required_argument, NULL, OPT_SECRET },
	{ "cwd", required_argument, NULL, OPT_CWD },
	{ "image", required_argument, NULL, OPT_IMAGE },
	{ "hostname", required_argument, NULL, OPT_HOSTNAME },
	{ "cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "output-max", required_argument, NULL, OPT_OUTPUT_MAX },
	{ "cmd", required_argument, NULL, OPT_CMD },
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "audit", required_argument, NULL, OPT_AUDIT },
	{ "artifacts", required_argument, NULL, OPT_ARTIFACTS },
	{ "workspace-mode", required_argument, NULL, OPT_WS_MODE },
	{ "net", required_argument, NULL, OPT_NET },
	{ "allow", required_argument, NULL, OPT_ALLOW },
	{ "deny", required_argument, NULL, OPT_DENY },
	{ "host", required_argument, NULL, OPT_HOST },
	{ "backend", required_argument, NULL, OPT_BACKEND },
	{ "help", no_argument, NULL, 'h' },
};

static int parse_limit(const struct limit_flag *lf, const char *arg, struct aegis_limits *l)
{
	uint64_t v = 0;
	char *end;
	double cpus;

	switch (lf->kind) {
	case KIND_DURATION:
		if (parse_duration_ms(arg, &v) < 0 || v < lf->min)
			return cli_usage_error("--%s: not a positive duration: '%s' (e.g. 30s, 500ms, 2m)",
					       lf->name, arg);
		break;
	case KIND_SIZE:
		if (parse_size(arg, &v) < 0 || v < lf->min)
			return cli_usage_error("--%s: not a size of at least %llu bytes: '%s' (e.g. 512m, 1g)",
					       lf->name, (unsigned long long)lf->min, arg);
		break;
	case KIND_COUNT:
		if (parse_u64(arg, &v) < 0 || v < lf->min)
			return cli_usage_error("--%s: not a whole number of at least %llu: '%s'",
					       lf->name, (unsigned long long)lf->min, arg);
		break;
	case KIND_CPUS:
		cpus = strtod(arg, &end);
		if (!*arg || *end || !isfinite(cpus) || cpus < 0.001 || cpus > 1024)
			return cli_usage_error("--cpus: not a number of CPUs between 0.001 and 1024: '%s'", arg);
		*(uint32_t *)((char *)l + lf->offset) = (uint32_t)lround(cpus * 1000);
		return 0;
	}
	*(uint64_t *)((char *)l + lf->offset) = v;
	return 0;
}

static int parse_plain(int opt, const char *arg, struct run_flags *f)
{
	struct aegis_spec *s = &f->spec;
	uint64_t v;

	switch (opt) {
	case OPT_WORKSPACE:
	case OPT_WORKSPACE_RO:
		if (s->workspace)
			return cli_usage_error("--workspace given twice");
		s->workspace = arg;
		s->workspace_ro = opt == OPT_WORKSPACE_RO;
		return 0;
	case OPT_BACKEND:
		if (strcmp(arg, "ns") && strcmp(arg, "vm"))
			return cli_usage_error("--backend: '%s' is none of ns (namespaces, the default) and vm", arg);
		f->vm = !strcmp(arg, "vm");
		return 0;
	case OPT_ENV:
		if (!strchr(arg, '=') || arg[0] == '=')
			return cli_usage_error("--env: expected NAME=VALUE, got '%s'", arg);
		f->env[f->nenv++] = (char *)arg;
		return 0;
	case OPT_SECRET:
		/* the name only: the value comes from the store, never from argv
		 * (a name given twice is refused when the values are loaded) */
		if (!secret_request_valid(arg))
			return cli_usage_error("--secret: expected NAME, NAME:env or NAME:file "
					       "(NAME: ^[A-Za-z_][A-Za-z0-9_]{0,127}$), got '%s'", arg);
		f->secrets[f->nsecrets++] = (char *)arg;
		return 0;
	case OPT_CWD: s->cwd = arg; f->cwd_set = true; return 0;
	case OPT_IMAGE:
		if (f->image)
			return cli_usage_error("--image given twice");
		f->image = strcmp(arg, "host") ? arg : NULL;	/* "host": the default */
		return 0;
	case OPT_HOSTNAME: s->hostname = arg; return 0;
	case OPT_CGROUP_PARENT: s->cgroup_parent = arg; return 0;
	case OPT_JSON: f->json = true; return 0;
	case OPT_CMD: f->cmd = arg; return 0;
	case OPT_POLICY: f->policy_name = arg; return 0;
	case OPT_AUDIT: s->audit_path = arg; return 0;
	case OPT_ARTIFACTS: s->artifacts_dir = arg; return 0;
	case OPT_WS_MODE:
		if (!strcmp(arg, "rw") || !strcmp(arg, "ro") || !strcmp(arg, "overlay")) {
			f->ws_mode = arg;
			return 0;
		}
		return cli_usage_error("--workspace-mode: expected rw, ro or overlay, got '%s'", arg);
	case OPT_OUTPUT_MAX:
		if (parse_size(arg, &v) < 0 || v == 0)
			return cli_usage_error("--output-max: not a positive size: '%s' (e.g. 64k, 1m)", arg);
		s->capture_max = (size_t)v;
		return 0;
	}
	return cli_usage_error("internal: unhandled option");
}

/* The network flags, checked as they are read and applied to the policy
 * once it is loaded. */
struct net_flag {
	int opt;		/* OPT_ALLOW, OPT_DENY or OPT_HOST */
	const char *arg;
};

struct net_flags {
	const char *mode;	/* --net, or NULL: the policy's */
	struct net_flag *list;	/* in command-line order; room for argc */
	size_t n;
};

static const char *net_flag_name(int opt)
{
	return opt == OPT_ALLOW ? "--allow" : opt == OPT_DENY ? "--deny" : "--host";
}

static int parse_net(int opt, const char *arg, struct net_flags *nf)
{
	struct aegis_error err = { 0 };
	int r;

	if (opt == OPT_NET) {
		if (nf->mode)
			return cli_usage_error("--net given twice");
		if (strcmp(arg, "none") && strcmp(arg, "allow") && strcmp(arg, "host"))
			return cli_usage_error("--net: expected none, allow or host, got '%s'", arg);
		nf->mode = arg;
		return 0;
	}
	/* The policy parser's own checks, so a rule means the same on the
	 * command line as in a file. */
	r = opt == OPT_HOST ? policy_check_net_host(arg, &err) : policy_check_net_rule(arg, &err);
	if (r < 0)
		return cli_usage_error("%s: %s", net_flag_name(opt), err.msg);
	nf->list[nf->n++] = (struct net_flag){ opt, arg };
	return 0;
}

/* Append a copy of s to a NULL-terminated list the policy owns (policy_free
 * releases it). */
static int list_append(char ***slot, const char *s)
{
	char **list = *slot, *copy;
	size_t n = 0;

	while (list && list[n])
		n++;
	if (!(copy = strdup(s)))
		return -1;
	list = realloc(list, (n + 2) * sizeof *list);
	if (!list) {
		free(copy);
		return -1;
	}
	list[n] = copy;
	list[n + 1] = NULL;
	*slot = list;
	return 0;
}

static void list_drop(char ***slot)
{
	for (size_t i = 0; *slot && (*slot)[i]; i++)
		free((*slot)[i]);
	free(*slot);
	*slot = NULL;
}

/* The name of a "name=ip" entry without a trailing dot; names ignore case. */
static size_t host_name_len(const char *entry)
{
	size_t n = strcspn(entry, "=");

	return n && entry[n - 1] == '.' ? n - 1 : n;
}

static bool host_mapped(char *const *hosts, const char *entry)
{
	size_t n = host_name_len(entry);

	for (size_t i = 0; hosts && hosts[i]; i++)
		if (host_name_len(hosts[i]) == n && !strncasecmp(hosts[i], entry, n))
			return true;
	return false;
}

/* --net replaces the policy's mode; --allow, --deny and --host add to its
 * lists. Rules only mean something in the allow mode: with --net none or
 * --net host the policy's lists go, and a rule flag is an error rather
 * than a rule silently ignored. */
static int apply_net(struct aegis_policy *p, const struct net_flags *nf)
{
	const char *mode;

	if (nf->mode) {
		char *m = strdup(nf->mode);

		if (!m)
			return cli_usage_error("out of memory");
		free(p->net_mode);
		p->net_mode = m;
	}
	mode = p->net_mode ? p->net_mode : "none";
	if (strcmp(mode, "allow") != 0) {
		if (nf->n && nf->mode)
			return cli_usage_error("%s needs --net allow (not --net %s)",
					       net_flag_name(nf->list[0].opt), mode);
		if (nf->n)
			return cli_usage_error("%s needs --net allow (the policy's mode is \"%s\")",
					       net_flag_name(nf->list[0].opt), mode);
		list_drop(&p->net_allow);
		list_drop(&p->net_deny);
		list_drop(&p->net_hosts);
		return 0;
	}
	for (size_t i = 0; i < nf->n; i++) {
		const struct net_flag *fl = &nf->list[i];
		char ***slot = fl->opt == OPT_ALLOW ? &p->net_allow
			     : fl->opt == OPT_DENY ? &p->net_deny : &p->net_hosts;

		/* Two addresses for one name would leave the choice to
		 * whichever the proxy reads first. */
		if (fl->opt == OPT_HOST && host_mapped(p->net_hosts, fl->arg))
			return cli_usage_error("--host: '%.*s' is already mapped (by the policy or an earlier --host)",
					       (int)host_name_len(fl->arg), fl->arg);
		if (list_append(slot, fl->arg) < 0)
			return cli_usage_error("out of memory");
	}
	return 0;
}

/* Policy limits over the defaults, then the flags over both. */
static int apply_policy(struct run_flags *f, const struct aegis_limits *flags, uint32_t set,
			const struct net_flags *nf)
{
	struct aegis_error err = { 0 };

	if (policy_load(f->policy_name ? f->policy_name : "default", &f->policy, &err) < 0)
		return cli_fail(&err);
	f->have_policy = true;
	f->spec.policy = &f->policy;
	if (apply_net(&f->policy, nf) != 0)
		return EXIT_AEGIS_ERROR;
	policy_apply_limits(&f->policy, &f->spec.limits);
	for (size_t i = 0; i < NLIMITS; i++) {
		const struct limit_flag *lf = &limit_flags[i];
		if (!(set & lf->bit))
			continue;
		if (lf->kind == KIND_CPUS)
			f->spec.limits.cpus_milli = flags->cpus_milli;
		else
			*(uint64_t *)((char *)&f->spec.limits + lf->offset) =
				*(const uint64_t *)((const char *)flags + lf->offset);
	}
	return 0;
}

int run_flags_parse(int argc, char **argv, struct run_flags *f, bool aegix)
{
	struct option options[sizeof plain_options / sizeof plain_options[0] + NLIMITS + 1];
	struct aegis_limits flag_limits = { 0 };
	_cleanup_free_ struct net_flag *net_list = calloc((size_t)argc + 1, sizeof *net_list);
	struct net_flags nf = { .list = net_list };
	struct aegis_error err = { 0 };
	const char *backend;
	uint32_t set = 0;
	size_t n = 0;
	int opt, idx;

	memcpy(options, plain_options, sizeof plain_options);
	n = sizeof plain_options / sizeof plain_options[0];
	for (size_t i = 0; i < NLIMITS; i++)
		options[n++] = (struct option){ limit_flags[i].name, required_argument, NULL,
						OPT_LIMIT_BASE + (int)i };
	options[n] = (struct option){ 0 };
	f->env = calloc((size_t)argc + 1, sizeof *f->env);
	f->secrets = calloc((size_t)argc + 1, sizeof *f->secrets);
	if (!f->env || !f->secrets || !net_list)
		return cli_usage_error("out of memory");
	/* $AEGIS_BACKEND is the default; --backend overrides it */
	if (paths_default_backend(&backend, &err) < 0)
		return cli_usage_error("%s", err.msg);
	f->vm = !strcmp(backend, "vm");
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+h", options, &idx)) != -1) {
		if (opt == 'h')
			return -1;
		if (opt == '?' || opt == ':') {
			if (optopt)
				return cli_usage_error("run: option '-%c' is unknown or needs a value", optopt);
			return cli_usage_error("run: option '%s' is unknown or needs a value", argv[optind - 1]);
		}
		if (opt == OPT_CMD && !aegix)
			return cli_usage_error("run: --cmd is for aegix; use 'aegis run -- CMD'");
		if (opt >= OPT_LIMIT_BASE) {
			const struct limit_flag *lf = &limit_flags[opt - OPT_LIMIT_BASE];
			if (parse_limit(lf, optarg, &flag_limits) != 0)
				return EXIT_AEGIS_ERROR;
			set |= lf->bit;
		} else if (opt >= OPT_NET && opt <= OPT_HOST) {
			if (parse_net(opt, optarg, &nf) != 0)
				return EXIT_AEGIS_ERROR;
		} else if (parse_plain(opt, optarg, f) != 0) {
			return EXIT_AEGIS_ERROR;
		}
	}
	f->spec.env = f->env;
	if (f->ws_mode) {
		if (!f->spec.workspace)
			return cli_usage_error("--workspace-mode needs --workspace DIR");
		if (f->spec.workspace_ro && strcmp(f->ws_mode, "ro"))
			return cli_usage_error("--workspace-ro conflicts with --workspace-mode %s", f->ws_mode);
		f->spec.workspace_ro = !strcmp(f->ws_mode, "ro");
		f->spec.workspace_overlay = !strcmp(f->ws_mode, "overlay");
	}
	return apply_policy(f, &flag_limits, set, &nf);
}

void run_flags_free(struct run_flags *f)
{
	free(f->env);
	free(f->secrets);
	if (f->have_policy)
		policy_free(&f->policy);
}
