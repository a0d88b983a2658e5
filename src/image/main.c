/* main.c — aegis-image: the commands behind `aegis image ...`.
 *
 *   aegis-image pull [--insecure] [--quiet] [--json] REF
 *   aegis-image import [--name REF] [--quiet] [--json] PATH
 *   aegis-image list [--json] | inspect REF | rm [--force] REF... | prune
 *
 * The state directory is paths_state()'s ($AEGIS_STATE_DIR in tests). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../common/error.h"
#include "../common/paths.h"
#include "image.h"

static const char usage[] =
	"usage: aegis image pull [--insecure] [--quiet] [--json] REF\n"
	"       aegis image import [--name REF] [--quiet] [--json] PATH   (docker save or OCI archive, OCI layout dir)\n"
	"       aegis image list [--json]\n"
	"       aegis image inspect REF\n"
	"       aegis image rm [--force] REF...\n"
	"       aegis image prune [--json]\n";

static enum image_fail fail_kind = FAIL_OTHER;

int image_fail_kind(enum image_fail kind)
{
	fail_kind = kind;
	return -1;
}

const char *image_fail_name(void)
{
	static const char *const names[] = {
		[FAIL_OTHER] = "error", [FAIL_INVALID] = "invalid", [FAIL_NOT_FOUND] = "not_found",
		[FAIL_AUTH] = "auth", [FAIL_DIGEST] = "digest_mismatch", [FAIL_TRUNCATED] = "truncated",
		[FAIL_MEDIA_TYPE] = "media_type", [FAIL_NETWORK] = "network",
		[FAIL_TOO_LARGE] = "too_large", [FAIL_LAYER] = "bad_layer", [FAIL_IN_USE] = "in_use",
	};
	return names[fail_kind];
}

enum image_fail image_fail_from_name(const char *name)
{
	for (int k = FAIL_OTHER; k <= FAIL_IN_USE; k++) {
		fail_kind = (enum image_fail)k;
		if (!strcmp(image_fail_name(), name))
			return (enum image_fail)k;
	}
	return FAIL_OTHER;
}

int image_report_error(const struct image_opts *o, const struct aegis_error *err)
{
	fprintf(stderr, "aegis: %s\n", err->msg);
	if (o->json) {
		json_t *j = json_pack("{s:{s:s, s:s}}", "error", "kind", image_fail_name(), "message", err->msg);
		json_dumpf(j, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(j);
	}
	return IMAGE_EXIT_ERROR;
}

void image_report_json(const struct image_opts *o, json_t *result)
{
	if (o->json && result) {
		json_dumpf(result, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	json_decref(result);
}

/* Unpacked trees can be deep: removing one holds a directory per level. */
static void raise_nofile(void)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quiet", no_argument, NULL, 'q' }, { "json", no_argument, NULL, 'j' },
		{ "insecure", no_argument, NULL, 'k' }, { "name", required_argument, NULL, 'n' },
		{ "force", no_argument, NULL, 'f' }, { "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct image_opts o = { 0 };
	struct aegis_error err = { 0 };
	const char *cmd;
	int c, r;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))
		return fputs(usage, argc < 2 ? stderr : stdout), argc < 2 ? IMAGE_EXIT_ERROR : 0;
	cmd = argv[1];
	argc--, argv++;
	while ((c = getopt_long(argc, argv, "+qjkn:fh", longopts, NULL)) != -1) {
		switch (c) {
		case 'q': o.quiet = true; break;
		case 'j': o.json = true; o.quiet = true; break;
		case 'k': o.insecure = true; break;
		case 'n': o.name = optarg; break;
		case 'f': o.force = true; break;
		case 'h': return fputs(usage, stdout), 0;
		default: return fputs(usage, stderr), IMAGE_EXIT_ERROR;
		}
	}
	argc -= optind;
	argv += optind;
	if (paths_state(o.state, sizeof o.state, &err) < 0)
		return image_report_error(&o, &err);
	raise_nofile();
	if (!strcmp(cmd, "pull") && argc == 1) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		r = cmd_pull(argv[0], &o);
		curl_global_cleanup();
		return r;
	}
	if (!strcmp(cmd, "import") && argc == 1)
		return cmd_import(argv[0], &o);
	if (!strcmp(cmd, "list") && argc == 0)
		return cmd_list(&o);
	if (!strcmp(cmd, "inspect") && argc == 1)
		return cmd_inspect(argv[0], &o);
	if (!strcmp(cmd, "rm") && argc >= 1)
		return cmd_rm(argv, argc, &o);
	if (!strcmp(cmd, "prune") && argc == 0)
		return cmd_prune(&o);
	fprintf(stderr, "aegis: image %s: wrong arguments\n%s", cmd, usage);
	return IMAGE_EXIT_ERROR;
}
