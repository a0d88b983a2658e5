/* test_ocispec.c — index, manifest and config documents as registries
 * and archives serve them: the right ones read, wrong ones refused with a
 * message naming what is wrong, platforms chosen as docker does. */
#include <string.h>

#include "../../src/common/ocispec.h"
#include "tap.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static const char manifest[] =
	"{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
	"\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"" D1 "\",\"size\":10},"
	"\"layers\":[{\"mediaType\":\"" OCI_LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":20},"
	"{\"mediaType\":\"" OCI_LAYER_ZSTD "\",\"digest\":\"" D3 "\",\"size\":30}]}";

static const char index_doc[] =
	"{\"schemaVersion\":2,\"manifests\":["
	"{\"mediaType\":\"" OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
	" \"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
	"{\"mediaType\":\"" OCI_MANIFEST "\",\"digest\":\"" D3 "\",\"size\":1,"
	" \"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}},"
	"{\"mediaType\":\"" OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":1,"
	" \"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";

static int manifest_fails(const char *doc, const char *needle)
{
	struct aegis_error err = { 0 };
	struct oci_manifest m;

	return oci_parse_manifest(doc, strlen(doc), &m, &err) < 0 && strstr(err.msg, needle);
}

int main(void)
{
	struct aegis_error err = { 0 };
	enum oci_kind kind;
	struct oci_manifest m;
	struct oci_index idx;
	struct oci_config c;
	const char *comp;

	ok(oci_kind_of(NULL, manifest, strlen(manifest), &kind, &err) == 0 && kind == OCI_KIND_MANIFEST,
	   "a manifest by its own mediaType");
	ok(oci_kind_of(OCI_INDEX, index_doc, strlen(index_doc), &kind, &err) == 0 && kind == OCI_KIND_INDEX,
	   "an index by the served type");
	ok(oci_kind_of(NULL, index_doc, strlen(index_doc), &kind, &err) == 0 && kind == OCI_KIND_INDEX,
	   "an index without mediaType by its shape");
	ok(oci_kind_of("text/html", index_doc, strlen(index_doc), &kind, &err) < 0 &&
	   strstr(err.msg, "wrong media type"), "text/html is a wrong media type");
	ok(oci_kind_of(DOCKER_LIST, manifest, strlen(manifest), &kind, &err) < 0 &&
	   strstr(err.msg, "wrong media type"), "served type and document disagree");
	ok(oci_kind_of("application/vnd.docker.distribution.manifest.v1+prettyjws", "{}", 2, &kind, &err) < 0,
	   "docker schema 1 refused");
	ok(oci_kind_of(NULL, "[1]", 3, &kind, &err) < 0, "not an object");

	ok(oci_parse_manifest(manifest, strlen(manifest), &m, &err) == 0 && m.n_layers == 2 &&
	   !strcmp(m.config.digest, D1) && m.layers[1].size == 30, "manifest parsed");
	oci_manifest_free(&m);
	ok(manifest_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"" D1
			  "\",\"size\":1},\"layers\":[{\"mediaType\":\"application/x-evil\",\"digest\":\"" D2
			  "\",\"size\":1}]}", "wrong media type"), "unknown layer media type refused");
	ok(manifest_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"text/plain\",\"digest\":\"" D1
			  "\",\"size\":1},\"layers\":[]}", "image config"), "wrong config media type refused");
	ok(manifest_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CONFIG
			  "\",\"digest\":\"sha256:xyz\",\"size\":1},\"layers\":[]}", "digest"),
	   "bad digest refused");
	ok(manifest_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"" D1
			  "\",\"size\":-1},\"layers\":[]}", "size"), "negative size refused");
	ok(manifest_fails("{\"schemaVersion\":1}", "schema"), "schema 1 refused");
	ok(manifest_fails("{\"schemaVersion\":2,\"schemaVersion\":2}", "JSON"), "duplicate keys refused");

	ok(oci_parse_index(index_doc, strlen(index_doc), &idx, &err) == 0 && idx.n == 3, "index parsed");
	ok(oci_select_platform(&idx, "linux", "amd64", "", &err) == 2, "linux/amd64 chosen");
	ok(oci_select_platform(&idx, "linux", "arm64", "v8", &err) == 0, "linux/arm64/v8 chosen");
	ok(oci_select_platform(&idx, "linux", "arm64", "", &err) == 0, "arm64 without variant fits v8");
	ok(oci_select_platform(&idx, "linux", "s390x", "", &err) < 0 && strstr(err.msg, "linux/amd64") &&
	   strstr(err.msg, "s390x"), "no fit: the error lists what there is");
	oci_index_free(&idx);

	{
		static const char cfg[] = "{\"architecture\":\"amd64\",\"os\":\"linux\","
			"\"config\":{\"Env\":[\"PATH=/usr/bin\",\"A=b=c\"],\"WorkingDir\":\"/app\"},"
			"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\",\"" D2 "\"]}}";
		ok(oci_parse_config(cfg, strlen(cfg), &c, &err) == 0 && c.n_diff_ids == 2 &&
		   !strcmp(c.env[1], "A=b=c") && !c.env[2] && !strcmp(c.workdir, "/app"), "config parsed");
		oci_config_free(&c);
	}
	{
		static const char cfg[] = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":null}";
		ok(oci_parse_config(cfg, strlen(cfg), &c, &err) == 0 && c.env && !c.env[0] && !c.workdir,
		   "config without config: empty env, no workdir");
		oci_config_free(&c);
	}
	{
		static const char cfg[] = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},"
			"\"config\":{\"Env\":[\"NOEQUALS\"]}}";
		ok(oci_parse_config(cfg, strlen(cfg), &c, &err) < 0 && strstr(err.msg, "K=V"),
		   "Env entry without '=' refused");
	}
	{
		static const char cfg[] = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:../../x\"]}}";
		ok(oci_parse_config(cfg, strlen(cfg), &c, &err) < 0 && strstr(err.msg, "diff_id"),
		   "diff_id that is not a digest refused (it names a directory)");
	}
	ok(oci_layer_type(OCI_LAYER_ZSTD, &comp) && !strcmp(comp, "zstd") &&
	   oci_layer_type(DOCKER_LAYER_GZIP, &comp) && !strcmp(comp, "gzip") &&
	   !oci_layer_type("application/vnd.oci.image.layer.v1.tar+bzip2", &comp), "layer media types");
	return tap_done();
}
