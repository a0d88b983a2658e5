/* fuzz_image.c — libFuzzer target for what registries and archives send:
 * image references and index/manifest/config documents. Beyond "no crash,
 * no leak": an accepted reference formats to a canonical form that parses
 * again to itself (the store's keys are stable), and every parsed
 * descriptor has a well-formed sha256 digest (digests name files). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <aegis/aegis.h>
#include "../../src/common/imageref.h"
#include "../../src/common/ocispec.h"

static void check_ref(const char *s)
{
	struct aegis_error err = { 0 };
	struct image_ref r, again;
	char canon[600], canon2[600];

	if (imageref_parse(s, &r, &err) < 0) {
		if (!err.msg[0] || strchr(err.msg, '\n'))
			abort();
		return;
	}
	if (imageref_format(&r, canon, sizeof canon) < 0 || imageref_parse(canon, &again, &err) < 0 ||
	    imageref_format(&again, canon2, sizeof canon2) < 0 || strcmp(canon, canon2) != 0)
		abort();
	if (strstr(r.path, "..") || r.path[0] == '/' || (r.digest[0] && !imageref_is_digest(r.digest)))
		abort();
}

static void check_docs(const char *buf, size_t len)
{
	struct aegis_error err = { 0 };
	struct oci_index idx;
	struct oci_manifest m;
	struct oci_config c;
	enum oci_kind kind;

	(void)oci_kind_of(NULL, buf, len, &kind, &err);
	if (oci_parse_index(buf, len, &idx, &err) == 0) {
		for (size_t i = 0; i < idx.n; i++)
			if (!imageref_is_digest(idx.manifests[i].digest))
				abort();
		(void)oci_select_platform(&idx, "linux", "amd64", "", &err);
		oci_index_free(&idx);
	}
	if (oci_parse_manifest(buf, len, &m, &err) == 0) {
		for (size_t i = 0; i < m.n_layers; i++)
			if (!imageref_is_digest(m.layers[i].digest))
				abort();
		oci_manifest_free(&m);
	}
	if (oci_parse_config(buf, len, &c, &err) == 0) {
		for (size_t i = 0; i < c.n_diff_ids; i++)
			if (!imageref_is_digest(c.diff_ids[i]))
				abort();
		oci_config_free(&c);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (size < 600)
		check_ref(s);
	check_docs(s, size);
	free(s);
	return 0;
}
