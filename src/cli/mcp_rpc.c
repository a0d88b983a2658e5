/* mcp_rpc.c — the JSON-RPC 2.0 envelope of MCP messages: what a line is
 * (request, notification, a response to us, or something to refuse with
 * which error) and the shape of our answers. Pure: no I/O, so the fuzz
 * target and the unit tests drive it directly.
 *
 * Batches (a JSON array) were in the 2025-03-26 revision only and are gone
 * from 2025-06-18 on; no SDK sends them. We answer one -32600 for the whole
 * array rather than support a form the current revisions forbid. */
#include <string.h>

#include "mcp.h"

/* Newest first; the answer to a version we do not speak is the first. */
static const char *const versions[] = { "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", NULL };

const char *mcp_rpc_version(const char *requested, bool *structured)
{
	const char *v = versions[0];

	for (size_t i = 0; requested && versions[i]; i++)
		if (!strcmp(requested, versions[i]))
			v = versions[i];
	/* structuredContent came with 2025-06-18; the dates sort as strings */
	*structured = strcmp(v, "2025-06-18") >= 0;
	return v;
}

static void invalid(struct mcp_message *m, int code, const char *why)
{
	m->kind = MCP_INVALID;
	m->code = code;
	snprintf(m->why, sizeof m->why, "%s", why);
	/* the parser's message may quote the bad bytes: keep it one printable line */
	for (char *p = m->why; *p; p++)
		if ((unsigned char)*p < ' ' || (unsigned char)*p >= 0x7f)
			*p = '?';
}

/* An id is a string or an integer (MCP: never null; JSON-RPC discourages
 * fractions). */
static bool id_ok(const json_t *id)
{
	return json_is_string(id) || json_is_integer(id);
}

void mcp_rpc_parse(const char *line, size_t len, struct mcp_message *m)
{
	json_error_t jerr;
	json_t *v;

	memset(m, 0, sizeof *m);
	/* NULs allowed through the parser so a tool can refuse them by field
	 * name; duplicate keys refused (which would win is anyone's guess) */
	m->root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
	if (!m->root) {
		char why[sizeof m->why];
		snprintf(why, sizeof why, "Parse error: %s (at byte %d)", jerr.text, jerr.position);
		return invalid(m, MCP_PARSE_ERROR, why);
	}
	if (json_is_array(m->root))
		return invalid(m, MCP_INVALID_REQUEST, "Invalid Request: JSON-RPC batches are not supported "
				  "(MCP 2025-06-18 removed them): send one message per line");
	if (!json_is_object(m->root))
		return invalid(m, MCP_INVALID_REQUEST, "Invalid Request: a message is a JSON object");
	v = json_object_get(m->root, "id");
	if (v && id_ok(v))
		m->id = v;
	if (!json_is_string(json_object_get(m->root, "jsonrpc")) ||
	    strcmp(json_string_value(json_object_get(m->root, "jsonrpc")), "2.0"))
		return invalid(m, MCP_INVALID_REQUEST, "Invalid Request: \"jsonrpc\" must be \"2.0\"");
	if (v && !id_ok(v))
		return invalid(m, MCP_INVALID_REQUEST, "Invalid Request: \"id\" must be a string or an integer");
	if (!json_object_get(m->root, "method")) {
		/* an answer to a request of ours: we send none, so it is dropped */
		if (v && (json_object_get(m->root, "result") || json_object_get(m->root, "error"))) {
			m->kind = MCP_RESPONSE;
			return;
		}
		return invalid(m, MCP_INVALID_REQUEST, "Invalid Request: no \"method\"");
	}
	m->method = json_string_value(json_object_get(m->root, "method"));
	if (!m->method || strlen(m->method) != json_string_length(json_object_get(m->root, "method")))
		return invalid(m, MCP_INVALID_REQUEST, "Invalid Request: \"method\" must be a string");
	m->params = json_object_get(m->root, "params");
	m->kind = v ? MCP_REQUEST : MCP_NOTIFICATION;
	/* MCP's params are objects; a notification is never answered, even wrong */
	if (v && m->params && !json_is_object(m->params))
		return invalid(m, MCP_INVALID_PARAMS, "Invalid params: \"params\" must be an object");
}

void mcp_rpc_free(struct mcp_message *m)
{
	json_decref(m->root);
	m->root = m->id = m->params = NULL;
}

json_t *mcp_rpc_result(json_t *id, json_t *result)
{
	return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result);
}

json_t *mcp_rpc_error(json_t *id, int code, const char *message)
{
	json_t *e = json_pack("{s:i, s:s}", "code", code, "message", message);

	if (!e)	/* a message that is not UTF-8 (it quotes something it should not) */
		e = json_pack("{s:i, s:s}", "code", code, "message", "error");
	return json_pack("{s:s, s:o, s:o}", "jsonrpc", "2.0", "id", id ? json_incref(id) : json_null(), "error", e);
}
