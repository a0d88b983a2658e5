/* expose.c — parsing `[ADDR:]HOST:GUEST` (expose.h). Numbers and numeric
 * addresses only: no name is resolved, so a spec means one thing. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expose.h"

static int port(const char *s, size_t len, uint16_t *out)
{
	char buf[8], *end;
	long v;

	if (!len || len >= sizeof buf || s[0] == '+' || s[0] == '-')
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	v = strtol(buf, &end, 10);
	if (*end || v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int expose_parse(const char *spec, struct expose *e)
{
	const char *guest = strrchr(spec, ':'), *host;
	size_t alen;

	memset(e, 0, sizeof *e);
	if (!guest || port(guest + 1, strlen(guest + 1), &e->guest) < 0)
		return -1;
	for (host = guest; host > spec && host[-1] != ':'; host--)
		;
	if (port(host, (size_t)(guest - host), &e->host) < 0)
		return -1;
	if (host == spec) {
		snprintf(e->addr, sizeof e->addr, EXPOSE_DEFAULT_ADDR);
	} else {
		alen = (size_t)(host - spec - 1);
		if (alen >= 2 && spec[0] == '[' && spec[alen - 1] == ']') {	/* [v6] */
			spec++;
			alen -= 2;
		}
		if (!alen || alen >= sizeof e->addr)
			return -1;
		memcpy(e->addr, spec, alen);
		e->addr[alen] = '\0';
	}
	if (strchr(e->addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&e->sa;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(e->host);
		if (inet_pton(AF_INET6, e->addr, &s6->sin6_addr) != 1)
			return -1;
		e->salen = sizeof *s6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&e->sa;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(e->host);
		if (inet_pton(AF_INET, e->addr, &s4->sin_addr) != 1)
			return -1;
		e->salen = sizeof *s4;
	}
	return 0;
}
