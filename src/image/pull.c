/* pull.c — `aegis image pull REF`: manifest (through an index to this
 * host's platform), config, layers; every document and blob checked
 * against its digest before it is stored, layers unpacked in parallel,
 * and the reference written last: until then the store holds nothing
 * that names a half-pulled image. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/hash.h"
#include "../common/imageref.h"
#include "../common/util.h"
#include "download.h"
#include "image.h"
#include "registry.h"

struct pulled {
	char index[72], digest[72];
	char *index_doc, *manifest, *config;
	size_t index_len, manifest_len, config_len;
	struct oci_manifest m;
	struct oci_config c;
};

static int check_digest(const char *what, const char *want, const char *buf, size_t len,
			char got[72], struct aegis_error *err)
{
	char hex[HASH_HEX_LEN + 1];

	hash_sha256_hex(buf, len, hex);
	snprintf(got, 72, "sha256:%s", hex);
	if (want && *want && strcmp(got, want) != 0) {
		image_fail_kind(FAIL_DIGEST);
		return error_set(err, AEGIS_E_INVALID, 0, "digest mismatch: %s %s has %s", what, want, got);
	}
	return 0;
}

/* The platform manifest REF stands for, and its config. */
static int fetch_meta(struct registry *r, struct pulled *p, struct aegis_error *err)
{
	struct http_resp resp = { 0 };
	const char *reference = r->ref.digest[0] ? r->ref.digest : r->ref.tag;
	char got[72];
	enum oci_kind kind;

	if (registry_manifest(r, reference, &resp, err) < 0 ||
	    check_digest("manifest", r->ref.digest, resp.body, resp.len, got, err) < 0)
		goto fail;
	if (oci_kind_of(resp.ctype, resp.body, resp.len, &kind, err) < 0) {
		image_fail_kind(FAIL_MEDIA_TYPE);
		goto fail;
	}
	if (kind == OCI_KIND_INDEX) {
		struct oci_index idx;
		char os[32], arch[32], variant[32], child[72];
		int pick;
		if (oci_parse_index(resp.body, resp.len, &idx, err) < 0)
			goto fail;
		oci_host_platform(os, arch, variant);
		pick = oci_select_platform(&idx, os, arch, variant, err);
		if (pick >= 0)
			snprintf(child, sizeof child, "%s", idx.manifests[pick].digest);
		oci_index_free(&idx);
		if (pick < 0) {
			image_fail_kind(FAIL_NOT_FOUND);
			goto fail;
		}
		snprintf(p->index, sizeof p->index, "%s", got);
		p->index_doc = resp.body;
		p->index_len = resp.len;
		resp.body = NULL;
		if (registry_manifest(r, child, &resp, err) < 0 ||
		    check_digest("manifest", child, resp.body, resp.len, got, err) < 0)
			goto fail;
		if (oci_kind_of(resp.ctype, resp.body, resp.len, &kind, err) < 0 ||
		    (kind != OCI_KIND_MANIFEST &&
		     error_set(err, AEGIS_E_INVALID, 0, "wrong media type: %s is an index in an index", child))) {
			image_fail_kind(FAIL_MEDIA_TYPE);
			goto fail;
		}
	}
	if (oci_parse_manifest(resp.body, resp.len, &p->m, err) < 0) {
		image_fail_kind(strstr(err->msg, "media type") ? FAIL_MEDIA_TYPE : FAIL_INVALID);
		goto fail;
	}
	snprintf(p->digest, sizeof p->digest, "%s", got);
	p->manifest = resp.body;
	p->manifest_len = resp.len;
	resp.body = NULL;
	if (p->m.config.size > OCI_CONFIG_MAX) {
		image_fail_kind(FAIL_TOO_LARGE);
		error_set(err, AEGIS_E_INVALID, 0, "image config %s declares %llu bytes (over %u)",
			  p->m.config.digest, (unsigned long long)p->m.config.size, OCI_CONFIG_MAX);
		goto fail;
	}
	if (registry_blob_small(r, p->m.config.digest, (size_t)p->m.config.size, &resp, err) < 0 ||
	    check_digest("config", p->m.config.digest, resp.body, resp.len, got, err) < 0)
		goto fail;
	p->config = resp.body;
	p->config_len = resp.len;
	resp.body = NULL;
	if (oci_parse_config(p->config, p->config_len, &p->c, err) < 0)
		goto fail;
	if (p->c.n_diff_ids != p->m.n_layers) {
		image_fail_kind(FAIL_INVALID);
		error_set(err, AEGIS_E_INVALID, 0, "image %s: %zu layers but %zu diff_ids in its config",
			  p->digest, p->m.n_layers, p->c.n_diff_ids);
		goto fail;
	}
	return 0;
fail:
	http_resp_free(&resp);
	return -1;
}

