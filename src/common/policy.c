/* policy.c — policy files and the built-in profiles: JSON text → struct
 * aegis_policy, and back to one canonical JSON form for `aegis policy show`
 * and the digest the audit log records.
 *
 * A policy file comes from outside, so the parser is strict and bounded:
 * the size is checked before reading, the nesting depth is measured by a
 * scan before jansson sees the text (jansson recurses), duplicate keys,
 * unknown keys, wrong types and out-of-range values are errors, and every
 * error is one line naming the file and the field ("commands.allow[2]").
 * The built-in profiles are JSON text run through the same parser, so they
 * obey the same rules as any file. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "hash.h"
#include "policy.h"
#include "util.h"

/* Upper bounds that keep every value representable as a JSON integer and
 * keep the engine's arithmetic (ms → µs, bytes) far from overflow. */
#define POLICY_DURATION_MAX (365ULL * 24 * 3600 * 1000)	/* ms: 365 days */
#define POLICY_SIZE_MAX (1ULL << 50)				/* bytes: 1 PiB */
#define POLICY_ARGV_WORDS_MAX 32
#define POLICY_ARGV_LEN_MAX 255
#define POLICY_SHOWN_MAX 64	/* bytes of a user string quoted in a message */

static const char policy_profile_default[] =
	"{\"network\": {\"mode\": \"none\"}, \"enforcement\": \"strict\"}";

static const char policy_profile_strict[] =
	"{\"commands\": {"
	"\"allow\": [\"/usr/bin/*\", \"/bin/*\", \"/usr/local/bin/*\", \"/usr/sbin/*\", \"/sbin/*\"],"
	"\"deny\": [\"/usr/bin/curl\", \"/usr/bin/wget\", \"/usr/bin/nc\", \"/bin/nc\","
	" \"/usr/bin/ssh\", \"/usr/bin/scp\"],"
	"\"argv_deny\": [\"git push\"]},"
	"\"files\": {\"write\": [\"/workspace\", \"/tmp\"]},"
	"\"network\": {\"mode\": \"none\"},"
	"\"limits\": {\"wall\": \"300s\", \"memory\": \"512m\", \"pids\": 128, \"output\": \"8m\","
	" \"execs\": 1000, \"nofile\": 256},"
	"\"enforcement\": \"strict\"}";

static const struct {
	const char *name;
	const char *text;
} policy_profiles[] = {
	{ "default", policy_profile_default },
	{ "strict", policy_profile_strict },
};

struct policy_ctx {
	char origin[128];	/* the source, made printable for messages */
	struct aegis_error *err;
};

/* ---- messages ---------------------------------------------------------- */

/* A path or profile name as one printable line: a file name may hold a
 * newline, and every error must stay one line. */
static void policy_origin(const char *origin, char *out, size_t cap)
{
	size_t o = 0;

	for (const char *p = origin; *p && o + 4 < cap; p++)
		out[o++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
	if (origin[o] && o + 4 >= cap)
		memcpy(out + o, "...", 3), o += 3;
	out[o] = '\0';
}

/* A user's string, double-quoted, escaped and cut short for a message. The
 * text comes from jansson, so it is valid UTF-8: cut only between sequences. */
static const char *policy_quote(const char *s, size_t len, char *buf, size_t cap)
{
	size_t o = 0, i = 0;

	buf[o++] = '"';
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2, adv;
		char esc[8];

		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
			if (c == '"' || c == '\\')
				snprintf(esc, sizeof esc, "\\%c", c);
			else if (c == '\n')
				snprintf(esc, sizeof esc, "\\n");
			else if (c == '\t')
				snprintf(esc, sizeof esc, "\\t");
			else
				snprintf(esc, sizeof esc, "\\u%04x", c);
			n = strlen(esc);
			adv = 1;
		} else {
			if (i + n > len)
				n = len - i;
			memcpy(esc, s + i, n);
			adv = n;
		}
		if (o + n + 5 > cap || o > POLICY_SHOWN_MAX) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(buf + o, esc, n);
		o += n;
		i += adv;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static const char *policy_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "real number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

/* One-line error: "policy ORIGIN: PATH: DETAIL" (no PATH at the top level). */
__attribute__((format(printf, 3, 4)))
static int policy_fail(const struct policy_ctx *ctx, const char *path, const char *fmt, ...)
{
	char detail[224];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	if (path && *path)
		return error_set(ctx->err, AEGIS_E_INVALID, 0, "policy %s: %s: %s", ctx->origin, path,
				 detail);
	return error_set(ctx->err, AEGIS_E_INVALID, 0, "policy %s: %s", ctx->origin, detail);
}

static int policy_oom(const struct policy_ctx *ctx)
{
	return error_set(ctx->err, AEGIS_E_SETUP, ENOMEM, "policy %s", ctx->origin);
}

/* ---- the pre-scan: depth, and the field path at a byte offset ---------- */

struct policy_level {
	bool object;
	bool have_key;		/* object: a key has been read for the current member */
	size_t index;		/* array: the current element */
	const char *key;	/* object: the current key, raw bytes of the text */
	size_t key_len;
};

struct policy_scan {
	struct policy_level level[POLICY_DEPTH_MAX];
	int depth;
	size_t line, column;	/* where the scan stopped, 1-based */
};

/* Walk the text up to stop, tracking strings and brackets only. Returns 0,
 * or -1 where a bracket would nest deeper than POLICY_DEPTH_MAX: jansson
 * parses recursively, so a "[[[[..." bomb must never reach it. The same
 * walk names the field at the offset where jansson reports a syntax error. */
static int policy_scan(const char *text, size_t stop, struct policy_scan *s)
{
	bool in_string = false, escape = false, is_key = false;
	size_t key_start = 0, line_start = 0;

	memset(s, 0, sizeof *s);
	s->line = 1;
	for (size_t i = 0; i < stop; i++) {
		char c = text[i];
		struct policy_level *top = s->depth ? &s->level[s->depth - 1] : NULL;

		if (c == '\n')
			s->line++, line_start = i + 1;
		if (in_string) {
			if (escape) {
				escape = false;
			} else if (c == '\\') {
				escape = true;
			} else if (c == '"') {
				in_string = false;
				if (is_key && top) {
					top->key = text + key_start;
					top->key_len = i - key_start;
					top->have_key = true;
				}
			}
			continue;
		}
		switch (c) {
		case '"':
			in_string = true;
			is_key = top && top->object && !top->have_key;
			key_start = i + 1;
			break;
		case '{':
		case '[':
			if (s->depth == POLICY_DEPTH_MAX) {
				s->column = i - line_start + 1;
				return -1;
			}
			s->level[s->depth++] = (struct policy_level){ .object = c == '{' };
			break;
		case '}':
		case ']':
			if (s->depth)
				s->depth--;
			break;
		case ',':
			if (top && top->object)
				top->have_key = false;
			else if (top)
				top->index++;
			break;
		}
	}
	s->column = stop - line_start + 1;
	return 0;
}

/* "limits.memory", "commands.allow[2]": keys cut short and made printable. */
static void policy_scan_path(const struct policy_scan *s, char *buf, size_t cap)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int d = 0; d < s->depth && o + 48 < cap; d++) {
		const struct policy_level *l = &s->level[d];

		if (l->object && l->have_key) {
			if (o)
				buf[o++] = '.';
			for (size_t i = 0; i < l->key_len && i < 32; i++) {
				unsigned char c = (unsigned char)l->key[i];
				buf[o++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
			}
			if (l->key_len > 32)
				memcpy(buf + o, "...", 3), o += 3;
		} else if (!l->object) {
			o += (size_t)snprintf(buf + o, cap - o, "[%zu]", l->index);
		} else {
			break;
		}
		buf[o] = '\0';
	}
}

