/* apply.c — `aegis apply DIR`: the reviewed changes of an overlay run go
 * into the workspace (all or nothing); discarding is deleting DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char apply_usage[] =
	"usage: aegis apply DIR\n"
	"\n"
	"Apply the workspace changes an overlay run left in its --artifacts DIR\n"
	"(see DIR/changes.json and DIR/changes.diff) to the host workspace. Nothing\n"
	"is applied if any changed file was modified in the workspace since the run.\n"
	"To discard the changes instead, delete DIR.\n";

int cmd_apply(int argc, char **argv)
{
	struct aegis_apply_report rep;
	struct aegis_error err = { 0 };

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return fputs(apply_usage, stdout), 0;
	if (argc != 2)
		return cli_usage_error("apply: expected one artifacts directory (usage: aegis apply DIR)");
	if (aegis_apply(argv[1], &rep, &err) < 0)
		return cli_fail(&err);
	printf("applied %zu change%s to %s\n", rep.applied, rep.applied == 1 ? "" : "s", rep.workspace);
	free(rep.workspace);
	return 0;
}
