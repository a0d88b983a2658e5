/* mcp.h — `aegis mcp`: a Model Context Protocol server on stdio, so an
 * LLM client can run sandboxes, files and logs through Aegis (docs/mcp.md).
 *
 *   mcp.c            the stdio loop: lines in, answers out, method dispatch
 *   mcp_rpc.c        the JSON-RPC 2.0 envelope: what a line is, the answers
 *   mcp_schema.c     the JSON Schema subset the tools' inputs are checked with
 *   mcp_tools.c      the tool table, tools/list and tools/call, result shapes
 *   mcp_api.c        aegisd's API as the tools use it (started on demand)
 *   mcp_instances.c  instance_*, pause, resume, secret_list
 *   mcp_exec.c       exec and logs
 *   mcp_run.c        run: a one-shot sandbox, the engine in a child process
 *   mcp_files.c      file_read, file_write, file_list in a workspace
 *   mcp_install.c    `aegis mcp install|uninstall` for Claude Code
 *
 * The server holds no privilege of its own: instances go through aegisd's
 * API as the CLI's commands do, `run` is what `aegis run` would do, and
 * the file tools open paths with this process's own rights, beneath the
 * workspace directory only. */
#ifndef AEGIS_CLI_MCP_H
#define AEGIS_CLI_MCP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* A line (one message) longer than this is refused and skipped: a base64
 * file of MCP_WRITE_MAX bytes fits, with room for the envelope. */
#define MCP_LINE_MAX (8u << 20)
#define MCP_OUTPUT_DEFAULT 65536	/* bytes of each output stream returned */
#define MCP_OUTPUT_MAX (1u << 20)	/* what max_bytes may ask for */
#define MCP_WRITE_MAX (4u << 20)	/* file_write, after decoding */
#define MCP_READ_MAX (1u << 20)		/* file_read in one call */
#define MCP_WHY_MAX 512

/* JSON-RPC 2.0 error codes. */
enum {
	MCP_PARSE_ERROR = -32700,
	MCP_INVALID_REQUEST = -32600,
	MCP_METHOD_NOT_FOUND = -32601,
	MCP_INVALID_PARAMS = -32602,
	MCP_INTERNAL_ERROR = -32603,
};

struct mcp_server {
	int in_fd, out_fd;		/* the protocol; fds 0 and 1 are /dev/null and stderr */
	bool initialized;		/* initialize answered */
	const char *version;		/* the protocol version agreed on */
	bool structured;		/* that version has structuredContent (2025-06-18 on) */
	char sock[256];			/* aegisd's API socket */
	char state[4096];		/* the state dir (named workspaces, instances' own) */
	/* --workspace-root DIR: host directories a workspace may be under
	 * (none: host directories are refused, names only) */
	char **roots;
	int *root_fds;
	size_t nroots;
};

/* mcp_rpc.c: one line → one message. */
enum mcp_kind { MCP_REQUEST, MCP_NOTIFICATION, MCP_RESPONSE, MCP_INVALID };

struct mcp_message {
	enum mcp_kind kind;
	json_t *root;			/* owned */
	json_t *id;			/* in root: a request's id, or an invalid one's if usable */
	const char *method;
	json_t *params;			/* in root; NULL when absent */
	int code;			/* MCP_INVALID: the error to answer with */
	char why[200];
};

void mcp_rpc_parse(const char *line, size_t len, struct mcp_message *m);
void mcp_rpc_free(struct mcp_message *m);
/* {"jsonrpc":"2.0","id":id,"result":result}; result is stolen. */
json_t *mcp_rpc_result(json_t *id, json_t *result);
/* {"jsonrpc":"2.0","id":id or null,"error":{code,message}}. */
json_t *mcp_rpc_error(json_t *id, int code, const char *message);
/* The version to answer initialize's with: the client's when we speak it,
 * else our newest; *structured says whether it has structuredContent. */
const char *mcp_rpc_version(const char *requested, bool *structured);