/* jansson's message, made one printable line, with the field it was in. */
static int policy_syntax_error(const struct policy_ctx *ctx, const char *text, size_t len,
			       const json_error_t *jerr)
{
	struct policy_scan scan;
	char path[192], msg[JSON_ERROR_TEXT_LENGTH];
	size_t stop = jerr->position > 0 ? (size_t)jerr->position - 1 : 0;
	size_t o = 0;

	for (const char *p = jerr->text; *p && o + 1 < sizeof msg; p++)
		msg[o++] = ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) ? '?' : *p;
	msg[o] = '\0';
	/* jansson names its own flag here; say what the writer did instead. */
	if (json_error_code(jerr) == json_error_null_character)
		snprintf(msg, sizeof msg, "\\u0000 (NUL) is not allowed in strings");
	/* The position is just past the offending token: stop before its last
	 * byte so that a '}' or a key in error does not leave its object. */
	policy_scan(text, stop < len ? stop : len, &scan);
	policy_scan_path(&scan, path, sizeof path);
	if (*path)
		return policy_fail(ctx, NULL, "%s: line %d column %d: %s", path, jerr->line,
				   jerr->column, msg);
	return policy_fail(ctx, NULL, "line %d column %d: %s", jerr->line, jerr->column, msg);
}

/* ---- list entries ------------------------------------------------------ */

enum policy_entry {
	POLICY_ENTRY_COMMAND,	/* absolute path or fnmatch glob of an executable */
	POLICY_ENTRY_ARGV,	/* space-separated words: an argv prefix */
	POLICY_ENTRY_PATH,	/* absolute path or glob inside the sandbox */
	POLICY_ENTRY_NET_RULE,	/* an egress rule: name, *.name, IP or CIDR, optional :port */
};

/* Canonical absolute path, in place: "//" and "." components dropped, no
 * trailing slash. Rules compare paths as strings, so "/tmp/" and "/tmp"
 * must be one rule, and ".." would let a rule name something outside the
 * directory it appears to name. */
static const char *policy_normalise(char *s)
{
	char *r = s, *w = s;

	if (*s != '/')
		return "not an absolute path";
	while (*r) {
		size_t n;

		while (*r == '/')
			r++;
		n = strcspn(r, "/");
		if (n == 0)
			break;
		if (n == 2 && r[0] == '.' && r[1] == '.')
			return "\"..\" is not allowed";
		if (!(n == 1 && r[0] == '.')) {
			*w++ = '/';
			memmove(w, r, n);
			w += n;
		}
		r += n;
	}
	if (w == s)
		*w++ = '/';
	*w = '\0';
	return NULL;
}

/* fnmatch would take an unclosed '[' or a trailing '\' literally; refuse
 * them, since the writer surely meant a pattern that does something else. */
static const char *policy_check_glob(const char *s)
{
	for (const char *p = s; *p; p++) {
		if (*p == '\\') {
			if (!*++p)
				return "pattern ends with a backslash";
		} else if (*p == '[') {
			const char *q = p + 1;

			if (*q == '!' || *q == '^')
				q++;
			if (*q == ']')
				q++;
			while (*q && *q != ']' && *q != '/')
				q++;
			if (*q != ']')
				return "unclosed \"[\" in pattern";
			p = q;
		}
	}
	return NULL;
}

/* Collapse runs of spaces: "git  push " and "git push" are one rule. */
static const char *policy_check_argv(char *s)
{
	char *r = s, *w = s;
	size_t words = 0;

	while (*r) {
		while (*r == ' ')
			r++;
		if (!*r)
			break;
		if (++words > POLICY_ARGV_WORDS_MAX)
			return "more than 32 words";
		if (w != s)
			*w++ = ' ';
		while (*r && *r != ' ')
			*w++ = *r++;
	}
	*w = '\0';
	return words ? NULL : "no words";
}

/* Check and normalise one entry in place; NULL if fine, else the reason. */
static const char *policy_check_entry(char *s, enum policy_entry kind)
{
	size_t len = strlen(s);
	const char *why;

	if (len == 0)
		return "empty string";
	if (len >= PATH_MAX)
		return "longer than 4095 bytes";
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return "control characters are not allowed";
	switch (kind) {
	case POLICY_ENTRY_ARGV:
		/* The exec watcher matches rules of up to 255 bytes; a longer
		 * one would be cut mid-word there and never match. */
		if (len > POLICY_ARGV_LEN_MAX)
			return "longer than 255 bytes";
		return policy_check_argv(s);
	case POLICY_ENTRY_COMMAND:
		if (s[0] == '/' && s[len - 1] == '/')
			return "names a directory (a pattern like \"/usr/bin/*\" names the programs in one)";
		why = policy_normalise(s);
		if (why)
			return why;
		if (strcmp(s, "/") == 0)
			return "not a program";
		return policy_check_glob(s);
	case POLICY_ENTRY_PATH:
		why = policy_normalise(s);
		return why ? why : policy_check_glob(s);
	case POLICY_ENTRY_NET_RULE:
		break;	/* policy_net_rule(), which rewrites into a new string */
	}
	return NULL;
}

/* ---- network rules and host entries ------------------------------------ */

/* The syntax of src/sandbox/netrules.h, checked here on its own so that a
 * policy file or a flag is refused with a message naming the field before
 * any sandbox exists. Entries are stored in one canonical spelling (names
 * lowercase without a trailing dot, IPv6 as inet_ntop writes it), so two
 * spellings of one rule have one digest. */

#define POLICY_NAME_MAX 253	/* bytes of a DNS name without the trailing dot */
#define POLICY_LABEL_MAX 63
#define POLICY_NET_TEXT_MAX 300	/* longer than any valid rule or host entry */
/* "*." + a name + ":65535", or "[" IPv6 "/128]:65535", with the NUL. */
#define POLICY_NET_CANON_MAX (2 + POLICY_NAME_MAX + 6 + 1)