/* --- unpacking, a worker process per layer (as many as CPUs) --- */

static pid_t puller;	/* the pull's pid, which its workers die with */

struct worker {
	pid_t pid;
	int fd;		/* its error message, if any */
	size_t layer;
};

static void worker_main(struct store *s, struct pulled *p, size_t i, bool verified, int out)
{
	struct aegis_error err = { 0 };
	char name[96];
	_cleanup_close_ int blob = -1;

	/* a pull killed with -9 takes its unpacking with it */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != puller)
		_exit(1);
	imagefs_blob_name(p->m.layers[i].digest, name);
	blob = openat(s->fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (store_has_layer(s, p->c.diff_ids[i]))
		_exit(0);
	if (blob < 0) {
		error_sys(&err, "layer %s: blob %s", p->c.diff_ids[i], p->m.layers[i].digest);
	} else if ((verified || store_verify_fd(blob, p->m.layers[i].digest, &err) == 0) &&
		   store_unpack_layer(s, blob, p->c.diff_ids[i], &err) == 0) {
		/* the compressed copy is not needed once the layer is there */
		unlinkat(s->fd, name, 0);
		_exit(0);
	}
	(void)!write(out, err.msg, strlen(err.msg) + 1);
	(void)!write(out, image_fail_name(), strlen(image_fail_name()) + 1);
	_exit(1);
}

static int reap(struct worker *w, size_t *n, struct progress *pr, struct aegis_error *err)
{
	char msg[512] = "";
	int status, r = 0;
	pid_t pid;
	ssize_t got;

	while ((pid = wait(&status)) < 0 && errno == EINTR)
		;
	for (size_t k = 0; k < *n; k++) {
		if (w[k].pid != pid)
			continue;
		got = read(w[k].fd, msg, sizeof msg - 1);
		msg[got > 0 ? got : 0] = '\0';
		close(w[k].fd);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			/* the worker wrote "message\0kind" */
			size_t len = strlen(msg);
			error_set(err, AEGIS_E_INVALID, 0, "%s", msg[0] ? msg : "layer: unpacking failed");
			image_fail_kind(got > 0 && len + 1 < (size_t)got ? image_fail_from_name(msg + len + 1) :
					FAIL_LAYER);
			r = -1;
		}
		progress_update(pr, w[k].layer, pr->on ? pr->lines[w[k].layer].total : 0, r ? "failed" : "done");
		w[k] = w[--*n];
		return r;
	}
	return 0;
}

/* Was layer i's blob downloaded and checked by this process just now? */
static bool fresh(const struct dl_item *items, size_t n_items, const char *digest)
{
	for (size_t k = 0; k < n_items; k++)
		if (!strcmp(items[k].digest, digest))
			return items[k].verified;
	return false;
}

static int unpack_layers(struct store *s, struct pulled *p, const struct dl_item *items, size_t n_items,
			 struct progress *pr, struct aegis_error *err)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t max = cpus > 0 ? (size_t)cpus : 1, n = 0;
	struct worker *w = calloc(max, sizeof *w);
	int r = 0;

	if (!w)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "unpack");
	puller = getpid();
	fflush(NULL);
	for (size_t i = 0; i < p->m.n_layers && r == 0; i++) {
		int pipefd[2];
		if (store_has_layer(s, p->c.diff_ids[i]))
			continue;
		while (n == max && r == 0)
			r = reap(w, &n, pr, err);
		if (r < 0 || pipe2(pipefd, O_CLOEXEC) < 0)
			break;
		progress_update(pr, i, pr->on ? pr->lines[i].total : 0, "unpacking");
		progress_draw(pr, true);
		w[n] = (struct worker){ .fd = pipefd[0], .layer = i };
		if ((w[n].pid = fork()) == 0)
			worker_main(s, p, i, fresh(items, n_items, p->m.layers[i].digest), pipefd[1]);
		close(pipefd[1]);
		if (w[n].pid < 0) {
			close(pipefd[0]);
			r = error_sys(err, "unpack: fork");
			break;
		}
		n++;
	}
	while (n > 0) {
		if (r < 0)
			for (size_t k = 0; k < n; k++)
				kill(w[k].pid, SIGKILL);
		if (reap(w, &n, pr, err) < 0)
			r = -1;
	}
	free(w);
	return r;
}