/* mcp_schema.c: does value satisfy schema? 0, or -1 with why naming the
 * field ("limits.memory: must be a string"). Strings with a NUL are
 * refused everywhere (binary goes base64). A keyword this subset does not
 * know is refused too (-1, checked by the unit test for every tool), so a
 * schema never promises a check that is not made. */
int mcp_schema_check(const json_t *schema, const json_t *value, const char *at, char *why, size_t len);
int mcp_schema_known(const json_t *schema, char *why, size_t len);

/* A tool: its name, what the model reads about it, the JSON Schema of its
 * arguments (text) and what it does. */
enum mcp_hint {
	MCP_READ_ONLY = 1, MCP_DESTRUCTIVE = 2, MCP_IDEMPOTENT = 4, MCP_OPEN_WORLD = 8,
};

struct mcp_tool {
	const char *name;
	const char *title;
	const char *description;
	const char *schema;
	unsigned hints;
	json_t *(*call)(struct mcp_server *s, json_t *args);
};

extern const struct mcp_tool mcp_run_tools[], mcp_instance_tools[], mcp_exec_tools[], mcp_file_tools[];

/* mcp_tools.c */
int mcp_tools_init(char *why, size_t len);
json_t *mcp_tools_list(const struct mcp_server *s);
/* The result of tools/call, or NULL with *code and why for a protocol
 * error (unknown tool, arguments that are not an object). */
json_t *mcp_tools_call(struct mcp_server *s, const char *name, json_t *args, int *code, char *why, size_t len);

/* A success: the summary line, then body (or, without one, structured as
 * JSON) as text; structured as structuredContent where the version has it.
 * structured is stolen. */
json_t *mcp_ok(struct mcp_server *s, json_t *structured, const char *body, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A tool failure the model can read and act on: isError, one line. */
json_t *mcp_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* At most max bytes of s[0..n), cut at a character boundary; *cut says so. */
json_t *mcp_text(const char *s, size_t n, size_t max, bool *cut);
/* Arguments, already checked against the schema: absent gives the default. */
const char *mcp_arg_str(const json_t *args, const char *key);
long long mcp_arg_int(const json_t *args, const char *key, long long dflt);
bool mcp_arg_bool(const json_t *args, const char *key, bool dflt);

/* mcp_api.c: one request to aegisd, started first if need be. 0 with *out
 * (a 2xx answer's JSON, stolen by the caller); -1 with why (the daemon's
 * message, one line) and *status (0: no answer at all). */
int mcp_api(struct mcp_server *s, const char *method, const char *path, json_t *body, unsigned timeout_ms,
	    json_t **out, int *status, char *why, size_t len);
/* An instance name as aegisd accepts it (checked before it goes in a path). */
bool mcp_name_ok(const char *name, char *why, size_t len);
/* Env as the API wants it ("K=V" strings) from {"K": "V"}; NULL with why. */
json_t *mcp_env_list(const json_t *env, char *why, size_t len);

/* mcp_exec.c: a command's output as text for the model: each stream
 * under a header, with a note where it was cut at max bytes. malloc'd. */
char *mcp_output_body(const char *out, bool out_cut, const char *err, bool err_cut, size_t max);

/* mcp_run.c: REF in the image store, pulled first if missing (what
 * `aegis run --image` does); its canonical name into canon. 0, or -1 with
 * why (the pull's own one-line error when it failed). */
int mcp_image(const char *ref, char *canon, size_t clen, char *why, size_t len);

/* mcp_files.c: a host directory given as a workspace, resolved beneath one
 * of the --workspace-root dirs and opened (O_PATH|O_DIRECTORY). fd, with
 * its real path in real; -1 with why. */
int mcp_root_open(struct mcp_server *s, const char *path, char *real, size_t rlen, char *why, size_t len);

/* mcp_install.c */
int mcp_install(int argc, char **argv);
int mcp_uninstall(int argc, char **argv);

#endif