static const char policy_not_a_rule[] = "not a rule";
static const char policy_rule_hint[] = " (a name, *.name, an IP or CIDR, with optional :port)";
static const char policy_not_a_name[] = "not a host name";
static const char policy_name_hint[] = " (labels of a-z, 0-9 and \"-\"; no \"*.\", no port)";
static const char policy_not_an_ip[] = "not an IP address";

/* A DNS name of len bytes, lowercased into out (at least POLICY_NAME_MAX + 1
 * bytes) without its trailing dot. NULL if fine, else the reason. */
static const char *policy_net_name(const char *s, size_t len, char *out)
{
	size_t label = 0, o = 0;
	bool numeric = true, all_numeric = true;	/* the current label, every label */
	struct in_addr a;

	if (len && s[len - 1] == '.')
		len--;
	if (len == 0)
		return policy_not_a_name;
	if (len > POLICY_NAME_MAX)
		return "a name is longer than 253 bytes";
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? s[i] : '.';

		if (c == '.') {
			if (label == 0)
				return policy_not_a_name;
			if (out[o - 1] == '-')
				return "a label starts or ends with \"-\"";
			all_numeric &= numeric;
			if (i < len)
				numeric = true, label = 0;
			out[o++] = '.';
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return policy_not_a_name;
		if (c == '-' && label == 0)
			return "a label starts or ends with \"-\"";
		if (++label > POLICY_LABEL_MAX)
			return "a label is longer than 63 bytes";
		if (c < '0' || c > '9')
			numeric = false;
		out[o++] = c;
	}
	out[o - 1] = '\0';	/* the '.' that closed the last label */
	/* The resolver reads "10.1.2", "0x7f000001" or "1234" as an IPv4
	 * address (inet_aton): such a "name" would be an address rule in
	 * disguise. And no top-level domain is all digits. */
	if (all_numeric || inet_aton(out, &a))
		return "looks like an IPv4 address but is not one (write a.b.c.d)";
	if (numeric)
		return "the last label of a name is all digits";
	return NULL;
}

/* ":443" → 443. NULL if fine. */
static const char *policy_net_port(const char *s, unsigned *port)
{
	unsigned v = 0;

	if (*s++ != ':')
		return policy_not_a_rule;
	if (!*s || *s == '0' || strspn(s, "0123456789") != strlen(s) || strlen(s) > 5)
		return "not a port (1 to 65535)";
	for (; *s; s++)
		v = v * 10 + (unsigned)(*s - '0');
	if (v > 65535)
		return "not a port (1 to 65535)";
	*port = v;
	return NULL;
}

/* An IPv4 or IPv6 address with an optional "/prefix", as text of len bytes:
 * canonical address into addr_out, prefix (-1 if none) into *prefix. */
static const char *policy_net_addr(const char *s, size_t len, int family, char *addr_out,
				   int *prefix)
{
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned char bin[16];
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len;
	int max = family == AF_INET ? 32 : 128, p = max;

	if (alen >= sizeof buf)
		return policy_not_an_ip;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(family, buf, bin) != 1)
		return policy_not_an_ip;
	*prefix = -1;
	if (slash) {
		const char *d = slash + 1, *end = s + len;
		size_t n = (size_t)(end - d);

		p = 0;
		if (n == 0 || n > 3 || (n > 1 && *d == '0'))
			return family == AF_INET ? "not a prefix length (0 to 32)"
						 : "not a prefix length (0 to 128)";
		for (; d < end; d++) {
			if (*d < '0' || *d > '9')
				return family == AF_INET ? "not a prefix length (0 to 32)"
							 : "not a prefix length (0 to 128)";
			p = p * 10 + (*d - '0');
		}
		if (p > max)
			return family == AF_INET ? "not a prefix length (0 to 32)"
						 : "not a prefix length (0 to 128)";
		*prefix = p;
	}
	/* "10.1.2.3/8" is surely a mistake for 10.0.0.0/8 or for 10.1.2.3:
	 * refuse it rather than guess which. */
	for (int bit = p; bit < max; bit++)
		if (bin[bit / 8] & (0x80 >> (bit % 8)))
			return "address bits are set after the prefix (write the block's first address)";
	if (!inet_ntop(family, bin, addr_out, INET6_ADDRSTRLEN))
		return policy_not_an_ip;
	return NULL;
}

/* One egress rule, canonical into out (POLICY_NET_CANON_MAX bytes). NULL if
 * fine, else the reason (policy_not_a_rule: add policy_rule_hint). */
static const char *policy_net_rule(const char *s, char *out)
{
	char addr[INET6_ADDRSTRLEN], name[POLICY_NAME_MAX + 1];
	const char *end, *why, *colon;
	size_t len = strlen(s);
	unsigned port = 0;
	int prefix = -1;
	char pbuf[16] = "", portbuf[8] = "";

	if (len == 0)
		return "empty string";
	if (len > POLICY_NET_TEXT_MAX)
		return "longer than 300 bytes";
	if (strstr(s, "://"))
		return "a URL is not a rule (write the host and port: example.com:443)";
	if (s[0] == '[') {
		/* [IPv6] or [IPv6/prefix], then an optional :port. */
		end = strchr(s, ']');
		if (!end)
			return policy_not_a_rule;
		if (end[1] && (why = policy_net_port(end + 1, &port)))
			return why;
		why = policy_net_addr(s + 1, (size_t)(end - s - 1), AF_INET6, addr, &prefix);
		if (why)
			return why == policy_not_an_ip ? policy_not_a_rule : why;
		if (prefix >= 0)
			snprintf(pbuf, sizeof pbuf, "/%d", prefix);
		if (port)
			snprintf(portbuf, sizeof portbuf, ":%u", port);
		snprintf(out, POLICY_NET_CANON_MAX, "[%s%s]%s", addr, pbuf, portbuf);
		return NULL;
	}
	colon = strchr(s, ':');
	if (colon && strchr(colon + 1, ':'))
		return "an IPv6 address goes in brackets, e.g. [2001:db8::1]:443";
	end = colon ? colon : s + len;
	if (colon && (why = policy_net_port(colon, &port)))
		return why;
	if (port)
		snprintf(portbuf, sizeof portbuf, ":%u", port);
	/* An IPv4 address or block: digits, dots and one slash. */
	if (end > s && strspn(s, "0123456789./") >= (size_t)(end - s) &&
	    (memchr(s, '/', (size_t)(end - s)) || (s[0] >= '0' && s[0] <= '9'))) {
		why = policy_net_addr(s, (size_t)(end - s), AF_INET, addr, &prefix);
		if (!why) {
			if (prefix >= 0)
				snprintf(pbuf, sizeof pbuf, "/%d", prefix);
			snprintf(out, POLICY_NET_CANON_MAX, "%s%s%s", addr, pbuf, portbuf);
			return NULL;
		}
		/* Not a dotted quad: "10.1.2" falls through to the name check,
		 * which says why it is not a name either. */
		if (why != policy_not_an_ip || memchr(s, '/', (size_t)(end - s)))
			return why == policy_not_an_ip ? policy_not_a_rule : why;
	}
	if (end - s >= 2 && s[0] == '*' && s[1] == '.') {
		why = policy_net_name(s + 2, (size_t)(end - s - 2), name);
		if (why)
			return why == policy_not_a_name ? policy_not_a_rule : why;
		snprintf(out, POLICY_NET_CANON_MAX, "*.%s%s", name, portbuf);
		return NULL;
	}
	why = policy_net_name(s, (size_t)(end - s), name);
	if (why)
		return why == policy_not_a_name ? policy_not_a_rule : why;
	snprintf(out, POLICY_NET_CANON_MAX, "%s%s", name, portbuf);
	return NULL;
}

