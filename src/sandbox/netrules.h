/* netrules.h — egress rules of the allow network mode (docs/network.md).
 *
 * A rule is one of:
 *   example.com          that name, any port
 *   example.com:443      that name and port
 *   *.example.com[:p]    any subdomain of example.com (not example.com itself)
 *   10.1.2.3[:p]         an IPv4 address;  [2001:db8::1][:p]  an IPv6 address
 *   10.0.0.0/8[:p]       a CIDR block;     [2001:db8::/32][:p] an IPv6 block
 * Deny rules win over allow rules. Whatever a name resolves to is checked
 * again: loopback, private, link-local, cloud-metadata and other special
 * addresses are refused unless an IP/CIDR allow rule covers the address or
 * the name comes from a static "name=ip" host entry. */
#ifndef AEGIS_SANDBOX_NETRULES_H
#define AEGIS_SANDBOX_NETRULES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <aegis/aegis.h>

struct net_rule {
	char *text;		/* the rule as written, for audit and 403 reasons */
	char *host;		/* lowercase name without "*." ; NULL for address rules */
	bool wildcard;		/* "*.": subdomains only */
	int family;		/* AF_INET/AF_INET6 for address rules, 0 for names */
	uint8_t addr[16];
	int prefix;		/* bits; 32/128 for a single address */
	uint16_t port;		/* 0: any */
};

struct net_host {
	char *name;		/* lowercase */
	int family;
	uint8_t addr[16];
};

struct net_rules {
	struct net_rule *allow, *deny;
	size_t nallow, ndeny;
	struct net_host *hosts;
	size_t nhosts;
};

/* Parse one rule / one "name=ip" host entry. 0, or -1 with a one-line error. */
int netrules_parse_rule(const char *text, struct net_rule *out, struct aegis_error *err);
int netrules_parse_host(const char *text, struct net_host *out, struct aegis_error *err);
/* All of a policy's network lists. */
int netrules_load(const struct aegis_policy *policy, struct net_rules *out, struct aegis_error *err);
void netrules_free(struct net_rules *r);

/* May a connection to host:port be attempted (host is a name or an IP
 * literal, as the client wrote it)? On refusal *why says which rule or
 * that none matched. *matched gets the allow rule that matched. */
bool netrules_allow_target(const struct net_rules *r, const char *host, uint16_t port,
			   const struct net_rule **matched, const char **why);
/* May we connect to this resolved address? `mapped`: it came from a host
 * entry (then special ranges are allowed, the user named them). */
bool netrules_allow_address(const struct net_rules *r, const struct net_rule *matched,
			    const struct sockaddr *sa, bool mapped, const char **why);

#endif
