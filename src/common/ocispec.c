/* ocispec.c — reading index, manifest and config documents. They come
 * from registries and archives, so everything is checked: types, digest
 * syntax, sizes, counts; a field we rely on that is missing is an error
 * naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include <jansson.h>

#include "error.h"
#include "imageref.h"
#include "ocispec.h"

#define MAX_LAYERS 1024		/* overlayfs stacks far fewer; a bound for hostile input */
#define MAX_MANIFESTS 1024
#define MAX_ENV 4096

static json_t *load(const char *buf, size_t len, const char *what, struct aegis_error *err)
{
	json_error_t je;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);

	if (!j)
		error_set(err, AEGIS_E_INVALID, 0, "%s is not valid JSON: %s (line %d)", what, je.text,
			  je.line);
	else if (!json_is_object(j)) {
		json_decref(j);
		j = NULL;
		error_set(err, AEGIS_E_INVALID, 0, "%s is not a JSON object", what);
	}
	return j;
}

static bool is_index_type(const char *t)
{
	return !strcmp(t, OCI_INDEX) || !strcmp(t, DOCKER_LIST);
}

static bool is_manifest_type(const char *t)
{
	return !strcmp(t, OCI_MANIFEST) || !strcmp(t, DOCKER_MANIFEST);
}

int oci_kind_of(const char *media_type, const char *buf, size_t len, enum oci_kind *kind,
		struct aegis_error *err)
{
	json_t *j = load(buf, len, "manifest", err);
	const char *own, *t;
	char served[128] = "";
	int r = 0;

	if (!j)
		return -1;
	own = json_string_value(json_object_get(j, "mediaType"));
	/* A registry's Content-Type may carry parameters ("; charset=utf-8");
	 * plain JSON says nothing either way. */
	if (media_type)
		snprintf(served, sizeof served, "%.*s", (int)strcspn(media_type, "; "), media_type);
	if (!strcmp(served, "application/json"))
		served[0] = '\0';
	t = own ? own : served[0] ? served : NULL;
	if (own && served[0] && strcmp(own, served) != 0)
		r = error_set(err, AEGIS_E_INVALID, 0,
			      "wrong media type: served as %s but the document says %s", served, own);
	else if (t && is_index_type(t))
		*kind = OCI_KIND_INDEX;
	else if (t && is_manifest_type(t))
		*kind = OCI_KIND_MANIFEST;
	else if (t)
		r = error_set(err, AEGIS_E_INVALID, 0, "wrong media type '%s' for a manifest", t);
	else if (json_is_array(json_object_get(j, "manifests")))
		*kind = OCI_KIND_INDEX;
	else if (json_is_object(json_object_get(j, "config")))
		*kind = OCI_KIND_MANIFEST;
	else
		r = error_set(err, AEGIS_E_INVALID, 0, "neither an image index nor a manifest");
	json_decref(j);
	return r;
}

static int copy_str(char *dst, size_t len, json_t *v, const char *what, bool required,
		    struct aegis_error *err)
{
	const char *s = json_string_value(v);

	if (!v && !required) {
		dst[0] = '\0';
		return 0;
	}
	if (!s)
		return error_set(err, AEGIS_E_INVALID, 0, "%s: %s", what, v ? "not a string" : "missing");
	if (strlen(s) >= len)
		return error_set(err, AEGIS_E_INVALID, 0, "%s: too long", what);
	strcpy(dst, s);
	return 0;
}

static int parse_descriptor(json_t *j, struct oci_descriptor *d, const char *what,
			    struct aegis_error *err)
{
	json_t *size = json_object_get(j, "size"), *plat = json_object_get(j, "platform");
	const char *name;