/* A host entry's address: an IPv4 or IPv6 literal, no brackets, no prefix. */
static const char *policy_net_ip(const char *s, char *out)
{
	int family = strchr(s, ':') ? AF_INET6 : AF_INET, prefix;
	const char *why;

	if (strlen(s) > INET6_ADDRSTRLEN || strchr(s, '/'))
		return policy_not_an_ip;
	why = policy_net_addr(s, strlen(s), family, out, &prefix);
	return why ? policy_not_an_ip : NULL;
}

/* "name=ip" → canonical name and address. NULL if fine; *bad and *bad_len
 * say which part was wrong (for the message). */
static const char *policy_net_host(const char *entry, char name[POLICY_NAME_MAX + 1],
				   char addr[INET6_ADDRSTRLEN], const char **bad, size_t *bad_len)
{
	const char *eq = strchr(entry, '='), *why;

	*bad = entry;
	*bad_len = strlen(entry);
	if (!eq || eq == entry)
		return "expected NAME=IP";
	if (*bad_len > POLICY_NET_TEXT_MAX)
		return "longer than 300 bytes";
	*bad_len = (size_t)(eq - entry);
	why = policy_net_name(entry, *bad_len, name);
	if (why)
		return why;
	*bad = eq + 1;
	*bad_len = strlen(eq + 1);
	return policy_net_ip(eq + 1, addr);
}

int policy_check_net_rule(const char *rule, struct aegis_error *err)
{
	char canon[POLICY_NET_CANON_MAX], q[POLICY_SHOWN_MAX + 16];
	const char *why = policy_net_rule(rule, canon);

	if (!why)
		return 0;
	return error_set(err, AEGIS_E_INVALID, 0, "%s: %s%s", why,
			 policy_quote(rule, strlen(rule), q, sizeof q),
			 why == policy_not_a_rule ? policy_rule_hint : "");
}

int policy_check_net_host(const char *entry, struct aegis_error *err)
{
	char name[POLICY_NAME_MAX + 1], addr[INET6_ADDRSTRLEN], q[POLICY_SHOWN_MAX + 16];
	const char *bad, *why;
	size_t bad_len;

	why = policy_net_host(entry, name, addr, &bad, &bad_len);
	if (!why)
		return 0;
	return error_set(err, AEGIS_E_INVALID, 0, "%s: %s%s", why,
			 policy_quote(bad, bad_len, q, sizeof q),
			 why == policy_not_a_name ? policy_name_hint :
			 why == policy_not_an_ip ? " (e.g. 10.1.2.3 or 2001:db8::1)" : "");
}

/* ---- sections ---------------------------------------------------------- */

struct policy_list_key {
	const char *name;
	size_t offset;		/* of the char ** in struct aegis_policy */
	enum policy_entry kind;
	/* An empty allowlist means "nothing", unlike no allowlist; an empty
	 * denylist means the same as none, so it is stored as none. */
	bool keep_empty;
};

static const struct policy_list_key policy_commands_keys[] = {
	{ "allow", offsetof(struct aegis_policy, cmd_allow), POLICY_ENTRY_COMMAND, true },
	{ "deny", offsetof(struct aegis_policy, cmd_deny), POLICY_ENTRY_COMMAND, false },
	{ "argv_deny", offsetof(struct aegis_policy, argv_deny), POLICY_ENTRY_ARGV, false },
	{ NULL, 0, 0, false },
};

static const struct policy_list_key policy_files_keys[] = {
	{ "read", offsetof(struct aegis_policy, files_read), POLICY_ENTRY_PATH, true },
	{ "write", offsetof(struct aegis_policy, files_write), POLICY_ENTRY_PATH, true },
	{ "deny", offsetof(struct aegis_policy, files_deny), POLICY_ENTRY_PATH, false },
	{ NULL, 0, 0, false },
};

static int policy_unknown(const struct policy_ctx *ctx, const char *path, const char *key,
			  const char *known)
{
	char q[POLICY_SHOWN_MAX + 16];

	return policy_fail(ctx, path, "unknown field %s (known: %s)",
			   policy_quote(key, strlen(key), q, sizeof q), known);
}

static int policy_parse_list(const struct policy_ctx *ctx, const char *section,
			     const struct policy_list_key *k, json_t *value,
			     struct aegis_policy *out)
{
	char ***slot = (char ***)(void *)((char *)out + k->offset);
	char path[64], q[POLICY_SHOWN_MAX + 16];
	size_t n;
	char **list;

	snprintf(path, sizeof path, "%s.%s", section, k->name);
	if (json_is_null(value))
		return 0;	/* the same as leaving the key out */
	if (!json_is_array(value))
		return policy_fail(ctx, path, "expected a list of strings, got %s",
				   policy_type_name(value));
	n = json_array_size(value);
	if (n > POLICY_LIST_MAX)
		return policy_fail(ctx, path, "more than %d entries", POLICY_LIST_MAX);
	if (n == 0 && !k->keep_empty)
		return 0;
	list = calloc(n + 1, sizeof *list);
	if (!list)
		return policy_oom(ctx);
	*slot = list;	/* owned by out from here: policy_free releases a partial list */
	for (size_t i = 0; i < n; i++) {
		json_t *item = json_array_get(value, i);
		const char *v, *why;

		if (!json_is_string(item))
			return policy_fail(ctx, NULL, "%s[%zu]: expected a string, got %s", path, i,
					   policy_type_name(item));
		v = json_string_value(item);
		if (strlen(v) != json_string_length(item))
			return policy_fail(ctx, NULL, "%s[%zu]: contains a NUL character", path, i);
		if (k->kind == POLICY_ENTRY_NET_RULE) {
			char canon[POLICY_NET_CANON_MAX];

			why = policy_net_rule(v, canon);
			if (why)
				return policy_fail(ctx, NULL, "%s[%zu]: %s: %s%s", path, i, why,
						   policy_quote(v, json_string_length(item), q, sizeof q),
						   why == policy_not_a_rule ? policy_rule_hint : "");
			if (!(list[i] = strdup(canon)))
				return policy_oom(ctx);
			continue;
		}
		list[i] = strdup(v);
		if (!list[i])
			return policy_oom(ctx);
		why = policy_check_entry(list[i], k->kind);
		if (why)
			return policy_fail(ctx, NULL, "%s[%zu]: %s: %s", path, i, why,
					   policy_quote(v, json_string_length(item), q, sizeof q));
	}
	return 0;
}

