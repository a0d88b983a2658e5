/* test_netrules.c — the egress rules: every rule form, the errors users
 * see for bad ones, matching, and the special-address checks that keep a
 * sandbox away from loopback, private networks and metadata services. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/sandbox/netrules.h"
#include "tap.h"

static bool parse_ok(const char *text, struct net_rule *r)
{
	struct aegis_error err = { 0 };

	return netrules_parse_rule(text, r, &err) == 0;
}

/* Parses, checks the rule's fields, frees. */
static bool parses_as(const char *text, const char *host, bool wildcard, int family,
		      const char *addr, int prefix, uint16_t port)
{
	struct net_rule r;
	uint8_t want[16] = { 0 };
	bool good;

	if (!parse_ok(text, &r))
		return false;
	good = strcmp(r.text, text) == 0 && r.wildcard == wildcard && r.port == port &&
	       r.family == family;
	if (host)
		good = good && r.host && strcmp(r.host, host) == 0;
	else
		good = good && !r.host && r.prefix == prefix &&
		       inet_pton(family, addr, want) == 1 && memcmp(want, r.addr, 16) == 0;
	free(r.text);
	free(r.host);
	return good;
}

/* Refused, with a one-line error naming the rule. */
static bool refused(const char *text, const char *why)
{
	struct aegis_error err = { 0 };
	struct net_rule r;
	char prefix[300];

	if (netrules_parse_rule(text, &r, &err) == 0) {
		free(r.text);
		free(r.host);
		return false;
	}
	snprintf(prefix, sizeof prefix, "net rule '%s': ", text);
	if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || strchr(err.msg, '\n') ||
	    err.code != AEGIS_E_INVALID) {
		printf("# got: %s\n", err.msg);
		return false;
	}
	if (why && !strstr(err.msg, why)) {
		printf("# got: %s\n", err.msg);
		return false;
	}
	return r.text == NULL && r.host == NULL;
}

static struct sockaddr_storage sa_of(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof ss);
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		inet_pton(AF_INET6, ip, &in6->sin6_addr);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		inet_pton(AF_INET, ip, &in->sin_addr);
	}
	return ss;
}

static bool load(struct net_rules *r, char **allow, char **deny, char **hosts)
{
	struct aegis_policy pol;
	struct aegis_error err = { 0 };

	memset(&pol, 0, sizeof pol);
	pol.net_allow = allow;
	pol.net_deny = deny;
	pol.net_hosts = hosts;
	if (netrules_load(&pol, r, &err) < 0) {
		printf("# load: %s\n", err.msg);
		return false;
	}
	return true;
}

static bool target(const struct net_rules *r, const char *host, uint16_t port)
{
	const struct net_rule *m;
	const char *why;

	return netrules_allow_target(r, host, port, &m, &why);
}

static const char *target_why(const struct net_rules *r, const char *host, uint16_t port)
{
	const struct net_rule *m;
	const char *why;

	netrules_allow_target(r, host, port, &m, &why);
	return why;
}

/* The address check as the proxy runs it: target first, then the address. */
static bool address(const struct net_rules *r, const char *host, const char *ip,
		    uint16_t port, bool mapped)
{
	struct sockaddr_storage ss = sa_of(ip, port);
	const struct net_rule *m = NULL;
	const char *why;

	if (host && !netrules_allow_target(r, host, port, &m, &why))
		return false;
	return netrules_allow_address(r, m, (struct sockaddr *)&ss, mapped, &why);
}

static const char *address_why(const struct net_rules *r, const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = sa_of(ip, port);
	const char *why;

	netrules_allow_address(r, NULL, (struct sockaddr *)&ss, false, &why);
	return why;
}

