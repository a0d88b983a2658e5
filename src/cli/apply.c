/* apply.c — `aegis apply DIR`: the reviewed changes of an overlay run go
 * into the workspace (all or nothing); discarding is deleting DIR. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/paths.h"
#include "../common/workspaces.h"
#include "cli.h"

static const char apply_usage[] =
	"usage: aegis apply DIR\n"
	"\n"
	"Apply the workspace changes an overlay run left in its --artifacts DIR\n"
	"(see DIR/changes.json and DIR/changes.diff) to the host workspace. Nothing\n"
	"is applied if any changed file was modified in the workspace since the run.\n"
	"To discard the changes instead, delete DIR.\n";

/* A run on a named workspace: held (as a run holds it) while the changes
 * go in, so a `workspace delete` cannot run meanwhile. 0, or -1 with err;
 * nothing to hold for a host directory. */
static int hold_named(const char *dir, struct workspace_hold *h, struct aegis_error *err)
{
	char path[4200], state[4096];
	json_t *result;
	const char *name;
	int r = 0;

	snprintf(path, sizeof path, "%s/result.json", dir);
	if (!(result = json_load_file(path, 0, NULL)))
		return 0;	/* aegis_apply says what is wrong with DIR */
	name = json_string_value(json_object_get(json_object_get(result, "workspace"), "name"));
	if (name && (paths_state(state, sizeof state, err) < 0 || workspace_hold(state, name, h, err) < 0))
		r = -1;
	json_decref(result);
	return r;
}

int cmd_apply(int argc, char **argv)
{
	struct workspace_hold hold = { .lock_fd = -1, .data_fd = -1 };
	struct aegis_apply_report rep;
	struct aegis_error err = { 0 };
	int r;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return fputs(apply_usage, stdout), 0;
	if (argc != 2)
		return cli_usage_error("apply: expected one artifacts directory (usage: aegis apply DIR)");
	if (hold_named(argv[1], &hold, &err) < 0)
		return cli_fail(&err);
	r = aegis_apply(argv[1], &rep, &err);
	workspace_release(&hold);
	if (r < 0)
		return cli_fail(&err);
	printf("applied %zu change%s to %s\n", rep.applied, rep.applied == 1 ? "" : "s", rep.workspace);
	free(rep.workspace);
	return 0;
}
