/* test_secrets.c — the encrypted secrets store: round trips, tampering of
 * every part of an entry, entries swapped between names, a truncated store,
 * key files others could read, and nonce uniqueness over 100,000
 * encryptions across reopenings (issue 7). */
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/common/error.h"
#include "../../src/common/secrets.h"
#include "tap.h"

/* on tmpfs: 100,000 whole-file writes with fsync are quick there */
static char dir[] = "/dev/shm/aegis-secrets-test-XXXXXX";

/* two at a time may be in use (rename) */
static char *path(const char *name)
{
	static char p[2][512];
	static int turn;
	char *out = p[turn++ % 2];

	snprintf(out, sizeof p[0], "%s/secrets/%s", dir, name);
	return out;
}

static char *store_dir(void)
{
	static char p[512];
	snprintf(p, sizeof p, "%s/secrets", dir);
	return p;
}

static bool get_is(struct secrets *s, const char *name, const char *want)
{
	struct aegis_error err = { 0 };
	char *v;
	size_t len;
	bool same;

	if (secrets_get(s, name, &v, &len, &err) < 0)
		return false;
	same = len == strlen(want) && !memcmp(v, want, len);
	secrets_wipe(v, len);
	return same;
}

/* Rewrite one field of one entry in the store file with f applied. */
static void edit(const char *name, const char *field, void (*f)(char *b64))
{
	json_t *j = json_load_file(path("secrets.json"), 0, NULL);
	json_t *e = json_object_get(json_object_get(j, "secrets"), name);
	char *v = strdup(json_string_value(json_object_get(e, field)));

	f(v);
	json_object_set_new(e, field, json_string(v));
	json_dump_file(j, path("secrets.json"), 0);
	json_decref(j);
	free(v);
}

/* base64 letters: flipping one changes six bits of the bytes */
static void flip_first(char *b) { b[0] = b[0] == 'A' ? 'B' : 'A'; }
static void flip_last_data(char *b) { size_t n = strlen(b); char *c = b + n - 3; *c = *c == 'A' ? 'B' : 'A'; }
static void flip_middle(char *b) { size_t n = strlen(b); b[n / 2] = b[n / 2] == 'A' ? 'B' : 'A'; }

static int cmp(const void *a, const void *b)
{
	return memcmp(a, b, 12);
}

