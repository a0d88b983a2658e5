/* imageref.c — parsing image references (the grammar of the distribution
 * project's reference package, which docker, podman and skopeo share), so
 * `python:3.12` means here what it means everywhere else. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "imageref.h"

#define NAME_MAX_LEN 255	/* domain + "/" + path, as in distribution */
#define TAG_MAX_LEN 128

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool imageref_is_digest(const char *s)
{
	if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != IMAGEREF_DIGEST_LEN)
		return false;
	for (s += 7; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

/* One path component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)* */
static bool component_ok(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (!is_lower_alnum(s[i]))
			return false;
		while (i < n && is_lower_alnum(s[i]))
			i++;
		if (i == n)
			return true;
		if (s[i] == '.' || (s[i] == '_' && (i + 1 >= n || s[i + 1] != '_')))
			i++;
		else if (s[i] == '_')
			i += 2;
		else if (s[i] == '-')
			while (i < n && s[i] == '-')
				i++;
		else
			return false;
		if (i == n)
			return false;	/* a separator must be followed by more */
	}
	return n > 0;
}

static bool path_ok(const char *p)
{
	const char *c = p, *slash;

	for (;;) {
		slash = strchr(c, '/');
		if (!component_ok(c, slash ? (size_t)(slash - c) : strlen(c)))
			return false;
		if (!slash)
			return true;
		c = slash + 1;
	}
}

/* host[:port], host being dot-separated labels of letters, digits and
 * inner '-', or a bracketed IPv6 address. */
static bool domain_ok(const char *d)
{
	const char *port = NULL, *p = d;
	size_t label = 0;

	if (*p == '[') {
		const char *end = strchr(p, ']');
		if (!end || end == p + 1)
			return false;
		for (p++; p < end; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':')
				return false;
		p = end + 1;
		port = *p == ':' ? p + 1 : NULL;
		if (*p && !port)
			return false;
	} else {
		for (; *p && *p != ':'; p++) {
			if (*p == '.') {
				if (label == 0 || p[-1] == '-')
					return false;
				label = 0;
			} else if (isalnum((unsigned char)*p) || (*p == '-' && label > 0)) {
				label++;
			} else {
				return false;
			}
		}
		if (label == 0 || p[-1] == '-')
			return false;
		port = *p == ':' ? p + 1 : NULL;
	}
	if (port) {
		unsigned long v = 0;
		if (!*port || strlen(port) > 5)
			return false;
		for (const char *q = port; *q; q++) {
			if (!isdigit((unsigned char)*q))
				return false;
			v = v * 10 + (unsigned long)(*q - '0');
		}
		return v >= 1 && v <= 65535;
	}
	return true;
}

static bool tag_ok(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > TAG_MAX_LEN || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
			return false;
	return true;
}

/* Does the first component name a registry? As docker decides it. */
static bool looks_like_domain(const char *c, size_t n)
{
	if (n == 9 && strncmp(c, "localhost", 9) == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (c[i] == '.' || c[i] == ':' || isupper((unsigned char)c[i]))
			return true;
	return false;
}

static int split_name(const char *name, struct image_ref *out, const char *ref,
		      struct aegis_error *err)
{
	const char *slash = strchr(name, '/');
	const char *rest = name;
	int n;

	if (slash && looks_like_domain(name, (size_t)(slash - name))) {
		if ((size_t)(slash - name) >= sizeof out->domain)
			return error_set(err, AEGIS_E_INVALID, 0, "image '%s': registry name too long", ref);
		memcpy(out->domain, name, (size_t)(slash - name));
		out->domain[slash - name] = '\0';
		rest = slash + 1;
		if (!domain_ok(out->domain))
			return error_set(err, AEGIS_E_INVALID, 0, "image '%s': bad registry '%s'", ref,
					 out->domain);
	} else {
		strcpy(out->domain, "docker.io");
	}
	if (!strcmp(out->domain, "index.docker.io"))
		strcpy(out->domain, "docker.io");
	if (!strcmp(out->domain, "docker.io") && !strchr(rest, '/'))
		n = snprintf(out->path, sizeof out->path, "library/%s", rest);
	else
		n = snprintf(out->path, sizeof out->path, "%s", rest);
	if (n < 0 || (size_t)n >= sizeof out->path ||
	    strlen(out->domain) + 1 + strlen(out->path) > NAME_MAX_LEN)
		return error_set(err, AEGIS_E_INVALID, 0, "image '%s': name longer than %d characters", ref,
				 NAME_MAX_LEN);
	for (const char *p = rest; *p; p++)
		if (isupper((unsigned char)*p))
			return error_set(err, AEGIS_E_INVALID, 0,
					 "image '%s': repository names must be lowercase", ref);
	if (!path_ok(out->path))
		return error_set(err, AEGIS_E_INVALID, 0, "image '%s': bad repository name '%s'", ref,
				 out->path);
	return 0;
}

int imageref_parse(const char *ref, struct image_ref *out, struct aegis_error *err)
{
	char name[512];
	const char *at = strchr(ref, '@');
	char *colon, *slash;
	size_t n = at ? (size_t)(at - ref) : strlen(ref);

	memset(out, 0, sizeof *out);
	if (n == 0)
		return error_set(err, AEGIS_E_INVALID, 0, "image '%s': empty name", ref);
	if (n >= sizeof name)
		return error_set(err, AEGIS_E_INVALID, 0, "image reference too long");
	if (at) {
		if (!imageref_is_digest(at + 1))
			return error_set(err, AEGIS_E_INVALID, 0,
					 "image '%s': bad digest (want sha256: and 64 lowercase hex digits)",
					 ref);
		strcpy(out->digest, at + 1);
	}
	memcpy(name, ref, n);
	name[n] = '\0';
	slash = strrchr(name, '/');
	colon = strrchr(name, ':');
	if (colon && (!slash || colon > slash)) {
		*colon = '\0';
		if (!tag_ok(colon + 1))
			return error_set(err, AEGIS_E_INVALID, 0, "image '%s': bad tag '%s'", ref, colon + 1);
		strcpy(out->tag, colon + 1);
	}
	if (split_name(name, out, ref, err) < 0)
		return -1;
	if (!out->tag[0] && !out->digest[0])
		strcpy(out->tag, "latest");
	return 0;
}

int imageref_repo(const struct image_ref *r, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s", r->domain, r->path);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int imageref_format(const struct image_ref *r, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s%s%s%s%s", r->domain, r->path, r->tag[0] ? ":" : "", r->tag,
			 r->digest[0] ? "@" : "", r->digest);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}
