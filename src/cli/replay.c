/* replay.c — `aegis replay DIR`: run again what DIR/result.json recorded:
 * the same argv, environment, working directory, workspace, policy and
 * limits, on the same (host) image. */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/policy.h"
#include "run_flags.h"
#include "../common/secretinject.h"

static const char replay_usage[] =
	"usage: aegis replay DIR [--artifacts NEWDIR] [--json]\n"
	"\n"
	"Run again the command recorded in DIR/result.json by `aegis run --artifacts DIR`,\n"
	"with the same argv, environment, cwd, workspace, policy and limits.\n";

static char **strings(json_t *arr, const char *what, const char *path)
{
	size_t i, n = json_array_size(arr);
	char **out = calloc(n + 1, sizeof *out);
	json_t *v;

	if (!out)
		return NULL;
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v)) {
			cli_usage_error("replay %s: %s[%zu] is not a string", path, what, i);
			free(out);
			return NULL;
		}
		out[i] = (char *)json_string_value(v);
	}
	return out;
}

static int load_limits(json_t *l, struct aegis_limits *out)
{
	static const struct { const char *key; size_t off; } keys[] = {
		{ "wall_ms", offsetof(struct aegis_limits, wall_ms) },
		{ "cpu_ms", offsetof(struct aegis_limits, cpu_ms) },
		{ "memory_bytes", offsetof(struct aegis_limits, memory_bytes) },
		{ "pids", offsetof(struct aegis_limits, pids) },
		{ "disk_bytes", offsetof(struct aegis_limits, disk_bytes) },
		{ "output_bytes", offsetof(struct aegis_limits, output_bytes) },
		{ "nofile", offsetof(struct aegis_limits, nofile) },
		{ "execs", offsetof(struct aegis_limits, execs) },
	};
	json_t *cpus = json_object_get(l, "cpus_milli");

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		json_t *v = json_object_get(l, keys[i].key);
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return -1;
		*(uint64_t *)((char *)out + keys[i].off) = (uint64_t)json_integer_value(v);
	}
	if (!json_is_integer(cpus) || json_integer_value(cpus) < 0 || json_integer_value(cpus) > 1024000)
		return -1;
	out->cpus_milli = (uint32_t)json_integer_value(cpus);
	return 0;
}

/* The image the run had, pinned to its digest (REPO@sha256:...), so a
 * replay runs the same bytes even if the tag has moved since. */
static int replay_image(json_t *r, struct run_flags *f, char *pinned, size_t len, const char *path)
{
	const char *ref = json_string_value(json_object_get(r, "image"));
	const char *digest = json_string_value(json_object_get(r, "image_digest"));
	const char *slash, *tag;

	if (!ref || !strcmp(ref, "host"))
		return 0;
	if (!digest || strncmp(digest, "sha256:", 7))
		return cli_usage_error("replay %s: image %s without its digest", path, ref), -1;
	/* the tag is a ':' after the last '/' (a ':' before it is a port) */
	slash = strrchr(ref, '/');
	tag = strchr(slash ? slash : ref, ':');
	if (!strchr(ref, '@'))
		snprintf(pinned, len, "%.*s@%s", (int)(tag ? (size_t)(tag - ref) : strlen(ref)), ref, digest);
	else
		snprintf(pinned, len, "%s", ref);
	f->image = pinned;
	return 0;
}

/* The secrets the run was given, by name and how ("secrets_as"), asked of
 * the store again: the replay gets today's values, never recorded ones. */
static int replay_secrets(json_t *r, struct run_flags *f, const char *path)
{
	json_t *as = json_object_get(r, "secrets_as"), *how;
	const char *name;

	if (!as)
		return 0;
	if (!json_is_object(as) || !(f->secrets = calloc(json_object_size(as) + 1, sizeof *f->secrets)))
		return cli_usage_error("replay %s: secrets_as is not an object", path), -1;
	json_object_foreach(as, name, how) {
		char *req = NULL;
		if (!json_is_string(how) || asprintf(&req, "%s:%s", name, json_string_value(how)) < 0 ||
		    !secret_request_valid(req)) {
			free(req);
			return cli_usage_error("replay %s: secrets_as: not a secret request: %s", path, name), -1;
		}
		f->secrets[f->nsecrets++] = req;
	}
	return 0;
}

