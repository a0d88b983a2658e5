/* hash.c — sha256 digests for the audit chain, policy digests and file
 * changes (OpenSSL EVP, the interface that stays stable across versions). */
#include <errno.h>
#include <openssl/evp.h>
#include <unistd.h>

#include "hash.h"

static void to_hex(const unsigned char *md, unsigned len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned i = 0; i < len; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[2 * len] = '\0';
}

void hash_sha256_hex(const void *data, size_t len, char out[HASH_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	to_hex(md, mdlen, out);
}

int hash_sha256_fd(int fd, char out[HASH_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	ssize_t n;

	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto fail;
	while ((n = read(fd, buf, sizeof buf)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (!EVP_DigestUpdate(ctx, buf, (size_t)n))
			goto fail;
	}
	if (!EVP_DigestFinal_ex(ctx, md, &mdlen))
		goto fail;
	EVP_MD_CTX_free(ctx);
	to_hex(md, mdlen, out);
	return 0;
fail:
	EVP_MD_CTX_free(ctx);
	if (!errno)
		errno = EIO;
	return -1;
}