static void test_parse(void)
{
	ok(parses_as("example.com", "example.com", false, 0, NULL, 0, 0), "name");
	ok(parses_as("Example.COM", "example.com", false, 0, NULL, 0, 0), "name is lowercased");
	ok(parses_as("example.com.", "example.com", false, 0, NULL, 0, 0), "trailing dot dropped");
	ok(parses_as("example.com:443", "example.com", false, 0, NULL, 0, 443), "name:port");
	ok(parses_as("*.example.com", "example.com", true, 0, NULL, 0, 0), "wildcard");
	ok(parses_as("*.example.com:8443", "example.com", true, 0, NULL, 0, 8443), "wildcard:port");
	ok(parses_as("localhost", "localhost", false, 0, NULL, 0, 0), "single-label name");
	ok(parses_as("x-y.e-x.example", "x-y.e-x.example", false, 0, NULL, 0, 0), "'-' in names");
	ok(parses_as("xn--bcher-kva.example", "xn--bcher-kva.example", false, 0, NULL, 0, 0),
	   "punycode");
	ok(parses_as("host1.example.com", "host1.example.com", false, 0, NULL, 0, 0),
	   "digits inside a name");
	ok(parses_as("10.1.2.3", NULL, false, AF_INET, "10.1.2.3", 32, 0), "IPv4");
	ok(parses_as("10.1.2.3:80", NULL, false, AF_INET, "10.1.2.3", 32, 80), "IPv4:port");
	ok(parses_as("10.0.0.0/8", NULL, false, AF_INET, "10.0.0.0", 8, 0), "IPv4 CIDR");
	ok(parses_as("10.0.0.0/8:443", NULL, false, AF_INET, "10.0.0.0", 8, 443), "IPv4 CIDR:port");
	ok(parses_as("0.0.0.0/0", NULL, false, AF_INET, "0.0.0.0", 0, 0), "IPv4 /0");
	ok(parses_as("[2001:db8::1]", NULL, false, AF_INET6, "2001:db8::1", 128, 0), "[IPv6]");
	ok(parses_as("[2001:db8::1]:443", NULL, false, AF_INET6, "2001:db8::1", 128, 443),
	   "[IPv6]:port");
	ok(parses_as("[2001:db8::/32]", NULL, false, AF_INET6, "2001:db8::", 32, 0), "[IPv6 CIDR]");
	ok(parses_as("[2001:db8::/32]:22", NULL, false, AF_INET6, "2001:db8::", 32, 22),
	   "[IPv6 CIDR]:port");
	ok(parses_as("[fc00::/7]", NULL, false, AF_INET6, "fc00::", 7, 0), "short IPv6 CIDR");
	ok(parses_as("[::ffff:10.0.0.1]", NULL, false, AF_INET, "10.0.0.1", 32, 0),
	   "IPv4-mapped IPv6 becomes IPv4");
	ok(parses_as("[::ffff:10.0.0.0/104]", NULL, false, AF_INET, "10.0.0.0", 8, 0),
	   "IPv4-mapped block becomes an IPv4 block");
	ok(parses_as("example.com:65535", "example.com", false, 0, NULL, 0, 65535), "port 65535");

	ok(refused("", "empty"), "empty rule refused");
	ok(refused("example.com:0", "port"), "port 0 refused");
	ok(refused("example.com:65536", "port"), "port 65536 refused");
	ok(refused("example.com:", "port"), "empty port refused");
	ok(refused("example.com:+80", "port"), "signed port refused");
	ok(refused("example.com:http", "port"), "named port refused");
	ok(refused("*", NULL), "bare '*' refused");
	ok(refused("*.", NULL), "'*.' refused");
	ok(refused("foo.*.com", "'*'"), "inner wildcard refused");
	ok(refused("*example.com", "'*'"), "wildcard without dot refused");
	ok(refused("**.example.com", "'*'"), "double wildcard refused");
	ok(refused("exa mple.com", NULL), "space refused");
	ok(refused("a..b", NULL), "empty label refused");
	ok(refused(".example.com", NULL), "leading dot refused");
	ok(refused("http://example.com", NULL), "URL refused");
	ok(refused("example.com/path", NULL), "path refused");
	ok(refused("10.0.0.0/33", "prefix"), "IPv4 prefix > 32 refused");
	ok(refused("10.0.0.0/", "prefix"), "empty prefix refused");
	ok(refused("10.0.0.0/-1", "prefix"), "negative prefix refused");
	ok(refused("10.1.2.3/8", "bits set"), "host bits beyond the prefix refused");
	ok(refused("[2001:db8::/129]", "prefix"), "IPv6 prefix > 128 refused");
	ok(refused("[2001:db8::1", "]"), "missing ']' refused");
	ok(refused("[2001:db8::1]443", "port"), "garbage after ']' refused");
	ok(refused("[10.0.0.1]", "IPv6"), "brackets around IPv4 refused");
	ok(refused("[::1]:0", "port"), "IPv6 port 0 refused");
	ok(refused("256.1.1.1", NULL), "octet > 255 refused");
	ok(refused("1.2.3", NULL), "short IPv4 form refused (not a name either)");
	ok(refused("127.1", NULL), "inet_aton shorthand refused");
	ok(refused("0x7f000001", NULL), "hex address refused");
	ok(refused("1.2.3.4.5", NULL), "numeric last label refused");
	ok(refused("[fe80::1%eth0]", NULL), "zone index refused");
	ok(refused("a:b:c", "brackets"), "garbage with colons refused");
	ok(refused("2001:db8::1", "an IPv6 address goes in brackets"), "bare IPv6 refused");
	ok(refused("2001:db8::/32", "brackets"), "bare IPv6 block refused");
	ok(refused("example.com:080", "port"), "port with a leading zero refused");
	ok(refused("[::1]:00443", "port"), "IPv6 port with a leading zero refused");
	ok(refused("10.0.0.0/08", "prefix"), "prefix with a leading zero refused");
	ok(refused("_dmarc.example.com", NULL), "'_' refused");
	ok(refused("-a.example.com", NULL), "label starting with '-' refused");
	ok(refused("a-.example.com", NULL), "label ending with '-' refused");
	ok(refused("*.-a.example.com", NULL), "wildcard over a bad label refused");
	{
		char big[400];
		memset(big, 'a', sizeof big - 1);
		big[sizeof big - 1] = '\0';
		struct aegis_error err = { 0 };
		struct net_rule r;
		ok(netrules_parse_rule(big, &r, &err) < 0 && strlen(err.msg) < sizeof err.msg,
		   "overlong name refused, error still one bounded line");
		char label[80] = "x.";
		memset(label + 2, 'b', 64);
		label[66] = '\0';
		ok(refused(label, NULL), "64-byte label refused");
	}
}

