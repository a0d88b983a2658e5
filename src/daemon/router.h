/* router.h — exposed ports (router.c). */
#ifndef AEGIS_DAEMON_ROUTER_H
#define AEGIS_DAEMON_ROUTER_H

#include <jansson.h>
#include <stddef.h>

/* Listen on each of the instance's exposes (a JSON array of specs); all
 * or none: -1 with why (e.g. the port is taken). */
int router_open(const char *name, json_t *expose, char *why, size_t len);
/* Stop listening for the instance (deleted, disabled). */
void router_close(const char *name);
/* What the instance has exposed now, as specs. */
json_t *router_list(const char *name);
/* The accept loop, in a thread of its own. */
int router_start(void);

#endif
