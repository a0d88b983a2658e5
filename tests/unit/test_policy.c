/* test_policy.c — policy files: the built-in profiles, the canonical form and
 * its digest, and every way a file can be wrong (each must be refused with a
 * message naming the field, and hostile input must be refused quickly). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <aegis/aegis.h>
#include "../../src/common/policy.h"
#include "../../src/common/util.h"
#include "tap.h"

static int parse(const char *text, struct aegis_policy *p, struct aegis_error *err)
{
	memset(err, 0, sizeof *err);
	return policy_parse(text, strlen(text), "./p.json", p, err);
}

static int is_zero(const void *p, size_t len)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < len; i++)
		if (c[i])
			return 0;
	return 1;
}

/* Note: tap.h's ok() evaluates its condition twice, so calls with side
 * effects are made before it, never inside it. */

/* Refused as AEGIS_E_INVALID, with `want` in a one-line message, and the
 * output left empty so a caller cannot use half a policy. */
static void refused(const char *text, const char *want)
{
	struct aegis_policy p;
	struct aegis_error err;
	int r = parse(text, &p, &err);
	char shown[61];

	/* A TAP line must stay one line. */
	snprintf(shown, sizeof shown, "%s", text);
	for (char *c = shown; *c; c++)
		if (*c == '\n')
			*c = ' ';
	ok(r < 0 && err.code == AEGIS_E_INVALID && strstr(err.msg, want) &&
	   strncmp(err.msg, "policy ./p.json: ", 17) == 0 && !strchr(err.msg, '\n') &&
	   is_zero(&p, sizeof p),
	   "refused %s: want '%s', got '%s'", shown, want, r < 0 ? err.msg : "(accepted)");
	if (r == 0)
		policy_free(&p);
}

static void test_builtins(void)
{
	struct aegis_policy p;
	struct aegis_error err = { 0 };
	char d1[65], d2[65];
	int r;

	r = policy_load("default", &p, &err);
	ok(r == 0, "default profile loads (%s)", err.msg);
	ok(p.name && !strcmp(p.name, "default"), "default: name");
	ok(!p.cmd_allow && !p.cmd_deny && !p.argv_deny && !p.files_read && !p.files_write &&
	   !p.files_deny, "default: no command or file rules");
	ok(p.net_mode && !strcmp(p.net_mode, "none"), "default: network none");
	ok(!p.best_effort && p.limits_set == 0, "default: strict enforcement, no limits set");
	policy_digest(&p, d1);
	ok(strlen(d1) == 64, "digest is 64 hex digits");
	policy_free(&p);
	ok(is_zero(&p, sizeof p), "policy_free zeroes the struct");

	r = policy_load("strict", &p, &err);
	ok(r == 0, "strict profile loads (%s)", err.msg);
	ok(p.name && !strcmp(p.name, "strict"), "strict: name");
	ok(p.cmd_allow && !strcmp(p.cmd_allow[0], "/usr/bin/*") && !strcmp(p.cmd_allow[4], "/sbin/*") &&
	   !p.cmd_allow[5], "strict: five allow patterns");
	ok(p.cmd_deny && !strcmp(p.cmd_deny[0], "/usr/bin/curl") && !strcmp(p.cmd_deny[5], "/usr/bin/scp") &&
	   !p.cmd_deny[6], "strict: six denied programs");
	ok(p.argv_deny && !strcmp(p.argv_deny[0], "git push") && !p.argv_deny[1], "strict: git push denied");
	ok(p.files_write && !strcmp(p.files_write[0], "/workspace") && !strcmp(p.files_write[1], "/tmp") &&
	   !p.files_write[2] && !p.files_read && !p.files_deny, "strict: /workspace and /tmp writable");
	ok(p.limits_set == (AEGIS_LIMIT_WALL | AEGIS_LIMIT_MEMORY | AEGIS_LIMIT_PIDS | AEGIS_LIMIT_OUTPUT |
			    AEGIS_LIMIT_EXECS | AEGIS_LIMIT_NOFILE), "strict: the limits it names are set");
	ok(p.limits.wall_ms == 300000 && p.limits.memory_bytes == 512ULL << 20 && p.limits.pids == 128 &&
	   p.limits.output_bytes == 8ULL << 20 && p.limits.execs == 1000 && p.limits.nofile == 256,
	   "strict: limit values");
	policy_digest(&p, d2);
	ok(strcmp(d1, d2) != 0, "default and strict digests differ");
	policy_free(&p);
}

