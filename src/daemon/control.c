/* control.c — the control socket of an instance (control.h).
 *
 * Named through /proc/self/fd/DIRFD/control.sock so the path stays short
 * whatever the state directory (sun_path holds 108 bytes), and never
 * resolves anywhere but the directory already opened. */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"

static socklen_t control_addr(int dirfd, struct sockaddr_un *sun)
{
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof sun->sun_path, "/proc/self/fd/%d/%s", dirfd, CONTROL_SOCKET);
	return sizeof *sun;
}

int control_listen(int dirfd)
{
	struct sockaddr_un sun;
	socklen_t len = control_addr(dirfd, &sun);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), e;
	mode_t old;

	if (fd < 0)
		return -1;
	unlinkat(dirfd, CONTROL_SOCKET, 0);	/* a previous shim's */
	old = umask(0177);	/* 0600 from the first instant, in a 0700 directory */
	if (bind(fd, (struct sockaddr *)&sun, len) < 0 || listen(fd, 16) < 0) {
		e = errno;
		umask(old);
		close(fd);
		errno = e;
		return -1;
	}
	umask(old);
	return fd;
}

int control_connect(int dirfd)
{
	struct sockaddr_un sun;
	socklen_t len = control_addr(dirfd, &sun);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), e;

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, len) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}
