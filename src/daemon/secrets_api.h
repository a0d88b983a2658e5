/* secrets_api.h — /v1/secrets: the secrets store (common/secrets.c) through
 * the daemon. A value comes in a request body only and never goes out:
 * answers carry names and times. */
#ifndef AEGIS_DAEMON_SECRETS_API_H
#define AEGIS_DAEMON_SECRETS_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include <aegis/aegis.h>

/* The store is <state_dir>/secrets. */
void secrets_api_init(const char *state_dir);
/* At start: a store that exists must open (its key file and directory
 * private, ours, no symlinks), or the daemon does not start. -1 with err. */
int secrets_api_check(struct aegis_error *err);
/* Each returns an HTTP status and sets *body (a JSON object, the caller's). */
unsigned secrets_api_list(json_t **body);
/* body: {"value": "..."}; the request text is wiped before this returns. */
unsigned secrets_api_set(const char *name, char *request, size_t len, json_t **body);
unsigned secrets_api_delete(const char *name, json_t **body);
/* The first of names (NULL-terminated "NAME" or "NAME:how" requests) not in
 * the store, or NULL when all are; *broken when the store cannot be read. */
const char *secrets_api_missing(char *const *names, bool *broken);

/* json_set_alloc_funcs' free: whatever jansson held (parsed request
 * bodies, values on their way into the store) is zeroed before it goes. */
void secrets_api_wiping_free(void *p);

#endif