int cmd_replay(int argc, char **argv)
{
	struct run_flags f = { .spec = AEGIS_SPEC_DEFAULT };
	struct aegis_error err = { 0 };
	char path[4096], newdir[4200], pinned[600], *policy_text = NULL;
	const char *mode;
	json_error_t je;
	json_t *r, *ws;
	char **cmd = NULL;
	int status = EXIT_AEGIS_ERROR;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return fputs(replay_usage, stdout), 0;
	if (argc < 2)
		return cli_usage_error("replay: expected an artifacts directory (usage: aegis replay DIR)");
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			f.json = true;
		else if (!strcmp(argv[i], "--artifacts") && i + 1 < argc)
			f.spec.artifacts_dir = argv[++i];
		else
			return cli_usage_error("replay: unknown argument '%s'", argv[i]);
	}
	snprintf(path, sizeof path, "%s/result.json", argv[1]);
	if (!(r = json_load_file(path, JSON_REJECT_DUPLICATES, &je)))
		return cli_usage_error("replay %s: %s", path, je.text);
	ws = json_object_get(r, "workspace");
	mode = json_string_value(json_object_get(ws, "mode"));
	if (json_integer_value(json_object_get(r, "version")) != 1 || !mode ||
	    !json_is_string(json_object_get(r, "cwd")) || !json_is_string(json_object_get(r, "hostname")) ||
	    load_limits(json_object_get(r, "limits"), &f.spec.limits) < 0) {
		status = cli_usage_error("replay %s: not a result.json of this version", path);
		goto out;
	}
	if (!(cmd = strings(json_object_get(r, "argv"), "argv", path)) || !cmd[0] ||
	    !(f.env = strings(json_object_get(r, "env"), "env", path)))
		goto out;
	f.spec.argv = cmd;
	f.spec.env = f.env;
	f.spec.cwd = json_string_value(json_object_get(r, "cwd"));
	f.cwd_set = true;	/* as recorded, not the image's default again */
	f.spec.hostname = json_string_value(json_object_get(r, "hostname"));
	/* a named workspace by its name: held and checked as any run's */
	f.spec.workspace = json_string_value(json_object_get(ws, "name"))
			   ?: json_string_value(json_object_get(ws, "path"));
	f.spec.workspace_ro = !strcmp(mode, "ro");
	f.spec.workspace_overlay = !strcmp(mode, "overlay");
	/* an overlay run's changes need a home: a new directory beside DIR */
	if (f.spec.workspace_overlay && !f.spec.artifacts_dir) {
		for (int i = 1; i < 1000; i++) {
			snprintf(newdir, sizeof newdir, i == 1 ? "%s.replay" : "%s.replay-%d", argv[1], i);
			if (access(newdir, F_OK) < 0)
				break;
		}
		f.spec.artifacts_dir = newdir;
		fprintf(stderr, "aegis: replay: the changes go to %s\n", newdir);
	}
	if (replay_secrets(r, &f, path) < 0 || replay_image(r, &f, pinned, sizeof pinned, path) < 0)
		goto out;
	if (json_is_object(json_object_get(r, "policy"))) {
		policy_text = json_dumps(json_object_get(r, "policy"), JSON_COMPACT);
		if (!policy_text || policy_parse(policy_text, strlen(policy_text), path, &f.policy, &err) < 0) {
			status = cli_fail(&err);
			goto out;
		}
		f.have_policy = true;
		f.spec.policy = &f.policy;
	}
	status = run_execute(&f);
out:
	free(policy_text);
	free(cmd);
	for (size_t i = 0; f.secrets && i < f.nsecrets; i++)
		free(f.secrets[i]);
	run_flags_free(&f);
	json_decref(r);
	return status;
}
