/* import.c — `aegis image import PATH`: an image from a file instead of a
 * registry. Three shapes: `docker save` tarballs (manifest.json and layer
 * tars), OCI archives (an OCI layout in a tar), OCI layout directories
 * (oci-layout, index.json, blobs/sha256/...).
 *
 * An archive is read once, front to back; each member is copied into
 * tmp/import-<pid>/ while it is hashed, so from then on a member is
 * known by its content. Nothing is ever created under a member's name:
 * names are only looked up, so a hostile archive's paths cannot point
 * anywhere. The layers go through the same unpacking as pulled ones. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/hash.h"
#include "../common/imageref.h"
#include "../common/util.h"
#include "fsutil.h"
#include "image.h"

#define MEMBERS_MAX 100000
#define LINK_HOPS 8

struct member {
	char *name;		/* cleaned path in the archive */
	char *link;		/* a symlink's or hardlink's target, cleaned; NULL for files */
	int n;			/* the copy: tmp/import-<pid>/<n> */
};

struct source {
	int dir;		/* layout dir, or the copies' dir */
	bool archive;
	struct member *m;
	size_t n, cap;
	char tmpname[64];	/* tmp/import-<pid> (archive) */
};

/* Archive member names as they are looked up: no "./", no leading '/'. */
static char *clean(const char *name, const char *base_dir)
{
	char joined[4096], out[4096];
	size_t o = 0;

	snprintf(joined, sizeof joined, "%s%s%s", base_dir ? base_dir : "", base_dir ? "/" : "", name);
	for (char *p = joined, *part; (part = strsep(&p, "/"));) {
		if (!*part || !strcmp(part, "."))
			continue;
		if (!strcmp(part, "..")) {
			char *slash = o ? memrchr(out, '/', o) : NULL;
			o = slash ? (size_t)(slash - out) : 0;
			continue;
		}
		o += (size_t)snprintf(out + o, sizeof out - o, "%s%s", o ? "/" : "", part);
		if (o >= sizeof out)
			return NULL;
	}
	out[o] = '\0';
	return strdup(out);
}

static struct member *find(struct source *src, const char *name)
{
	for (int hop = 0; hop < LINK_HOPS; hop++) {
		struct member *m = NULL;
		for (size_t i = src->n; i-- > 0;)	/* the last of equal names wins, as in tar */
			if (!strcmp(src->m[i].name, name)) {
				m = &src->m[i];
				break;
			}
		if (!m || !m->link)
			return m;
		name = m->link;
	}
	return NULL;
}

/* Open a file of the image: a copied member, or a file beneath the layout
 * directory (no symlinks, nothing outside). */
