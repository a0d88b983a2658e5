/* util.c — number parsing and whole-file I/O used across Aegis. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static int parse_scaled(const char *s, uint64_t *out, const char *const *units,
			const uint64_t *scales)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	for (size_t i = 0; units[i]; i++) {
		if (strcmp(end, units[i]) == 0) {
			if (scales[i] && v > UINT64_MAX / scales[i])
				return -1;
			*out = v * scales[i];
			return 0;
		}
	}
	return -1;
}

int parse_duration_ms(const char *s, uint64_t *out)
{
	static const char *const units[] = { "", "s", "ms", "m", "h", NULL };
	static const uint64_t scales[] = { 1000, 1000, 1, 60000, 3600000 };
	return parse_scaled(s, out, units, scales);
}

int parse_size(const char *s, uint64_t *out)
{
	static const char *const units[] = { "", "b", "k", "K", "kb", "m", "M", "mb",
					     "g", "G", "gb", "t", "T", NULL };
	static const uint64_t scales[] = { 1, 1, 1ULL << 10, 1ULL << 10, 1ULL << 10,
					   1ULL << 20, 1ULL << 20, 1ULL << 20,
					   1ULL << 30, 1ULL << 30, 1ULL << 30,
					   1ULL << 40, 1ULL << 40 };
	return parse_scaled(s, out, units, scales);
}

int parse_u64(const char *s, uint64_t *out)
{
	static const char *const units[] = { "", NULL };
	static const uint64_t scales[] = { 1 };
	return parse_scaled(s, out, units, scales);
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool peer_is_us_or_root(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof cred;

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
	       (cred.uid == geteuid() || cred.uid == 0);
}

bool name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > NAME_MAX_LEN || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
			return false;
	return true;
}

int write_file_at(int dirfd, const char *path, const char *buf, size_t len)
{
	int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC);
	int r, saved;

	if (fd < 0)
		return -1;
	r = write_all(fd, buf, len);
	saved = errno;
	close(fd);
	errno = saved;
	return r;
}

ssize_t read_file_at(int dirfd, const char *path, char *buf, size_t cap)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	size_t len = 0;
	int saved;

	if (fd < 0)
		return -1;
	while (len + 1 < cap) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return (ssize_t)len;
}

uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int open_beneath(int root, const char *rel, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW), .mode = mode,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};

	return (int)syscall(SYS_openat2, root, rel, &how, sizeof how);
}

DIR *opendir_at(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	if (fd < 0)
		return NULL;
	if (!(d = fdopendir(fd)))
		close(fd);
	return d;
}
