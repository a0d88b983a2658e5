/* netrules.c — parsing and matching the egress rules of the allow network
 * mode (netrules.h has the rule forms).
 *
 * Two checks guard every proxied connection. The target check looks at the
 * host and port as the client wrote them: deny rules first, then allow
 * rules; names match name rules, IP literals match address rules. The
 * address check runs on each address the name resolved to, because a rule
 * like "*.example.com" says nothing about where those names point: deny
 * address rules apply again, and special addresses (loopback, private,
 * link-local, cloud metadata, multicast, ...) are refused unless the user
 * named them, either with a static host entry or with an IP/CIDR allow rule
 * no wider than the special range (so "0.0.0.0/0" opens the public internet
 * by address, not the metadata service). IPv4-mapped IPv6 addresses are
 * turned into IPv4 before any check, so ::ffff:169.254.169.254 is the
 * metadata address, not some unknown IPv6 one.
 *
 * The *why strings live in a per-thread buffer: the proxy calls these from
 * one thread per connection. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "netrules.h"

#define NETRULES_NAME_MAX 253
#define NETRULES_LABEL_MAX 63

static __thread char netrules_why[320];

/* A range of addresses that is not "the internet". */
struct netrules_special {
	int family;
	uint8_t addr[16];
	int prefix;
	const char *what;
};

#define V4(a, b, c, d) { a, b, c, d }
#define V6(...) { __VA_ARGS__ }

/* Most specific first: the first match names the range in refusals. */
static const struct netrules_special netrules_specials[] = {
	/* Cloud metadata services: credentials live there. */
	{ AF_INET, V4(169, 254, 169, 254), 32, "a cloud metadata address" },
	{ AF_INET, V4(169, 254, 170, 2), 32, "a cloud metadata address" },	/* ECS task role */
	{ AF_INET, V4(100, 100, 100, 200), 32, "a cloud metadata address" },	/* Alibaba */
	{ AF_INET, V4(192, 0, 0, 192), 32, "a cloud metadata address" },	/* Oracle */
	{ AF_INET6, V6(0xfd, 0x00, 0x0e, 0xc2, [15] = 0x54, [14] = 0x02), 128,
	  "a cloud metadata address" },	/* fd00:ec2::254, AWS IPv6 */
	{ AF_INET, V4(0, 0, 0, 0), 8, "a 'this network' address (0.0.0.0/8)" },
	{ AF_INET, V4(10, 0, 0, 0), 8, "a private address" },
	{ AF_INET, V4(100, 64, 0, 0), 10, "a shared (carrier-grade NAT) address" },
	{ AF_INET, V4(127, 0, 0, 0), 8, "a loopback address" },
	{ AF_INET, V4(169, 254, 0, 0), 16, "a link-local address" },
	{ AF_INET, V4(172, 16, 0, 0), 12, "a private address" },
	{ AF_INET, V4(192, 0, 0, 0), 24, "an IETF protocol address (192.0.0.0/24)" },
	{ AF_INET, V4(192, 168, 0, 0), 16, "a private address" },
	{ AF_INET, V4(198, 18, 0, 0), 15, "a benchmarking address (198.18.0.0/15)" },
	{ AF_INET, V4(224, 0, 0, 0), 4, "a multicast address" },
	{ AF_INET, V4(255, 255, 255, 255), 32, "the broadcast address" },
	{ AF_INET, V4(240, 0, 0, 0), 4, "a reserved address (240.0.0.0/4)" },
	{ AF_INET6, V6(0), 128, "the unspecified address" },
	{ AF_INET6, V6([15] = 1), 128, "a loopback address" },
	{ AF_INET6, V6(0), 96, "an IPv4-compatible address (::/96)" },
	{ AF_INET6, V6(0x00, 0x64, 0xff, 0x9b, 0x00, 0x01), 48, "a local NAT64 address" },
	{ AF_INET6, V6(0xfc), 7, "a unique-local (private) address" },
	{ AF_INET6, V6(0xfe, 0x80), 10, "a link-local address" },
	{ AF_INET6, V6(0xfe, 0xc0), 10, "a site-local address" },
	{ AF_INET6, V6(0xff), 8, "a multicast address" },
};

static bool netrules_prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
	int whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));
		if ((a[whole] & mask) != (b[whole] & mask))
			return false;
	}
	return true;
}