static const char full[] =
	"{\"commands\": {\"allow\": [\"/usr/bin/*\", \"/opt//tool/./bin/x\", \"/usr/bin/[a-c]?\"],"
	" \"deny\": [\"/usr/bin/curl\"], \"argv_deny\": [\"git  push \", \"rm -rf\"]},"
	" \"files\": {\"read\": [\"/data/\"], \"write\": [], \"deny\": [\"/workspace/.git/config\", \"/workspace//*.env\"]},"
	" \"network\": {\"mode\": \"none\"},"
	" \"limits\": {\"wall\": \"60s\", \"cpu\": 30, \"cpus\": 1.5, \"memory\": \"512m\", \"pids\": 256,"
	" \"disk\": \"1g\", \"output\": 8388608, \"nofile\": 1024, \"execs\": 500},"
	" \"enforcement\": \"best-effort\"}";

static void test_full(void)
{
	struct aegis_policy p, q;
	struct aegis_limits l = AEGIS_LIMITS_DEFAULT;
	struct aegis_error err;
	char d1[65], d2[65], *text;
	json_t *j;
	int r;

	r = parse(full, &p, &err);
	ok(r == 0, "a full policy parses (%s)", err.msg);
	ok(!strcmp(p.name, "./p.json"), "name is the origin");
	ok(!strcmp(p.cmd_allow[1], "/opt/tool/bin/x"), "command path normalised");
	ok(!strcmp(p.argv_deny[0], "git push"), "argv rule spaces collapsed");
	ok(!strcmp(p.files_read[0], "/data"), "trailing slash stripped");
	ok(!strcmp(p.files_deny[1], "/workspace/*.env"), "files pattern kept, normalised");
	ok(p.files_write && !p.files_write[0], "an empty write list is kept (nothing writable)");
	ok(p.best_effort, "best-effort enforcement");
	ok(p.limits.wall_ms == 60000 && p.limits.cpu_ms == 30000 && p.limits.cpus_milli == 1500 &&
	   p.limits.memory_bytes == 512ULL << 20 && p.limits.pids == 256 &&
	   p.limits.disk_bytes == 1ULL << 30 && p.limits.output_bytes == 8ULL << 20 &&
	   p.limits.nofile == 1024 && p.limits.execs == 500, "limit values");
	ok(p.limits_set == 0x1ff, "all nine limit bits set");

	j = policy_to_json(&p);
	text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	ok(text && strstr(text, "\"wall_ms\":60000") && strstr(text, "\"cpus\":1.5") &&
	   strstr(text, "\"write\":[]") && strstr(text, "\"memory\":536870912"),
	   "canonical JSON: ms, bytes, empty list kept (%s)", text ? text : "NULL");
	ok(text && strncmp(text, "{\"commands\":{\"allow\":", 21) == 0 &&
	   strstr(text, "\"enforcement\":\"best-effort\"}") == text + strlen(text) - 28,
	   "canonical JSON: fixed key order");
	r = text ? parse(text, &q, &err) : -1;
	ok(r == 0, "canonical JSON parses again (%s)", err.msg);
	policy_digest(&p, d1);
	policy_digest(&q, d2);
	ok(!strcmp(d1, d2), "round trip keeps the digest");
	free(text);
	json_decref(j);
	policy_free(&q);

	l.wall_ms = 7;
	policy_free(&p);
	r = parse("{\"limits\": {\"memory\": \"64m\"}}", &p, &err);
	ok(r == 0, "memory-only policy");
	policy_apply_limits(&p, &l);
	ok(l.memory_bytes == 64ULL << 20 && l.wall_ms == 7 && l.pids == 512 && l.nofile == 1024,
	   "apply_limits copies only the limits set");
	policy_free(&p);

	r = parse("{\"limits\": {\"cpus\": 2, \"wall\": 0}, \"commands\": {\"allow\": null, \"deny\": []}}",
		  &p, &err);
	ok(r == 0 && p.limits.cpus_milli == 2000 && p.limits.wall_ms == 0 &&
	   (p.limits_set & AEGIS_LIMIT_WALL) && !p.cmd_allow && !p.cmd_deny,
	   "integer cpus, wall 0, null and empty deny mean none");
	policy_free(&p);
	r = parse("{\"limits\": {\"wall_ms\": 1500, \"cpu_ms\": 1}}", &p, &err);
	ok(r == 0 &&
	   p.limits.wall_ms == 1500 && p.limits.cpu_ms == 1, "canonical wall_ms / cpu_ms accepted");
	policy_free(&p);
}

