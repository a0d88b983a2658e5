/* mcp_install.c — `aegis mcp install|uninstall`: register this aegis as an
 * MCP server for Claude Code, as `claude mcp add --scope user` does.
 *
 * Claude Code keeps user-scope servers in its global config file,
 * ~/.claude.json ($CLAUDE_CONFIG_DIR/.claude.json when that is set), under
 * the top-level key "mcpServers": {"NAME": {"type": "stdio", "command",
 * "args", "env"}}. The file holds much else (its state, per-project
 * settings): every other key is kept as it is, the file is replaced whole
 * (temp file + rename, same mode and owner) and one that does not parse is
 * refused and left untouched. Other hosts (Cursor's ~/.cursor/mcp.json,
 * Claude Desktop) take the same "mcpServers" shape: the snippet is printed
 * for them. docs/mcp.md has the details. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/util.h"
#include "cli.h"
#include "mcp.h"

#define SERVER_NAME "aegis"
#define CONFIG_MAX (256u << 20)

struct install_opts {
	const char *config;	/* --config FILE */
	char **roots;		/* --workspace-root DIR, for the server's args */
	size_t nroots;
	bool print_only;
};

/* The file `claude mcp add --scope user` writes. */
static int config_path(const struct install_opts *o, char *out, size_t len)
{
	const char *dir = getenv("CLAUDE_CONFIG_DIR"), *home = getenv("HOME");

	int n;

	if (o->config)
		n = snprintf(out, len, "%s", o->config);
	else if (dir && *dir)
		n = snprintf(out, len, "%s/.claude.json", dir);
	else if (home && *home)
		n = snprintf(out, len, "%s/.claude.json", home);
	else
		return cli_usage_error("mcp: HOME is not set (or give --config FILE)"), -1;
	if (n >= (int)len)
		return cli_usage_error("mcp: the config file's path is too long"), -1;
	return 0;
}

/* {"type": "stdio", "command": this aegis, "args": ["mcp", ...], "env": {}} */
static json_t *entry(const struct install_opts *o)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	json_t *args = json_pack("[s]", "mcp");

	if (n < 0)
		return json_decref(args), NULL;
	self[n] = '\0';
	for (size_t i = 0; i < o->nroots; i++) {
		json_array_append_new(args, json_string("--workspace-root"));
		json_array_append_new(args, json_string(o->roots[i]));
	}
	return json_pack("{s:s, s:s, s:o, s:{}}", "type", "stdio", "command", self, "args", args, "env");
}

/* The config as it is: NULL and *missing when there is none; NULL after a
 * one-line error when it cannot be used. */
