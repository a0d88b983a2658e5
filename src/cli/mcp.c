/* mcp.c — `aegis mcp`: the Model Context Protocol server on stdio.
 *
 * Newline-delimited JSON-RPC 2.0 on stdin and stdout, one message a line
 * (MCP's stdio transport). Nothing but protocol ever reaches stdout: the
 * protocol's descriptors are private copies, and fds 1 and 0 become
 * stderr and /dev/null, so a stray print (ours, a library's, a child's)
 * lands in the host's log instead of corrupting the stream, and no child
 * can read the client's messages. A line over MCP_LINE_MAX is answered
 * with an error and skipped to its end; the server carries on.
 *
 * Lifecycle (2025-11-25, and the older revisions current SDKs still send):
 * initialize first (ping is allowed before it), version negotiation in
 * mcp_rpc.c, then tools/list and tools/call. Requests are served one at a
 * time, in order. EOF on stdin ends the server. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/paths.h"
#include "../common/util.h"
#include "cli.h"
#include "mcp.h"

static const char mcp_usage[] =
	"usage: aegis mcp [--workspace-root DIR]...   the MCP server on stdio (for an MCP host)\n"
	"       aegis mcp install [--workspace-root DIR]... [--config FILE] [--print]\n"
	"                                             register it for Claude Code (~/.claude.json)\n"
	"       aegis mcp uninstall [--config FILE]\n"
	"\n"
	"  --workspace-root DIR  host directories beneath DIR may be used as workspaces\n"
	"                        (default: none, only named workspaces); repeatable\n";

static const char instructions[] =
	"Aegis runs commands in isolated Linux sandboxes: own namespaces, no network unless asked for, no "
	"capabilities, a seccomp filter, memory/pids/time limits. Use `run` for a one-shot command in a fresh "
	"sandbox. For work across several calls, `instance_start` a persistent sandbox (e.g. argv "
	"[\"sleep\", \"infinity\"]), then `exec` commands in it, `file_write`/`file_read`/`file_list` its "
	"/workspace, `logs` for its main command's output, and `instance_delete` it when done. Everything "
	"happens inside the sandbox; outputs are bounded (fields ending in _truncated say when something was "
	"cut). Secrets are injected by name (`secret_list`) and their values are never shown.";

static int send_json(struct mcp_server *s, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(9));
	size_t n;
	int rc;

	json_decref(msg);
	if (!text)
		return -1;
	n = strlen(text);
	text[n] = '\n';	/* json_dumps's NUL: one write for the line */
	rc = write_all(s->out_fd, text, n + 1);
	free(text);
	return rc;
}

static json_t *initialize(struct mcp_server *s, json_t *params, int *code, char *why, size_t len)
{
	const char *asked = json_string_value(json_object_get(params, "protocolVersion"));

	if (s->initialized) {
		*code = MCP_INVALID_REQUEST;
		snprintf(why, len, "Invalid Request: already initialized");
		return NULL;
	}
	if (!asked) {
		*code = MCP_INVALID_PARAMS;
		snprintf(why, len, "Invalid params: initialize needs \"protocolVersion\" (a string)");
		return NULL;
	}
	s->version = mcp_rpc_version(asked, &s->structured);
	s->initialized = true;
	return json_pack("{s:s, s:{s:{s:b}}, s:{s:s, s:s, s:s}, s:s}", "protocolVersion", s->version,
			 "capabilities", "tools", "listChanged", 0, "serverInfo", "name", "aegis", "title", "Aegis",
			 "version", AEGIS_VERSION, "instructions", instructions);
}

/* A request's result, or NULL with *code and why. */
static json_t *dispatch(struct mcp_server *s, const char *method, json_t *params, int *code, char *why, size_t len)
{
	json_t *name;

	if (!strcmp(method, "initialize"))
		return initialize(s, params, code, why, len);
	if (!strcmp(method, "ping"))
		return json_object();
	if (!s->initialized) {
		*code = MCP_INVALID_REQUEST;
		snprintf(why, len, "Invalid Request: not initialized (send initialize first)");
		return NULL;
	}
	if (!strcmp(method, "tools/list")) {
		if (json_object_get(params, "cursor") && !json_is_string(json_object_get(params, "cursor"))) {
			*code = MCP_INVALID_PARAMS;
			snprintf(why, len, "Invalid params: \"cursor\" must be a string");
			return NULL;
		}
		return mcp_tools_list(s);	/* one page: no nextCursor */
	}
	if (!strcmp(method, "tools/call")) {
		name = json_object_get(params, "name");
		if (!json_is_string(name) || strlen(json_string_value(name)) != json_string_length(name)) {
			*code = MCP_INVALID_PARAMS;
			snprintf(why, len, "Invalid params: tools/call needs \"name\" (a string)");
			return NULL;
		}
		return mcp_tools_call(s, json_string_value(name), json_object_get(params, "arguments"), code, why, len);
	}
	*code = MCP_METHOD_NOT_FOUND;
	snprintf(why, len, "Method not found: %.100s", method);
	return NULL;
}

