/* util.h — small helpers shared by the engine and the front ends. */
#ifndef AEGIS_COMMON_UTIL_H
#define AEGIS_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <sys/types.h>

/* "30s", "500ms", "2m", "1h", bare number = seconds. -1 on bad input. */
int parse_duration_ms(const char *s, uint64_t *out);
/* "512m", "1g", "64k", bare number = bytes. -1 on bad input. */
int parse_size(const char *s, uint64_t *out);
/* Plain positive integer. -1 on bad input. */
int parse_u64(const char *s, uint64_t *out);
/* ^[a-z0-9][a-z0-9-]{0,62}$: the names of instances and workspaces, the
 * only strings from a request ever used as a path component (HOSTILE.md
 * */
#define NAME_MAX_LEN 63
bool name_valid(const char *name);

/* Write all of buf to the file at dirfd/path (O_WRONLY|O_CLOEXEC). -1 with errno. */
int write_file_at(int dirfd, const char *path, const char *buf, size_t len);
int write_all(int fd, const void *buf, size_t len);
/* The same on a socket, MSG_NOSIGNAL: a peer that closes on us is an
 * error to report, not SIGPIPE to die of. 0 or -1 (errno). */
int send_all(int fd, const void *buf, size_t len);
/* The peer of a unix socket is our own user or root (SO_PEERCRED): who
 * may ask a control socket for an exec or a connection. */
bool peer_is_us_or_root(int fd);
/* Read up to cap-1 bytes of a file into buf, NUL-terminate. Returns length or -1. */
ssize_t read_file_at(int dirfd, const char *path, char *buf, size_t cap);

uint64_t now_us(void);

/* openat2 beneath root: no "..", no absolute path, no symlink on the way
 * (ELOOP/EXDEV), so a name can never lead outside root. -1 with errno. */
int open_beneath(int root, const char *rel, int flags, mode_t mode);
/* A directory stream of its own (fresh offset) for the directory dirfd. */
DIR *opendir_at(int dirfd);

#endif
