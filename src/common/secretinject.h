/* secretinject.h — what a run asks of the secrets store, turned into the
 * spec's secret_env and secret_files lists. Shared by `aegis run` and the
 * daemon's shim, so both read requests and report errors the same way. */
#ifndef AEGIS_COMMON_SECRETINJECT_H
#define AEGIS_COMMON_SECRETINJECT_H

#include <stdbool.h>

#include <aegis/aegis.h>

/* A request names a secret and how the sandbox gets it: "NAME" or "NAME:env" (environment variable NAME), "NAME:file" (a 0400 file /run/secrets/NAME). */
bool secret_request_valid(const char *req);
/* The values the requests (NULL-terminated) name, from the store in state_dir/secrets, as two NULL-terminated lists of malloc'd "NAME=value" strings (either may be an empty list, never NULL on success). -1 with err naming the secret (never its value), e.g. "no secret named X". The same name twice is an error. */
int secret_inject_load(const char *state_dir, char *const *requests, char ***env, char ***files, struct aegis_error *err);
/* Wipes every value (secrets_wipe) and frees the list; NULL is fine. */
void secret_inject_free(char **list);

#endif