/* One line: 0, or -1 when the answer cannot be written (the client left). */
static int handle(struct mcp_server *s, const char *line, size_t len)
{
	struct mcp_message m;
	char why[MCP_WHY_MAX];
	json_t *result, *answer = NULL;
	int code = MCP_INTERNAL_ERROR;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	if (!len)
		return 0;	/* an empty line is no message */
	mcp_rpc_parse(line, len, &m);
	switch (m.kind) {
	case MCP_INVALID:
		answer = mcp_rpc_error(m.id, m.code, m.why);
		break;
	case MCP_REQUEST:
		if ((result = dispatch(s, m.method, m.params, &code, why, sizeof why)))
			answer = mcp_rpc_result(m.id, result);
		else
			answer = mcp_rpc_error(m.id, code, why);
		break;
	case MCP_NOTIFICATION:	/* initialized, cancelled (we answer in order), and any other: nothing to say */
	case MCP_RESPONSE:	/* we send no requests */
		break;
	}
	mcp_rpc_free(&m);
	return answer ? send_json(s, answer) : 0;
}

/* Lines from in_fd until EOF. */
static int serve(struct mcp_server *s)
{
	size_t cap = 1 << 16, len = 0, scanned = 0;
	char *buf = malloc(cap);
	bool skipping = false;	/* inside an over-long line: dropped to its end */

	if (!buf)
		return cli_usage_error("mcp: out of memory");
	for (;;) {
		ssize_t n = read(s->in_fd, buf + len, cap - len);
		char *nl;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		while ((nl = memchr(buf + scanned, '\n', len - scanned))) {
			size_t line = (size_t)(nl - buf);
			if (!skipping && handle(s, buf, line) < 0)
				goto out;
			skipping = false;
			memmove(buf, nl + 1, len - line - 1);
			len -= line + 1;
			scanned = 0;
		}
		scanned = len;
		if (!skipping && len > MCP_LINE_MAX) {
			/* refused once, with no id to answer to; the server carries on */
			if (send_json(s, mcp_rpc_error(NULL, MCP_INVALID_REQUEST, "Invalid Request: the message is over "
						       "the 8 MiB limit of one line; it was skipped")) < 0)
				goto out;
			skipping = true;
		}
		if (skipping) {
			len = scanned = 0;
		} else if (len == cap) {
			char *grown = realloc(buf, cap * 2);
			if (!grown) {
				if (send_json(s, mcp_rpc_error(NULL, MCP_INTERNAL_ERROR, "out of memory for a message; "
							       "it was skipped")) < 0)
					goto out;
				skipping = true;
				len = scanned = 0;
				continue;
			}
			buf = grown;
			cap *= 2;
		}
	}
	/* a last message without its newline still counts */
	if (len && !skipping)
		handle(s, buf, len);
out:
	free(buf);
	return 0;
}

/* --workspace-root DIR: opened now, so what it means cannot change later. */
static int add_root(struct mcp_server *s, const char *dir)
{
	char *real = realpath(dir, NULL);
	int fd = real ? open(real, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;

	if (fd < 0) {
		free(real);
		return cli_usage_error("mcp: --workspace-root %s: %s", dir, strerror(errno));
	}
	s->roots[s->nroots] = real;
	s->root_fds[s->nroots++] = fd;
	return 0;
}

/* The protocol on private descriptors; 0 and 1 made harmless. */
static int take_stdio(struct mcp_server *s)
{
	int null;

	/* a standard fd the host left closed is /dev/null first, so nothing
	 * opened later lands there (a stray stderr line into a pipe of ours) */
	while ((null = open("/dev/null", O_RDWR)) >= 0 && null <= 2)
		;
	if (null >= 0)
		close(null);
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	s->in_fd = fcntl(0, F_DUPFD_CLOEXEC, 3);
	s->out_fd = fcntl(1, F_DUPFD_CLOEXEC, 3);
	if (null < 0 || s->in_fd < 0 || s->out_fd < 0 || dup2(null, 0) < 0 || dup2(2, 1) < 0)
		return cli_usage_error("mcp: cannot set up stdio: %s", strerror(errno));
	close(null);
	return 0;
}

int cmd_mcp(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "workspace-root", required_argument, NULL, 'w' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mcp_server s = { .in_fd = -1, .out_fd = -1 };
	struct aegis_error err = { 0 };
	char why[MCP_WHY_MAX];
	int opt, rc;

	if (argc >= 2 && !strcmp(argv[1], "install"))
		return mcp_install(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "uninstall"))
		return mcp_uninstall(argc - 1, argv + 1);
	s.roots = calloc((size_t)argc, sizeof *s.roots);
	s.root_fds = calloc((size_t)argc, sizeof *s.root_fds);
	if (!s.roots || !s.root_fds)
		return cli_usage_error("mcp: out of memory");
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (opt == 'h')
			return fputs(mcp_usage, stdout), 0;
		if (opt != 'w')
			return cli_usage_error("mcp: option '%s' is unknown or needs a value (see 'aegis mcp --help')",
					       argv[optind - 1]);
		if (add_root(&s, optarg) != 0)
			return EXIT_AEGIS_ERROR;
	}
	if (optind < argc)
		return cli_usage_error("mcp: unknown command '%s' (see 'aegis mcp --help')", argv[optind]);
	if (mcp_tools_init(why, sizeof why) < 0)
		return cli_usage_error("mcp: %s", why);
	if (paths_socket(s.sock, sizeof s.sock, &err) < 0 || paths_state(s.state, sizeof s.state, &err) < 0)
		return cli_fail(&err);
	if (take_stdio(&s) != 0)
		return EXIT_AEGIS_ERROR;
	/* a client gone is a failed write, not a death by signal (the
	 * engine gives commands SIGPIPE's default back) */
	signal(SIGPIPE, SIG_IGN);
	rc = serve(&s);
	for (size_t i = 0; i < s.nroots; i++) {
		free(s.roots[i]);
		close(s.root_fds[i]);
	}
	free(s.roots);
	free(s.root_fds);
	return rc;
}