/* ::ffff:a.b.c.d is a.b.c.d for every purpose here. */
static void netrules_unmap(int *family, uint8_t *addr, int *prefix)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (*family != AF_INET6 || memcmp(addr, mapped, 12) != 0)
		return;
	if (prefix && *prefix < 96)
		return;
	memmove(addr, addr + 12, 4);
	memset(addr + 4, 0, 12);
	*family = AF_INET;
	if (prefix)
		*prefix -= 96;
}

static const struct netrules_special *netrules_special_find(int family, const uint8_t *addr)
{
	for (size_t i = 0; i < sizeof netrules_specials / sizeof netrules_specials[0]; i++) {
		const struct netrules_special *s = &netrules_specials[i];
		if (s->family == family && netrules_prefix_match(addr, s->addr, s->prefix))
			return s;
	}
	return NULL;
}

/* The special range an address falls in, looking through the IPv6 forms
 * that carry an IPv4 address (NAT64 64:ff9b::/96, 6to4 2002::/16), since a
 * translator on the host may forward them to that IPv4 address. */
static const struct netrules_special *netrules_special(int family, const uint8_t *addr,
						       int *range_prefix)
{
	static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
	const struct netrules_special *s = netrules_special_find(family, addr);
	uint8_t v4[16] = { 0 };

	if (!s && family == AF_INET6 && memcmp(addr, nat64, 12) == 0) {
		memcpy(v4, addr + 12, 4);
		s = netrules_special_find(AF_INET, v4);
		if (s) {
			*range_prefix = 96 + s->prefix;
			return s;
		}
	}
	if (!s && family == AF_INET6 && addr[0] == 0x20 && addr[1] == 0x02) {
		memcpy(v4, addr + 2, 4);
		s = netrules_special_find(AF_INET, v4);
		if (s) {
			*range_prefix = 16 + s->prefix;
			return s;
		}
	}
	if (s)
		*range_prefix = s->prefix;
	return s;
}

/* 1..65535, decimal digits only. */
static int netrules_parse_port(const char *s, uint16_t *out)
{
	unsigned long v = 0;

	if (!*s || *s == '0')
		return -1;	/* empty, 0, or a leading zero ("080" reads as octal to some) */
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -1;
	}
	*out = (uint16_t)v;
	return 0;
}

static int netrules_parse_prefix(const char *s, int max, int *out)
{
	int v = 0;

	if (!*s || strlen(s) > 3 || (s[0] == '0' && s[1]))
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* A host name as docs/network.md defines it (and src/common/policy.c
 * checks): labels of a-z, 0-9 and '-', not starting or ending with '-',
 * 1..63 bytes each, at most 253 in all. Anything an IPv4 parser would take
 * as an address ("127.1", "0x7f000001", a last label of digits) is not a
 * name: resolving it would reach that address behind the back of the
 * address rules. */
static bool netrules_valid_name(const char *name)
{
	const char *label = name, *last = name;
	struct in_addr ignored;
	size_t n = strlen(name);
	bool digits_only = true;

	if (n == 0 || n > NETRULES_NAME_MAX)
		return false;
	for (const char *p = name;; p++) {
		if (*p == '.' || *p == '\0') {
			if (p == label || p - label > NETRULES_LABEL_MAX || p[-1] == '-')
				return false;
			last = label;
			if (*p == '\0')
				break;
			label = p + 1;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-')
			return false;
		if (*p == '-' && p == label)
			return false;
	}
	for (const char *p = last; *p; p++)
		if (!isdigit((unsigned char)*p))
			digits_only = false;
	if (digits_only || inet_aton(name, &ignored))
		return false;
	return true;
}

/* Lowercase copy without one trailing dot ("example.com." is example.com). */
static char *netrules_name_dup(const char *s, size_t len)
{
	char *out;

	if (len > 1 && s[len - 1] == '.')
		len--;
	out = strndup(s, len);
	if (!out)
		return NULL;
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return out;
}

/* An address, optionally "/prefix" (an IPv6 one without its brackets). */
static int netrules_parse_addr(const char *s, struct net_rule *out, const char **bad)
{
	char buf[INET6_ADDRSTRLEN + 8];
	char *slash;
	int max;

	if (strlen(s) >= sizeof buf) {
		*bad = "not a valid address";
		return -1;
	}
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash)
		*slash++ = '\0';
	memset(out->addr, 0, sizeof out->addr);
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		*bad = "not a valid address";
		return -1;
	}
	out->prefix = max;
	if (slash && netrules_parse_prefix(slash, max, &out->prefix) < 0) {
		*bad = "bad prefix length";
		return -1;
	}
	/* "10.1.2.3/8" is most likely a typo for a narrower rule: say so rather
	 * than silently opening the whole /8. */
	{
		uint8_t masked[16] = { 0 };
		int whole = out->prefix / 8, rest = out->prefix % 8;
		memcpy(masked, out->addr, whole);
		if (rest)
			masked[whole] = out->addr[whole] & (uint8_t)(0xff << (8 - rest));
		if (memcmp(masked, out->addr, 16) != 0) {
			*bad = "address has bits set beyond the prefix length";
			return -1;
		}
	}
	netrules_unmap(&out->family, out->addr, &out->prefix);
	return 0;
}