static void test_errors(void)
{
	refused("{\"comands\": {}}",
		"policy ./p.json: unknown field \"comands\" (known: commands, files, network, limits, enforcement)");
	refused("{\"commands\": {\"alow\": []}}", "commands: unknown field \"alow\"");
	refused("{\"files\": {\"exec\": []}}", "files: unknown field \"exec\"");
	refused("{\"limits\": {\"mem\": 1}}", "limits: unknown field \"mem\"");
	refused("{\"network\": {\"proxy\": 1}}",
		"network: unknown field \"proxy\" (known: mode, allow, deny, hosts)");
	refused("[]", "expected an object at the top level, got array");
	refused("{\"commands\": []}", "commands: expected an object, got array");
	refused("{\"commands\": {\"allow\": [\"/a\", \"/b\", 3]}}",
		"commands.allow[2]: expected a string, got integer");
	refused("{\"commands\": {\"deny\": \"/usr/bin/curl\"}}", "commands.deny: expected a list of strings, got string");
	refused("{\"commands\": {\"allow\": [\"ls\"]}}", "commands.allow[0]: not an absolute path");
	refused("{\"commands\": {\"allow\": [\"/usr/../bin/x\"]}}", "commands.allow[0]: \"..\" is not allowed");
	refused("{\"commands\": {\"allow\": [\"\"]}}", "commands.allow[0]: empty string");
	refused("{\"commands\": {\"allow\": [\"/usr/bin/\"]}}", "commands.allow[0]: names a directory");
	refused("{\"commands\": {\"allow\": [\"/usr/bin/[ab\"]}}", "commands.allow[0]: unclosed \"[\"");
	refused("{\"commands\": {\"deny\": [\"/x\\\\\"]}}", "commands.deny[0]: pattern ends with a backslash");
	refused("{\"commands\": {\"argv_deny\": [\"\"]}}", "commands.argv_deny[0]: empty string");
	refused("{\"commands\": {\"argv_deny\": [\"  \"]}}", "commands.argv_deny[0]: no words");
	refused("{\"commands\": {\"argv_deny\": [\"a b c d e f g h i j k l m n o p q r s t u v w x y z "
		"A B C D E F G\"]}}", "commands.argv_deny[0]: more than 32 words");
	refused("{\"commands\": {\"argv_deny\": [\"git\\tpush\"]}}", "commands.argv_deny[0]: control characters");
	refused("{\"files\": {\"read\": [\"data\"]}}", "files.read[0]: not an absolute path");
	refused("{\"files\": {\"write\": [\"/workspace/../etc\"]}}", "files.write[0]: \"..\" is not allowed");
	refused("{\"files\": {\"deny\": [\"/workspace/[.env\"]}}", "files.deny[0]: unclosed \"[\" in pattern");
	refused("{\"files\": {\"read\": [\"/a\\u0000b\"]}}", "files.read[0]: line 1 column");
	refused("{\"files\": {\"read\": [\"/a\\u0000b\"]}}", "\\u0000 (NUL) is not allowed");
	refused("{\"network\": {\"mode\": \"open\"}}",
		"network.mode: expected \"none\", \"allow\" or \"host\", got \"open\"");
	refused("{\"network\": {\"mode\": 0}}", "network.mode: expected a string, got integer");
	refused("{\"enforcement\": \"lenient\"}", "enforcement: expected \"strict\" or \"best-effort\"");
	refused("{\"enforcement\": true}", "enforcement: expected a string, got boolean");
	refused("{\"limits\": []}", "limits: expected an object, got array");
	refused("{\"limits\": {\"memory\": \"lots\"}}", "limits.memory: not a size: \"lots\" (e.g. 512m, 1g)");
	refused("{\"limits\": {\"memory\": \"1m\"}}", "limits.memory: must be at least 4m");
	refused("{\"limits\": {\"memory\": 4194303}}", "limits.memory: must be at least 4m");
	refused("{\"limits\": {\"memory\": \"1.5g\"}}", "limits.memory: not a size");
	refused("{\"limits\": {\"memory\": -1}}", "limits.memory: must not be negative, got -1");
	refused("{\"limits\": {\"memory\": 0.5}}", "limits.memory: expected a size");
	refused("{\"limits\": {\"memory\": 18446744073709551616}}", "limits.memory: line 1 column");
	refused("{\"limits\": {\"memory\": 18446744073709551616}}", "too big integer");
	refused("{\"limits\": {\"memory\": \"2000t\"}}", "limits.memory: must be at least 4m (4 MiB) and at most 1024t");
	refused("{\"limits\": {\"disk\": 0}}", "limits.disk: must be more than 0");
	refused("{\"limits\": {\"wall\": \"soon\"}}", "limits.wall: not a duration: \"soon\"");
	refused("{\"limits\": {\"wall\": 1e400}}", "limits.wall: line 1 column");
	refused("{\"limits\": {\"wall\": -1}}", "limits.wall: must not be negative");
	refused("{\"limits\": {\"wall\": 0.5}}", "limits.wall: expected a duration");
	refused("{\"limits\": {\"wall\": \"9000h\"}}", "limits.wall: must be at most 365 days");
	refused("{\"limits\": {\"cpu\": 9223372036854775807}}", "limits.cpu: must be at most 365 days");
	refused("{\"limits\": {\"wall\": \"1s\", \"wall_ms\": 5}}", "limits.wall_ms: the same limit is already given");
	refused("{\"limits\": {\"wall_ms\": \"5s\"}}", "limits.wall_ms: expected an integer, got string");
	refused("{\"limits\": {\"pids\": 1}}", "limits.pids: must be at least 2, got 1");
	refused("{\"limits\": {\"pids\": 0.5}}", "limits.pids: expected an integer, got 0.5");
	refused("{\"limits\": {\"pids\": 2.0}}", "limits.pids: expected an integer, got 2");
	refused("{\"limits\": {\"pids\": \"256\"}}", "limits.pids: expected an integer, got string");
	refused("{\"limits\": {\"pids\": -1}}", "limits.pids: must not be negative");
	refused("{\"limits\": {\"nofile\": 15}}", "limits.nofile: must be between 16 and 1048576, got 15");
	refused("{\"limits\": {\"nofile\": 1048577}}", "limits.nofile: must be between 16 and 1048576");
	refused("{\"limits\": {\"execs\": 0}}", "limits.execs: must be at least 1, got 0");
	refused("{\"limits\": {\"cpus\": 0}}", "limits.cpus: must be more than 0 and at most 1024, got 0");
	refused("{\"limits\": {\"cpus\": -1.5}}", "limits.cpus: must be more than 0");
	refused("{\"limits\": {\"cpus\": 1025}}", "limits.cpus: must be more than 0 and at most 1024");
	refused("{\"limits\": {\"cpus\": 0.0001}}", "limits.cpus: must be at least 0.001");
	refused("{\"limits\": {\"cpus\": \"2\"}}", "limits.cpus: expected a number of CPUs, got string");
	refused("{\"limits\": {\"cpus\": 1e400}}", "limits.cpus: line 1 column");
	refused("{\"limits\": {\"wall\": \"1s\", \"wall\": \"2s\"}}", "limits: line 1 column");
	refused("{\"limits\": {\"wall\": \"1s\", \"wall\": \"2s\"}}", "duplicate object key");
	refused("{\"commands\": {}, \"commands\": {}}", "duplicate object key");
	refused("{\"limits\": {\n  \"memory\": \"1g\",\n}}", "limits: line 3 column 1");
	refused("{\"a\": 1} x", "line 1 column 10: end of file expected");
	refused("", "line 1 column 0");
	refused("{\"commands\": {\"allow\": [\"/a\\nb\"]}}", "commands.allow[0]: control characters");
	refused("{\"a\\nb\": 1}", "unknown field \"a\\nb\"");
	refused("{\"files\": {\"read\": [\"/\xff\"]}}", "files.read[0]: line 1 column");
	refused("{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{}}}}}}}}}",
		"a.b.c.d.e.f.g.h: line 1 column 41: nested deeper than 8 levels");
}