	memset(d, 0, sizeof *d);
	if (!json_is_object(j))
		return error_set(err, AEGIS_E_INVALID, 0, "%s: not an object", what);
	if (copy_str(d->media_type, sizeof d->media_type, json_object_get(j, "mediaType"), what, true,
		     err) < 0 ||
	    copy_str(d->digest, sizeof d->digest, json_object_get(j, "digest"), what, true, err) < 0)
		return error_prefix(err, "descriptor");
	if (!imageref_is_digest(d->digest))
		return error_set(err, AEGIS_E_INVALID, 0, "%s: unsupported digest '%.80s' (sha256 only)",
				 what, d->digest);
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return error_set(err, AEGIS_E_INVALID, 0, "%s %s: size missing or negative", what,
				 d->digest);
	d->size = (uint64_t)json_integer_value(size);
	if (plat && (!json_is_object(plat) ||
		     copy_str(d->os, sizeof d->os, json_object_get(plat, "os"), "platform.os", true, err) < 0 ||
		     copy_str(d->arch, sizeof d->arch, json_object_get(plat, "architecture"),
			      "platform.architecture", true, err) < 0 ||
		     copy_str(d->variant, sizeof d->variant, json_object_get(plat, "variant"),
			      "platform.variant", false, err) < 0))
		return plat && !json_is_object(plat) ?
			error_set(err, AEGIS_E_INVALID, 0, "%s: platform is not an object", what) : -1;
	name = json_string_value(json_object_get(json_object_get(j, "annotations"),
						 "org.opencontainers.image.ref.name"));
	if (name)
		snprintf(d->ref_name, sizeof d->ref_name, "%s", name);
	return 0;
}

int oci_parse_index(const char *buf, size_t len, struct oci_index *out, struct aegis_error *err)
{
	json_t *j = load(buf, len, "image index", err), *list, *e;
	size_t i;

	memset(out, 0, sizeof *out);
	if (!j)
		return -1;
	list = json_object_get(j, "manifests");
	if (!json_is_array(list) || json_array_size(list) > MAX_MANIFESTS) {
		json_decref(j);
		return error_set(err, AEGIS_E_INVALID, 0, "image index: 'manifests' missing or over %d",
				 MAX_MANIFESTS);
	}
	out->manifests = calloc(json_array_size(list) + 1, sizeof *out->manifests);
	json_array_foreach(list, i, e) {
		if (!out->manifests || parse_descriptor(e, &out->manifests[i], "image index entry", err) < 0) {
			if (!out->manifests)
				error_set(err, AEGIS_E_SETUP, 0, "out of memory");
			json_decref(j);
			oci_index_free(out);
			return -1;
		}
		out->n++;
	}
	json_decref(j);
	return 0;
}

int oci_parse_manifest(const char *buf, size_t len, struct oci_manifest *out,
		       struct aegis_error *err)
{
	json_t *j = load(buf, len, "image manifest", err), *list, *e;
	size_t i;

	memset(out, 0, sizeof *out);
	if (!j)
		return -1;
	if (json_integer_value(json_object_get(j, "schemaVersion")) != 2) {
		json_decref(j);
		return error_set(err, AEGIS_E_INVALID, 0,
				 "image manifest: schemaVersion is not 2 (docker schema 1 is not supported)");
	}
	list = json_object_get(j, "layers");
	if (parse_descriptor(json_object_get(j, "config"), &out->config, "config", err) < 0 ||
	    !json_is_array(list) || json_array_size(list) > MAX_LAYERS) {
		if (!json_is_array(list) || json_array_size(list) > MAX_LAYERS)
			error_set(err, AEGIS_E_INVALID, 0, "image manifest: 'layers' missing or over %d",
				  MAX_LAYERS);
		json_decref(j);
		return -1;
	}
	out->layers = calloc(json_array_size(list) + 1, sizeof *out->layers);
	json_array_foreach(list, i, e) {
		const char *c;
		if (!out->layers || parse_descriptor(e, &out->layers[i], "layer", err) < 0 ||
		    (!oci_layer_type(out->layers[i].media_type, &c) &&
		     error_set(err, AEGIS_E_INVALID, 0, "wrong media type '%s' for layer %s",
			       out->layers[i].media_type, out->layers[i].digest))) {
			if (!out->layers)
				error_set(err, AEGIS_E_SETUP, 0, "out of memory");
			json_decref(j);
			oci_manifest_free(out);
			return -1;
		}
		out->n_layers++;
	}
	json_decref(j);
	if (strcmp(out->config.media_type, OCI_CONFIG) && strcmp(out->config.media_type, DOCKER_CONFIG)) {
		error_set(err, AEGIS_E_INVALID, 0, "wrong media type '%s' for the image config",
			  out->config.media_type);
		oci_manifest_free(out);
		return -1;
	}
	return 0;
}