int netrules_parse_rule(const char *text, struct net_rule *out, struct aegis_error *err)
{
	const char *bad = NULL, *hoststart, *colon;
	char *host = NULL, *addrtext = NULL;
	size_t hostlen;

	memset(out, 0, sizeof *out);
	if (!text || !*text)
		return error_set(err, AEGIS_E_INVALID, 0, "net rule '': empty rule");

	if (text[0] == '[') {
		/* [v6] or [v6/len], then optionally :port */
		const char *close = strchr(text, ']');
		if (!close) {
			bad = "missing ']'";
			goto fail;
		}
		if (close[1] != '\0' && (close[1] != ':' ||
					 netrules_parse_port(close + 2, &out->port) < 0)) {
			bad = "bad port (want 1-65535)";
			goto fail;
		}
		addrtext = strndup(text + 1, (size_t)(close - text - 1));
		if (!addrtext)
			goto nomem;
		if (!strchr(addrtext, ':')) {
			bad = "brackets are for IPv6 addresses";
			goto fail;
		}
		if (netrules_parse_addr(addrtext, out, &bad) < 0)
			goto fail;
		goto done;
	}

	colon = strchr(text, ':');
	if (colon && strchr(colon + 1, ':')) {
		/* "2001:db8::1:443": is the last part a port? Brackets decide. */
		bad = "an IPv6 address goes in brackets, e.g. [2001:db8::1]:443";
		goto fail;
	}
	hostlen = colon ? (size_t)(colon - text) : strlen(text);
	if (colon && netrules_parse_port(colon + 1, &out->port) < 0) {
		bad = "bad port (want 1-65535)";
		goto fail;
	}
	host = strndup(text, hostlen);
	if (!host)
		goto nomem;
	if (host[0] && (isdigit((unsigned char)host[hostlen - 1]) || strchr(host, '/'))) {
		/* Looks like an IPv4 address or block. */
		if (netrules_parse_addr(host, out, &bad) == 0)
			goto done;
		if (strchr(host, '/'))
			goto fail;
		/* else fall through: a name cannot end in a digit either, and the
		 * name check below says why. */
	}
	hoststart = host;
	if (strncmp(host, "*.", 2) == 0) {
		out->wildcard = true;
		hoststart = host + 2;
	}
	if (strchr(hoststart, '*')) {
		bad = "'*' only as a leading '*.' label";
		goto fail;
	}
	{
		char *name = netrules_name_dup(hoststart, strlen(hoststart));
		if (!name)
			goto nomem;
		if (!netrules_valid_name(name)) {
			free(name);
			bad = "not a valid host name or address";
			goto fail;
		}
		out->host = name;
	}

done:
	out->text = strdup(text);
	if (!out->text)
		goto nomem;
	free(host);
	free(addrtext);
	return 0;

nomem:
	free(host);
	free(addrtext);
	free(out->host);
	memset(out, 0, sizeof *out);
	return error_set(err, AEGIS_E_SETUP, ENOMEM, "net rule '%.100s'", text);
fail:
	free(host);
	free(addrtext);
	free(out->host);
	memset(out, 0, sizeof *out);
	return error_set(err, AEGIS_E_INVALID, 0, "net rule '%.100s': %s", text, bad);
}

int netrules_parse_host(const char *text, struct net_host *out, struct aegis_error *err)
{
	const char *eq, *ip;
	char ipbuf[INET6_ADDRSTRLEN];
	size_t iplen;
	int prefix = 128;

	memset(out, 0, sizeof *out);
	if (!text || !(eq = strchr(text, '=')))
		return error_set(err, AEGIS_E_INVALID, 0,
				 "net host '%.100s': want NAME=IP", text ? text : "");
	ip = eq + 1;
	iplen = strlen(ip);
	if (iplen >= sizeof ipbuf)
		goto badip;
	memcpy(ipbuf, ip, iplen);
	ipbuf[iplen] = '\0';
	if (inet_pton(AF_INET, ipbuf, out->addr) == 1) {
		out->family = AF_INET;
	} else if (inet_pton(AF_INET6, ipbuf, out->addr) == 1) {
		out->family = AF_INET6;
		netrules_unmap(&out->family, out->addr, &prefix);
	} else {
		goto badip;
	}
	out->name = netrules_name_dup(text, (size_t)(eq - text));
	if (!out->name)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "net host '%.100s'", text);
	if (!netrules_valid_name(out->name)) {
		free(out->name);
		memset(out, 0, sizeof *out);
		return error_set(err, AEGIS_E_INVALID, 0,
				 "net host '%.100s': not a valid host name", text);
	}
	return 0;