static int source_open(struct source *src, const char *path, struct aegis_error *err)
{
	char name[32];
	struct member *m;
	int fd;

	if (!src->archive) {
		fd = open_beneath(src->dir, path, O_RDONLY, 0);
		if (fd < 0)
			return error_set(err, AEGIS_E_INVALID, errno, "import: %s", path);
		return fd;
	}
	if (!(m = find(src, path)))
		return error_set(err, AEGIS_E_INVALID, 0, "import: the archive has no %s", path);
	snprintf(name, sizeof name, "%d", m->n);
	if ((fd = openat(src->dir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return error_sys(err, "import: %s", path);
	return fd;
}

static int source_read(struct source *src, const char *path, size_t max, char **buf, size_t *len,
		       struct aegis_error *err)
{
	_cleanup_close_ int fd = source_open(src, path, err);
	struct stat st;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max)
		return error_set(err, AEGIS_E_INVALID, 0, "import: %s is not a file of at most %zu bytes",
				 path, max);
	if (!(*buf = malloc((size_t)st.st_size + 1)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "import");
	if (read(fd, *buf, (size_t)st.st_size) != st.st_size) {
		free(*buf);
		return error_sys(err, "import: read %s", path);
	}
	(*buf)[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return 0;
}

static int add_member(struct source *src, struct archive *a, struct archive_entry *e,
		      struct aegis_error *err)
{
	const char *hl = archive_entry_hardlink(e), *sl = archive_entry_symlink(e);
	struct member *m;
	char *name = clean(archive_entry_pathname(e) ?: "", NULL);

	if (!name)
		return error_set(err, AEGIS_E_INVALID, 0, "import: member name too long");
	if (src->n == src->cap) {
		size_t cap = src->cap ? 2 * src->cap : 64;
		struct member *grown = cap <= MEMBERS_MAX ? realloc(src->m, cap * sizeof *grown) : NULL;
		if (!grown) {
			free(name);
			return error_set(err, AEGIS_E_INVALID, 0, "import: too many members");
		}
		src->m = grown;
		src->cap = cap;
	}
	m = &src->m[src->n];
	*m = (struct member){ .name = name, .n = (int)src->n };
	if (hl || (sl && archive_entry_filetype(e) == AE_IFLNK)) {
		char *dir = strdup(name), *slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		m->link = hl ? clean(hl, NULL) : clean(sl, slash && sl[0] != '/' ? dir : NULL);
		free(dir);
		src->n++;
		return m->link ? 0 : error_set(err, AEGIS_E_INVALID, 0, "import: bad link in the archive");
	}
	src->n++;
	if (archive_entry_filetype(e) != AE_IFREG)
		return 0;	/* directories and the rest: nothing to look up */
	{
		char fname[32];
		_cleanup_close_ int fd = -1;
		const void *block;
		size_t len;
		la_int64_t off;
		int r;
		snprintf(fname, sizeof fname, "%d", m->n);
		fd = openat(src->dir, fname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return error_sys(err, "import: copy %s", name);
		while ((r = archive_read_data_block(a, &block, &len, &off)) == ARCHIVE_OK)
			if (pwrite(fd, block, len, off) != (ssize_t)len)
				return error_sys(err, "import: copy %s", name);
		if (r != ARCHIVE_EOF)
			return error_set(err, AEGIS_E_INVALID, 0, "import: %s: %s", name,
					 archive_error_string(a));
		if (ftruncate(fd, archive_entry_size(e)) < 0)
			return error_sys(err, "import: copy %s", name);
	}
	return 0;
}

/* Remove what killed imports left behind (their pid is gone). */
static void clean_stale(int store)
{
	_cleanup_close_ int tmp = openat(store, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = tmp >= 0 ? opendir_at(tmp) : NULL;
	struct dirent *de;

	while (d && (de = readdir(d))) {
		int pid;
		if (sscanf(de->d_name, "import-%d", &pid) == 1 && kill(pid, 0) < 0 && errno == ESRCH)
			rmtree_at(tmp, de->d_name);
	}
	if (d)
		closedir(d);
}

static int read_archive(struct store *s, const char *path, struct source *src,
			struct aegis_error *err)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	int r;

	clean_stale(s->fd);
	snprintf(src->tmpname, sizeof src->tmpname, "tmp/import-%d", (int)getpid());
	rmtree_at(s->fd, src->tmpname);
	if (mkdirat(s->fd, src->tmpname, 0700) < 0 ||
	    (src->dir = openat(s->fd, src->tmpname, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		archive_read_free(a);
		return error_sys(err, "import: %s", src->tmpname);
	}
	src->archive = true;
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		error_set(err, AEGIS_E_INVALID, 0, "import %s: %s", path, archive_error_string(a));
		archive_read_free(a);
		return -1;
	}
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)
		if (add_member(src, a, e, err) < 0) {
			archive_read_free(a);
			return error_prefix(err, "%s", path);
		}
	if (r != ARCHIVE_EOF)
		error_set(err, AEGIS_E_INVALID, 0, "import %s: not a tar archive: %s", path,
			  archive_error_string(a));
	archive_read_free(a);
	return r == ARCHIVE_EOF ? 0 : -1;
}

static void source_free(struct store *s, struct source *src)
{
	for (size_t i = 0; i < src->n; i++) {
		free(src->m[i].name);
		free(src->m[i].link);
	}
	free(src->m);
	if (src->dir >= 0)
		close(src->dir);
	if (src->archive)
		rmtree_at(s->fd, src->tmpname);
}

/* --- the image, once its files can be opened --- */

struct imported {
	char digest[72];	/* platform manifest */
	char index[72];
	char refs[16][512];
	int n_refs;
	size_t layers;
};

static int add_name(struct imported *im, const char *name, struct aegis_error *err)
{
	struct image_ref r;

	if (im->n_refs == 16)
		return 0;
	if (imageref_parse(name, &r, err) < 0 || imageref_format(&r, im->refs[im->n_refs], 512) < 0)
		return error_prefix(err, "import");
	im->n_refs++;
	return 0;
}

/* Store a metadata blob by its OCI path, verified. */
static int put_meta(struct store *s, struct source *src, const char *digest, size_t max, char **buf,
		    size_t *len, struct aegis_error *err)
{
	char path[96];

	if (!imageref_is_digest(digest))
		return error_set(err, AEGIS_E_INVALID, 0, "import: '%.80s' is not a sha256 digest", digest);
	imagefs_blob_name(digest, path);
	if (source_read(src, path, max, buf, len, err) < 0)
		return -1;
	if (store_put_blob(s, digest, *buf, *len, err) < 0) {
		free(*buf);
		return error_prefix(err, "import");
	}
	return 0;
}

/* Unpack every layer of a manifest whose blobs the source has. */
static int unpack_layers(struct store *s, struct source *src, const struct oci_manifest *m,
			 const struct oci_config *c, bool docker_paths, char **docker_layers,
			 const struct image_opts *o, struct aegis_error *err)
{
	for (size_t i = 0; i < m->n_layers; i++) {
		char path[96];
		_cleanup_close_ int fd = -1;
		if (store_has_layer(s, c->diff_ids[i]))
			continue;
		if (docker_paths)
			snprintf(path, sizeof path, "%s", docker_layers[i]);
		else
			imagefs_blob_name(m->layers[i].digest, path);
		if ((fd = source_open(src, path, err)) < 0 ||
		    store_verify_fd(fd, m->layers[i].digest, err) < 0 ||
		    store_unpack_layer(s, fd, c->diff_ids[i], err) < 0)
			return -1;
		if (!o->quiet)
			fprintf(stderr, "  layer %.19s unpacked\n", c->diff_ids[i]);
	}
	return 0;
}

static int import_manifest(struct store *s, struct source *src, const char *digest,
			   struct imported *im, const struct image_opts *o, struct aegis_error *err)
{
	_cleanup_free_ char *buf = NULL, *cbuf = NULL;
	struct oci_manifest m;
	struct oci_config c;
	enum oci_kind kind;
	size_t len, clen;
	int r;

	if (put_meta(s, src, digest, OCI_MANIFEST_MAX, &buf, &len, err) < 0 ||
	    oci_kind_of(NULL, buf, len, &kind, err) < 0)
		return -1;
	if (kind == OCI_KIND_INDEX) {
		struct oci_index idx;
		char os[32], arch[32], variant[32], child[72];
		int pick;
		if (im->index[0])
			return error_set(err, AEGIS_E_INVALID, 0, "import: nested image index");
		if (oci_parse_index(buf, len, &idx, err) < 0)
			return -1;
		oci_host_platform(os, arch, variant);
		pick = oci_select_platform(&idx, os, arch, variant, err);
		if (pick >= 0)
			snprintf(child, sizeof child, "%s", idx.manifests[pick].digest);
		oci_index_free(&idx);
		snprintf(im->index, sizeof im->index, "%s", digest);
		return pick < 0 ? -1 : import_manifest(s, src, child, im, o, err);
	}
	if (oci_parse_manifest(buf, len, &m, err) < 0)
		return -1;
	r = put_meta(s, src, m.config.digest, OCI_CONFIG_MAX, &cbuf, &clen, err);
	if (r == 0 && (r = oci_parse_config(cbuf, clen, &c, err)) == 0) {
		if (c.n_diff_ids != m.n_layers)
			r = error_set(err, AEGIS_E_INVALID, 0, "import: %zu layers but %zu diff_ids",
				      m.n_layers, c.n_diff_ids);
		else
			r = unpack_layers(s, src, &m, &c, false, NULL, o, err);
		oci_config_free(&c);
	}
	snprintf(im->digest, sizeof im->digest, "%s", digest);
	im->layers = m.n_layers;
	oci_manifest_free(&m);
	return r;
}

/* A name an index.json entry gives its image: containerd's full name, or
 * an OCI ref.name that is a whole reference (a bare tag is not). */
static const char *entry_name(json_t *entry)
{
	json_t *ann = json_object_get(entry, "annotations");
	const char *full = json_string_value(json_object_get(ann, "io.containerd.image.name"));
	const char *ref = json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name"));

	if (full)
		return full;
	return ref && strpbrk(ref, ":/") ? ref : NULL;
}

static int finish(struct store *s, struct imported *im, const struct image_opts *o, json_t *out,
		  struct aegis_error *err)
{
	json_t *refs = json_array();

	if (o->name && (im->n_refs = 0, add_name(im, o->name, err) < 0)) {
		json_decref(refs);
		return -1;
	}
	if (im->n_refs == 0) {
		json_decref(refs);
		return error_set(err, AEGIS_E_INVALID, 0,
				 "import: the archive does not name image %s; give it one with --name REF",
				 im->digest);
	}
	for (int i = 0; i < im->n_refs; i++) {
		if (store_set_ref(s, im->refs[i], im->digest, im->index, err) < 0) {
			json_decref(refs);
			return -1;
		}
		json_array_append_new(refs, json_string(im->refs[i]));
		if (!o->quiet)
			fprintf(stderr, "imported %s (%s)\n", im->refs[i], im->digest);
	}
	json_array_append_new(out, json_pack("{s:s, s:s?, s:o, s:I}", "digest", im->digest, "index",
					     im->index[0] ? im->index : NULL, "refs", refs, "layers",
					     (json_int_t)im->layers));
	return 0;
}

static int import_oci(struct store *s, struct source *src, const struct image_opts *o, json_t *out,
		      struct aegis_error *err)
{
	_cleanup_free_ char *buf = NULL;
	json_t *doc, *list, *entry;
	struct oci_index idx;
	size_t len, i;
	int r = 0;

	if (source_read(src, "index.json", OCI_MANIFEST_MAX, &buf, &len, err) < 0)
		return -1;
	if (oci_parse_index(buf, len, &idx, err) < 0)
		return error_prefix(err, "import: index.json");
	if (idx.n == 0 || (o->name && idx.n > 1 && !idx.manifests[0].os[0])) {
		oci_index_free(&idx);
		return error_set(err, AEGIS_E_INVALID, 0, "import: index.json has %zu images%s", idx.n,
				 idx.n ? "; --name names one" : "");
	}
	doc = json_loadb(buf, len, 0, NULL);
	list = json_object_get(doc, "manifests");
	if (idx.manifests[0].os[0]) {
		/* index.json is itself the platform list of one image */
		char os[32], arch[32], variant[32];
		struct imported im = { 0 };
		int pick;
		oci_host_platform(os, arch, variant);
		if ((pick = oci_select_platform(&idx, os, arch, variant, err)) < 0 ||
		    import_manifest(s, src, idx.manifests[pick].digest, &im, o, err) < 0 ||
		    (entry_name(json_array_get(list, (size_t)pick)) &&
		     add_name(&im, entry_name(json_array_get(list, (size_t)pick)), err) < 0) ||
		    finish(s, &im, o, out, err) < 0)
			r = -1;
	} else {
		json_array_foreach(list, i, entry) {
			struct imported im = { 0 };
			if (import_manifest(s, src, idx.manifests[i].digest, &im, o, err) < 0 ||
			    (entry_name(entry) && add_name(&im, entry_name(entry), err) < 0) ||
			    finish(s, &im, o, out, err) < 0) {
				r = -1;
				break;
			}
		}
	}
	json_decref(doc);
	oci_index_free(&idx);
	return r;
}

/* The media type of a docker save layer, from its first bytes. */
static const char *sniff_layer(int fd)
{
	unsigned char m[4] = { 0 };

	if (pread(fd, m, sizeof m, 0) < 2)
		return DOCKER_LAYER;
	if (m[0] == 0x1f && m[1] == 0x8b)
		return DOCKER_LAYER_GZIP;
	if (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
		return OCI_LAYER_ZSTD;
	return DOCKER_LAYER;
}

/* docker save has no manifest: write the one a registry would have. */
static int docker_manifest(struct store *s, struct source *src, const char *config_digest,
			   size_t config_len, json_t *layer_paths, char *digest, struct aegis_error *err)
{
	json_t *m = json_pack("{s:i, s:s, s:{s:s, s:I, s:s}, s:[]}", "schemaVersion", 2, "mediaType",
			      DOCKER_MANIFEST, "config", "mediaType", DOCKER_CONFIG, "size",
			      (json_int_t)config_len, "digest", config_digest, "layers");
	json_t *layers = json_object_get(m, "layers"), *p;
	_cleanup_free_ char *text = NULL;
	size_t i;

	json_array_foreach(layer_paths, i, p) {
		_cleanup_close_ int fd = -1;
		char hex[HASH_HEX_LEN + 1], d[72];
		struct stat st;
		if (!json_is_string(p) || (fd = source_open(src, json_string_value(p), err)) < 0 ||
		    fstat(fd, &st) < 0 || hash_sha256_fd(fd, hex) < 0) {
			json_decref(m);
			return json_is_string(p) ? -1 :
				error_set(err, AEGIS_E_INVALID, 0, "import: manifest.json: bad Layers");
		}
		snprintf(d, sizeof d, "sha256:%s", hex);
		json_array_append_new(layers, json_pack("{s:s, s:I, s:s}", "mediaType", sniff_layer(fd),
							"size", (json_int_t)st.st_size, "digest", d));
	}
	text = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	if (!text)
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "import");
	{
		char hex[HASH_HEX_LEN + 1];
		hash_sha256_hex(text, strlen(text), hex);
		snprintf(digest, 72, "sha256:%s", hex);
	}
	return store_put_blob(s, digest, text, strlen(text), err);
}

static int import_docker_one(struct store *s, struct source *src, json_t *e,
			     const struct image_opts *o, json_t *out, struct aegis_error *err)
{
	const char *cfg_path = json_string_value(json_object_get(e, "Config"));
	json_t *layers = json_object_get(e, "Layers"), *tags = json_object_get(e, "RepoTags"), *t;
	_cleanup_free_ char *cbuf = NULL;
	char hex[HASH_HEX_LEN + 1], cdigest[72];
	struct imported im = { 0 };
	struct oci_manifest m;
	struct oci_config c;
	char **paths;
	size_t clen, i;
	int r;

	if (!cfg_path || !json_is_array(layers))
		return error_set(err, AEGIS_E_INVALID, 0, "import: manifest.json: Config or Layers missing");
	if (source_read(src, cfg_path, OCI_CONFIG_MAX, &cbuf, &clen, err) < 0)
		return -1;
	hash_sha256_hex(cbuf, clen, hex);
	snprintf(cdigest, sizeof cdigest, "sha256:%s", hex);
	if (store_put_blob(s, cdigest, cbuf, clen, err) < 0 ||
	    docker_manifest(s, src, cdigest, clen, layers, im.digest, err) < 0)
		return -1;
	{
		_cleanup_free_ char *mbuf = NULL;
		size_t mlen;
		if (imagefs_blob_read(s->fd, im.digest, OCI_MANIFEST_MAX, &mbuf, &mlen, err) != 0 ||
		    oci_parse_manifest(mbuf, mlen, &m, err) < 0)
			return -1;
	}
	if (oci_parse_config(cbuf, clen, &c, err) < 0) {
		oci_manifest_free(&m);
		return -1;
	}
	paths = calloc(json_array_size(layers) + 1, sizeof *paths);
	json_array_foreach(layers, i, t)
		if (paths)
			paths[i] = (char *)json_string_value(t);
	if (!paths)
		r = error_set(err, AEGIS_E_SETUP, ENOMEM, "import");
	else if (c.n_diff_ids != m.n_layers)
		r = error_set(err, AEGIS_E_INVALID, 0, "import: %zu layers but %zu diff_ids", m.n_layers,
			      c.n_diff_ids);
	else
		r = unpack_layers(s, src, &m, &c, true, paths, o, err);
	free(paths);
	im.layers = m.n_layers;
	oci_manifest_free(&m);
	oci_config_free(&c);
	json_array_foreach(tags, i, t)
		if (r == 0 && json_is_string(t))
			r = add_name(&im, json_string_value(t), err);
	return r < 0 ? -1 : finish(s, &im, o, out, err);
}

static int import_docker(struct store *s, struct source *src, const struct image_opts *o, json_t *out,
			 struct aegis_error *err)
{
	_cleanup_free_ char *buf = NULL;
	json_t *doc, *e;
	size_t len, i;
	int r = 0;

	if (source_read(src, "manifest.json", OCI_MANIFEST_MAX, &buf, &len, err) < 0)
		return -1;
	doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_array(doc) || json_array_size(doc) == 0 || (o->name && json_array_size(doc) > 1)) {
		json_decref(doc);
		return error_set(err, AEGIS_E_INVALID, 0, "import: manifest.json is not a list of %s images",
				 o->name ? "exactly one" : "one or more");
	}
	json_array_foreach(doc, i, e)
		if ((r = import_docker_one(s, src, e, o, out, err)) < 0)
			break;
	json_decref(doc);
	return r;
}

int cmd_import(const char *path, const struct image_opts *o)
{
	struct aegis_error err = { 0 };
	struct source src = { .dir = -1 };
	struct store s;
	struct stat st;
	json_t *images = json_array();
	int r = -1;

	if (store_open(&s, o->state, LOCK_SH, &err) < 0) {
		json_decref(images);
		return image_report_error(o, &err);
	}
	if (stat(path, &st) < 0) {
		error_sys(&err, "import %s", path);
	} else if (S_ISDIR(st.st_mode)) {
		src.dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (src.dir < 0)
			error_sys(&err, "import %s", path);
		else
			r = import_oci(&s, &src, o, images, &err);
	} else if (read_archive(&s, path, &src, &err) == 0) {
		/* an OCI layout wins when both are there (docker 25 writes both) */
		r = find(&src, "index.json") && find(&src, "oci-layout") ?
			import_oci(&s, &src, o, images, &err) :
			find(&src, "manifest.json") ? import_docker(&s, &src, o, images, &err) :
			error_set(&err, AEGIS_E_INVALID, 0,
				  "import %s: neither a docker save archive nor an OCI archive", path);
	}
	source_free(&s, &src);
	store_close(&s);
	if (r < 0) {
		json_decref(images);
		return image_report_error(o, &err);
	}
	image_report_json(o, json_pack("{s:o}", "images", images));
	return 0;
}