static int policy_parse_lists(const struct policy_ctx *ctx, const char *section,
			      const struct policy_list_key *keys, const char *known, json_t *obj,
			      struct aegis_policy *out)
{
	const char *key;
	json_t *value;

	if (!json_is_object(obj))
		return policy_fail(ctx, section, "expected an object, got %s", policy_type_name(obj));
	json_object_foreach(obj, key, value) {
		const struct policy_list_key *k = keys;

		while (k->name && strcmp(k->name, key) != 0)
			k++;
		if (!k->name)
			return policy_unknown(ctx, section, key, known);
		if (policy_parse_list(ctx, section, k, value, out) < 0)
			return -1;
	}
	return 0;
}

static const struct policy_list_key policy_network_keys[] = {
	{ "allow", offsetof(struct aegis_policy, net_allow), POLICY_ENTRY_NET_RULE, false },
	{ "deny", offsetof(struct aegis_policy, net_deny), POLICY_ENTRY_NET_RULE, false },
	{ NULL, 0, 0, false },
};

/* The name of a "name=ip" entry, for comparing two entries. */
static size_t policy_host_name_len(const char *entry)
{
	size_t n = strcspn(entry, "=");

	return n && entry[n - 1] == '.' ? n - 1 : n;
}

/* {"api.internal": "10.1.2.3", ...} → "api.internal=10.1.2.3" entries. */
static int policy_parse_hosts(const struct policy_ctx *ctx, json_t *obj, struct aegis_policy *out)
{
	char name[POLICY_NAME_MAX + 1], addr[INET6_ADDRSTRLEN], q[POLICY_SHOWN_MAX + 16];
	char q2[POLICY_SHOWN_MAX + 16];
	size_t n, i = 0;
	const char *key, *why;
	json_t *value;
	char **list;

	if (!json_is_object(obj))
		return policy_fail(ctx, "network.hosts",
				   "expected an object of \"name\": \"IP\", got %s", policy_type_name(obj));
	n = json_object_size(obj);
	if (n > POLICY_LIST_MAX)
		return policy_fail(ctx, "network.hosts", "more than %d entries", POLICY_LIST_MAX);
	if (n == 0)
		return 0;
	list = calloc(n + 1, sizeof *list);
	if (!list)
		return policy_oom(ctx);
	out->net_hosts = list;	/* owned by out from here, as in policy_parse_list */
	json_object_foreach(obj, key, value) {
		const char *v;

		policy_quote(key, strlen(key), q, sizeof q);
		why = policy_net_name(key, strlen(key), name);
		if (why)
			return policy_fail(ctx, "network.hosts", "%s: %s%s", why, q,
					   why == policy_not_a_name ? policy_name_hint : "");
		if (!json_is_string(value))
			return policy_fail(ctx, NULL, "network.hosts[%s]: expected a string, got %s", q,
					   policy_type_name(value));
		v = json_string_value(value);
		if (strlen(v) != json_string_length(value) || policy_net_ip(v, addr))
			return policy_fail(ctx, NULL, "network.hosts[%s]: %s: %s (e.g. 10.1.2.3 or 2001:db8::1)",
					   q, policy_not_an_ip,
					   policy_quote(v, json_string_length(value), q2, sizeof q2));
		/* "API.internal" and "api.internal." are one name: two addresses
		 * for it would leave the choice to whichever comes first. */
		for (size_t j = 0; j < i; j++)
			if (policy_host_name_len(list[j]) == strlen(name) &&
			    !strncmp(list[j], name, strlen(name)))
				return policy_fail(ctx, "network.hosts",
						   "%s is given twice (names ignore case and a trailing \".\")", q);
		if (asprintf(&list[i], "%s=%s", name, addr) < 0) {
			list[i] = NULL;
			return policy_oom(ctx);
		}
		i++;
	}
	return 0;
}

static int policy_parse_network(const struct policy_ctx *ctx, json_t *obj, struct aegis_policy *out)
{
	char q[POLICY_SHOWN_MAX + 16];
	const char *key, *mode;
	json_t *value;

	if (!json_is_object(obj))
		return policy_fail(ctx, "network", "expected an object, got %s", policy_type_name(obj));
	json_object_foreach(obj, key, value) {
		const struct policy_list_key *k = policy_network_keys;

		while (k->name && strcmp(k->name, key) != 0)
			k++;
		if (k->name) {
			if (policy_parse_list(ctx, "network", k, value, out) < 0)
				return -1;
			continue;
		}
		if (!strcmp(key, "hosts")) {
			if (policy_parse_hosts(ctx, value, out) < 0)
				return -1;
			continue;
		}
		if (strcmp(key, "mode") != 0)
			return policy_unknown(ctx, "network", key, "mode, allow, deny, hosts");
		if (!json_is_string(value))
			return policy_fail(ctx, "network.mode", "expected a string, got %s",
					   policy_type_name(value));
		mode = json_string_value(value);
		if (strcmp(mode, "none") && strcmp(mode, "allow") && strcmp(mode, "host"))
			return policy_fail(ctx, "network.mode", "expected \"none\", \"allow\" or \"host\", got %s",
					   policy_quote(mode, json_string_length(value), q, sizeof q));
		if (!(out->net_mode = strdup(mode)))
			return policy_oom(ctx);
	}
	/* Rules outside the allow mode would be silently ignored: in "none"
	 * nothing leaves, in "host" everything may. Say so instead. Empty
	 * lists are fine in any mode (the canonical form writes them). */
	mode = out->net_mode ? out->net_mode : "none";
	if (strcmp(mode, "allow") != 0) {
		const char *what = out->net_allow ? "allow" : out->net_deny ? "deny"
				 : out->net_hosts ? "hosts" : NULL;

		if (what)
			return policy_fail(ctx, NULL, "network.%s: %s need \"mode\": \"allow\" (the mode is \"%s\")",
					   what, out->net_hosts && !out->net_allow && !out->net_deny
					   ? "entries" : "rules", mode);
	}
	return 0;
}

enum policy_unit {
	POLICY_UNIT_DURATION,		/* "30s" or integer seconds → ms */
	POLICY_UNIT_DURATION_MS,	/* integer ms: the canonical form */
	POLICY_UNIT_SIZE,		/* "512m" or integer bytes */
	POLICY_UNIT_COUNT,		/* integer */
	POLICY_UNIT_CPUS,		/* number of CPUs, fractional → thousandths */
};