badip:
	memset(out, 0, sizeof *out);
	return error_set(err, AEGIS_E_INVALID, 0,
			 "net host '%.100s': not a valid IP address after '='", text);
}

static int netrules_load_list(char **list, struct net_rule **out, size_t *n,
			      struct aegis_error *err)
{
	size_t count = 0;

	*out = NULL;
	*n = 0;
	if (!list)
		return 0;
	while (list[count])
		count++;
	if (!count)
		return 0;
	*out = calloc(count, sizeof **out);
	if (!*out)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "net rules");
	for (size_t i = 0; i < count; i++) {
		if (netrules_parse_rule(list[i], &(*out)[i], err) < 0)
			return -1;
		(*n)++;
	}
	return 0;
}

int netrules_load(const struct aegis_policy *policy, struct net_rules *out,
		  struct aegis_error *err)
{
	size_t count = 0;

	memset(out, 0, sizeof *out);
	if (!policy)
		return 0;
	if (netrules_load_list(policy->net_allow, &out->allow, &out->nallow, err) < 0 ||
	    netrules_load_list(policy->net_deny, &out->deny, &out->ndeny, err) < 0)
		goto fail;
	if (policy->net_hosts) {
		while (policy->net_hosts[count])
			count++;
		if (count && !(out->hosts = calloc(count, sizeof *out->hosts))) {
			error_set(err, AEGIS_E_SETUP, ENOMEM, "net hosts");
			goto fail;
		}
		for (size_t i = 0; i < count; i++) {
			if (netrules_parse_host(policy->net_hosts[i], &out->hosts[i], err) < 0)
				goto fail;
			out->nhosts++;
			/* one name, one address: which of two would be meant? */
			for (size_t j = 0; j < i; j++) {
				if (strcmp(out->hosts[j].name, out->hosts[i].name) == 0) {
					error_set(err, AEGIS_E_INVALID, 0,
						  "net host '%.100s': a second entry for %.100s",
						  policy->net_hosts[i], out->hosts[i].name);
					goto fail;
				}
			}
		}
	}
	return 0;
fail:
	netrules_free(out);
	return -1;
}

static void netrules_free_list(struct net_rule *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(list[i].text);
		free(list[i].host);
	}
	free(list);
}

void netrules_free(struct net_rules *r)
{
	if (!r)
		return;
	netrules_free_list(r->allow, r->nallow);
	netrules_free_list(r->deny, r->ndeny);
	for (size_t i = 0; i < r->nhosts; i++)
		free(r->hosts[i].name);
	free(r->hosts);
	memset(r, 0, sizeof *r);
}

static bool netrules_name_matches(const struct net_rule *rule, const char *name, uint16_t port)
{
	size_t n, m;

	if (!rule->host || (rule->port && rule->port != port))
		return false;
	if (!rule->wildcard)
		return strcmp(rule->host, name) == 0;
	/* "*.example.com": "a.example.com", "a.b.example.com", never
	 * "example.com" or "badexample.com". */
	n = strlen(name);
	m = strlen(rule->host);
	return n > m + 1 && name[n - m - 1] == '.' && strcmp(name + n - m, rule->host) == 0;
}

static bool netrules_addr_matches(const struct net_rule *rule, int family,
				  const uint8_t *addr, uint16_t port)
{
	if (rule->host || rule->family != family || (rule->port && rule->port != port))
		return false;
	return netrules_prefix_match(addr, rule->addr, rule->prefix);
}

/* Host as the client wrote it → an address (brackets allowed around IPv6),
 * or a normalised name in namebuf. Returns AF_INET/AF_INET6 for an address,
 * 0 for a valid name, -1 for neither. */