/* The layers to fetch: those not unpacked yet, each blob once. */
static size_t wanted(struct store *s, struct pulled *p, struct dl_item *items, struct progress *pr)
{
	size_t n = 0;

	for (size_t i = 0; i < p->m.n_layers; i++) {
		bool dup = false;
		progress_set(pr, i, p->m.layers[i].digest, p->m.layers[i].size, "waiting");
		if (store_has_layer(s, p->c.diff_ids[i])) {
			progress_update(pr, i, p->m.layers[i].size, "exists");
			continue;
		}
		for (size_t k = 0; k < n; k++)
			dup |= !strcmp(items[k].digest, p->m.layers[i].digest);
		if (dup)
			continue;
		items[n] = (struct dl_item){ .size = p->m.layers[i].size, .line = i };
		snprintf(items[n].digest, sizeof items[n].digest, "%s", p->m.layers[i].digest);
		snprintf(items[n].diff_id, sizeof items[n].diff_id, "%s", p->c.diff_ids[i]);
		n++;
	}
	return n;
}

static int pull(struct store *s, struct registry *r, const char *canon, const struct image_opts *o,
		json_t **result, struct aegis_error *err)
{
	struct pulled p = { 0 };
	struct progress pr;
	struct dl_item *items = NULL;
	uint64_t t0 = now_us(), fetched = 0;
	size_t n = 0;
	int ret = -1;

	progress_init(&pr, false, 0);
	if (fetch_meta(r, &p, err) < 0)
		goto out;
	for (size_t i = 0; i < p.m.n_layers; i++)
		if (p.m.layers[i].size > s->layer_max) {
			/* before a byte is fetched: the disk is not the registry's to fill */
			image_fail_kind(FAIL_TOO_LARGE);
			error_set(err, AEGIS_E_INVALID, 0, "layer %s declares %llu bytes, over the limit of %llu",
				  p.m.layers[i].digest, (unsigned long long)p.m.layers[i].size,
				  (unsigned long long)s->layer_max);
			goto out;
		}
	if (!(items = calloc(p.m.n_layers + 1, sizeof *items))) {
		error_set(err, AEGIS_E_SETUP, ENOMEM, "pull");
		goto out;
	}
	progress_init(&pr, !o->quiet && isatty(2), p.m.n_layers);
	n = wanted(s, &p, items, &pr);
	if (download_blobs(s, r, items, n, &pr, err) < 0 || unpack_layers(s, &p, items, n, &pr, err) < 0)
		goto out;
	progress_draw(&pr, true);
	/* the documents last: until the layers are there, nothing names them */
	if ((p.index_doc && store_put_blob(s, p.index, p.index_doc, p.index_len, err) < 0) ||
	    store_put_blob(s, p.digest, p.manifest, p.manifest_len, err) < 0 ||
	    store_put_blob(s, p.m.config.digest, p.config, p.config_len, err) < 0 ||
	    store_set_ref(s, canon, p.digest, p.index, err) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		fetched += items[i].fetched;
	*result = json_pack("{s:s, s:s, s:s?, s:I, s:I, s:I}", "ref", canon, "digest", p.digest,
			    "index", p.index[0] ? p.index : NULL, "layers", (json_int_t)p.m.n_layers,
			    "downloaded_bytes", (json_int_t)fetched,
			    "time_ms", (json_int_t)((now_us() - t0) / 1000));
	ret = 0;
out:
	progress_free(&pr);
	free(items);
	free(p.index_doc);
	free(p.manifest);
	free(p.config);
	oci_manifest_free(&p.m);
	oci_config_free(&p.c);
	return ret;
}

int cmd_pull(const char *ref, const struct image_opts *o)
{
	struct aegis_error err = { 0 };
	struct image_ref r;
	struct registry reg;
	struct store s;
	char canon[512];
	json_t *result = NULL;
	int ret;

	if (imageref_parse(ref, &r, &err) < 0 || imageref_format(&r, canon, sizeof canon) < 0) {
		image_fail_kind(FAIL_INVALID);
		return image_report_error(o, &err);
	}
	if (registry_init(&reg, &r, o->insecure, &err) < 0)
		return image_report_error(o, &err);
	if (store_open(&s, o->state, LOCK_SH, &err) < 0) {
		registry_free(&reg);
		return image_report_error(o, &err);
	}
	ret = pull(&s, &reg, canon, o, &result, &err);
	store_close(&s);
	registry_free(&reg);
	if (ret < 0)
		return image_report_error(o, &err);
	if (!o->quiet)
		fprintf(stderr, "pulled %s (%s)\n", canon, json_string_value(json_object_get(result, "digest")));
	image_report_json(o, result);
	return 0;
}
