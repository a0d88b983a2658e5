/* instance.c — `aegis instance start|list|info|delete`: persistent named
 * instances, through aegisd's API (started on demand). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/httpc.h"
#include "../common/paths.h"
#include "../common/util.h"
#include "../common/workspaces.h"
#include "cli.h"
#include "image_use.h"

static const char instance_usage[] =
	"usage: aegis instance start --name NAME [--backend ns|vm] [--workspace DIR|WS | --workspace-ro DIR|WS] [--env K=V]...\n"
	"                            [--secret NAME[:env|:file]]... [--image REF] [--cwd DIR] [--policy NAME|FILE] [--expose [ADDR:]HOST:GUEST]...\n"
	"                            [--idle-pause DURATION] [--idle-stop DURATION] -- CMD [ARGS...]\n"
	"       aegis instance list [--json]\n"
	"       aegis instance info NAME\n"
	"       aegis instance delete NAME\n"
	"       aegis instance pause NAME | resume NAME | disable NAME\n"
	"       aegis instance start --name NAME      (again, from its stored config)\n";

/* One API call; prints the daemon's error (one line) on failure. */
static int call(const char *method, const char *path, json_t *body, json_t **out)
{
	struct aegis_error err = { 0 };
	struct httpc_response r;
	char sock[256], *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_t *j, *e;
	int rc;

	json_decref(body);
	if (paths_socket(sock, sizeof sock, &err) < 0) {
		free(text);
		return cli_fail(&err);
	}
	if ((rc = daemon_ensure(sock)) != 0 || httpc_request(sock, method, path, text, &r, &err) < 0) {
		free(text);
		return rc ? rc : cli_fail(&err);
	}
	free(text);
	j = json_loads(r.body, 0, NULL);
	rc = r.status;
	httpc_response_free(&r);
	if (rc >= 400) {
		e = json_object_get(j, "error");
		rc = cli_usage_error("instance: %s%s%s", json_string_value(json_object_get(e, "field")) ?: "",
				     json_object_get(e, "field") ? ": " : "",
				     json_string_value(json_object_get(e, "message")) ?: "error");
		json_decref(j);
		return rc;
	}
	*out = j;
	return 0;
}

/* POST /v1/instances/NAME/VERB */
static int verb(const char *name, const char *what)
{
	char path[160];
	json_t *out = NULL;
	int rc;

	if (strlen(name) > 64 || strchr(name, '/') || !*name)
		return cli_usage_error("instance: not an instance name: '%s'", name);
	snprintf(path, sizeof path, "/v1/instances/%s/%s", name, what);
	if ((rc = call("POST", path, NULL, &out)) != 0)
		return rc;
	printf("%s: %s\n", name, json_string_value(json_object_get(out, "state")));
	json_decref(out);
	return 0;
}

/* The daemon does not pull: an image not yet in the store is pulled here
 * first (with progress on a terminal), then named by its canonical ref. */
static int pull_for(json_t *req)
{
	struct image_root img = { .lock_fd = -1 };
	struct aegis_error err = { 0 };
	const char *ref = json_string_value(json_object_get(req, "image"));
	int r;

	if (!strcmp(ref, "host"))
		return 0;
	if ((r = image_use(ref, false, &img, &err)) != 0)
		return r < 0 ? cli_fail(&err) : r;
	json_object_set_new(req, "image", json_string(img.ref));
	image_root_free(&img);
	return 0;
}