static char **string_list(json_t *arr, size_t max, size_t *n, const char *what,
			  struct aegis_error *err)
{
	char **out;
	json_t *e;
	size_t i;

	*n = 0;
	if (arr && !json_is_array(arr)) {
		error_set(err, AEGIS_E_INVALID, 0, "image config: %s is not a list", what);
		return NULL;
	}
	if (json_array_size(arr) > max) {
		error_set(err, AEGIS_E_INVALID, 0, "image config: more than %zu %s", max, what);
		return NULL;
	}
	if (!(out = calloc(json_array_size(arr) + 1, sizeof *out))) {
		error_set(err, AEGIS_E_SETUP, 0, "out of memory");
		return NULL;
	}
	json_array_foreach(arr, i, e) {
		if (!json_is_string(e) || !(out[i] = strdup(json_string_value(e)))) {
			error_set(err, AEGIS_E_INVALID, 0, "image config: %s has a non-string", what);
			for (size_t k = 0; k < i; k++)
				free(out[k]);
			free(out);
			return NULL;
		}
	}
	*n = i;
	return out;
}

int oci_parse_config(const char *buf, size_t len, struct oci_config *out, struct aegis_error *err)
{
	json_t *j = load(buf, len, "image config", err), *cfg, *rootfs;
	const char *wd;
	size_t n_env;

	memset(out, 0, sizeof *out);
	if (!j)
		return -1;
	cfg = json_object_get(j, "config");
	rootfs = json_object_get(j, "rootfs");
	if (copy_str(out->os, sizeof out->os, json_object_get(j, "os"), "image config: os", false, err) < 0 ||
	    copy_str(out->arch, sizeof out->arch, json_object_get(j, "architecture"),
		     "image config: architecture", false, err) < 0)
		goto fail;
	if (!json_is_object(rootfs) ||
	    strcmp(json_string_value(json_object_get(rootfs, "type")) ?: "", "layers") != 0) {
		error_set(err, AEGIS_E_INVALID, 0, "image config: rootfs.type is not \"layers\"");
		goto fail;
	}
	out->diff_ids = string_list(json_object_get(rootfs, "diff_ids"), MAX_LAYERS, &out->n_diff_ids,
				    "rootfs.diff_ids", err);
	if (!out->diff_ids)
		goto fail;
	for (size_t i = 0; i < out->n_diff_ids; i++)
		if (!imageref_is_digest(out->diff_ids[i])) {
			error_set(err, AEGIS_E_INVALID, 0, "image config: diff_id '%.80s' is not a sha256 digest",
				  out->diff_ids[i]);
			goto fail;
		}
	if (cfg && !json_is_object(cfg) && !json_is_null(cfg)) {
		error_set(err, AEGIS_E_INVALID, 0, "image config: config is not an object");
		goto fail;
	}
	out->env = string_list(json_object_get(cfg, "Env"), MAX_ENV, &n_env, "Env", err);
	if (!out->env)
		goto fail;
	for (size_t i = 0; i < n_env; i++)
		if (!strchr(out->env[i], '=') || out->env[i][0] == '=') {
			error_set(err, AEGIS_E_INVALID, 0, "image config: Env entry '%.60s' is not K=V",
				  out->env[i]);
			goto fail;
		}
	wd = json_string_value(json_object_get(cfg, "WorkingDir"));
	if (wd && *wd && !(out->workdir = strdup(wd))) {
		error_set(err, AEGIS_E_SETUP, 0, "out of memory");
		goto fail;
	}
	json_decref(j);
	return 0;
fail:
	json_decref(j);
	oci_config_free(out);
	return -1;
}