int main(void)
{
	struct aegis_error err = { 0 };
	struct secrets s;
	char *list;

	if (!mkdtemp(dir))
		return 1;
	ok(secrets_open(&s, store_dir(), &err) == 0, "a store is made on first use: %s", err.msg);
	{
		struct stat st;
		ok(stat(path("master.key"), &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32,
		   "the master key: 32 bytes, 0600");
	}
	ok(secrets_set(&s, "API_KEY", "canary-1234", 11, &err) == 0, "set");
	ok(secrets_set(&s, "OTHER", "second value", 12, &err) == 0, "set another");
	ok(get_is(&s, "API_KEY", "canary-1234") && get_is(&s, "OTHER", "second value"), "both read back");
	list = secrets_list(&s, &err);
	ok(list && strstr(list, "API_KEY") && !strstr(list, "canary"), "list: names and times, never values (%s)",
	   list ? list : err.msg);
	free(list);
	{
		FILE *f = fopen(path("secrets.json"), "r");
		char buf[4096] = { 0 };
		ok(f && fread(buf, 1, sizeof buf - 1, f) > 0 && !strstr(buf, "canary") && !strstr(buf, "second value"),
		   "the store holds no value in the clear");
		if (f)
			fclose(f);
	}
	ok(secrets_set(&s, "bad-name", "x", 1, &err) < 0 && strstr(err.msg, "not a secret name"), "bad name refused");
	ok(secrets_set(&s, "../x", "x", 1, &err) < 0, "traversal-looking name refused");

	/* tampering: nonce, ciphertext, tag; each detected, the other entry fine */
	edit("API_KEY", "nonce", flip_first);
	ok(!get_is(&s, "API_KEY", "canary-1234") && strstr(err.msg, "") && get_is(&s, "OTHER", "second value"),
	   "a flipped nonce is detected, the other secret still reads");
	ok(secrets_set(&s, "API_KEY", "canary-1234", 11, &err) == 0, "set again");
	edit("API_KEY", "data", flip_first);
	{
		char *v = NULL;
		size_t len;
		ok(secrets_get(&s, "API_KEY", &v, &len, &err) < 0 && !v && strstr(err.msg, "does not decrypt"),
		   "a flipped ciphertext bit: refused, no garbage returned (%s)", err.msg);
	}
	ok(secrets_set(&s, "API_KEY", "canary-1234", 11, &err) == 0, "set again");
	edit("API_KEY", "data", flip_last_data);
	ok(!get_is(&s, "API_KEY", "canary-1234"), "a flipped tag is detected");
	ok(secrets_set(&s, "API_KEY", "canary-1234", 11, &err) == 0, "set again");
	edit("API_KEY", "data", flip_middle);
	ok(!get_is(&s, "API_KEY", "canary-1234") && get_is(&s, "OTHER", "second value"), "a flipped middle byte too");
	/* swap: the name is bound, an entry moved under another name fails */
	ok(secrets_set(&s, "API_KEY", "canary-1234", 11, &err) == 0, "set again");
	{
		json_t *j = json_load_file(path("secrets.json"), 0, NULL), *all = json_object_get(j, "secrets");
		json_t *a = json_incref(json_object_get(all, "API_KEY")), *b = json_incref(json_object_get(all, "OTHER"));
		json_object_set_new(all, "API_KEY", b);
		json_object_set_new(all, "OTHER", a);
		json_dump_file(j, path("secrets.json"), 0);
		json_decref(j);
	}
	ok(!get_is(&s, "API_KEY", "second value") && !get_is(&s, "OTHER", "canary-1234") &&
	   strstr(err.msg, "does not decrypt"), "entries swapped between names do not decrypt");
	/* a truncated store: reported, and nothing is written over it */
	{
		struct stat st;
		(void)!truncate(path("secrets.json"), 40);
		ok(secrets_set(&s, "NEW", "v", 1, &err) < 0 && strstr(err.msg, "damaged") &&
		   stat(path("secrets.json"), &st) == 0 && st.st_size == 40,
		   "a truncated store is reported and left as it is (%s)", err.msg);
		unlink(path("secrets.json"));
	}
	secrets_close(&s);

	/* key file others could read, or a symlink: refused */
	chmod(path("master.key"), 0644);
	ok(secrets_open(&s, store_dir(), &err) < 0 && strstr(err.msg, "open to others"),
	   "a key file open to others is refused: %s", err.msg);
	chmod(path("master.key"), 0600);
	rename(path("master.key"), path("real.key"));
	(void)!symlink("real.key", path("master.key"));
	ok(secrets_open(&s, store_dir(), &err) < 0 && strstr(err.msg, "symlink"), "a symlinked key is refused: %s",
	   err.msg);
	unlink(path("master.key"));
	rename(path("real.key"), path("master.key"));
	chmod(store_dir(), 0755);
	ok(secrets_open(&s, store_dir(), &err) < 0 && strstr(err.msg, "directory"), "an open directory is refused");
	chmod(store_dir(), 0700);
	/* a key from the environment instead of the file */
	setenv("AEGIS_SECRETS_KEY", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 1);
	ok(secrets_open(&s, store_dir(), &err) == 0 && secrets_set(&s, "ENVKEY", "v1", 2, &err) == 0 &&
	   get_is(&s, "ENVKEY", "v1"), "a master key from $AEGIS_SECRETS_KEY");
	secrets_close(&s);
	unsetenv("AEGIS_SECRETS_KEY");
	ok(secrets_open(&s, store_dir(), &err) == 0 && !get_is(&s, "ENVKEY", "v1"),
	   "another key cannot read it");
	secrets_close(&s);
	setenv("AEGIS_SECRETS_KEY", "xyz", 1);
	ok(secrets_open(&s, store_dir(), &err) < 0 && strstr(err.msg, "64 hex"), "a malformed key is refused");
	unsetenv("AEGIS_SECRETS_KEY");

	/* nonces: 100,000 encryptions over 10 openings of the store, all distinct */
	{
		enum { N = 100000, PER = 10000 };
		unsigned char (*nonces)[12] = malloc((size_t)N * 12);
		int k = 0, dup = 0;
		for (int round = 0; round < N / PER && nonces; round++) {
			ok(secrets_open(&s, store_dir(), &err) == 0, "reopen %d", round);
			for (int i = 0; i < PER; i++, k++) {
				json_t *j, *e;
				size_t len;
				unsigned char *raw;
				secrets_set(&s, "N", "x", 1, &err);
				j = json_load_file(path("secrets.json"), 0, NULL);
				e = json_object_get(json_object_get(j, "secrets"), "N");
				len = strlen(json_string_value(json_object_get(e, "nonce")));
				raw = malloc(len);
				EVP_DecodeBlock(raw, (const unsigned char *)json_string_value(json_object_get(e, "nonce")), (int)len);
				memcpy(nonces[k], raw, 12);
				free(raw);
				json_decref(j);
			}
			secrets_close(&s);
		}
		qsort(nonces, (size_t)k, 12, cmp);
		for (int i = 1; i < k; i++)
			dup += !memcmp(nonces[i - 1], nonces[i], 12);
		ok(k == N && dup == 0, "%d encryptions, %d repeated nonces", k, dup);
		free(nonces);
	}
	{
		char cmd[600];
		snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
		(void)!system(cmd);
	}
	return tap_done();
}
