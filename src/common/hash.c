/* hash.c — sha256 digests for the audit chain, policy digests and file
 * changes, from OpenSSL's libcrypto.
 *
 * The low-level SHA256_* interface, not EVP: with EVP a static link pulls
 * in the whole provider machinery (~5 MB and ~0.3 ms of relocations at
 * every `aegis` start, on the sandbox's cold-start path); SHA256_* pulls in
 * just the digest. They are deprecated in OpenSSL 3 in favour of EVP, but
 * present and maintained; the API level below keeps them visible. */
#define OPENSSL_API_COMPAT 10101
#include <errno.h>
#include <openssl/sha.h>
#include <unistd.h>

#include "hash.h"

static void to_hex(const unsigned char *md, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[2 * SHA256_DIGEST_LENGTH] = '\0';
}

void hash_sha256_hex(const void *data, size_t len, char out[HASH_HEX_LEN + 1])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256_CTX ctx;

	/* not SHA256(): in OpenSSL 3 that one goes through EVP */
	SHA256_Init(&ctx);
	SHA256_Update(&ctx, data, len);
	SHA256_Final(md, &ctx);
	to_hex(md, out);
}

int hash_sha256_fd(int fd, char out[HASH_HEX_LEN + 1])
{
	unsigned char md[SHA256_DIGEST_LENGTH], buf[65536];
	SHA256_CTX ctx;
	ssize_t n;

	SHA256_Init(&ctx);
	while ((n = read(fd, buf, sizeof buf)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		SHA256_Update(&ctx, buf, (size_t)n);
	}
	SHA256_Final(md, &ctx);
	to_hex(md, out);
	return 0;
}
