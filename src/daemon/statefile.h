/* statefile.h — the instance directory's JSON files, written whole. */
#ifndef AEGIS_DAEMON_STATEFILE_H
#define AEGIS_DAEMON_STATEFILE_H

#include <jansson.h>

/* Write dirfd/name whole (temp, fsync, rename, fsync of the directory): a
 * reader sees the old file or the new one, never a torn one, and a failed
 * write (a full disk) leaves nothing behind. j stays the caller's. 0, or
 * -1 with errno. */
int statefile_write(int dirfd, const char *name, const json_t *j);
/* The same, whole but not synced: for figures that may be a moment old
 * after a crash (activity), on paths that must be quick (a wake). */
int statefile_write_fast(int dirfd, const char *name, const json_t *j);

#endif
