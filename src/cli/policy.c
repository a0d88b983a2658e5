/* policy.c — `aegis policy check FILE` and `aegis policy show NAME|FILE`.
 *
 * `check` is for the person writing a policy: it says "ok" and shows what
 * the file compiles to, or gives the one-line error naming the field.
 * `show` prints the canonical effect of a built-in profile or a file — the
 * JSON whose digest the audit log records. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/error.h"
#include "../common/policy.h"
#include "cli.h"

static const char policy_usage[] =
	"usage: aegis policy check FILE\n"
	"       aegis policy show NAME|FILE\n"
	"\n"
	"check  validate a policy file; print \"FILE: ok\" and its effect, or one\n"
	"       line naming the wrong field (exit 125)\n"
	"show   print the effect of a built-in profile (default, strict) or a file\n"
	"       as canonical JSON: durations in ms, sizes in bytes\n"
	"\n"
	"The policy file format is described in docs/policy.md.\n";

/* Pretty JSON of the compiled policy on stdout. */
static int policy_print(const struct aegis_policy *policy)
{
	struct aegis_error err = { 0 };
	json_t *j = policy_to_json(policy);
	char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

	json_decref(j);
	if (!text) {
		error_set(&err, AEGIS_E_SETUP, ENOMEM, "policy: printing");
		return cli_fail(&err);
	}
	puts(text);
	free(text);
	/* A full disk or a closed pipe must not look like success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		error_set(&err, AEGIS_E_SETUP, errno, "policy: writing the output");
		return cli_fail(&err);
	}
	return 0;
}

static int policy_run(bool check, const char *arg)
{
	struct aegis_error err = { 0 };
	struct aegis_policy policy;
	char *path = NULL;
	int r;

	/* `check` always reads a file: a file named "strict" in the current
	 * directory must not be mistaken for the built-in profile. */
	if (check && !strchr(arg, '/') &&
	    (!strcmp(arg, "default") || !strcmp(arg, "strict"))) {
		if (asprintf(&path, "./%s", arg) < 0) {
			error_set(&err, AEGIS_E_SETUP, ENOMEM, "policy");
			return cli_fail(&err);
		}
	}
	if (policy_load(path ? path : arg, &policy, &err) < 0) {
		free(path);
		return cli_fail(&err);
	}
	free(path);
	if (check)
		printf("%s: ok\n", arg);
	r = policy_print(&policy);
	policy_free(&policy);
	return r;
}

int cmd_policy(int argc, char **argv)
{
	const char *sub, *arg = NULL;
	bool check;
	int i;

	if (argc < 2)
		return cli_usage_error("policy: missing subcommand (check FILE | show NAME|FILE)");
	sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))
		return fputs(policy_usage, stdout), 0;
	if (strcmp(sub, "check") != 0 && strcmp(sub, "show") != 0)
		return cli_usage_error("policy: unknown subcommand '%s' (check FILE | show NAME|FILE)",
				       sub);
	check = !strcmp(sub, "check");
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return fputs(policy_usage, stdout), 0;
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (argv[i][0] == '-' && argv[i][1])
			return cli_usage_error("policy %s: unknown option '%s'", sub, argv[i]);
		if (arg)
			return cli_usage_error("policy %s: one %s only", sub,
					       check ? "FILE" : "NAME or FILE");
		arg = argv[i];
	}
	for (; i < argc; i++) {
		if (arg)
			return cli_usage_error("policy %s: one %s only", sub,
					       check ? "FILE" : "NAME or FILE");
		arg = argv[i];
	}
	if (!arg)
		return cli_usage_error("policy %s: missing %s", sub, check ? "FILE" : "NAME or FILE");
	return policy_run(check, arg);
}
