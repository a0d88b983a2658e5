/* workspaces_api.h — the /v1/workspaces routes of aegisd's API. */
#ifndef AEGIS_DAEMON_WORKSPACES_API_H
#define AEGIS_DAEMON_WORKSPACES_API_H

#include <jansson.h>

/* For /v1/workspaces and /v1/workspaces/NAME: the HTTP status, with *body
 * (a JSON object, the caller's). 0 for any other path. */
unsigned workspaces_api(const char *url, const char *method, const char *request, json_t **body);

#endif