void oci_index_free(struct oci_index *i)
{
	free(i->manifests);
	i->manifests = NULL;
	i->n = 0;
}

void oci_manifest_free(struct oci_manifest *m)
{
	free(m->layers);
	m->layers = NULL;
	m->n_layers = 0;
}

static void free_list(char **l)
{
	for (size_t i = 0; l && l[i]; i++)
		free(l[i]);
	free(l);
}

void oci_config_free(struct oci_config *c)
{
	free_list(c->diff_ids);
	free_list(c->env);
	free(c->workdir);
	memset(c, 0, sizeof *c);
}

void oci_host_platform(char os[32], char arch[32], char variant[32])
{
	static const struct { const char *machine, *arch, *variant; } map[] = {
		{ "x86_64", "amd64", "" }, { "aarch64", "arm64", "v8" }, { "armv7l", "arm", "v7" },
		{ "armv6l", "arm", "v6" }, { "i686", "386", "" }, { "ppc64le", "ppc64le", "" },
		{ "s390x", "s390x", "" }, { "riscv64", "riscv64", "" },
	};
	struct utsname u;

	strcpy(os, "linux");
	snprintf(arch, 32, "%s", uname(&u) == 0 ? u.machine : "unknown");
	variant[0] = '\0';
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (!strcmp(u.machine, map[i].machine)) {
			strcpy(arch, map[i].arch);
			strcpy(variant, map[i].variant);
		}
}

/* arm64 images mostly say no variant at all; "v8" is the same thing. */
static bool variant_fits(const char *want, const char *have)
{
	return !*have || !strcmp(want, have) || (!*want && !strcmp(have, "v8"));
}

int oci_select_platform(const struct oci_index *idx, const char *os, const char *arch,
			const char *variant, struct aegis_error *err)
{
	char offered[160] = "";
	int best = -1;

	for (size_t i = 0; i < idx->n; i++) {
		const struct oci_descriptor *d = &idx->manifests[i];
		if (!is_manifest_type(d->media_type) && !is_index_type(d->media_type))
			continue;
		if (!strcmp(d->os, os) && !strcmp(d->arch, arch) && variant_fits(variant, d->variant)) {
			/* an exact variant beats an entry that names none */
			if (best < 0 || (!strcmp(d->variant, variant) &&
					 strcmp(idx->manifests[best].variant, variant)))
				best = (int)i;
		}
		if (d->os[0] && strlen(offered) + strlen(d->os) + strlen(d->arch) + 20 < sizeof offered)
			snprintf(offered + strlen(offered), sizeof offered - strlen(offered), "%s%s/%s%s%s",
				 offered[0] ? ", " : "", d->os, d->arch, d->variant[0] ? "/" : "", d->variant);
	}
	if (best < 0)
		return error_set(err, AEGIS_E_NOTFOUND, 0, "no image for %s/%s%s%s in the index (it has: %s)", os,
				 arch, variant[0] ? "/" : "", variant, offered[0] ? offered : "nothing usable");
	return best;
}

bool oci_layer_type(const char *t, const char **compression)
{
	if (!strcmp(t, OCI_LAYER) || !strcmp(t, DOCKER_LAYER))
		*compression = "";
	else if (!strcmp(t, OCI_LAYER_GZIP) || !strcmp(t, DOCKER_LAYER_GZIP))
		*compression = "gzip";
	else if (!strcmp(t, OCI_LAYER_ZSTD))
		*compression = "zstd";
	else
		return false;
	return true;
}
