/* paths.h — where Aegis keeps its runtime sockets and state (DESIGN.md §6). */
#ifndef AEGIS_COMMON_PATHS_H
#define AEGIS_COMMON_PATHS_H

#include <stddef.h>

#include <aegis/aegis.h>

/* The daemon's API socket: $AEGIS_SOCKET, else /run/aegis/aegisd.sock as
 * root, $XDG_RUNTIME_DIR/aegis/aegisd.sock otherwise. */
int paths_socket(char *out, size_t len, struct aegis_error *err);
/* The state directory: $AEGIS_STATE_DIR, else /var/lib/aegis as root,
 * $XDG_DATA_HOME/aegis (~/.local/share/aegis) otherwise. */
int paths_state(char *out, size_t len, struct aegis_error *err);
/* Make dir (and missing parents) and insist it is ours and 0700: nobody
 * else may list it, nobody else may have swapped it in (not a symlink). */
int paths_private_dir(const char *dir, struct aegis_error *err);
/* The backend a run or a new instance gets when none is named:
 * $AEGIS_BACKEND ("ns" or "vm"), else "ns". -1 with err naming the
 * variable when it holds anything else. */
int paths_default_backend(const char **out, struct aegis_error *err);

#endif
