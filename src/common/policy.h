/* policy.h — policy files and built-in profiles: JSON → struct aegis_policy.
 *
 * A policy file is one JSON object (DESIGN.md §2, issue "policy guardrails"):
 *   {"commands": {"allow": [..], "deny": [..], "argv_deny": ["git push"]},
 *    "files": {"read": [..], "write": [..], "deny": [..]},
 *    "network": {"mode": "allow", "allow": ["*.github.com:443"], "deny": [..],
 *                "hosts": {"api.internal": "10.1.2.3"}},
 *    "limits": {"wall": "60s", "cpu": "30s", "cpus": 1.5, "memory": "512m",
 *               "pids": 256, "disk": "1g", "output": "8m", "nofile": 1024,
 *               "execs": 500},
 *    "enforcement": "strict" | "best-effort"}
 * Every key is optional; unknown keys, wrong types and out-of-range values
 * are errors whose message names the field (e.g. "commands.allow[2]"). */
#ifndef AEGIS_COMMON_POLICY_H
#define AEGIS_COMMON_POLICY_H

#include <jansson.h>

#include <aegis/aegis.h>

#define POLICY_FILE_MAX (1 << 20)	/* bytes; larger files are refused unread */
#define POLICY_DEPTH_MAX 8		/* nesting levels */
#define POLICY_LIST_MAX 4096		/* entries in one list */

/* "default" and "strict" are built in; anything else is a file path. */
int policy_load(const char *name_or_path, struct aegis_policy *out, struct aegis_error *err);
/* Parse JSON text; origin names the source in errors (a path or a profile). */
int policy_parse(const char *text, size_t len, const char *origin, struct aegis_policy *out,
		 struct aegis_error *err);
/* The compiled effect, in the same shape as a policy file (canonical). */
json_t *policy_to_json(const struct aegis_policy *policy);
/* sha256 of the canonical JSON, lowercase hex (65 bytes with NUL). */
void policy_digest(const struct aegis_policy *policy, char out[65]);
/* Copy the limits the policy sets into *limits (flags applied after override). */
void policy_apply_limits(const struct aegis_policy *policy, struct aegis_limits *limits);
void policy_free(struct aegis_policy *policy);

/* Check one egress rule ("*.example.com:443") or one "name=ip" host entry
 * as the parser checks network.allow and network.hosts, for `aegis run
 * --allow/--deny/--host`. 0, or -1 with a one-line error (no field name). */
int policy_check_net_rule(const char *rule, struct aegis_error *err);
int policy_check_net_host(const char *entry, struct aegis_error *err);

#endif