struct policy_limit_key {
	const char *name;
	enum policy_unit unit;
	uint32_t bit;
	size_t offset;		/* of the uint64_t in struct aegis_limits */
	uint64_t min, max;
	const char *range;	/* the bounds, as the message says them */
};

#define LIMIT_AT(field) offsetof(struct aegis_limits, field)

static const struct policy_limit_key policy_limit_keys[] = {
	{ "wall", POLICY_UNIT_DURATION, AEGIS_LIMIT_WALL, LIMIT_AT(wall_ms), 0, POLICY_DURATION_MAX,
	  "at most 365 days" },
	{ "cpu", POLICY_UNIT_DURATION, AEGIS_LIMIT_CPU, LIMIT_AT(cpu_ms), 0, POLICY_DURATION_MAX,
	  "at most 365 days" },
	{ "cpus", POLICY_UNIT_CPUS, AEGIS_LIMIT_CPUS, 0, 1, 1024000, "more than 0 and at most 1024" },
	{ "memory", POLICY_UNIT_SIZE, AEGIS_LIMIT_MEMORY, LIMIT_AT(memory_bytes), 4ULL << 20,
	  POLICY_SIZE_MAX, "at least 4m (4 MiB) and at most 1024t" },
	{ "pids", POLICY_UNIT_COUNT, AEGIS_LIMIT_PIDS, LIMIT_AT(pids), 2, INT64_MAX, "at least 2" },
	/* A tmpfs of size 0 has no limit at all, so 0 is refused. */
	{ "disk", POLICY_UNIT_SIZE, AEGIS_LIMIT_DISK, LIMIT_AT(disk_bytes), 1, POLICY_SIZE_MAX,
	  "more than 0 and at most 1024t" },
	{ "output", POLICY_UNIT_SIZE, AEGIS_LIMIT_OUTPUT, LIMIT_AT(output_bytes), 0, POLICY_SIZE_MAX,
	  "at most 1024t" },
	{ "nofile", POLICY_UNIT_COUNT, AEGIS_LIMIT_NOFILE, LIMIT_AT(nofile), 16, 1048576,
	  "between 16 and 1048576" },
	{ "execs", POLICY_UNIT_COUNT, AEGIS_LIMIT_EXECS, LIMIT_AT(execs), 1, INT64_MAX, "at least 1" },
	{ "wall_ms", POLICY_UNIT_DURATION_MS, AEGIS_LIMIT_WALL, LIMIT_AT(wall_ms), 0,
	  POLICY_DURATION_MAX, "at most 31536000000 (365 days)" },
	{ "cpu_ms", POLICY_UNIT_DURATION_MS, AEGIS_LIMIT_CPU, LIMIT_AT(cpu_ms), 0, POLICY_DURATION_MAX,
	  "at most 31536000000 (365 days)" },
	{ NULL, 0, 0, 0, 0, 0, NULL },
};

static const char policy_limit_names[] =
	"wall, cpu, cpus, memory, pids, disk, output, nofile, execs, wall_ms, cpu_ms";

static int policy_parse_cpus(const struct policy_ctx *ctx, const char *path, json_t *value,
			     struct aegis_limits *limits)
{
	uint32_t milli;
	double cpus;

	if (!json_is_number(value))
		return policy_fail(ctx, path, "expected a number of CPUs, got %s",
				   policy_type_name(value));
	cpus = json_number_value(value);
	/* Written as !(a && b) so that a NaN, should one ever get here, fails. */
	if (!(cpus > 0 && cpus <= 1024))
		return policy_fail(ctx, path, "must be more than 0 and at most 1024, got %g", cpus);
	/* Rounded to the nearest thousandth by hand: cpus > 0 here, and this
	 * keeps libm out of the link. */
	milli = (uint32_t)(cpus * 1000 + 0.5);
	if (milli < 1)
		return policy_fail(ctx, path, "must be at least 0.001, got %g", cpus);
	limits->cpus_milli = milli;
	return 0;
}

static int policy_parse_limit(const struct policy_ctx *ctx, const struct policy_limit_key *k,
			      json_t *value, struct aegis_policy *out)
{
	char path[32], q[POLICY_SHOWN_MAX + 16], got[POLICY_SHOWN_MAX + 24];
	uint64_t v = 0;

	snprintf(path, sizeof path, "limits.%s", k->name);
	if (out->limits_set & k->bit)
		return policy_fail(ctx, path, "the same limit is already given under another name");
	if (k->unit == POLICY_UNIT_CPUS) {
		if (policy_parse_cpus(ctx, path, value, &out->limits) < 0)
			return -1;
		out->limits_set |= k->bit;
		return 0;
	}
	if (json_is_integer(value)) {
		json_int_t i = json_integer_value(value);

		if (i < 0)
			return policy_fail(ctx, path, "must not be negative, got %" JSON_INTEGER_FORMAT, i);
		v = (uint64_t)i;
		snprintf(got, sizeof got, "%" JSON_INTEGER_FORMAT, i);
		if (k->unit == POLICY_UNIT_DURATION)
			v = v > POLICY_DURATION_MAX / 1000 ? POLICY_DURATION_MAX + 1 : v * 1000;
	} else if (json_is_string(value) &&
		   (k->unit == POLICY_UNIT_DURATION || k->unit == POLICY_UNIT_SIZE)) {
		const char *s = json_string_value(value);

		policy_quote(s, json_string_length(value), q, sizeof q);
		snprintf(got, sizeof got, "%s", q);
		if (k->unit == POLICY_UNIT_DURATION && parse_duration_ms(s, &v) < 0)
			return policy_fail(ctx, path, "not a duration: %s (e.g. 30s, 500ms, 2m)", q);
		if (k->unit == POLICY_UNIT_SIZE && parse_size(s, &v) < 0)
			return policy_fail(ctx, path, "not a size: %s (e.g. 512m, 1g)", q);
	} else {
		const char *want = k->unit == POLICY_UNIT_DURATION ? "a duration (\"30s\") or integer seconds"
				 : k->unit == POLICY_UNIT_SIZE ? "a size (\"512m\") or integer bytes"
				 : "an integer";

		if (json_is_real(value))
			return policy_fail(ctx, path, "expected %s, got %g", want, json_real_value(value));
		return policy_fail(ctx, path, "expected %s, got %s", want, policy_type_name(value));
	}
	if (v < k->min || v > k->max)
		return policy_fail(ctx, path, "must be %s, got %s", k->range, got);
	*(uint64_t *)(void *)((char *)&out->limits + k->offset) = v;
	out->limits_set |= k->bit;
	return 0;
}

static int policy_parse_limits(const struct policy_ctx *ctx, json_t *obj, struct aegis_policy *out)
{
	const char *key;
	json_t *value;

	if (!json_is_object(obj))
		return policy_fail(ctx, "limits", "expected an object, got %s", policy_type_name(obj));
	json_object_foreach(obj, key, value) {
		const struct policy_limit_key *k = policy_limit_keys;

		while (k->name && strcmp(k->name, key) != 0)
			k++;
		if (!k->name)
			return policy_unknown(ctx, "limits", key, policy_limit_names);
		if (policy_parse_limit(ctx, k, value, out) < 0)
			return -1;
	}
	return 0;
}

