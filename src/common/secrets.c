/* secrets.c — the encrypted secrets store (secrets.h), on OpenSSL's EVP
 * AES-256-GCM. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "secrets.h"
#include "util.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define STORE "secrets.json"
#define KEYFILE "master.key"
#define AAD_PREFIX "aegis-secret-v1:"

bool secrets_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > SECRET_NAME_MAX || (name[0] >= '0' && name[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '_'))
			return false;
	return true;
}

void secrets_wipe(char *value, size_t len)
{
	if (value) {
		OPENSSL_cleanse(value, len);
		free(value);
	}
}

/* Ours, not a link, nobody else's to read or write. */
static int private_enough(const struct stat *st, const char *what, struct aegis_error *err)
{
	if (st->st_uid != geteuid())
		return error_set(err, AEGIS_E_INVALID, 0, "secrets: %s is owned by uid %u, not by us", what,
				 (unsigned)st->st_uid);
	if (st->st_mode & 077)
		return error_set(err, AEGIS_E_INVALID, 0, "secrets: %s is open to others (mode %o); chmod go= it",
				 what, (unsigned)(st->st_mode & 07777));
	return 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The key from $AEGIS_SECRETS_KEY (hex) or $AEGIS_SECRETS_KEY_FD; 1 if
 * one was given, 0 if not, -1 bad. */
static int key_from_env(unsigned char key[32], struct aegis_error *err)
{
	const char *hex = getenv("AEGIS_SECRETS_KEY"), *fdtext = getenv("AEGIS_SECRETS_KEY_FD");
	char buf[65] = { 0 };
	ssize_t n = 0;

	if (fdtext) {
		uint64_t fd;
		if (parse_u64(fdtext, &fd) < 0 || fd > 1 << 20)
			return error_set(err, AEGIS_E_INVALID, 0, "secrets: AEGIS_SECRETS_KEY_FD is not a descriptor");
		while (n < 64) {
			ssize_t r = read((int)fd, buf + n, (size_t)(64 - n));
			if (r <= 0)
				break;
			n += r;
		}
		hex = buf;
	}
	if (!hex)
		return 0;
	if (strlen(hex) != 64) {
		OPENSSL_cleanse(buf, sizeof buf);
		return error_set(err, AEGIS_E_INVALID, 0, "secrets: the given master key must be 64 hex digits");
	}
	for (int i = 0; i < 32; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			OPENSSL_cleanse(buf, sizeof buf);
			return error_set(err, AEGIS_E_INVALID, 0, "secrets: the given master key must be 64 hex digits");
		}
		key[i] = (unsigned char)(hi << 4 | lo);
	}
	OPENSSL_cleanse(buf, sizeof buf);
	return 1;
}

/* The key file: made on first use (O_EXCL, 0600), else checked and read. */
static int key_from_file(struct secrets *s, struct aegis_error *err)
{
	struct stat st;
	ssize_t n;
	int fd = openat(s->dirfd, KEYFILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT) {
		fd = openat(s->dirfd, KEYFILE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return error_sys(err, "secrets: create the master key");
		if (RAND_bytes(s->key, sizeof s->key) != 1 || write_all(fd, s->key, sizeof s->key) < 0 ||
		    fsync(fd) < 0) {
			close(fd);
			unlinkat(s->dirfd, KEYFILE, 0);
			return error_set(err, AEGIS_E_SETUP, errno, "secrets: write the master key");
		}
		close(fd);
		fsync(s->dirfd);
		return 0;
	}
	if (fd < 0)
		return error_set(err, AEGIS_E_INVALID, errno, "secrets: the master key (%s)",
				 errno == ELOOP ? "a symlink: refused" : "cannot open");
	if (fstat(fd, &st) < 0 || private_enough(&st, "the master key", err) < 0 ||
	    (!S_ISREG(st.st_mode) && error_set(err, AEGIS_E_INVALID, 0, "secrets: the master key is not a file"))) {
		close(fd);
		return -1;
	}
	n = read(fd, s->key, sizeof s->key);
	close(fd);
	if (n != (ssize_t)sizeof s->key)
		return error_set(err, AEGIS_E_INVALID, 0, "secrets: the master key is not 32 bytes");
	return 0;
}

int secrets_open(struct secrets *s, const char *dir, struct aegis_error *err)
{
	struct stat st;
	int r;

	memset(s, 0, sizeof *s);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return error_sys(err, "secrets: create %s", dir);
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->dirfd < 0)
		return error_set(err, AEGIS_E_INVALID, errno, "secrets: %s (%s)", dir,
				 errno == ELOOP || errno == ENOTDIR ? "a symlink or not a directory: refused"
								    : "cannot open");
	if (fstat(s->dirfd, &st) < 0 || private_enough(&st, "the store's directory", err) < 0)
		goto fail;
	if ((r = key_from_env(s->key, err)) < 0 || (r == 0 && key_from_file(s, err) < 0))
		goto fail;
	return 0;
fail:
	secrets_close(s);
	return -1;
}

