/* secrets.h — the encrypted secrets store (issue 7, first part).
 *
 * <dir>/master.key (32 random bytes, 0600, ours, not a link, in a 0700
 * directory that is ours) or a key from $AEGIS_SECRETS_KEY (64 hex digits)
 * or $AEGIS_SECRETS_KEY_FD; <dir>/secrets.json holds one entry per name:
 * AES-256-GCM of the value with a fresh random 96-bit nonce each time and
 * the name bound as associated data, written whole (temp, fsync, rename,
 * fsync of the directory). A value never leaves this module except into
 * the caller's buffer, which the caller wipes (secrets_wipe). */
#ifndef AEGIS_COMMON_SECRETS_H
#define AEGIS_COMMON_SECRETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <aegis/aegis.h>

#define SECRET_NAME_MAX 128
#define SECRET_VALUE_MAX (64 * 1024)

struct secrets {
	int dirfd;
	unsigned char key[32];
};

/* ^[A-Za-z_][A-Za-z0-9_]{0,127}$: usable as an environment variable. */
bool secrets_name_valid(const char *name);
/* Open (making on first use) the store in dir. -1 with err: a key file or
 * directory anyone else could read or swap is refused, never used. */
int secrets_open(struct secrets *s, const char *dir, struct aegis_error *err);
void secrets_close(struct secrets *s);
int secrets_set(struct secrets *s, const char *name, const void *value, size_t len, struct aegis_error *err);
/* The value into a malloc'd buffer (*len bytes, NUL after them); the
 * caller wipes and frees it with secrets_wipe. -1 with err: unknown name,
 * or an entry that does not decrypt (tampered, moved, another key). */
int secrets_get(struct secrets *s, const char *name, char **value, size_t *len, struct aegis_error *err);
int secrets_delete(struct secrets *s, const char *name, struct aegis_error *err);
/* Names with their created/updated times, as a JSON array text (malloc'd). */
char *secrets_list(struct secrets *s, struct aegis_error *err);
void secrets_wipe(char *value, size_t len);

#endif