static void test_hosts(void)
{
	struct aegis_error err = { 0 };
	struct net_host h;
	uint8_t want[16] = { 0 };

	ok(netrules_parse_host("API.Internal=10.1.2.3", &h, &err) == 0 && h.family == AF_INET &&
	   strcmp(h.name, "api.internal") == 0 && inet_pton(AF_INET, "10.1.2.3", want) == 1 &&
	   memcmp(want, h.addr, 4) == 0, "host entry name=IPv4, name lowercased");
	free(h.name);
	ok(netrules_parse_host("v6.test=2001:db8::5", &h, &err) == 0 && h.family == AF_INET6 &&
	   inet_pton(AF_INET6, "2001:db8::5", want) == 1 && memcmp(want, h.addr, 16) == 0,
	   "host entry name=IPv6");
	free(h.name);
	ok(netrules_parse_host("v6.test=[2001:db8::5]", &h, &err) < 0, "host entry IPv6 in brackets refused");
	ok(netrules_parse_host("v6.test=10.0.0.0/8", &h, &err) < 0, "host entry with a prefix refused");
	ok(netrules_parse_host("my_host=10.0.0.1", &h, &err) < 0 &&
	   strcmp(err.msg, "net host 'my_host=10.0.0.1': not a valid host name") == 0,
	   "host entry with a bad name refused, named");
	ok(netrules_parse_host("m.test=::ffff:127.0.0.1", &h, &err) == 0 && h.family == AF_INET,
	   "mapped host entry becomes IPv4");
	free(h.name);
	ok(netrules_parse_host("x.test.=1.2.3.4", &h, &err) == 0 && strcmp(h.name, "x.test") == 0,
	   "host entry trailing dot dropped");
	free(h.name);
	ok(netrules_parse_host("nothing", &h, &err) < 0 &&
	   strcmp(err.msg, "net host 'nothing': want NAME=IP") == 0, "host without '=' refused");
	ok(netrules_parse_host("a.test=example.com", &h, &err) < 0 &&
	   strstr(err.msg, "net host 'a.test=example.com'"), "host with a name for IP refused");
	ok(netrules_parse_host("*.test=1.2.3.4", &h, &err) < 0 && strstr(err.msg, "net host"),
	   "wildcard host refused");
	ok(netrules_parse_host("=1.2.3.4", &h, &err) < 0, "empty host name refused");
	ok(netrules_parse_host("1.2.3.5=1.2.3.4", &h, &err) < 0, "address as host name refused");
	ok(netrules_parse_host("a.test=", &h, &err) < 0, "empty IP refused");
}