static json_t *config_load(const char *path, bool *missing, struct stat *st)
{
	json_error_t jerr;
	json_t *j;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	*missing = fd < 0 && errno == ENOENT;
	if (fd < 0) {
		if (!*missing)
			cli_usage_error("mcp: cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || st->st_size > CONFIG_MAX) {
		close(fd);
		cli_usage_error("mcp: %s is not a regular file of at most %u bytes: left as it is", path, CONFIG_MAX);
		return NULL;
	}
	j = json_loadfd(fd, 0, &jerr);
	close(fd);
	if (!json_is_object(j) || (json_object_get(j, "mcpServers") && !json_is_object(json_object_get(j, "mcpServers")))) {
		cli_usage_error("mcp: %s is not a JSON object with an object \"mcpServers\"%s%s%s: left as it is", path,
				j ? "" : " (", j ? "" : jerr.text, j ? "" : ")");
		json_decref(j);
		return NULL;
	}
	return j;
}

/* Replace path with j: a temp file beside it, the old mode and owner,
 * synced, renamed over it. */
static int config_save(const char *path, json_t *j, const struct stat *old)
{
	char tmp[PATH_MAX + 16], *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int fd;

	if (!text || snprintf(tmp, sizeof tmp, "%s.aegis-XXXXXX", path) >= (int)sizeof tmp) {
		free(text);
		return cli_usage_error("mcp: %s: cannot encode the new config", path);
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		free(text);
		return cli_usage_error("mcp: cannot write beside %s: %s", path, strerror(errno));
	}
	/* a new file is private: Claude Code keeps its sessions in it */
	if (write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0 ||
	    fchmod(fd, old ? old->st_mode & 07777 : 0600) < 0 ||
	    (old && geteuid() == 0 && fchown(fd, old->st_uid, old->st_gid) < 0) || fsync(fd) < 0 ||
	    close(fd) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		free(text);
		return cli_usage_error("mcp: cannot write %s: %s", path, strerror(e));
	}
	free(text);
	return 0;
}

static void print_snippet(json_t *e)
{
	json_t *one = json_deep_copy(e), *snippet;
	char *text;

	json_object_del(one, "type");	/* hosts other than Claude Code do not all know it */
	snippet = json_pack("{s:{s:o}}", "mcpServers", SERVER_NAME, one);
	text = json_dumps(snippet, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	printf("For other MCP hosts (Cursor: ~/.cursor/mcp.json; Claude Desktop: claude_desktop_config.json):\n%s\n",
	       text ? text : "");
	free(text);
	json_decref(snippet);
}

static const char install_usage[] =
	"usage: aegis mcp install [--workspace-root DIR]... [--config FILE] [--print]\n"
	"       aegis mcp uninstall [--config FILE]\n";

/* 0; -1 for --help; else the exit status after a one-line error. */
static int parse(int argc, char **argv, struct install_opts *o, bool install)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "workspace-root", required_argument, NULL, 'w' },
		{ "print", no_argument, NULL, 'p' }, { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int opt;

	if (!(o->roots = calloc((size_t)argc + 1, sizeof *o->roots)))
		return cli_usage_error("mcp: out of memory");
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (opt == 'c') {
			o->config = optarg;
		} else if (opt == 'p' && install) {
			o->print_only = true;
		} else if (opt == 'w' && install) {
			/* the server gets it as an absolute path: its cwd is the host's choice */
			if (!(o->roots[o->nroots] = realpath(optarg, NULL)))
				return cli_usage_error("mcp install: --workspace-root %s: %s", optarg, strerror(errno));
			o->nroots++;
		} else if (opt == 'h') {
			fputs(install_usage, stdout);
			return -1;
		} else {
			return cli_usage_error("mcp: option '%s' is unknown here or needs a value", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("mcp: unexpected argument '%s'", argv[optind]);
	return 0;
}

static void opts_free(struct install_opts *o)
{
	for (size_t i = 0; i < o->nroots; i++)
		free(o->roots[i]);
	free(o->roots);
}

/* Where the config really is: a symlinked dotfile is written at its
 * target, the link kept. */
static int resolve(const struct install_opts *o, char *path, size_t len)
{
	char link[PATH_MAX], *real;

	if (config_path(o, link, sizeof link) < 0)
		return EXIT_AEGIS_ERROR;
	real = realpath(link, NULL);
	snprintf(path, len, "%s", real ? real : link);
	free(real);
	return 0;
}

int mcp_install(int argc, char **argv)
{
	struct install_opts o = { 0 };
	char path[PATH_MAX];
	struct stat st;
	json_t *cfg = NULL, *e = NULL;
	bool missing, had;
	int rc = parse(argc, argv, &o, true);

	if (rc != 0 || (rc = resolve(&o, path, sizeof path)) != 0)
		goto out;
	if (!(e = entry(&o))) {
		rc = cli_usage_error("mcp install: cannot tell where this aegis is (/proc/self/exe)");
		goto out;
	}
	if (!o.print_only) {
		if (!(cfg = config_load(path, &missing, &st)) && !missing) {
			rc = EXIT_AEGIS_ERROR;
			goto out;
		}
		if (!cfg)
			cfg = json_object();
		if (!json_object_get(cfg, "mcpServers"))
			json_object_set_new(cfg, "mcpServers", json_object());
		had = json_object_get(json_object_get(cfg, "mcpServers"), SERVER_NAME) != NULL;
		json_object_set(json_object_get(cfg, "mcpServers"), SERVER_NAME, e);
		if ((rc = config_save(path, cfg, missing ? NULL : &st)) != 0)
			goto out;
		printf("%s the MCP server \"%s\" for Claude Code (user scope) in %s\n", had ? "updated" : "registered",
		       SERVER_NAME, path);
	}
	print_snippet(e);
out:
	json_decref(cfg);
	json_decref(e);
	opts_free(&o);
	return rc < 0 ? 0 : rc;
}

int mcp_uninstall(int argc, char **argv)
{
	struct install_opts o = { 0 };
	char path[PATH_MAX];
	struct stat st;
	json_t *cfg = NULL;
	bool missing;
	int rc = parse(argc, argv, &o, false);

	if (rc != 0 || (rc = resolve(&o, path, sizeof path)) != 0)
		goto out;
	if (!(cfg = config_load(path, &missing, &st))) {
		if (missing)
			printf("nothing to do: %s does not exist\n", path);
		rc = missing ? 0 : EXIT_AEGIS_ERROR;
		goto out;
	}
	if (!json_object_get(json_object_get(cfg, "mcpServers"), SERVER_NAME)) {
		printf("nothing to do: no MCP server \"%s\" in %s\n", SERVER_NAME, path);
		goto out;
	}
	json_object_del(json_object_get(cfg, "mcpServers"), SERVER_NAME);
	if ((rc = config_save(path, cfg, &st)) == 0)
		printf("removed the MCP server \"%s\" from %s\n", SERVER_NAME, path);
out:
	json_decref(cfg);
	opts_free(&o);
	return rc < 0 ? 0 : rc;
}