/* ---- network ----------------------------------------------------------- */

static const char net_full[] =
	"{\"network\": {\"mode\": \"allow\","
	" \"allow\": [\"GitHub.COM.\", \"*.githubusercontent.com:443\", \"10.1.2.3\", \"10.0.0.0/8:8080\","
	" \"[2001:DB8::0:1]:443\", \"[2001:db8::/32]\", \"0.0.0.0/0\", \"[::/0]:53\", \"localhost\","
	" \"xn--bcher-kva.example\", \"a-b.c\"],"
	" \"deny\": [\"evil.example.com\", \"169.254.169.254\"],"
	" \"hosts\": {\"b.internal\": \"2001:DB8:0:0::5\", \"API.Internal.\": \"10.1.2.3\"}}}";

static int has(char *const *list, const char *want)
{
	for (size_t i = 0; list && list[i]; i++)
		if (!strcmp(list[i], want))
			return 1;
	return 0;
}

static void test_network(void)
{
	static const char *const ok_rules[] = {
		"example.com", "example.com:443", "*.example.com", "*.example.com:1", "10.1.2.3",
		"10.1.2.3:65535", "[2001:db8::1]", "[2001:db8::1]:443", "10.0.0.0/8", "10.0.0.0/8:22",
		"[2001:db8::/32]", "[2001:db8::/32]:443", "a", "example.com.", "EXAMPLE.com",
		"[::ffff:1.2.3.4]", "0.0.0.0/0", "1.2.3.4/32",
	};
	static const struct { const char *rule, *want; } bad_rules[] = {
		{ "exa mple.com", "not a rule: \"exa mple.com\" (a name, *.name, an IP or CIDR, with optional :port)" },
		{ "", "empty string" },
		{ "*", "not a rule" },
		{ "*.", "not a rule" },
		{ "**.a.com", "not a rule" },
		{ "a.*.com", "not a rule" },
		{ "a..com", "not a rule" },
		{ ".a.com", "not a rule" },
		{ "a_b.com", "not a rule" },
		{ "http://a.com", "a URL is not a rule" },
		{ "a.com/path", "not a rule" },
		{ "-a.com", "a label starts or ends with \"-\"" },
		{ "a-.com", "a label starts or ends with \"-\"" },
		{ "a.com:0", "not a port (1 to 65535)" },
		{ "a.com:65536", "not a port (1 to 65535)" },
		{ "a.com:080", "not a port" },
		{ "a.com:", "not a port" },
		{ "a.com:http", "not a port" },
		{ "a.com:443:1", "an IPv6 address goes in brackets" },
		{ "2001:db8::1", "an IPv6 address goes in brackets" },
		{ "10.1.2", "looks like an IPv4 address but is not one" },
		{ "256.1.1.1", "looks like an IPv4 address" },
		{ "010.1.2.3", "looks like an IPv4 address" },
		{ "0x7f000001", "looks like an IPv4 address" },
		{ "1234", "looks like an IPv4 address" },
		{ "a.123", "the last label of a name is all digits" },
		{ "1.2.3.4.5", "looks like an IPv4 address" },
		{ "10.0.0.0/33", "not a prefix length (0 to 32)" },
		{ "10.0.0.0/", "not a prefix length" },
		{ "10.0.0.0/08", "not a prefix length" },
		{ "10.1.2.3/8", "address bits are set after the prefix" },
		{ "10.0.0/8", "not a rule" },
		{ "[2001:db8::1", "not a rule" },
		{ "[2001:db8::1]x", "not a rule" },
		{ "[2001:db8::1]:0", "not a port" },
		{ "[2001:db8::/129]", "not a prefix length (0 to 128)" },
		{ "[2001:db8::1/32]", "address bits are set" },
		{ "[10.1.2.3]", "not a rule" },
		{ "[fe80::1%eth0]", "not a rule" },
		{ "b\xc3\xbc" "cher.example", "not a rule" },
	};
	static const struct { const char *entry, *want; } bad_hosts[] = {
		{ "api", "expected NAME=IP: \"api\"" },
		{ "=10.1.2.3", "expected NAME=IP" },
		{ "api=", "not an IP address: \"\"" },
		{ "api=10.1.2", "not an IP address: \"10.1.2\" (e.g. 10.1.2.3 or 2001:db8::1)" },
		{ "api=[::1]", "not an IP address" },
		{ "api=10.0.0.0/8", "not an IP address" },
		{ "api=example.com", "not an IP address" },
		{ "*.api=10.1.2.3", "not a host name: \"*.api\"" },
		{ "api:80=10.1.2.3", "not a host name: \"api:80\"" },
		{ "api..x=10.1.2.3", "not a host name" },
		{ "1.2.3.4=10.1.2.3", "looks like an IPv4 address" },
	};
	struct aegis_policy p, q;
	struct aegis_error err;
	char d1[65], d2[65], *text;
	json_t *j;
	int r;

	r = parse(net_full, &p, &err);
	ok(r == 0, "an allow-mode policy parses (%s)", err.msg);
	ok(p.net_mode && !strcmp(p.net_mode, "allow"), "mode allow");
	ok(p.net_allow && !strcmp(p.net_allow[0], "github.com") &&
	   !strcmp(p.net_allow[1], "*.githubusercontent.com:443") && !strcmp(p.net_allow[2], "10.1.2.3") &&
	   !strcmp(p.net_allow[3], "10.0.0.0/8:8080") && !strcmp(p.net_allow[4], "[2001:db8::1]:443") &&
	   !strcmp(p.net_allow[5], "[2001:db8::/32]") && !strcmp(p.net_allow[7], "[::/0]:53") &&
	   !p.net_allow[11], "allow rules kept in order, canonical (lowercase, no trailing dot, IPv6 compressed)");
	ok(p.net_deny && !strcmp(p.net_deny[0], "evil.example.com") &&
	   !strcmp(p.net_deny[1], "169.254.169.254") && !p.net_deny[2], "deny rules");
	ok(p.net_hosts && has(p.net_hosts, "api.internal=10.1.2.3") &&
	   has(p.net_hosts, "b.internal=2001:db8::5") && !p.net_hosts[2],
	   "hosts stored as canonical name=ip");

	j = policy_to_json(&p);
	text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	ok(text && strstr(text, "\"network\":{\"mode\":\"allow\",\"allow\":[\"github.com\",") &&
	   strstr(text, "\"deny\":[\"evil.example.com\",\"169.254.169.254\"],"
		  "\"hosts\":{\"api.internal\":\"10.1.2.3\",\"b.internal\":\"2001:db8::5\"}}"),
	   "canonical network: mode, allow, deny, hosts sorted by name (%s)", text ? text : "NULL");
	r = text ? parse(text, &q, &err) : -1;
	ok(r == 0, "canonical network JSON parses again (%s)", err.msg);
	policy_digest(&p, d1);
	policy_digest(&q, d2);
	ok(!strcmp(d1, d2), "network round trip keeps the digest");
	free(text);
	json_decref(j);
	policy_free(&q);
	policy_free(&p);
	ok(is_zero(&p, sizeof p), "policy_free releases the network lists");

	/* Spelling and host order do not change the digest. */
	r = parse("{\"network\": {\"mode\": \"allow\", \"allow\": [\"a.com\", \"[2001:db8::1]\"],"
		  " \"hosts\": {\"x\": \"10.0.0.1\", \"y\": \"::1\"}}}", &p, &err);
	policy_digest(&p, d1);
	policy_free(&p);
	r |= parse("{\"network\": {\"hosts\": {\"Y.\": \"0::1\", \"X\": \"10.0.0.1\"},"
		   " \"allow\": [\"A.COM.\", \"[2001:DB8:0::1]\"], \"mode\": \"allow\"}}", &p, &err);
	policy_digest(&p, d2);
	policy_free(&p);
	ok(r == 0 && !strcmp(d1, d2), "one digest for two spellings of the same network policy");

	/* The default writes the whole network object and takes it back. */
	r = parse("{}", &p, &err);
	j = r == 0 ? policy_to_json(&p) : NULL;
	text = j ? json_dumps(json_object_get(j, "network"), JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	ok(text && !strcmp(text, "{\"mode\":\"none\",\"allow\":[],\"deny\":[],\"hosts\":{}}"),
	   "default network in canonical form (%s)", text ? text : "NULL");
	free(text);
	json_decref(j);
	policy_digest(&p, d1);
	policy_free(&p);
	r = parse("{\"network\": {\"mode\": \"none\", \"allow\": [], \"deny\": null, \"hosts\": {}}}", &p, &err);
	policy_digest(&p, d2);
	ok(r == 0 && !p.net_allow && !p.net_deny && !p.net_hosts && !strcmp(d1, d2),
	   "empty lists are fine in mode none, and the same as none (%s)", err.msg);
	policy_free(&p);
	r = parse("{\"network\": {\"mode\": \"host\"}}", &p, &err);
	ok(r == 0 && !strcmp(p.net_mode, "host"), "mode host (%s)", err.msg);
	policy_free(&p);
	r = parse("{\"network\": {\"mode\": \"allow\"}}", &p, &err);
	ok(r == 0 && !strcmp(p.net_mode, "allow") && !p.net_allow,
	   "mode allow with no rules: nothing may leave (%s)", err.msg);
	policy_free(&p);

	for (size_t i = 0; i < sizeof ok_rules / sizeof ok_rules[0]; i++) {
		char json[256];

		r = policy_check_net_rule(ok_rules[i], &err);
		ok(r == 0, "rule %s accepted (%s)", ok_rules[i], r ? err.msg : "");
		snprintf(json, sizeof json, "{\"network\": {\"mode\": \"allow\", \"deny\": [\"%s\"]}}",
			 ok_rules[i]);
		r = parse(json, &p, &err);
		ok(r == 0, "rule %s accepted in a policy (%s)", ok_rules[i], r ? err.msg : "");
		if (r == 0)
			policy_free(&p);
	}
	for (size_t i = 0; i < sizeof bad_rules / sizeof bad_rules[0]; i++) {
		char json[256], want[256];

		memset(&err, 0, sizeof err);
		r = policy_check_net_rule(bad_rules[i].rule, &err);
		ok(r < 0 && err.code == AEGIS_E_INVALID && strstr(err.msg, bad_rules[i].want) &&
		   !strchr(err.msg, '\n'), "rule %s refused: want '%s', got '%s'", bad_rules[i].rule,
		   bad_rules[i].want, r < 0 ? err.msg : "(accepted)");
		snprintf(json, sizeof json, "{\"network\": {\"mode\": \"allow\", \"allow\": [\"ok.com\", \"%s\"]}}",
			 bad_rules[i].rule);
		snprintf(want, sizeof want, "network.allow[1]: %s", bad_rules[i].want);
		refused(json, want);
	}
	for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
		memset(&err, 0, sizeof err);
		r = policy_check_net_host(bad_hosts[i].entry, &err);
		ok(r < 0 && err.code == AEGIS_E_INVALID && strstr(err.msg, bad_hosts[i].want),
		   "host %s refused: want '%s', got '%s'", bad_hosts[i].entry, bad_hosts[i].want,
		   r < 0 ? err.msg : "(accepted)");
	}
	r = policy_check_net_host("API.internal.=2001:DB8::1", &err);
	ok(r == 0, "host entry with an IPv6 address accepted (%s)", r ? err.msg : "");

	/* Names: 63-byte labels and 253-byte names, one more is refused. */
	{
		char name[300], json[400];

		memset(name, 'a', 63);
		strcpy(name + 63, ".com");
		ok(policy_check_net_rule(name, &err) == 0, "a 63-byte label");
		memset(name, 'a', 64);
		strcpy(name + 64, ".com");
		r = policy_check_net_rule(name, &err);
		ok(r < 0 && strstr(err.msg, "a label is longer than 63 bytes"), "a 64-byte label refused (%s)", err.msg);
		/* 4 labels of 63 + 3 dots = 255; cut to 253 and 254. */
		for (int l = 0; l < 4; l++) {
			memset(name + l * 64, 'a', 63);
			name[l * 64 + 63] = '.';
		}
		name[253] = '\0';
		name[252] = 'b';
		ok(policy_check_net_rule(name, &err) == 0, "a 253-byte name (%s)", err.msg);
		name[253] = 'c';
		name[254] = '\0';
		r = policy_check_net_rule(name, &err);
		ok(r < 0 && strstr(err.msg, "a name is longer than 253 bytes"), "a 254-byte name refused (%s)", err.msg);
		snprintf(json, sizeof json, "{\"network\": {\"mode\": \"allow\", \"hosts\": {\"%s\": \"10.0.0.1\"}}}", name);
		refused(json, "network.hosts: a name is longer than 253 bytes");
	}

	/* The field is named in every network error. */
	refused("{\"network\": {\"mode\": \"allow\", \"allow\": [\"ok.com\", \"exa mple.com\"]}}",
		"policy ./p.json: network.allow[1]: not a rule: \"exa mple.com\" (a name, *.name, an IP or CIDR, with optional :port)");
	refused("{\"network\": {\"mode\": \"allow\", \"deny\": [\"a.com\", 3]}}",
		"network.deny[1]: expected a string, got integer");
	refused("{\"network\": {\"mode\": \"allow\", \"allow\": \"a.com\"}}",
		"network.allow: expected a list of strings, got string");
	refused("{\"network\": {\"allow\": [\"github.com\"]}}",
		"network.allow: rules need \"mode\": \"allow\" (the mode is \"none\")");
	refused("{\"network\": {\"allow\": [\"github.com\"], \"mode\": \"none\"}}",
		"network.allow: rules need \"mode\": \"allow\"");
	refused("{\"network\": {\"mode\": \"host\", \"deny\": [\"github.com\"]}}",
		"network.deny: rules need \"mode\": \"allow\" (the mode is \"host\")");
	refused("{\"network\": {\"hosts\": {\"api\": \"10.0.0.1\"}}}",
		"network.hosts: entries need \"mode\": \"allow\" (the mode is \"none\")");
	refused("{\"network\": {\"mode\": \"allow\", \"hosts\": []}}",
		"network.hosts: expected an object of \"name\": \"IP\", got array");
	refused("{\"network\": {\"mode\": \"allow\", \"hosts\": {\"api\": 1}}}",
		"network.hosts[\"api\"]: expected a string, got integer");
	refused("{\"network\": {\"mode\": \"allow\", \"hosts\": {\"api\": \"10.1.2\"}}}",
		"network.hosts[\"api\"]: not an IP address: \"10.1.2\"");
	refused("{\"network\": {\"mode\": \"allow\", \"hosts\": {\"api\": \"[::1]\"}}}",
		"network.hosts[\"api\"]: not an IP address");
	refused("{\"network\": {\"mode\": \"allow\", \"hosts\": {\"*.api\": \"10.0.0.1\"}}}",
		"network.hosts: not a host name: \"*.api\"");
	refused("{\"network\": {\"mode\": \"allow\", \"hosts\": {\"api:80\": \"10.0.0.1\"}}}",
		"network.hosts: not a host name: \"api:80\"");
	refused("{\"network\": {\"mode\": \"allow\", \"hosts\": {\"API\": \"10.0.0.1\", \"api.\": \"10.0.0.2\"}}}",
		"network.hosts: \"api.\" is given twice");
	refused("{\"network\": {\"mode\": \"allow\", \"hosts\": {\"a\\nb\": \"10.0.0.1\"}}}",
		"network.hosts: not a host name: \"a\\nb\"");
	refused("{\"network\": {\"mode\": \"allow\", \"hosts\": {\"a\": \"10.0.0.1\", \"a\": \"10.0.0.2\"}}}",
		"duplicate object key");
}