static void test_load(void)
{
	struct net_rules r;
	struct aegis_policy pol;
	struct aegis_error err = { 0 };
	char *allow[] = { "a.test", "*.b.test:443", "10.0.0.0/8", NULL };
	char *deny[] = { "x.b.test", NULL };
	char *hosts[] = { "a.test=10.0.0.1", NULL };
	char *bad[] = { "good.test", "bad..test", NULL };
	char *badhosts[] = { "ok.test=1.2.3.4", "oops", NULL };
	char *duphosts[] = { "ok.test=1.2.3.4", "OK.test.=1.2.3.5", NULL };

	ok(load(&r, allow, deny, hosts) && r.nallow == 3 && r.ndeny == 1 && r.nhosts == 1,
	   "load counts every list");
	netrules_free(&r);
	netrules_free(&r);
	ok(r.allow == NULL && r.nallow == 0, "free twice is harmless");
	ok(load(&r, NULL, NULL, NULL) && r.nallow == 0 && !target(&r, "a.test", 80),
	   "no lists: everything refused");
	netrules_free(&r);
	ok(netrules_load(NULL, &r, &err) == 0 && r.nallow == 0, "NULL policy loads empty");

	memset(&pol, 0, sizeof pol);
	pol.net_allow = bad;
	ok(netrules_load(&pol, &r, &err) < 0 && strcmp(err.msg, "net rule 'bad..test': "
		"not a valid host name or address") == 0 && r.allow == NULL,
	   "bad allow rule fails load, names the rule, nothing left allocated");
	pol.net_allow = NULL;
	pol.net_deny = bad;
	ok(netrules_load(&pol, &r, &err) < 0 && strstr(err.msg, "'bad..test'"), "bad deny rule fails");
	pol.net_deny = NULL;
	pol.net_hosts = badhosts;
	ok(netrules_load(&pol, &r, &err) < 0 && strstr(err.msg, "net host 'oops'"),
	   "bad host entry fails");
	pol.net_hosts = duphosts;
	ok(netrules_load(&pol, &r, &err) < 0 &&
	   strcmp(err.msg, "net host 'OK.test.=1.2.3.5': a second entry for ok.test") == 0,
	   "a second entry for one name fails");
}

