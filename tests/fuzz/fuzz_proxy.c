/* fuzz_proxy.c — libFuzzer target for the egress proxy's request parsing:
 * the bytes a sandboxed program sends to 127.0.0.1:3128. The proxy's
 * parser is static, so this file includes proxy.c. Properties beyond "no
 * crash": a plain-HTTP request that parses is rewritten into one complete
 * head ending in an empty line, with "Connection: close" and neither
 * Proxy-Connection nor Proxy-Authorization left. */
#include "../../src/sandbox/proxy.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct proxy p;
	static struct proxy_conn c;
	static char out[PROXY_RELAY_BUF];
	struct proxy_request req;
	size_t n;

	if (size > PROXY_HEADER_MAX)
		size = PROXY_HEADER_MAX;
	memset(&c, 0, sizeof c);
	c.p = &p;
	c.client = c.upstream = -1;	/* refusals fail to send and return at once */
	memcpy(c.head, data, size);
	c.head[size] = '\0';
	c.len = size;
	c.head_end = proxy_find_head_end(c.head, size, 0);
	if (!c.head_end || proxy_parse(&c, &req) < 0 || req.connect)
		return 0;
	n = proxy_rewrite(&c, &req, out, sizeof out - PROXY_HEADER_MAX);
	if (!n)
		return 0;
	if (n < 4 || memcmp(out + n - 4, "\r\n\r\n", 4) != 0)
		abort();
	out[n] = '\0';
	if (!strstr(out, "\r\nConnection: close\r\n") || strcasestr(out, "\r\nproxy-connection:") ||
	    strcasestr(out, "\r\nproxy-authorization:"))
		abort();
	return 0;
}