void secrets_close(struct secrets *s)
{
	OPENSSL_cleanse(s->key, sizeof s->key);
	if (s->dirfd >= 0)
		close(s->dirfd);
	s->dirfd = -1;
}

/* Writers (the CLI, the daemon) read, change and write the whole store:
 * one at a time, or a set racing a set loses one of them. */
static int store_lock(struct secrets *s, struct aegis_error *err)
{
	while (flock(s->dirfd, LOCK_EX) < 0)
		if (errno != EINTR)
			return error_sys(err, "secrets: lock the store");
	return 0;
}

static void store_unlock(struct secrets *s)
{
	flock(s->dirfd, LOCK_UN);
}

/* The store as JSON; a missing one is empty, a damaged one an error. */
static json_t *store_load(struct secrets *s, struct aegis_error *err)
{
	int fd = openat(s->dirfd, STORE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	json_error_t je;
	json_t *j;

	if (fd < 0 && errno == ENOENT)
		return json_pack("{s:i, s:{}}", "version", 1, "secrets");
	if (fd < 0)
		return error_sys(err, "secrets: open the store"), NULL;
	j = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
	close(fd);
	if (!j || json_integer_value(json_object_get(j, "version")) != 1 ||
	    !json_is_object(json_object_get(j, "secrets"))) {
		json_decref(j);
		error_set(err, AEGIS_E_INVALID, 0, "secrets: the store is damaged (%s); nothing was changed",
			  j ? "not a version 1 store" : je.text);
		return NULL;
	}
	return j;
}

static int store_save(struct secrets *s, json_t *j, struct aegis_error *err)
{
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	int fd = -1, r = -1;

	if (text && (fd = openat(s->dirfd, "." STORE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
				 0600)) >= 0 &&
	    write_all(fd, text, strlen(text)) == 0 && fsync(fd) == 0 &&
	    renameat(s->dirfd, "." STORE ".tmp", s->dirfd, STORE) == 0 && fsync(s->dirfd) == 0)
		r = 0;
	else
		error_sys(err, "secrets: write the store");
	if (fd >= 0)
		close(fd);
	if (r < 0)
		unlinkat(s->dirfd, "." STORE ".tmp", 0);
	free(text);
	return r;
}

static json_t *b64(const unsigned char *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	json_t *j;

	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	j = json_string(out);
	free(out);
	return j;
}

/* Decode base64; -1 if malformed. */
static int unb64(const char *in, unsigned char **out, size_t *len)
{
	size_t n = strlen(in);
	int got;

	if (n % 4 || !(*out = malloc(n / 4 * 3 + 1)))
		return -1;
	got = EVP_DecodeBlock(*out, (const unsigned char *)in, (int)n);
	if (got < 0) {
		free(*out);
		return -1;
	}
	*len = (size_t)got - (n && in[n - 1] == '=') - (n > 1 && in[n - 2] == '=');
	return 0;
}

static void aad(const char *name, char *out, size_t len)
{
	snprintf(out, len, AAD_PREFIX "%s", name);
}

int secrets_set(struct secrets *s, const char *name, const void *value, size_t len, struct aegis_error *err)
{
	unsigned char nonce[NONCE_LEN], *ct = NULL;
	char ad[SECRET_NAME_MAX + 32];
	EVP_CIPHER_CTX *c = NULL;
	json_t *j, *all, *old;
	int n, r = -1;
	time_t now = time(NULL);

	if (!secrets_name_valid(name))
		return error_set(err, AEGIS_E_INVALID, 0, "secrets: not a secret name: must match ^[A-Za-z_][A-Za-z0-9_]{0,127}$");
	if (len > SECRET_VALUE_MAX)
		return error_set(err, AEGIS_E_INVALID, 0, "secrets: a value may be at most %d bytes", SECRET_VALUE_MAX);
	if (store_lock(s, err) < 0)
		return -1;
	if (!(j = store_load(s, err)))
		return store_unlock(s), -1;
	aad(name, ad, sizeof ad);
	if (RAND_bytes(nonce, sizeof nonce) != 1 || !(ct = malloc(len + TAG_LEN)) || !(c = EVP_CIPHER_CTX_new()) ||
	    EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_EncryptInit_ex(c, NULL, NULL, s->key, nonce) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)ad, (int)strlen(ad)) != 1 ||
	    EVP_EncryptUpdate(c, ct, &n, value, (int)len) != 1 || EVP_EncryptFinal_ex(c, ct + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + len) != 1) {
		error_set(err, AEGIS_E_SETUP, 0, "secrets: encryption failed");
		goto out;
	}
	all = json_object_get(j, "secrets");
	old = json_object_get(all, name);
	json_object_set_new(all, name, json_pack("{s:o, s:o, s:I, s:I}", "nonce", b64(nonce, sizeof nonce),
						 "data", b64(ct, len + TAG_LEN), "created",
						 old ? json_integer_value(json_object_get(old, "created")) : (json_int_t)now,
						 "updated", (json_int_t)now));
	r = store_save(s, j, err);
