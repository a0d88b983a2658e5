/* fsutil.h — directory helpers of aegis-image. */
#ifndef AEGIS_IMAGE_FSUTIL_H
#define AEGIS_IMAGE_FSUTIL_H

/* Remove dirfd/name and everything beneath it, never following a
 * symlink; modes are widened first so read-only dirs from images go too.
 * 0 (also when it is absent) or -1 with errno. */
int rmtree_at(int dirfd, const char *name);

#endif
