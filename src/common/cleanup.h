/* cleanup.h — scope-bound ownership, as bubblewrap and crun do it.
 *
 * `_cleanup_close_ int fd` closes at scope exit; `steal_fd(&fd)` hands the
 * descriptor on and disarms the cleanup. Same for heap pointers. */
#ifndef AEGIS_COMMON_CLEANUP_H
#define AEGIS_COMMON_CLEANUP_H

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_freep(void *p)
{
	free(*(void **)p);
}

static inline void cleanup_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

#define _cleanup_free_ __attribute__((cleanup(cleanup_freep)))
#define _cleanup_close_ __attribute__((cleanup(cleanup_closep)))

static inline int steal_fd(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}

static inline void *steal_pointer(void *pp)
{
	void **p = pp;
	void *v = *p;
	*p = NULL;
	return v;
}

#endif