out:
	store_unlock(s);
	EVP_CIPHER_CTX_free(c);
	if (ct) {
		OPENSSL_cleanse(ct, len + TAG_LEN);
		free(ct);
	}
	json_decref(j);
	return r;
}

int secrets_get(struct secrets *s, const char *name, char **value, size_t *len, struct aegis_error *err)
{
	unsigned char *nonce = NULL, *ct = NULL;
	size_t nlen = 0, clen = 0;
	char ad[SECRET_NAME_MAX + 32];
	EVP_CIPHER_CTX *c = NULL;
	json_t *j, *e;
	int n, r = -1;

	*value = NULL;
	*len = 0;
	if (!secrets_name_valid(name))
		return error_set(err, AEGIS_E_INVALID, 0, "secrets: not a secret name: must match ^[A-Za-z_][A-Za-z0-9_]{0,127}$");
	if (!(j = store_load(s, err)))
		return -1;
	e = json_object_get(json_object_get(j, "secrets"), name);
	if (!e) {
		error_set(err, AEGIS_E_INVALID, 0, "secrets: no secret named %s", name);
		goto out;
	}
	if (!json_is_string(json_object_get(e, "nonce")) || !json_is_string(json_object_get(e, "data")) ||
	    unb64(json_string_value(json_object_get(e, "nonce")), &nonce, &nlen) < 0 || nlen != NONCE_LEN ||
	    unb64(json_string_value(json_object_get(e, "data")), &ct, &clen) < 0 || clen < TAG_LEN) {
		error_set(err, AEGIS_E_INVALID, 0, "secrets: the entry for %s is damaged", name);
		goto out;
	}
	aad(name, ad, sizeof ad);
	if (!(*value = malloc(clen - TAG_LEN + 1)) || !(c = EVP_CIPHER_CTX_new()) ||
	    EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_DecryptInit_ex(c, NULL, NULL, s->key, nonce) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &n, (const unsigned char *)ad, (int)strlen(ad)) != 1 ||
	    EVP_DecryptUpdate(c, (unsigned char *)*value, &n, ct, (int)(clen - TAG_LEN)) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, ct + clen - TAG_LEN) != 1 ||
	    EVP_DecryptFinal_ex(c, (unsigned char *)*value + n, &n) != 1) {
		/* never a half-decrypted value: nothing leaves on a bad tag */
		secrets_wipe(*value, clen - TAG_LEN + 1);
		*value = NULL;
		error_set(err, AEGIS_E_INVALID, 0,
			  "secrets: the entry for %s does not decrypt (tampered with, moved from another name, "
			  "or another master key)", name);
		goto out;
	}
	*len = clen - TAG_LEN;
	(*value)[*len] = '\0';
	r = 0;
out:
	EVP_CIPHER_CTX_free(c);
	free(nonce);
	free(ct);
	json_decref(j);
	return r;
}

int secrets_delete(struct secrets *s, const char *name, struct aegis_error *err)
{
	json_t *j;
	int r;

	if (store_lock(s, err) < 0)
		return -1;
	if (!(j = store_load(s, err)))
		return store_unlock(s), -1;
	if (json_object_del(json_object_get(j, "secrets"), name) < 0)
		r = error_set(err, AEGIS_E_INVALID, 0, "secrets: no secret named %s", name);
	else
		r = store_save(s, j, err);
	store_unlock(s);
	json_decref(j);
	return r;
}

char *secrets_list(struct secrets *s, struct aegis_error *err)
{
	json_t *j = store_load(s, err), *out, *e;
	const char *name;
	char *text;

	if (!j)
		return NULL;
	out = json_array();
	json_object_foreach(json_object_get(j, "secrets"), name, e)
		json_array_append_new(out, json_pack("{s:s, s:O, s:O}", "name", name, "created",
						     json_object_get(e, "created"), "updated",
						     json_object_get(e, "updated")));
	text = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	json_decref(j);
	return text;
}