static int netrules_classify(const char *host, uint8_t *addr, char *namebuf, size_t cap)
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(host);
	int family = 0, prefix = 0;

	memset(addr, 0, 16);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		if (n - 2 >= sizeof buf)
			return -1;
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		if (inet_pton(AF_INET6, buf, addr) != 1)
			return -1;
		family = AF_INET6;
	} else if (inet_pton(AF_INET, host, addr) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, host, addr) == 1) {
		family = AF_INET6;
	}
	if (family) {
		prefix = 128;
		netrules_unmap(&family, addr, &prefix);
		return family;
	}
	if (n == 0 || n >= cap)
		return -1;
	if (n > 1 && host[n - 1] == '.')
		n--;
	for (size_t i = 0; i < n; i++)
		namebuf[i] = (char)tolower((unsigned char)host[i]);
	namebuf[n] = '\0';
	return netrules_valid_name(namebuf) ? 0 : -1;
}

bool netrules_allow_target(const struct net_rules *r, const char *host, uint16_t port,
			   const struct net_rule **matched, const char **why)
{
	char name[NETRULES_NAME_MAX + 2];
	uint8_t addr[16];
	int family;

	*matched = NULL;
	*why = netrules_why;
	family = netrules_classify(host ? host : "", addr, name, sizeof name);
	if (family < 0) {
		snprintf(netrules_why, sizeof netrules_why,
			 "'%.100s' is not a valid host name or address", host ? host : "");
		return false;
	}
	for (size_t i = 0; i < r->ndeny; i++) {
		const struct net_rule *d = &r->deny[i];
		if (family ? netrules_addr_matches(d, family, addr, port)
			   : netrules_name_matches(d, name, port)) {
			snprintf(netrules_why, sizeof netrules_why, "denied by rule '%.200s'", d->text);
			return false;
		}
	}
	for (size_t i = 0; i < r->nallow; i++) {
		const struct net_rule *a = &r->allow[i];
		if (family ? netrules_addr_matches(a, family, addr, port)
			   : netrules_name_matches(a, name, port)) {
			*matched = a;
			snprintf(netrules_why, sizeof netrules_why, "allowed by rule '%.200s'", a->text);
			return true;
		}
	}
	if (family)
		inet_ntop(family, addr, name, sizeof name);
	snprintf(netrules_why, sizeof netrules_why, "no allow rule matches %s%s%s:%u",
		 family == AF_INET6 ? "[" : "", name, family == AF_INET6 ? "]" : "", port);
	return false;
}

/* Does this allow rule open the special range? Only if it covers the
 * address and is no wider than the range: the user named that part of the
 * address space, not merely "everything". */
static bool netrules_opens(const struct net_rule *a, int family, const uint8_t *addr,
			   uint16_t port, int range_prefix)
{
	return a && netrules_addr_matches(a, family, addr, port) && a->prefix >= range_prefix;
}

bool netrules_allow_address(const struct net_rules *r, const struct net_rule *matched,
			    const struct sockaddr *sa, bool mapped, const char **why)
{
	const struct netrules_special *special;
	char text[INET6_ADDRSTRLEN];
	uint8_t addr[16] = { 0 };
	int family, range_prefix = 0, prefix = 128;
	uint16_t port;

	*why = netrules_why;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memcpy(addr, &in->sin_addr, 4);
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		memcpy(addr, &in6->sin6_addr, 16);
		port = ntohs(in6->sin6_port);
	} else {
		snprintf(netrules_why, sizeof netrules_why, "not an IP address");
		return false;
	}
	family = sa->sa_family;
	netrules_unmap(&family, addr, &prefix);
	inet_ntop(family, addr, text, sizeof text);

	for (size_t i = 0; i < r->ndeny; i++) {
		if (netrules_addr_matches(&r->deny[i], family, addr, port)) {
			snprintf(netrules_why, sizeof netrules_why, "%s is denied by rule '%.200s'",
				 text, r->deny[i].text);
			return false;
		}
	}
	special = netrules_special(family, addr, &range_prefix);
	if (!special || mapped) {
		snprintf(netrules_why, sizeof netrules_why, "%s allowed", text);
		return true;
	}
	if (netrules_opens(matched, family, addr, port, range_prefix))
		goto opened;
	for (size_t i = 0; i < r->nallow; i++)
		if (netrules_opens(&r->allow[i], family, addr, port, range_prefix))
			goto opened;
	snprintf(netrules_why, sizeof netrules_why,
		 "%s is %s; only an IP rule naming it or a host entry allows it", text,
		 special->what);
	return false;
opened:
	snprintf(netrules_why, sizeof netrules_why, "%s allowed by an IP rule", text);
	return true;
}
