/* test_mcp.c — the MCP server's pure parts: what a line is (JSON-RPC
 * envelope), version negotiation, and the JSON Schema subset the tools'
 * arguments are checked with. */
#include <string.h>

#include "../../src/cli/mcp.h"
#include "tap.h"

static struct mcp_message m;

static enum mcp_kind kind(const char *line)
{
	mcp_rpc_free(&m);
	mcp_rpc_parse(line, strlen(line), &m);
	return m.kind;
}

static void envelope(void)
{
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}") == MCP_REQUEST && json_integer_value(m.id) == 1,
	   "a request");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"ping\",\"params\":{}}") == MCP_REQUEST, "string id");
	ok(kind("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}") == MCP_NOTIFICATION, "a notification");
	ok(kind("{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":7}") == MCP_NOTIFICATION,
	   "a notification with bad params is still not answered");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}") == MCP_RESPONSE, "a response to us");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"") == MCP_INVALID && m.code == MCP_PARSE_ERROR &&
	   !m.id, "truncated JSON: parse error, no id");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}") == MCP_INVALID &&
	   m.code == MCP_PARSE_ERROR, "duplicate keys refused");
	ok(kind("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]") == MCP_INVALID &&
	   m.code == MCP_INVALID_REQUEST && strstr(m.why, "batch"), "batches refused");
	ok(kind("42") == MCP_INVALID && m.code == MCP_INVALID_REQUEST, "a bare value is an invalid request");
	ok(kind("{\"id\":5,\"method\":\"ping\"}") == MCP_INVALID && m.code == MCP_INVALID_REQUEST &&
	   json_integer_value(m.id) == 5, "no jsonrpc: invalid, the id kept for the answer");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}") == MCP_INVALID && !m.id, "null id refused");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}") == MCP_INVALID && !m.id, "fractional id refused");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":1}") == MCP_INVALID && m.code == MCP_INVALID_REQUEST, "no method");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi\\u0000ng\"}") == MCP_INVALID, "a NUL in the method");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":[1]}") == MCP_INVALID &&
	   m.code == MCP_INVALID_PARAMS, "array params refused");
	ok(kind("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}") == MCP_INVALID && m.code == MCP_PARSE_ERROR,
	   "bad UTF-8 is a parse error");
	for (const char *p = m.why; *p; p++)
		if ((unsigned char)*p < ' ' || (unsigned char)*p >= 0x7f) {
			ok(0, "parse errors are printable");
			break;
		}
	mcp_rpc_free(&m);
}

static void versions(void)
{
	bool structured;

	ok(!strcmp(mcp_rpc_version("2025-11-25", &structured), "2025-11-25") && structured, "2025-11-25");
	ok(!strcmp(mcp_rpc_version("2025-06-18", &structured), "2025-06-18") && structured, "2025-06-18");
	ok(!strcmp(mcp_rpc_version("2025-03-26", &structured), "2025-03-26") && !structured,
	   "2025-03-26: no structuredContent");
	ok(!strcmp(mcp_rpc_version("2024-11-05", &structured), "2024-11-05") && !structured, "2024-11-05");
	ok(!strcmp(mcp_rpc_version("2030-01-01", &structured), "2025-11-25"), "unknown: our newest");
	ok(!strcmp(mcp_rpc_version(NULL, &structured), "2025-11-25"), "none: our newest");
}

static int check(const char *schema, const char *value, char *why)
{
	json_t *s = json_loads(schema, 0, NULL), *v = json_loads(value, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	int r = mcp_schema_check(s, v, "", why, 256);

	json_decref(s);
	json_decref(v);
	return r;
}

static void schema(void)
{
	static const char s[] = "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"argv\"],"
		"\"properties\":{\"argv\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,\"maxItems\":2},"
		"\"n\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10},\"x\":{\"type\":\"number\"},"
		"\"name\":{\"type\":\"string\",\"maxLength\":3},\"mode\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]},"
		"\"env\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
		"\"sub\":{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"p\"],"
		"\"properties\":{\"p\":{\"type\":\"boolean\"}}}}}";
	char why[256];
	json_t *bad;

	ok(check(s, "{\"argv\":[\"a\"]}", why) == 0, "valid");
	ok(check(s, "{\"argv\":[\"a\"],\"n\":3,\"x\":2,\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\",\"mode\":\"b\","
		 "\"env\":{\"A\":\"1\"},\"sub\":{\"p\":true}}", why) == 0, "every field (lengths count characters)");
	ok(check(s, "{}", why) < 0 && strstr(why, "\"argv\" is required"), "required: %s", why);
	ok(check(s, "{\"argv\":\"a\"}", why) < 0 && !strcmp(why, "argv: must be an array, not string"), "%s", why);
	ok(check(s, "{\"argv\":[]}", why) < 0 && strstr(why, "at least 1 item"), "minItems: %s", why);
	ok(check(s, "{\"argv\":[\"a\",\"b\",\"c\"]}", why) < 0 && strstr(why, "at most 2"), "maxItems: %s", why);
	ok(check(s, "{\"argv\":[\"a\",1]}", why) < 0 && !strncmp(why, "argv[1]: must be a string", 25), "%s", why);
	ok(check(s, "{\"argv\":[\"a\"],\"zz\":1}", why) < 0 && strstr(why, "unknown field \"zz\""), "%s", why);
	ok(check(s, "{\"argv\":[\"a\"],\"n\":1.0}", why) < 0 && strstr(why, "n: must be an integer"), "%s", why);
	ok(check(s, "{\"argv\":[\"a\"],\"n\":0}", why) < 0 && strstr(why, "at least 1"), "minimum: %s", why);
	ok(check(s, "{\"argv\":[\"a\"],\"n\":11}", why) < 0 && strstr(why, "at most 10"), "maximum: %s", why);
	ok(check(s, "{\"argv\":[\"a\"],\"x\":3}", why) == 0, "an integer is a number");
	ok(check(s, "{\"argv\":[\"a\"],\"name\":\"abcd\"}", why) < 0 && strstr(why, "at most 3 char"), "%s", why);
	ok(check(s, "{\"argv\":[\"a\"],\"mode\":\"c\"}", why) < 0 && strstr(why, "one of \"a\", \"b\""), "%s", why);
	ok(check(s, "{\"argv\":[\"a\"],\"env\":{\"A\":1}}", why) < 0 && strstr(why, "env.A: must be a string"), "%s",
	   why);
	ok(check(s, "{\"argv\":[\"a\"],\"sub\":{}}", why) < 0 && strstr(why, "sub: \"p\" is required"), "%s", why);
	ok(check(s, "{\"argv\":[\"a\\u0000b\"]}", why) < 0 && strstr(why, "NUL"), "NUL refused: %s", why);
	ok(check(s, "[]", why) < 0 && strstr(why, "arguments: must be an object"), "%s", why);
	bad = json_loads("{\"type\":\"string\",\"pattern\":\"^a\"}", 0, NULL);
	ok(mcp_schema_known(bad, why, sizeof why) < 0 && strstr(why, "pattern"), "a keyword not checked is refused");
	json_decref(bad);
	bad = json_loads("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"items\":{\"format\":\"x\"}}}}",
			 0, NULL);
	ok(mcp_schema_known(bad, why, sizeof why) < 0, "also deep inside");
	json_decref(bad);
}

int main(void)
{
	envelope();
	versions();
	schema();
	return tap_done();
}
