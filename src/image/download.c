/* download.c — layer blobs over a libcurl multi handle (a few in
 * parallel), each into blobs/sha256/<hex>.partial and renamed to its name
 * only once it has exactly its declared size and its digest.
 *
 * A blob's lock (locks/blob-<hex>) is held from the decision to download
 * to the rename: a second pull of the same image waits for it, then finds
 * the blob there. A .partial left by a killed pull is resumed with a
 * Range request; a transfer cut short is resumed the same way, a few
 * times. Bytes beyond the declared size stop the transfer at once: a
 * registry cannot fill the disk with an endless blob. */
#define OPENSSL_API_COMPAT 10101
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/util.h"
#include "download.h"

#define PARALLEL 4
#define TRIES 3
#define WAIT_POLL_MS 100

enum dl_state { DL_PENDING, DL_ACTIVE, DL_DONE };

struct dl {
	struct dl_item *item;
	enum dl_state state;
	int lock, fd;
	uint64_t have, start;
	SHA256_CTX sha;
	CURL *easy;
	int tries;
	long code;
	bool over;		/* more bytes than declared */
	struct http_resp errbody;
	struct progress *p;
};

static void to_hex(const unsigned char *md, char *out)
{
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

static size_t on_data(char *buf, size_t size, size_t n, void *arg)
{
	struct dl *d = arg;
	size_t len = size * n;

	if (d->code == 0)
		curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &d->code);
	if (d->code != 200 && d->code != 206) {
		/* an error document: keep its start for the message */
		size_t room = d->errbody.len < 4096 ? 4096 - d->errbody.len : 0;
		char *b = room ? realloc(d->errbody.body, d->errbody.len + len + 1) : NULL;
		if (b) {
			d->errbody.body = b;
			memcpy(b + d->errbody.len, buf, len < room ? len : room);
			d->errbody.len += len < room ? len : room;
			b[d->errbody.len] = '\0';
		}
		return len;
	}
	if (d->code == 200 && d->have > 0 && d->have == d->start) {
		/* the registry ignored our Range: start over */
		if (ftruncate(d->fd, 0) < 0 || lseek(d->fd, 0, SEEK_SET) < 0)
			return 0;
		d->have = d->start = 0;
		SHA256_Init(&d->sha);
	}
	if (d->have + len > d->item->size) {
		d->over = true;
		return 0;
	}
	if (write_all(d->fd, buf, len) < 0)
		return 0;
	SHA256_Update(&d->sha, buf, len);
	d->have += len;
	d->item->fetched += len;
	progress_update(d->p, d->item->line, d->have, "downloading");
	return len;
}

