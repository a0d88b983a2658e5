/* hash.h — sha256 as lowercase hex, through OpenSSL's libcrypto. */
#ifndef AEGIS_COMMON_HASH_H
#define AEGIS_COMMON_HASH_H

#include <stddef.h>

#define HASH_HEX_LEN 64

/* out gets 64 hex digits and a NUL. */
void hash_sha256_hex(const void *data, size_t len, char out[HASH_HEX_LEN + 1]);
/* sha256 of a whole file by fd (read from its current offset). -1 with errno. */
int hash_sha256_fd(int fd, char out[HASH_HEX_LEN + 1]);

#endif
