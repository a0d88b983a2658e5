/* fdtree.h — walking a directory tree that someone else filled (a
 * sandbox's workspace) without being led out of it.
 *
 * Every step is openat2 beneath its parent with no symlink and no mount
 * crossing: a symlink or a mount point left in the tree is counted or
 * removed as itself, never followed into (HOSTILE.md E-05, E-06). Depth and
 * entries are bounded, so a hostile tree (R-04: 10^7 files, depth 10,000)
 * costs bounded time, stack and descriptors. */
#ifndef AEGIS_COMMON_FDTREE_H
#define AEGIS_COMMON_FDTREE_H

#include <stdbool.h>
#include <stdint.h>

struct fdtree_usage {
	uint64_t bytes;		/* allocated (st_blocks), as du counts it */
	uint64_t entries;
	bool complete;		/* false: a bound cut the walk short; bytes is a lower bound */
};

/* What the tree below the directory dirfd occupies. */
void fdtree_usage(int dirfd, struct fdtree_usage *u);

/* Remove everything below the directory dirfd (not dirfd itself). 0, or
 * -1 with errno of the first entry that could not go (EXDEV: a mount
 * point in the tree, never entered); what could go is gone either way. */
int fdtree_remove(int dirfd);

#endif