static bool blob_present(struct store *s, const char *digest)
{
	char name[96];

	imagefs_blob_name(digest, name);
	return faccessat(s->fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Hash what a .partial already holds, so the resumed download continues
 * the digest; a partial longer than the blob is junk. */
static int resume_point(struct dl *d)
{
	unsigned char buf[1 << 16];
	struct stat st;
	ssize_t n;

	SHA256_Init(&d->sha);
	if (fstat(d->fd, &st) < 0)
		return -1;
	if ((uint64_t)st.st_size > d->item->size && ftruncate(d->fd, 0) < 0)
		return -1;
	d->have = 0;
	if (lseek(d->fd, 0, SEEK_SET) < 0)
		return -1;
	while ((n = read(d->fd, buf, sizeof buf)) > 0) {
		SHA256_Update(&d->sha, buf, (size_t)n);
		d->have += (uint64_t)n;
	}
	return n < 0 ? -1 : 0;
}

static void release(struct dl *d)
{
	if (d->fd >= 0)
		close(d->fd);
	if (d->lock >= 0)
		close(d->lock);
	d->fd = d->lock = -1;
	http_resp_free(&d->errbody);
}

/* Complete: the right size and digest → renamed into place. */
static int finish(struct store *s, struct dl *d, struct aegis_error *err)
{
	char partial[112], name[96], hex[65];
	unsigned char md[SHA256_DIGEST_LENGTH];

	imagefs_blob_name(d->item->digest, name);
	snprintf(partial, sizeof partial, "%s.partial", name);
	SHA256_Final(md, &d->sha);
	to_hex(md, hex);
	if (strcmp(hex, d->item->digest + 7) != 0) {
		/* a bad partial must not be resumed */
		unlinkat(s->fd, partial, 0);
		image_fail_kind(FAIL_DIGEST);
		return error_set(err, AEGIS_E_INVALID, 0, "digest mismatch: blob %s downloaded as sha256:%s",
				 d->item->digest, hex);
	}
	if (fsync(d->fd) < 0 || renameat(s->fd, partial, s->fd, name) < 0)
		return error_sys(err, "store blob %s", d->item->digest);
	progress_update(d->p, d->item->line, d->have, "downloaded");
	d->item->verified = true;
	d->state = DL_DONE;
	release(d);
	return 0;
}

static int start(struct registry *r, CURLM *multi, struct dl *d, struct aegis_error *err)
{
	char url[1024], range[64];

	if (!d->easy && !(d->easy = curl_easy_init()))
		return error_set(err, AEGIS_E_SETUP, 0, "curl: cannot start");
	curl_easy_reset(d->easy);
	registry_blob_url(r, d->item->digest, url, sizeof url);
	registry_setup(r, d->easy, url);
	curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(d->easy, CURLOPT_WRITEDATA, d);
	curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);
	if (d->have > 0) {
		snprintf(range, sizeof range, "%llu-", (unsigned long long)d->have);
		curl_easy_setopt(d->easy, CURLOPT_RANGE, range);
	}
	if (lseek(d->fd, (off_t)d->have, SEEK_SET) < 0)
		return error_sys(err, "blob %s", d->item->digest);
	d->start = d->have;
	d->code = 0;
	d->over = false;
	http_resp_free(&d->errbody);
	d->state = DL_ACTIVE;
	d->tries++;
	progress_update(d->p, d->item->line, d->have, "downloading");
	return curl_multi_add_handle(multi, d->easy) == CURLM_OK ? 0 :
		error_set(err, AEGIS_E_SETUP, 0, "curl: cannot add a transfer");
}

/* The blob is there, or the layer it unpacks to is (another pull may have
 * unpacked it and dropped the blob while this one waited for its lock). */
static bool have_it(struct store *s, const struct dl *d)
{
	return blob_present(s, d->item->digest) ||
	       (d->item->diff_id[0] && store_has_layer(s, d->item->diff_id));
}

/* Decide for a pending blob: there already, busy elsewhere, resumable, or
 * to fetch. 1 when it must wait for another process. */
static int prepare(struct store *s, struct dl *d, struct aegis_error *err)
{
	char lock[96], name[96], partial[112];

	if (have_it(s, d)) {
		d->state = DL_DONE;
		progress_update(d->p, d->item->line, d->item->size, "exists");
		return 0;
	}
	snprintf(lock, sizeof lock, "blob-%s", d->item->digest + 7);
	if ((d->lock = imagefs_lock(s->fd, lock, LOCK_EX | LOCK_NB, err)) < 0) {
		if (errno != EWOULDBLOCK)
			return -1;
		progress_update(d->p, d->item->line, 0, "waiting");
		return 1;
	}
	if (have_it(s, d)) {
		/* the other pull finished it while we looked */
		d->state = DL_DONE;
		release(d);
		progress_update(d->p, d->item->line, d->item->size, "exists");
		return 0;
	}
	imagefs_blob_name(d->item->digest, name);
	snprintf(partial, sizeof partial, "%s.partial", name);
	d->fd = openat(s->fd, partial, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (d->fd < 0 || resume_point(d) < 0)
		return error_sys(err, "blob %s: %s", d->item->digest, partial);
	return 0;
}

/* A transfer ended: done, resumable, or an error. */
static int ended(struct store *s, struct dl *d, CURLcode rc, struct aegis_error *err)
{
	char why[200];

	if (d->over) {
		char name[96], partial[112];
		imagefs_blob_name(d->item->digest, name);
		snprintf(partial, sizeof partial, "%s.partial", name);
		unlinkat(s->fd, partial, 0);
		image_fail_kind(FAIL_TOO_LARGE);
		return error_set(err, AEGIS_E_INVALID, 0, "blob %s is larger than its declared %llu bytes",
				 d->item->digest, (unsigned long long)d->item->size);
	}
	if (rc == CURLE_OK && d->code != 200 && d->code != 206) {
		d->errbody.code = d->code;
		registry_describe(&d->errbody, why, sizeof why);
		image_fail_kind(d->code == 404 ? FAIL_NOT_FOUND :
				d->code == 401 || d->code == 403 ? FAIL_AUTH : FAIL_NETWORK);
		return error_set(err, d->code == 404 ? AEGIS_E_NOTFOUND : AEGIS_E_SETUP, 0,
				 "%sblob %s: %s", d->code == 401 || d->code == 403 ? "auth failure: " : "",
				 d->item->digest, why);
	}
	if (rc == CURLE_OK && d->have == d->item->size)
		return finish(s, d, err);
	if (d->tries < TRIES) {
		d->state = DL_PENDING;	/* resume from what we have */
		return 0;
	}
	image_fail_kind(rc == CURLE_OK || rc == CURLE_PARTIAL_FILE ? FAIL_TRUNCATED : FAIL_NETWORK);
	return error_set(err, AEGIS_E_SETUP, 0, "%s blob %s: got %llu of %llu bytes after %d tries%s%s",
			 rc == CURLE_OK || rc == CURLE_PARTIAL_FILE ? "truncated" : "failed",
			 d->item->digest, (unsigned long long)d->have,
			 (unsigned long long)d->item->size, d->tries, rc == CURLE_OK ? "" : ": ",
			 rc == CURLE_OK ? "" : curl_easy_strerror(rc));
}

static int run(struct store *s, struct registry *r, CURLM *multi, struct dl *ds, size_t n,
	       struct progress *p, struct aegis_error *err)
{
	for (;;) {
		size_t active = 0, open = 0;
		int running, msgs;
		CURLMsg *m;
		for (size_t i = 0; i < n; i++)
			active += ds[i].state == DL_ACTIVE;
		for (size_t i = 0; i < n; i++) {
			struct dl *d = &ds[i];
			int w = 0;
			if (d->state != DL_PENDING)
				continue;
			if (d->fd < 0 && (w = prepare(s, d, err)) < 0)
				return -1;
			if (w == 0 && d->state == DL_PENDING && d->have == d->item->size) {
				if (finish(s, d, err) < 0)	/* a complete partial from before */
					return -1;
			} else if (w == 0 && d->state == DL_PENDING && active < PARALLEL) {
				if (start(r, multi, d, err) < 0)
					return -1;
				active++;
			}
		}
		for (size_t i = 0; i < n; i++)
			open += ds[i].state != DL_DONE;
		progress_draw(p, false);
		if (!open)
			return 0;
		if (curl_multi_perform(multi, &running) != CURLM_OK)
			return error_set(err, AEGIS_E_SETUP, 0, "curl: transfer failed");
		while ((m = curl_multi_info_read(multi, &msgs))) {
			struct dl *d;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&d);
			curl_multi_remove_handle(multi, m->easy_handle);
			if (ended(s, d, m->data.result, err) < 0)
				return -1;
		}
		curl_multi_poll(multi, NULL, 0, WAIT_POLL_MS, NULL);
	}
}

int download_blobs(struct store *s, struct registry *r, struct dl_item *items, size_t n,
		   struct progress *p, struct aegis_error *err)
{
	CURLM *multi = curl_multi_init();
	struct dl *ds = calloc(n + 1, sizeof *ds);
	int ret;

	if (!multi || !ds) {
		free(ds);
		if (multi)
			curl_multi_cleanup(multi);
		return error_set(err, AEGIS_E_SETUP, 0, "curl: cannot start");
	}
	for (size_t i = 0; i < n; i++)
		ds[i] = (struct dl){ .item = &items[i], .lock = -1, .fd = -1, .p = p };
	ret = run(s, r, multi, ds, n, p, err);
	for (size_t i = 0; i < n; i++) {
		if (ds[i].easy) {
			curl_multi_remove_handle(multi, ds[i].easy);
			curl_easy_cleanup(ds[i].easy);
		}
		release(&ds[i]);
	}
	curl_multi_cleanup(multi);
	free(ds);
	progress_draw(p, true);
	return ret;
}