static int policy_parse_enforcement(const struct policy_ctx *ctx, json_t *value,
				    struct aegis_policy *out)
{
	char q[POLICY_SHOWN_MAX + 16];
	const char *s;

	if (!json_is_string(value))
		return policy_fail(ctx, "enforcement", "expected a string, got %s",
				   policy_type_name(value));
	s = json_string_value(value);
	if (!strcmp(s, "strict"))
		out->best_effort = false;
	else if (!strcmp(s, "best-effort"))
		out->best_effort = true;
	else
		return policy_fail(ctx, "enforcement", "expected \"strict\" or \"best-effort\", got %s",
				   policy_quote(s, json_string_length(value), q, sizeof q));
	return 0;
}

static int policy_parse_root(const struct policy_ctx *ctx, json_t *root, struct aegis_policy *out)
{
	const char *key;
	json_t *value;
	int r;

	if (!json_is_object(root))
		return policy_fail(ctx, NULL, "expected an object at the top level, got %s",
				   policy_type_name(root));
	json_object_foreach(root, key, value) {
		if (!strcmp(key, "commands"))
			r = policy_parse_lists(ctx, "commands", policy_commands_keys,
					       "allow, deny, argv_deny", value, out);
		else if (!strcmp(key, "files"))
			r = policy_parse_lists(ctx, "files", policy_files_keys, "read, write, deny",
					       value, out);
		else if (!strcmp(key, "network"))
			r = policy_parse_network(ctx, value, out);
		else if (!strcmp(key, "limits"))
			r = policy_parse_limits(ctx, value, out);
		else if (!strcmp(key, "enforcement"))
			r = policy_parse_enforcement(ctx, value, out);
		else
			r = policy_unknown(ctx, NULL, key,
					   "commands, files, network, limits, enforcement");
		if (r < 0)
			return -1;
	}
	return 0;
}

/* ---- entry points ------------------------------------------------------ */

int policy_parse(const char *text, size_t len, const char *origin, struct aegis_policy *out,
		 struct aegis_error *err)
{
	struct policy_ctx ctx = { .err = err };
	struct policy_scan scan;
	json_error_t jerr;
	json_t *root;
	char path[192];
	int r;

	memset(out, 0, sizeof *out);
	if (!origin)
		origin = "(inline)";
	if (!text)
		text = "", len = 0;
	policy_origin(origin, ctx.origin, sizeof ctx.origin);
	if (len > POLICY_FILE_MAX)
		return policy_fail(&ctx, NULL, "file is larger than 1 MiB");
	if (policy_scan(text, len, &scan) < 0) {
		policy_scan_path(&scan, path, sizeof path);
		return policy_fail(&ctx, *path ? path : NULL,
				   "line %zu column %zu: nested deeper than %d levels", scan.line,
				   scan.column, POLICY_DEPTH_MAX);
	}
	/* No JSON_ALLOW_NUL: a NUL inside a path or argv rule would cut it
	 * short in C. No JSON_DISABLE_EOF_CHECK: trailing bytes are an error. */
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return policy_syntax_error(&ctx, text, len, &jerr);
	r = policy_parse_root(&ctx, root, out);
	json_decref(root);
	/* No network unless a mode says otherwise (DESIGN.md §4). */
	if (r == 0 && !out->net_mode && !(out->net_mode = strdup("none")))
		r = policy_oom(&ctx);
	if (r == 0 && !(out->name = strdup(origin)))
		r = policy_oom(&ctx);
	if (r < 0)
		policy_free(out);
	return r;
}

