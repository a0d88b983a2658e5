/* audit.c — `aegis audit verify FILE` and `aegis audit show FILE`: check the
 * hash chain of an audit log (DESIGN.md §7), or print it as a timeline.
 *
 * verify exits 0 when the chain is intact, 1 when it is not (one line on
 * stderr naming the first bad line), 125 when the file cannot be read or
 * the command line is wrong — so scripts can tell "tampered" from "broken
 * invocation". */
#include <stdio.h>
#include <string.h>

#include "../common/audit.h"
#include "cli.h"

static const char audit_usage[] =
	"usage: aegis audit verify FILE   check the hash chain; exit 0 intact, 1 tampered\n"
	"       aegis audit show FILE     print the events as a timeline (UTC)\n";

static bool audit_is_help(const char *arg)
{
	return !strcmp(arg, "--help") || !strcmp(arg, "-h") || !strcmp(arg, "help");
}

/* The FILE operand of `aegis audit SUB [--] FILE`, or NULL after a usage error. */
static const char *audit_file_arg(int argc, char **argv, int *status)
{
	int i = 2;

	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	else if (i < argc && argv[i][0] == '-' && argv[i][1] != '\0') {
		*status = cli_usage_error("audit %s: unknown option '%s' (usage: aegis audit %s FILE)",
					  argv[1], argv[i], argv[1]);
		return NULL;
	}
	if (i >= argc) {
		*status = cli_usage_error("audit %s: missing FILE (usage: aegis audit %s FILE)",
					  argv[1], argv[1]);
		return NULL;
	}
	if (i + 1 < argc) {
		*status = cli_usage_error("audit %s: unexpected argument '%s' (usage: aegis audit %s FILE)",
					  argv[1], argv[i + 1], argv[1]);
		return NULL;
	}
	return argv[i];
}

static int audit_cmd_verify(const char *path)
{
	struct aegis_error err = { 0 };
	struct audit_report rep;
	int r = audit_verify(path, &rep, &err);

	if (r < 0)
		return cli_fail(&err);
	if (r > 0) {
		fprintf(stderr, "aegis: audit %s: line %zu: %s\n", path, rep.bad_line, rep.reason);
		return 1;
	}
	printf("%s: ok, %zu event%s, hash chain intact\n", path, rep.events,
	       rep.events == 1 ? "" : "s");
	return 0;
}

static int audit_cmd_show(const char *path)
{
	struct aegis_error err = { 0 };

	if (audit_show(path, stdout, &err) < 0)
		return cli_fail(&err);
	return 0;
}

int cmd_audit(int argc, char **argv)
{
	const char *path;
	int status = 0;

	if (argc < 2)
		return cli_usage_error("audit: missing subcommand (usage: aegis audit verify|show FILE)");
	if (audit_is_help(argv[1]) || (argc > 2 && audit_is_help(argv[2]) &&
				       (!strcmp(argv[1], "verify") || !strcmp(argv[1], "show"))))
		return fputs(audit_usage, stdout), 0;
	if (strcmp(argv[1], "verify") && strcmp(argv[1], "show"))
		return cli_usage_error("audit: unknown subcommand '%s' (usage: aegis audit verify|show FILE)",
				       argv[1]);
	path = audit_file_arg(argc, argv, &status);
	if (!path)
		return status;
	return !strcmp(argv[1], "verify") ? audit_cmd_verify(path) : audit_cmd_show(path);
}