static void *xmalloc(size_t len)
{
	void *p = malloc(len);

	if (!p) {
		perror("malloc");
		exit(99);
	}
	return p;
}

static char *repeat(const char *unit, size_t times, const char *tail)
{
	size_t ul = strlen(unit), tl = strlen(tail);
	char *s = xmalloc(ul * times + tl + 1);

	for (size_t i = 0; i < times; i++)
		memcpy(s + i * ul, unit, ul);
	memcpy(s + ul * times, tail, tl + 1);
	return s;
}

static void test_hostile(void)
{
	struct aegis_policy p;
	struct aegis_error err;
	char *text, path[] = "/tmp/aegis-test-policy-XXXXXX", *list;
	uint64_t t0;
	size_t len;
	ssize_t n;
	int fd, r;

	/* 100000 '[' then 100000 ']': refused by the depth scan before jansson
	 * recurses. */
	text = xmalloc(200001);
	memset(text, '[', 100000);
	memset(text + 100000, ']', 100000);
	text[200000] = '\0';
	t0 = now_us();
	r = policy_parse(text, 200000, "bomb", &p, &err);
	t0 = now_us() - t0;
	ok(r < 0 && strstr(err.msg, "nested deeper than 8") && t0 < 1000000, "[[[...]]] 100000 deep refused quickly (%s)", err.msg);
	free(text);

	text = repeat("{\"a\":", 100000, "");
	t0 = now_us();
	r = policy_parse(text, strlen(text), "bomb", &p, &err);
	t0 = now_us() - t0;
	ok(r < 0 && strstr(err.msg, "nested deeper") && t0 < 1000000, "{\"a\": x 100000 refused quickly");
	free(text);

	/* Brackets inside strings do not count as nesting. */
	r = parse("{\"commands\": {\"allow\": [\"/x/[[[[[[[[[[]\", \"/y/{{{{{{{{{{\"]}}", &p, &err);
	ok(r == 0,
	   "brackets inside strings are not nesting (%s)", err.msg);
	policy_free(&p);

	/* An argv rule longer than the exec watcher matches. */
	text = repeat("x", 256, "\"]}}");
	list = xmalloc(strlen(text) + 40);
	strcpy(list, "{\"commands\": {\"argv_deny\": [\"");
	strcat(list, text);
	refused(list, "commands.argv_deny[0]: longer than 255 bytes");
	free(list);
	free(text);

	/* Over the list limit. */
	list = repeat("\"/a\",", POLICY_LIST_MAX, "\"/b\"]}}");
	text = xmalloc(strlen(list) + 32);
	strcpy(text, "{\"files\": {\"read\": [");
	strcat(text, list);
	r = policy_parse(text, strlen(text), "./p.json", &p, &err);
	ok(r < 0 &&
	   strstr(err.msg, "files.read: more than 4096 entries"), "list of 4097 refused (%s)", err.msg);
	free(text);
	free(list);

	/* A 2 MiB text and a 2 MiB file: refused before parsing. */
	len = 2u << 20;
	text = xmalloc(len);
	memset(text, ' ', len);
	text[0] = '{';
	text[len - 1] = '}';
	r = policy_parse(text, len, "./big.json", &p, &err);
	ok(r < 0 &&
	   !strcmp(err.msg, "policy ./big.json: file is larger than 1 MiB"), "2 MiB text refused");
	fd = mkstemp(path);
	n = fd >= 0 ? write(fd, text, len) : -1;
	ok(n == (ssize_t)len, "wrote a 2 MiB file");
	close(fd);
	r = policy_load(path, &p, &err);
	ok(r < 0 && strstr(err.msg, "file is larger than 1 MiB") &&
	   err.code == AEGIS_E_INVALID, "2 MiB file refused (%s)", err.msg);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	n = fd >= 0 ? write(fd, full, strlen(full)) : -1;
	ok(n == (ssize_t)strlen(full), "wrote a policy file");
	close(fd);
	r = policy_load(path, &p, &err);
	ok(r == 0 && !strcmp(p.name, path), "policy_load reads a file (%s)", err.msg);
	policy_free(&p);
	unlink(path);
	free(text);

	r = policy_load("/nonexistent/p.json", &p, &err);
	ok(r < 0 && err.code == AEGIS_E_INVALID &&
	   strstr(err.msg, "policy /nonexistent/p.json: No such file"), "missing file (%s)", err.msg);
	r = policy_load("/tmp", &p, &err);
	ok(r < 0 && strstr(err.msg, "not a regular file"), "a directory refused");

	/* A NUL byte in the text itself, outside and inside a string. */
	r = policy_parse("{}\0", 3, "./p.json", &p, &err);
	ok(r < 0, "raw NUL after the object refused");
	r = policy_parse("{\"a\0\":1}", 8, "./p.json", &p, &err);
	ok(r < 0, "raw NUL in a key refused");
}

int main(void)
{
	test_builtins();
	test_full();
	test_errors();
	test_network();
	test_hostile();
	return tap_done();
}
