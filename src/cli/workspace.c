/* workspace.c — `aegis workspace create|list|info|delete`: named
 * workspaces under the state dir (common/workspaces.c), used with
 * `aegis run --workspace NAME` and `aegis instance start --workspace NAME`.
 * Works without the daemon: the store is shared through the file system
 * and its locks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../common/paths.h"
#include "../common/util.h"
#include "../common/workspaces.h"
#include "cli.h"

static const char workspace_usage[] =
	"usage: aegis workspace create NAME [--size SIZE]  (a size limit, e.g. 512m, needs root)\n"
	"       aegis workspace list [--json]\n"
	"       aegis workspace info NAME [--json]\n"
	"       aegis workspace delete NAME                (refused while a run or an instance uses it)\n"
	"NAME matches ^[a-z0-9][a-z0-9-]{0,62}$. Use one with: aegis run --workspace NAME -- CMD\n";

/* 512 MiB, 3 GiB, or bytes when it is not a whole number of either. */
static const char *human(json_int_t bytes, char *buf, size_t cap)
{
	static const char *const units[] = { "TiB", "GiB", "MiB", "KiB" };

	for (int i = 0; i < 4; i++) {
		json_int_t scale = (json_int_t)1 << (10 * (4 - i));
		if (bytes >= scale && bytes % scale == 0) {
			snprintf(buf, cap, "%lld %s", (long long)(bytes / scale), units[i]);
			return buf;
		}
	}
	snprintf(buf, cap, "%lld bytes", (long long)bytes);
	return buf;
}

static const char *when(json_t *unix_s, char *buf, size_t cap)
{
	time_t t = (time_t)json_integer_value(unix_s);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

static int state_dir(char *out, size_t len)
{
	struct aegis_error err = { 0 };

	return paths_state(out, len, &err) < 0 ? cli_fail(&err) : 0;
}

static int create(int argc, char **argv)
{
	struct aegis_error err = { 0 };
	const char *name = NULL, *size_arg = NULL;
	char state[4096], b[32];
	uint64_t size = 0;
	bool options = true;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (options && !strcmp(argv[i], "--size") && i + 1 < argc)
			size_arg = argv[++i];
		else if (options && !strncmp(argv[i], "--size=", 7))
			size_arg = argv[i] + 7;
		else if (options && !strcmp(argv[i], "--"))
			options = false;
		else if (options && argv[i][0] == '-')
			return cli_usage_error("workspace create: unknown option or missing value: '%.64s'", argv[i]);
		else if (!name)
			name = argv[i];
		else
			return cli_usage_error("workspace create: one NAME, please (see 'aegis workspace --help')");
	}
	if (!name)
		return cli_usage_error("workspace create: needs a NAME");
	if (size_arg && (parse_size(size_arg, &size) < 0 || size == 0))
		return cli_usage_error("workspace create: --size: not a size: '%.64s' (e.g. 512m, 2g)", size_arg);
	if ((rc = state_dir(state, sizeof state)) != 0)
		return rc;
	if (workspace_create(state, name, size, &err) < 0)
		return cli_fail(&err);
	if (size)
		printf("%s: created, size limit %s\n", name, human((json_int_t)size, b, sizeof b));
	else
		printf("%s: created\n", name);
	return 0;
}

static int list(bool as_json)
{
	struct aegis_error err = { 0 };
	char state[4096], b[2][32];
	json_t *out, *one;
	size_t i;
	int rc;

	if ((rc = state_dir(state, sizeof state)) != 0)
		return rc;
	if (!(out = workspace_list(state, &err)))
		return cli_fail(&err);
	if (as_json) {
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(out);
		return 0;
	}
	printf("%-32s %-12s %s\n", "NAME", "SIZE LIMIT", "CREATED");
	json_array_foreach(json_object_get(out, "workspaces"), i, one) {
		json_t *size = json_object_get(one, "size_bytes");
		const char *error = json_string_value(json_object_get(one, "error"));

		if (error)
			printf("%-32s %s\n", json_string_value(json_object_get(one, "name")), error);
		else
			printf("%-32s %-12s %s\n", json_string_value(json_object_get(one, "name")),
			       json_is_integer(size) ? human(json_integer_value(size), b[0], sizeof b[0]) : "none",
			       when(json_object_get(one, "created"), b[1], sizeof b[1]));
	}
	json_decref(out);
	return 0;
}

static void print_info(json_t *w)
{
	json_t *size = json_object_get(w, "size_bytes"), *v;
	char b[32], users[1024] = "";
	size_t i;

	printf("name        %s\n", json_string_value(json_object_get(w, "name")));
	printf("path        %s\n", json_string_value(json_object_get(w, "path")));
	printf("created     %s\n", when(json_object_get(w, "created"), b, sizeof b));
	printf("size limit  %s\n", json_is_integer(size) ? human(json_integer_value(size), b, sizeof b) : "none");
	printf("used        %lld bytes%s\n", (long long)json_integer_value(json_object_get(w, "used_bytes")),
	       json_is_true(json_object_get(w, "used_complete")) ? "" : " at least (the count was cut short)");
	if (json_object_get(w, "free_bytes"))
		printf("free        %lld bytes\n", (long long)json_integer_value(json_object_get(w, "free_bytes")));
	json_array_foreach(json_object_get(w, "instances"), i, v)
		snprintf(users + strlen(users), sizeof users - strlen(users), "%s%s", i ? ", " : "",
			 json_string_value(v));
	printf("instances   %s\n", users[0] ? users : "none");
	printf("in use      %s\n", json_is_true(json_object_get(w, "in_use")) ? "yes" : "no");
}

static int info(const char *name, bool as_json)
{
	struct aegis_error err = { 0 };
	char state[4096];
	json_t *w;
	int rc;

	if ((rc = state_dir(state, sizeof state)) != 0)
		return rc;
	if (!(w = workspace_info(state, name, &err)))
		return cli_fail(&err);
	if (as_json) {
		json_dumpf(w, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
	} else {
		print_info(w);
	}
	json_decref(w);
	return 0;
}

static int delete(const char *name)
{
	struct aegis_error err = { 0 };
	char state[4096];
	int rc;

	if ((rc = state_dir(state, sizeof state)) != 0)
		return rc;
	if (workspace_delete(state, name, &err) < 0)
		return cli_fail(&err);
	printf("%s: deleted\n", name);
	return 0;
}

int cmd_workspace(int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : "";
	bool json = argc == 4 && !strcmp(argv[3], "--json");

	if (!strcmp(verb, "create"))
		return create(argc - 1, argv + 1);
	if (!strcmp(verb, "list") && (argc == 2 || (argc == 3 && !strcmp(argv[2], "--json"))))
		return list(argc == 3);
	if (!strcmp(verb, "info") && (argc == 3 || json))
		return info(argv[2], json);
	if (!strcmp(verb, "delete") && argc == 3)
		return delete(argv[2]);
	if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help"))
		return fputs(workspace_usage, stdout), 0;
	fputs(workspace_usage, stderr);
	return EXIT_AEGIS_ERROR;
}
