/* fuzz_mcp.c — libFuzzer target for what `aegis mcp` reads from its
 * client: a line through the JSON-RPC envelope, then its params through
 * the tools' schema checks. Properties beyond "no crash": every line gets
 * a kind; an invalid one yields an error answer that encodes to one line
 * (the stdio transport's framing), whatever bytes it quoted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/cli/mcp.h"

static const char schema_text[] = "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"argv\"],"
	"\"properties\":{\"argv\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,\"maxItems\":8},"
	"\"n\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10},\"x\":{\"type\":\"number\",\"maximum\":1024},"
	"\"name\":{\"type\":\"string\",\"maxLength\":3},\"mode\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]},"
	"\"env\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
	"\"sub\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"additionalProperties\":false,"
	"\"properties\":{\"p\":{\"type\":[\"boolean\",\"null\"]}}}}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *schema;
	struct mcp_message m;
	char why[MCP_WHY_MAX], *text;
	json_t *answer;

	if (!schema && !(schema = json_loads(schema_text, 0, NULL)))
		abort();
	mcp_rpc_parse((const char *)data, size, &m);
	if (m.kind == MCP_INVALID) {
		answer = mcp_rpc_error(m.id, m.code, m.why);
		text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
		if (!text || strchr(text, '\n'))
			abort();
		free(text);
		json_decref(answer);
	}
	if (m.kind == MCP_REQUEST && m.params) {
		json_t *args = json_object_get(m.params, "arguments");
		if (mcp_schema_check(schema, args ? args : m.params, "", why, sizeof why) < 0 && !why[0])
			abort();
	}
	mcp_rpc_free(&m);
	return 0;
}