static void test_match(void)
{
	struct net_rules r;
	char *allow[] = { "exact.test", "*.wild.test", "port.test:443", "*.wp.test:8443",
			  "203.0.113.7", "198.51.100.0/24:80", "[2001:db8::/32]:443",
			  "both.test", "*.deny.test", NULL };
	char *deny[] = { "bad.deny.test", "both.test:25", "198.51.100.66", NULL };

	if (!load(&r, allow, deny, NULL))
		return;
	ok(target(&r, "exact.test", 80) && target(&r, "exact.test", 443), "exact name, any port");
	ok(!target(&r, "sub.exact.test", 80), "exact name does not match subdomains");
	ok(!target(&r, "xexact.test", 80), "exact name is not a suffix match");
	ok(target(&r, "EXACT.Test", 80), "case-insensitive");
	ok(target(&r, "exact.test.", 80), "trailing dot");
	ok(target(&r, "a.wild.test", 80) && target(&r, "a.b.wild.test", 80), "wildcard subdomains");
	ok(!target(&r, "wild.test", 80), "wildcard does not match the domain itself");
	ok(!target(&r, "badwild.test", 80), "wildcard needs a dot boundary");
	ok(target(&r, "A.WILD.TEST.", 80), "wildcard case-insensitive with trailing dot");
	ok(target(&r, "port.test", 443) && !target(&r, "port.test", 80), "port rule");
	ok(target(&r, "x.wp.test", 8443) && !target(&r, "x.wp.test", 443), "wildcard port rule");
	ok(!target(&r, "other.test", 80), "unlisted name refused");
	ok(strcmp(target_why(&r, "Other.Test.", 8080), "no allow rule matches other.test:8080") == 0,
	   "reason says no allow rule matches host:port");
	ok(target(&r, "203.0.113.7", 1) && !target(&r, "203.0.113.8", 1), "IP rule");
	ok(target(&r, "198.51.100.5", 80) && !target(&r, "198.51.100.5", 81), "CIDR:port rule");
	ok(target(&r, "[2001:db8::9]", 443) && target(&r, "2001:db8::9", 443) &&
	   !target(&r, "[2001:db9::9]", 443), "IPv6 CIDR rule, with or without brackets");
	ok(strcmp(target_why(&r, "[2001:db9::9]", 443), "no allow rule matches [2001:db9::9]:443") == 0,
	   "IPv6 reason in brackets");
	ok(target(&r, "::ffff:203.0.113.7", 5), "mapped IPv6 literal matches the IPv4 rule");
	ok(!target(&r, "exact.test.example", 80), "no accidental prefix match");
	ok(!target(&r, "bad.deny.test", 80) && target(&r, "good.deny.test", 80), "deny wins");
	ok(strcmp(target_why(&r, "BAD.deny.test", 80), "denied by rule 'bad.deny.test'") == 0,
	   "deny reason names the rule");
	ok(target(&r, "both.test", 80) && !target(&r, "both.test", 25), "deny with port");
	ok(!target(&r, "198.51.100.66", 80) &&
	   strcmp(target_why(&r, "198.51.100.66", 80), "denied by rule '198.51.100.66'") == 0,
	   "deny IP inside an allowed CIDR");
	ok(!target(&r, "", 80) && !target(&r, "a b", 80) && !target(&r, "127.1", 80) &&
	   !target(&r, "exact_test", 80) && !target(&r, "-x.wild.test", 80) &&
	   !target(&r, "0x7f.1", 80) && !target(&r, "2130706433", 80) &&
	   !target(&r, "fe80::1%lo", 80), "garbage and inet_aton forms refused");
	ok(strstr(target_why(&r, "127.1", 80), "not a valid host name or address") != NULL,
	   "reason for an invalid host");
	{
		const struct net_rule *m;
		const char *why;
		ok(netrules_allow_target(&r, "x.wild.test", 80, &m, &why) && m &&
		   strcmp(m->text, "*.wild.test") == 0, "matched rule returned");
	}
	netrules_free(&r);
}

