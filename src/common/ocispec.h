/* ocispec.h — the OCI image-spec documents the store keeps (index,
 * manifest, config), parsed from untrusted JSON into small structs, and
 * the choice of a platform from an index. Docker's schema-2 documents are
 * the same shapes under other media types and are accepted alike. */
#ifndef AEGIS_COMMON_OCISPEC_H
#define AEGIS_COMMON_OCISPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <aegis/aegis.h>

#define OCI_MANIFEST_MAX (4u << 20)	/* index, manifest: as the distribution spec bounds them */
#define OCI_CONFIG_MAX (8u << 20)

#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar"
#define DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

enum oci_kind { OCI_KIND_INDEX, OCI_KIND_MANIFEST };

struct oci_descriptor {
	char media_type[128];
	char digest[72];	/* sha256:<hex> */
	uint64_t size;
	char os[32], arch[32], variant[32];	/* an index entry's platform; "" if none */
	char ref_name[256];	/* annotation org.opencontainers.image.ref.name, if any */
};

struct oci_index {
	struct oci_descriptor *manifests;
	size_t n;
};

struct oci_manifest {
	struct oci_descriptor config;
	struct oci_descriptor *layers;
	size_t n_layers;
};

struct oci_config {
	char **diff_ids;	/* sha256:<hex>, bottom first, NULL-terminated */
	size_t n_diff_ids;
	char **env;		/* "K=V", NULL-terminated */
	char *workdir;		/* NULL when unset or empty */
	char os[32], arch[32];
};

/* Which document is this? From the media type if it names one (a
 * registry's Content-Type, the document's own mediaType), else from its
 * shape. -1 with err for anything else (wrong media type, not JSON). */
int oci_kind_of(const char *media_type, const char *buf, size_t len, enum oci_kind *kind,
		struct aegis_error *err);
int oci_parse_index(const char *buf, size_t len, struct oci_index *out, struct aegis_error *err);
int oci_parse_manifest(const char *buf, size_t len, struct oci_manifest *out,
		       struct aegis_error *err);
int oci_parse_config(const char *buf, size_t len, struct oci_config *out, struct aegis_error *err);
void oci_index_free(struct oci_index *i);
void oci_manifest_free(struct oci_manifest *m);
void oci_config_free(struct oci_config *c);

/* This host's platform in OCI terms: linux, amd64/arm64/..., variant. */
void oci_host_platform(char os[32], char arch[32], char variant[32]);
/* The index entry for the platform os/arch/variant; -1 with err listing
 * what the index offers when none fits. */
int oci_select_platform(const struct oci_index *i, const char *os, const char *arch,
			const char *variant, struct aegis_error *err);
/* Is media_type a layer we can unpack? *compressed: "gzip", "zstd" or "". */
bool oci_layer_type(const char *media_type, const char **compression);

#endif