int policy_load(const char *name_or_path, struct aegis_policy *out, struct aegis_error *err)
{
	char shown[128];
	struct stat st;
	size_t len = 0, cap;
	char *buf;
	int fd, r;

	memset(out, 0, sizeof *out);
	if (!name_or_path || !*name_or_path)
		return error_set(err, AEGIS_E_INVALID, 0, "policy: no name or file given");
	for (size_t i = 0; i < sizeof policy_profiles / sizeof policy_profiles[0]; i++)
		if (!strcmp(name_or_path, policy_profiles[i].name))
			return policy_parse(policy_profiles[i].text, strlen(policy_profiles[i].text),
					    policy_profiles[i].name, out, err);
	policy_origin(name_or_path, shown, sizeof shown);
	/* O_NONBLOCK: opening a FIFO must not hang; fstat then refuses it. */
	fd = open(name_or_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return error_set(err, AEGIS_E_INVALID, errno, "policy %s", shown);
	if (fstat(fd, &st) < 0) {
		r = error_set(err, AEGIS_E_INVALID, errno, "policy %s", shown);
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > POLICY_FILE_MAX) {
		close(fd);
		return error_set(err, AEGIS_E_INVALID, 0, "policy %s: %s", shown,
				 S_ISREG(st.st_mode) ? "file is larger than 1 MiB" : "not a regular file");
	}
	/* One byte more than fstat said, to notice a file that grew meanwhile. */
	cap = (size_t)st.st_size + 1;
	buf = malloc(cap);
	if (!buf) {
		close(fd);
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "policy %s", shown);
	}
	while (len < cap) {
		ssize_t n = read(fd, buf + len, cap - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = error_set(err, AEGIS_E_INVALID, errno, "policy %s", shown);
			free(buf);
			close(fd);
			return r;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len == cap)
		r = error_set(err, AEGIS_E_INVALID, 0, "policy %s: file changed while being read", shown);
	else
		r = policy_parse(buf, len, name_or_path, out, err);
	free(buf);
	return r;
}

/* ---- canonical form ---------------------------------------------------- */

/* NULL → null for allowlists ("no rule"), [] for denylists ("nothing denied"). */
static json_t *policy_json_list(char *const *list, bool null_when_absent)
{
	json_t *arr;

	if (!list && null_when_absent)
		return json_null();
	arr = json_array();
	for (size_t i = 0; arr && list && list[i]; i++) {
		if (json_array_append_new(arr, json_string(list[i])) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

/* Rules in their canonical spelling: the parser stores them so, entries
 * added by `aegis run --allow` are stored as written. */
static json_t *policy_json_rules(char *const *list)
{
	char canon[POLICY_NET_CANON_MAX];
	json_t *arr = json_array();

	for (size_t i = 0; arr && list && list[i]; i++) {
		const char *v = policy_net_rule(list[i], canon) ? list[i] : canon;

		if (json_array_append_new(arr, json_string(v)) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static int policy_host_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	size_t nx = policy_host_name_len(x), ny = policy_host_name_len(y);
	int c = strncasecmp(x, y, nx < ny ? nx : ny);

	return c ? c : (nx > ny) - (nx < ny);
}

/* "name=ip" entries → {"name": "ip"}, sorted by name: the order of a JSON
 * object's keys means nothing, so it must not change the digest. */
static json_t *policy_json_hosts(char *const *list)
{
	char name[POLICY_NAME_MAX + 1], addr[INET6_ADDRSTRLEN];
	json_t *obj = json_object();
	const char **sorted, *bad;
	size_t n = 0, bad_len;
	int bad_set = 0;

	while (list && list[n])
		n++;
	if (!obj || n == 0)
		return obj;
	sorted = malloc(n * sizeof *sorted);
	if (!sorted) {
		json_decref(obj);
		return NULL;
	}
	memcpy(sorted, list, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, policy_host_cmp);
	for (size_t i = 0; i < n && !bad_set; i++) {
		/* Only checked entries get here; should one not be, it is shown
		 * as written with a null address rather than dropped. */
		if (policy_net_host(sorted[i], name, addr, &bad, &bad_len))
			bad_set = json_object_set_new(obj, sorted[i], json_null());
		else
			bad_set = json_object_set_new(obj, name, json_string(addr));
	}
	free(sorted);
	if (bad_set) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

json_t *policy_to_json(const struct aegis_policy *p)
{
	json_t *root = json_object(), *cmds = json_object(), *files = json_object();
	json_t *net = json_object(), *lim = json_object();
	const struct aegis_limits *l = &p->limits;
	int bad = !root || !cmds || !files || !net || !lim;

	bad |= json_object_set_new(cmds, "allow", policy_json_list(p->cmd_allow, true));
	bad |= json_object_set_new(cmds, "deny", policy_json_list(p->cmd_deny, false));
	bad |= json_object_set_new(cmds, "argv_deny", policy_json_list(p->argv_deny, false));
	bad |= json_object_set_new(files, "read", policy_json_list(p->files_read, true));
	bad |= json_object_set_new(files, "write", policy_json_list(p->files_write, true));
	bad |= json_object_set_new(files, "deny", policy_json_list(p->files_deny, false));
	bad |= json_object_set_new(net, "mode", json_string(p->net_mode ? p->net_mode : "none"));
	bad |= json_object_set_new(net, "allow", policy_json_rules(p->net_allow));
	bad |= json_object_set_new(net, "deny", policy_json_rules(p->net_deny));
	bad |= json_object_set_new(net, "hosts", policy_json_hosts(p->net_hosts));
	/* Durations in ms and sizes in bytes: one spelling per value, so that
	 * equal policies have equal digests. */
	if (p->limits_set & AEGIS_LIMIT_WALL)
		bad |= json_object_set_new(lim, "wall_ms", json_integer((json_int_t)l->wall_ms));
	if (p->limits_set & AEGIS_LIMIT_CPU)
		bad |= json_object_set_new(lim, "cpu_ms", json_integer((json_int_t)l->cpu_ms));
	if (p->limits_set & AEGIS_LIMIT_CPUS)
		bad |= json_object_set_new(lim, "cpus", l->cpus_milli % 1000
					   ? json_real(l->cpus_milli / 1000.0)
					   : json_integer(l->cpus_milli / 1000));
	if (p->limits_set & AEGIS_LIMIT_MEMORY)
		bad |= json_object_set_new(lim, "memory", json_integer((json_int_t)l->memory_bytes));
	if (p->limits_set & AEGIS_LIMIT_PIDS)
		bad |= json_object_set_new(lim, "pids", json_integer((json_int_t)l->pids));
	if (p->limits_set & AEGIS_LIMIT_DISK)
		bad |= json_object_set_new(lim, "disk", json_integer((json_int_t)l->disk_bytes));
	if (p->limits_set & AEGIS_LIMIT_OUTPUT)
		bad |= json_object_set_new(lim, "output", json_integer((json_int_t)l->output_bytes));
	if (p->limits_set & AEGIS_LIMIT_NOFILE)
		bad |= json_object_set_new(lim, "nofile", json_integer((json_int_t)l->nofile));
	if (p->limits_set & AEGIS_LIMIT_EXECS)
		bad |= json_object_set_new(lim, "execs", json_integer((json_int_t)l->execs));
	/* set_new steals its value even on failure; the containers are
	 * released below with root, or one by one if root was never made. */
	bad |= json_object_set_new(root, "commands", cmds);
	bad |= json_object_set_new(root, "files", files);
	bad |= json_object_set_new(root, "network", net);
	bad |= json_object_set_new(root, "limits", lim);
	bad |= json_object_set_new(root, "enforcement",
				   json_string(p->best_effort ? "best-effort" : "strict"));
	if (bad) {
		json_decref(root);
		return NULL;
	}
	return root;
}

void policy_digest(const struct aegis_policy *policy, char out[65])
{
	json_t *j = policy_to_json(policy);
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	out[0] = '\0';	/* only when out of memory */
	if (text)
		hash_sha256_hex(text, strlen(text), out);
	free(text);
	json_decref(j);
}

void policy_apply_limits(const struct aegis_policy *p, struct aegis_limits *limits)
{
	const struct aegis_limits *l = &p->limits;

	if (p->limits_set & AEGIS_LIMIT_WALL)
		limits->wall_ms = l->wall_ms;
	if (p->limits_set & AEGIS_LIMIT_CPU)
		limits->cpu_ms = l->cpu_ms;
	if (p->limits_set & AEGIS_LIMIT_CPUS)
		limits->cpus_milli = l->cpus_milli;
	if (p->limits_set & AEGIS_LIMIT_MEMORY)
		limits->memory_bytes = l->memory_bytes;
	if (p->limits_set & AEGIS_LIMIT_PIDS)
		limits->pids = l->pids;
	if (p->limits_set & AEGIS_LIMIT_DISK)
		limits->disk_bytes = l->disk_bytes;
	if (p->limits_set & AEGIS_LIMIT_OUTPUT)
		limits->output_bytes = l->output_bytes;
	if (p->limits_set & AEGIS_LIMIT_NOFILE)
		limits->nofile = l->nofile;
	if (p->limits_set & AEGIS_LIMIT_EXECS)
		limits->execs = l->execs;
}

static void policy_free_list(char **list)
{
	for (size_t i = 0; list && list[i]; i++)
		free(list[i]);
	free(list);
}

void policy_free(struct aegis_policy *policy)
{
	if (!policy)
		return;
	free(policy->name);
	policy_free_list(policy->cmd_allow);
	policy_free_list(policy->cmd_deny);
	policy_free_list(policy->argv_deny);
	policy_free_list(policy->files_read);
	policy_free_list(policy->files_write);
	policy_free_list(policy->files_deny);
	free(policy->net_mode);
	policy_free_list(policy->net_allow);
	policy_free_list(policy->net_deny);
	policy_free_list(policy->net_hosts);
	memset(policy, 0, sizeof *policy);
}
