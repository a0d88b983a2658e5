/* mcp_tools.c — the tools as MCP sees them: tools/list from the table,
 * tools/call checked against each tool's schema, and the shape of every
 * result.
 *
 * Errors follow the 2025-11-25 revision (SEP-1303): an unknown tool or
 * arguments that are not an object are protocol errors (-32602); arguments
 * that break the tool's schema are a tool error (isError) naming the field,
 * which the model sees and can correct. Earlier revisions leave the choice
 * to the server; we answer every version the same way. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp.h"

static const struct mcp_tool *const tables[] = { mcp_run_tools, mcp_instance_tools, mcp_exec_tools,
						 mcp_file_tools };
#define NTABLES (sizeof tables / sizeof tables[0])
#define TOOLS_MAX 32

static struct {
	const struct mcp_tool *tool;
	json_t *schema;
} loaded[TOOLS_MAX];
static size_t nloaded;

int mcp_tools_init(char *why, size_t len)
{
	json_error_t jerr;

	if (nloaded)
		return 0;
	for (size_t t = 0; t < NTABLES; t++) {
		for (const struct mcp_tool *tool = tables[t]; tool->name; tool++) {
			json_t *schema = json_loads(tool->schema, JSON_REJECT_DUPLICATES, &jerr);
			char sub[256];
			if (!schema || nloaded == TOOLS_MAX || mcp_schema_known(schema, sub, sizeof sub) < 0) {
				snprintf(why, len, "tool %s: bad input schema: %s", tool->name,
					 schema ? (nloaded == TOOLS_MAX ? "too many tools" : sub) : jerr.text);
				json_decref(schema);
				return -1;
			}
			loaded[nloaded].tool = tool;
			loaded[nloaded++].schema = schema;
		}
	}
	return 0;
}

static json_t *annotations(const struct mcp_tool *t)
{
	return json_pack("{s:s, s:b, s:b, s:b, s:b}", "title", t->title, "readOnlyHint", !!(t->hints & MCP_READ_ONLY),
			 "destructiveHint", !!(t->hints & MCP_DESTRUCTIVE), "idempotentHint",
			 !!(t->hints & MCP_IDEMPOTENT), "openWorldHint", !!(t->hints & MCP_OPEN_WORLD));
}

json_t *mcp_tools_list(const struct mcp_server *s)
{
	json_t *list = json_array();

	(void)s;
	for (size_t i = 0; i < nloaded; i++) {
		const struct mcp_tool *t = loaded[i].tool;
		json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:O, s:o}", "name", t->name, "title", t->title,
						      "description", t->description, "inputSchema", loaded[i].schema,
						      "annotations", annotations(t)));
	}
	return json_pack("{s:o}", "tools", list);
}

json_t *mcp_tools_call(struct mcp_server *s, const char *name, json_t *args, int *code, char *why, size_t len)
{
	char bad[MCP_WHY_MAX];
	json_t *empty = NULL, *r;

	for (size_t i = 0; i < nloaded; i++) {
		if (strcmp(loaded[i].tool->name, name))
			continue;
		if (!args)
			args = empty = json_object();
		if (!json_is_object(args)) {
			*code = MCP_INVALID_PARAMS;
			snprintf(why, len, "Invalid params: \"arguments\" must be an object");
			return NULL;
		}
		if (mcp_schema_check(loaded[i].schema, args, "", bad, sizeof bad) < 0)
			r = mcp_fail("invalid arguments for %s: %s", name, bad);
		else
			r = loaded[i].tool->call(s, args);
		json_decref(empty);
		return r;
	}
	*code = MCP_INVALID_PARAMS;
	snprintf(why, len, "Unknown tool: %.100s", name);
	return NULL;
}

static json_t *text_block(const char *text)
{
	json_t *t = json_string(text);

	/* every string we hand here was made UTF-8 on the way in */
	return json_pack("[{s:s, s:o}]", "type", "text", "text", t ? t : json_string("(output is not UTF-8)"));
}

json_t *mcp_ok(struct mcp_server *s, json_t *structured, const char *body, const char *fmt, ...)
{
	char summary[1024], *json = NULL, *text;
	const char *rest;
	json_t *r;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(summary, sizeof summary, fmt, ap);
	va_end(ap);
	rest = body ? body : structured ? (json = json_dumps(structured, JSON_COMPACT | JSON_REAL_PRECISION(9))) : NULL;
	if (asprintf(&text, "%s%s%s", summary, rest && *rest ? "\n" : "", rest ? rest : "") < 0)
		text = NULL;
	free(json);
	r = json_pack("{s:o}", "content", text_block(text ? text : summary));
	free(text);
	if (structured && s->structured)
		json_object_set(r, "structuredContent", structured);
	json_decref(structured);
	return r;
}

json_t *mcp_fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* one line: what it quotes may have had newlines or control bytes */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < ' ')
			*p = ' ';
	return json_pack("{s:o, s:b}", "content", text_block(msg), "isError", 1);
}

json_t *mcp_text(const char *s, size_t n, size_t max, bool *cut)
{
	json_t *j;

	*cut = n > max;
	if (*cut) {
		n = max;
		/* back to the start of the character the cut fell in */
		while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	j = json_stringn(s, n);
	return j ? j : json_string("");
}

const char *mcp_arg_str(const json_t *args, const char *key)
{
	return json_string_value(json_object_get(args, key));
}

long long mcp_arg_int(const json_t *args, const char *key, long long dflt)
{
	const json_t *v = json_object_get(args, key);

	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

bool mcp_arg_bool(const json_t *args, const char *key, bool dflt)
{
	const json_t *v = json_object_get(args, key);

	return json_is_boolean(v) ? json_is_true(v) : dflt;
}