static int start(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' }, { "workspace", required_argument, NULL, 'w' },
		{ "workspace-ro", required_argument, NULL, 'r' }, { "env", required_argument, NULL, 'e' },
		{ "cwd", required_argument, NULL, 'c' }, { "policy", required_argument, NULL, 'p' },
		{ "expose", required_argument, NULL, 'x' }, { "idle-pause", required_argument, NULL, 'I' },
		{ "idle-stop", required_argument, NULL, 'S' }, { "secret", required_argument, NULL, 's' },
		{ "image", required_argument, NULL, 'i' }, { "backend", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *req = json_object(), *env = json_array(), *args = json_array(), *out = NULL,
	       *expose = json_array(), *secrets = json_array();
	char ws[4096];
	uint64_t ms;
	int opt, rc;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': json_object_set_new(req, "name", json_string(optarg)); break;
		case 'w':
		case 'r':
			/* a named workspace goes as its name (the daemon checks that
			 * it exists); a directory as a path the daemon can resolve
			 * on its own */
			if (workspace_is_name(optarg) ? !name_valid(optarg) : !realpath(optarg, ws)) {
				json_decref(req), json_decref(env), json_decref(args), json_decref(expose), json_decref(secrets);
				if (workspace_is_name(optarg))
					return cli_usage_error("instance start: not a workspace name: '%.64s' "
							       "(a directory here: ./DIR)", optarg);
				return cli_usage_error("instance start: workspace %s does not exist", optarg);
			}
			json_object_set_new(req, "workspace", json_string(workspace_is_name(optarg) ? optarg : ws));
			json_object_set_new(req, "workspace_ro", json_boolean(opt == 'r'));
			break;
		case 'e': json_array_append_new(env, json_string(optarg)); break;
		case 'c': json_object_set_new(req, "cwd", json_string(optarg)); break;
		case 'p': json_object_set_new(req, "policy", json_string(optarg)); break;
		case 'x': json_array_append_new(expose, json_string(optarg)); break;
		case 's': json_array_append_new(secrets, json_string(optarg)); break;	/* names; the daemon checks them */
		case 'i': json_object_set_new(req, "image", json_string(optarg)); break;	/* pulled below if missing */
		case 'b':
			if (strcmp(optarg, "ns") && strcmp(optarg, "vm")) {
				json_decref(req), json_decref(env), json_decref(args), json_decref(expose), json_decref(secrets);
				return cli_usage_error("instance start: --backend must be ns or vm, not '%.64s'", optarg);
			}
			json_object_set_new(req, "backend", json_string(optarg));
			break;
		case 'I':
		case 'S':
			/* a duration (30s, 15m, 0 = never), whole seconds on the wire */
			if (parse_duration_ms(optarg, &ms) < 0 || ms % 1000) {
				json_decref(req), json_decref(env), json_decref(args), json_decref(expose), json_decref(secrets);
				return cli_usage_error("instance start: --%s wants whole seconds (e.g. 30s, 15m, 0): %s",
						       opt == 'I' ? "idle-pause" : "idle-stop", optarg);
			}
			json_object_set_new(req, opt == 'I' ? "idle_pause_s" : "idle_stop_s",
					    json_integer((json_int_t)(ms / 1000)));
			break;
		default:
			json_decref(req), json_decref(env), json_decref(args), json_decref(expose), json_decref(secrets);
			return cli_usage_error("instance start: option '%s' is unknown or needs a value", argv[optind - 1]);
		}
	}
	if (json_array_size(expose))
		json_object_set(req, "expose", expose);
	json_decref(expose);
	if (json_array_size(secrets))
		json_object_set(req, "secrets", secrets);
	json_decref(secrets);
	if (json_object_get(req, "name") && optind >= argc && json_object_size(req) == 1 &&
	    !json_array_size(env)) {
		/* just a name: start it again from its stored config */
		char name[80];
		snprintf(name, sizeof name, "%s", json_string_value(json_object_get(req, "name")));
		json_decref(req), json_decref(env), json_decref(args);
		return verb(name, "start");
	}
	if (!json_object_get(req, "name") || optind >= argc) {
		json_decref(req), json_decref(env), json_decref(args);
		return cli_usage_error("instance start: needs --name NAME and a command after --");
	}
	/* $AEGIS_BACKEND, as for `aegis run`, unless --backend was given: sent
	 * explicitly, so the daemon's own environment does not decide */
	if (!json_object_get(req, "backend")) {
		struct aegis_error err = { 0 };
		const char *backend;
		if (paths_default_backend(&backend, &err) < 0) {
			json_decref(req), json_decref(env), json_decref(args);
			return cli_usage_error("instance start: %s", err.msg);
		}
		json_object_set_new(req, "backend", json_string(backend));
	}
	if (json_object_get(req, "image") && (rc = pull_for(req)) != 0) {
		json_decref(req), json_decref(env), json_decref(args);
		return rc;
	}
	for (int i = optind; i < argc; i++)
		json_array_append_new(args, json_string(argv[i]));
	json_object_set_new(req, "argv", args);
	json_object_set_new(req, "env", env);
	if ((rc = call("POST", "/v1/instances", req, &out)) != 0)
		return rc;
	printf("%s: %s\n", json_string_value(json_object_get(out, "name")),
	       json_string_value(json_object_get(out, "state")));
	json_decref(out);
	return 0;
}

static int named(const char *method, const char *name, bool print_json)
{
	char path[128];
	json_t *out = NULL;
	int rc;

	if (strlen(name) > 64 || strchr(name, '/') || !*name)
		return cli_usage_error("instance: not an instance name: '%s'", name);
	snprintf(path, sizeof path, "/v1/instances/%s", name);
	if ((rc = call(method, path, NULL, &out)) != 0)
		return rc;
	if (print_json)
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER), fputc('\n', stdout);
	else
		printf("%s: %s\n", name, json_string_value(json_object_get(out, "state")));
	json_decref(out);
	return 0;
}

static int list(bool as_json)
{
	json_t *out = NULL, *one;
	size_t i;
	int rc;

	if ((rc = call("GET", "/v1/instances", NULL, &out)) != 0)
		return rc;
	if (as_json) {
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
	} else {
		printf("%-24s %-10s %-7s %s\n", "NAME", "STATE", "BACKEND", "COMMAND");
		json_array_foreach(json_object_get(out, "instances"), i, one) {
			char *cmd = json_dumps(json_object_get(one, "argv"), JSON_COMPACT);
			printf("%-24s %-10s %-7s %s\n", json_string_value(json_object_get(one, "name")),
			       json_string_value(json_object_get(one, "state")),
			       json_string_value(json_object_get(one, "backend")) ?: "ns", cmd ? cmd : "");
			free(cmd);
		}
	}
	json_decref(out);
	return 0;
}

int cmd_instance(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return fputs(instance_usage, argc < 2 ? stderr : stdout), argc < 2 ? EXIT_AEGIS_ERROR : 0;
	if (!strcmp(argv[1], "start"))
		return start(argc - 1, argv + 1);
	if (!strcmp(argv[1], "list") && (argc == 2 || (argc == 3 && !strcmp(argv[2], "--json"))))
		return list(argc == 3);
	if (!strcmp(argv[1], "info") && argc == 3)
		return named("GET", argv[2], true);
	if (!strcmp(argv[1], "delete") && argc == 3)
		return named("DELETE", argv[2], false);
	if ((!strcmp(argv[1], "pause") || !strcmp(argv[1], "resume") || !strcmp(argv[1], "disable")) && argc == 3)
		return verb(argv[2], argv[1]);
	return cli_usage_error("instance: unknown or incomplete command (see 'aegis instance --help')");
}