static void test_addresses(void)
{
	struct net_rules r;
	static const char *special[] = {
		"127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1",
		"172.31.255.255", "192.168.1.1", "100.64.0.1", "100.127.255.255", "169.254.1.1",
		"169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "0.0.0.0",
		"0.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
		"198.18.0.1", "::", "::1", "fe80::1", "febf::1", "fc00::1", "fd12:3456::1",
		"fd00:ec2::254", "ff02::1", "fec0::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3",
		"::ffff:169.254.169.254", "::ffff:192.168.0.1", "::ffff:0.0.0.0", "::127.0.0.1",
		"64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "64:ff9b:1::1", NULL };
	static const char *public[] = {
		"1.1.1.1", "8.8.8.8", "93.184.216.34", "172.15.255.255", "172.32.0.0",
		"100.63.255.255", "100.128.0.0", "169.253.255.255", "11.0.0.0", "192.169.0.1",
		"2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", NULL };
	char *allow[] = { "*.pub.test", "pub.test", NULL };

	if (!load(&r, allow, NULL, NULL))
		return;
	for (const char **s = special; *s; s++)
		ok(!address(&r, "x.pub.test", *s, 443, false), "name resolving to %s refused", *s);
	for (const char **s = public; *s; s++)
		ok(address(&r, "x.pub.test", *s, 443, false), "name resolving to %s allowed", *s);
	for (const char **s = special; *s; s++)
		ok(address(&r, "x.pub.test", *s, 443, true), "host entry to %s allowed", *s);
	ok(strcmp(address_why(&r, "169.254.169.254", 80), "169.254.169.254 is a cloud metadata "
		  "address; only an IP rule naming it or a host entry allows it") == 0,
	   "metadata reason");
	ok(strstr(address_why(&r, "::ffff:127.0.0.1", 80), "127.0.0.1 is a loopback address"),
	   "mapped loopback reason names the IPv4 address");
	ok(strstr(address_why(&r, "fe80::1", 80), "link-local"), "IPv6 link-local reason");
	ok(strstr(address_why(&r, "10.9.9.9", 80), "private"), "private reason");
	{
		struct sockaddr_storage ss;
		const char *why;
		memset(&ss, 0, sizeof ss);
		ss.ss_family = AF_UNIX;
		ok(!netrules_allow_address(&r, NULL, (struct sockaddr *)&ss, true, &why),
		   "non-IP family refused");
	}
	netrules_free(&r);
}

static void test_openings(void)
{
	struct net_rules r;
	char *allow[] = { "*.corp.test", "10.0.0.0/8", "127.0.0.1:8080", "169.254.169.254",
			  "0.0.0.0/0", "[::/0]", "[fd00::/8]:443", "172.16.0.0/16", "192.168.0.0/15",
			  NULL };
	char *deny[] = { "10.6.6.6", "[fd00::bad]", "evil.corp.test", NULL };
	char *hosts[] = { "evil.corp.test=10.0.0.1", NULL };

	if (!load(&r, allow, deny, hosts))
		return;
	ok(address(&r, "db.corp.test", "10.1.2.3", 5432, false),
	   "covering CIDR allow rule opens a private range for names");
	ok(address(&r, "10.1.2.3", "10.1.2.3", 22, false), "IP literal in an allowed private CIDR");
	ok(address(&r, "db.corp.test", "::ffff:10.1.2.3", 5432, false),
	   "covering CIDR also opens the IPv4-mapped form");
	ok(!address(&r, "db.corp.test", "10.6.6.6", 5432, false) &&
	   strstr(address_why(&r, "10.6.6.6", 1), "denied by rule '10.6.6.6'"),
	   "deny address rule wins over a covering CIDR");
	ok(!address(&r, "db.corp.test", "::ffff:10.6.6.6", 1, false), "deny catches mapped form");
	ok(!address(&r, "db.corp.test", "10.6.6.6", 1, true), "deny wins over a host entry too");
	ok(!address(&r, "evil.corp.test", "10.0.0.1", 80, true), "deny name rule beats a host entry");
	ok(address(&r, "db.corp.test", "127.0.0.1", 8080, false) &&
	   !address(&r, "db.corp.test", "127.0.0.1", 8081, false),
	   "loopback opened only on the rule's port");
	ok(!address(&r, "db.corp.test", "127.0.0.2", 8080, false), "rest of loopback still refused");
	ok(address(&r, "db.corp.test", "169.254.169.254", 80, false),
	   "metadata opened by a rule naming it");
	ok(!address(&r, "db.corp.test", "169.254.170.2", 80, false),
	   "other metadata still refused");
	ok(!address(&r, "db.corp.test", "169.254.1.1", 80, false),
	   "link-local not opened by 0.0.0.0/0");
	ok(!address(&r, "db.corp.test", "192.0.0.192", 80, false),
	   "0.0.0.0/0 does not open metadata");
	ok(!address(&r, "db.corp.test", "::1", 80, false), "::/0 does not open IPv6 loopback");
	ok(address(&r, "db.corp.test", "2606:4700::1", 80, false), "public IPv6 fine");
	ok(address(&r, "db.corp.test", "fd00::1", 443, false) &&
	   !address(&r, "db.corp.test", "fd00::1", 80, false), "IPv6 ULA opened with port");
	ok(!address(&r, "db.corp.test", "fd00::bad", 443, false), "IPv6 deny wins");
	ok(!address(&r, "db.corp.test", "fd00:ec2::254", 443, false),
	   "fd00::/8 is narrower than fc00::/7 but metadata needs naming");
	ok(address(&r, "db.corp.test", "172.16.9.9", 80, false) &&
	   !address(&r, "db.corp.test", "172.17.0.1", 80, false), "narrower CIDR opens only itself");
	ok(!address(&r, "db.corp.test", "192.168.1.1", 80, false),
	   "CIDR wider than the special range (/15 > 192.168/16) does not open it");
	netrules_free(&r);
}

int main(void)
{
	test_parse();
	test_hosts();
	test_load();
	test_match();
	test_addresses();
	test_openings();
	return tap_done();
}
