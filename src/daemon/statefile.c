/* statefile.c — writing an instance directory's JSON files whole
 * (statefile.h), for aegisd and aegis-shim alike. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"
#include "statefile.h"

static int write_whole(int dirfd, const char *name, const json_t *j, bool durable);

int statefile_write(int dirfd, const char *name, const json_t *j)
{
	return write_whole(dirfd, name, j, true);
}

int statefile_write_fast(int dirfd, const char *name, const json_t *j)
{
	return write_whole(dirfd, name, j, false);
}

static int write_whole(int dirfd, const char *name, const json_t *j, bool durable)
{
	char tmp[300], *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int fd, r = -1, e = EIO;

	if (!text)
		return errno = ENOMEM, -1;
	snprintf(tmp, sizeof tmp, ".%s.tmp", name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0 && write_all(fd, text, strlen(text)) == 0 && (!durable || fsync(fd) == 0) &&
	    renameat(dirfd, tmp, dirfd, name) == 0 && (!durable || fsync(dirfd) == 0))
		r = 0;
	else
		e = errno;
	if (fd >= 0)
		close(fd);
	if (r < 0)
		unlinkat(dirfd, tmp, 0);	/* a full disk leaves no half-written temp behind */
	free(text);
	if (r < 0)
		errno = e;
	return r;
}
