/* main.c — `aegis` entry point: dispatch to subcommands. The same program
 * answers as `aegix` for the interface users of the original Aegix know. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
	"usage: aegis <command> [options]\n"
	"\n"
	"Run commands in fresh, isolated, disposable sandboxes.\n"
	"\n"
	"commands:\n"
	"  run [options] -- CMD [ARGS...]   run one command in a new sandbox\n"
	"  doctor [--json]                  what this host supports and which mode runs\n"
	"  up | down | status [--json]      start, stop, ask the daemon (aegisd)\n"
	"  instance start|list|info|delete  persistent named instances (through aegisd)\n"
	"  exec [-t] NAME -- CMD [ARGS...]  run a command in a running instance\n"
	"  secret set|list|delete           the encrypted secrets store (values from stdin)\n"
	"  workspace create|list|info|delete  named workspaces (aegis run --workspace NAME)\n"
	"  logs NAME [-f] [--since WHEN]    an instance's output (also --tail N, -t)\n"
	"  image pull|import|list|inspect|rm|prune   OCI images for --image (docs/images.md)\n"
	"  audit verify|show FILE           check the hash chain of an audit log, or print it\n"
	"  policy check FILE | show NAME    validate a policy file, or print a policy's effect\n"
	"  mcp [install|uninstall]          the MCP server on stdio, for LLM clients (docs/mcp.md)\n"
	"  apply DIR                        apply an overlay run's reviewed changes to its workspace\n"
	"  replay DIR [--artifacts NEW]     run again what DIR/result.json recorded\n"
	"  help                             this text\n"
	"  --version                        print the version\n"
	"\n"
	"`aegis run --help` lists the run options. Docs: docs/ in the source tree.\n";

int cli_fail(const struct aegis_error *err)
{
	fprintf(stderr, "aegis: %s\n", err->msg);
	switch (err->code) {
	case AEGIS_E_NOTFOUND: return EXIT_NOT_FOUND;
	case AEGIS_E_NOEXEC: return EXIT_CANNOT_EXEC;
	default: return EXIT_AEGIS_ERROR;
	}
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("aegis: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_AEGIS_ERROR;
}

/* Each gets its own argv, argv[0] being the command's name. */
static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "run", cmd_run }, { "doctor", cmd_doctor }, { "audit", cmd_audit }, { "policy", cmd_policy },
	{ "apply", cmd_apply }, { "replay", cmd_replay }, { "up", cmd_up }, { "down", cmd_down },
	{ "status", cmd_status }, { "instance", cmd_instance }, { "logs", cmd_logs },
	{ "exec", cmd_exec }, { "secret", cmd_secret }, { "workspace", cmd_workspace },
	{ "image", cmd_image }, { "mcp", cmd_mcp },
};

int main(int argc, char **argv)
{
	const char *self = strrchr(argv[0], '/');

	self = self ? self + 1 : argv[0];
	if (strcmp(self, "aegix") == 0)
		return cmd_aegix(argc, argv);
	if (argc < 2)
		return fputs(usage, stderr), EXIT_AEGIS_ERROR;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return fputs(usage, stdout), 0;
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))
		return printf("aegis %s\n", AEGIS_VERSION), 0;
	return cli_usage_error("unknown command '%s' (see 'aegis help')", argv[1]);
}
