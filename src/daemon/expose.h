/* expose.h — `--expose [ADDR:]HOST:GUEST`: one of an instance's ports on
 * the host (expose.c parses it; router.c serves it). */
#ifndef AEGIS_DAEMON_EXPOSE_H
#define AEGIS_DAEMON_EXPOSE_H

#include <stdint.h>
#include <sys/socket.h>

#define EXPOSE_MAX 16			/* per instance */
#define EXPOSE_DEFAULT_ADDR "127.0.0.1"	/* other addresses only when asked */

struct expose {
	char addr[64];			/* numeric IPv4 or IPv6 address to listen on */
	uint16_t host, guest;		/* host port; the instance's own port */
	struct sockaddr_storage sa;	/* addr:host */
	socklen_t salen;
};

/* "8080:80", "0.0.0.0:8080:80", "[::1]:8080:80". 0, or -1 (bad). */
int expose_parse(const char *spec, struct expose *e);

#endif
