/* registry.c — the distribution API v2 over libcurl.
 *
 * Registries answer an unauthenticated request with 401 and a challenge
 * (WWW-Authenticate): Bearer names a token realm to ask, with our
 * credentials if we have any, for a token scoped to this repository;
 * Basic wants the credentials themselves. The token or Basic mode then
 * applies to every request of the pull, blobs included. Authorization is
 * never sent to another host when a blob redirects to storage (curl drops
 * it across hosts), nor over plain HTTP unless the registry is marked
 * insecure by name. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "../common/error.h"
#include "../common/ocispec.h"
#include "image.h"
#include "registry.h"

#define TOKEN_MAX (1u << 20)
#define ERROR_BODY_MAX 4096

static const char accept_manifests[] =
	"Accept: " OCI_INDEX ", " OCI_MANIFEST ", " DOCKER_LIST ", " DOCKER_MANIFEST;

int registry_init(struct registry *r, const struct image_ref *ref, bool insecure,
		  struct aegis_error *err)
{
	int got;

	memset(r, 0, sizeof *r);
	r->ref = *ref;
	snprintf(r->host, sizeof r->host, "%s",
		 strcmp(ref->domain, "docker.io") ? ref->domain : "registry-1.docker.io");
	r->insecure = insecure || auth_insecure_listed(ref->domain);
	snprintf(r->base, sizeof r->base, "%s://%s", r->insecure ? "http" : "https", r->host);
	got = auth_lookup(ref->domain, r->user, sizeof r->user, r->pass, sizeof r->pass, err);
	if (got < 0)
		return image_fail_kind(FAIL_AUTH);
	r->have_creds = got == 1;
	return 0;
}

void registry_free(struct registry *r)
{
	free(r->bearer);
	memset(r->pass, 0, sizeof r->pass);
	r->bearer = NULL;
}

void http_resp_free(struct http_resp *h)
{
	free(h->body);
	h->body = NULL;
	h->len = 0;
}

/* Headers: the last response's (redirects reset them at each status line). */
static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
	struct http_resp *h = arg;
	size_t len = size * n;
	char line[1024];

	snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), buf);
	line[strcspn(line, "\r\n")] = '\0';
	if (!strncmp(line, "HTTP/", 5)) {
		h->ctype[0] = h->www_auth[0] = '\0';
	} else if (!strncasecmp(line, "Content-Type:", 13)) {
		snprintf(h->ctype, sizeof h->ctype, "%s", line + 13 + strspn(line + 13, " \t"));
	} else if (!strncasecmp(line, "WWW-Authenticate:", 17)) {
		snprintf(h->www_auth, sizeof h->www_auth, "%s", line + 17 + strspn(line + 17, " \t"));
	}
	return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
	struct http_resp *h = arg;
	size_t len = size * n;
	char *grown;

	if (h->len + len > h->max) {
		h->too_large = true;
		return 0;
	}
	if (!(grown = realloc(h->body, h->len + len + 1)))
		return 0;
	h->body = grown;
	memcpy(h->body + h->len, buf, len);
	h->len += len;
	h->body[h->len] = '\0';
	return len;
}

int registry_setup(struct registry *r, CURL *c, const char *url)
{
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, r->insecure ? "http,https" : "https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, r->insecure ? "http,https" : "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	/* a stalled transfer fails instead of hanging the pull */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "aegis/" AEGIS_VERSION);
	if (r->bearer) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, r->bearer);
	} else if (r->basic) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, r->user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, r->pass);
	}
	return 0;
}

void registry_blob_url(struct registry *r, const char *digest, char *out, size_t len)
{
	snprintf(out, len, "%s/v2/%s/blobs/%s", r->base, r->ref.path, digest);
}

void registry_describe(const struct http_resp *resp, char *out, size_t len)
{
	json_t *j = resp->body ? json_loadb(resp->body, resp->len, 0, NULL) : NULL;
	json_t *e = json_array_get(json_object_get(j, "errors"), 0);
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));

	if (code)
		snprintf(out, len, "HTTP %ld, %s%s%.120s", resp->code, code, msg ? ": " : "", msg ? msg : "");
	else
		snprintf(out, len, "HTTP %ld", resp->code);
	json_decref(j);
}

/* One GET, whole body into memory (at most max). */
static int get(struct registry *r, const char *url, const char *accept, size_t max,
	       struct http_resp *out, struct aegis_error *err)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hdrs = accept ? curl_slist_append(NULL, accept) : NULL;
	char cerr[CURL_ERROR_SIZE] = "";
	CURLcode rc;

	http_resp_free(out);
	memset(out, 0, sizeof *out);
	out->max = max;
	if (!c)
		return error_set(err, AEGIS_E_SETUP, 0, "curl: cannot start");
	registry_setup(r, c, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->code);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	if (out->too_large) {
		image_fail_kind(FAIL_TOO_LARGE);
		return error_set(err, AEGIS_E_INVALID, 0, "%s: response larger than %zu bytes", url, max);
	}
	if (rc != CURLE_OK) {
		image_fail_kind(FAIL_NETWORK);
		return error_set(err, AEGIS_E_SETUP, 0, "registry %s: %s%s", r->host, cerr[0] ? cerr :
				 curl_easy_strerror(rc),
				 rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_UNSUPPORTED_PROTOCOL ?
				 " (a plain-HTTP registry must be marked insecure: --insecure or "
				 "AEGIS_INSECURE_REGISTRIES)" : "");
	}
	return 0;
}

/* key="value" pairs of a challenge. */
static void challenge_param(const char *ch, const char *key, char *out, size_t len)
{
	size_t klen = strlen(key);

	out[0] = '\0';
	for (const char *p = ch; (p = strcasestr(p, key));) {
		bool start = p == ch || p[-1] == ' ' || p[-1] == ',';
		p += klen;
		if (!start || *p != '=')
			continue;
		p++;
		if (*p == '"') {
			const char *end = strchr(++p, '"');
			if (!end)
				return;
			snprintf(out, len, "%.*s", (int)(end - p), p);
		} else {
			snprintf(out, len, "%.*s", (int)strcspn(p, ","), p);
		}
		return;
	}
}

static int no_creds(struct registry *r, struct aegis_error *err)
{
	image_fail_kind(FAIL_AUTH);
	return error_set(err, AEGIS_E_INVALID, 0,
			 "auth failure: %s wants credentials for %s and none are configured "
			 "($AEGIS_REGISTRY_AUTH, ~/.config/aegis/auth.json, ~/.docker/config.json)",
			 r->ref.domain, r->ref.path);
}

static int fetch_token(struct registry *r, const char *ch, struct aegis_error *err)
{
	char realm[512], service[256], scope[512], url[2048];
	struct http_resp resp = { 0 };
	struct registry asker = *r;
	json_t *j;
	const char *tok;
	CURL *c = curl_easy_init();
	char *es = NULL, *esc = NULL;

	challenge_param(ch, "realm", realm, sizeof realm);
	challenge_param(ch, "service", service, sizeof service);
	challenge_param(ch, "scope", scope, sizeof scope);
	if (!scope[0])
		snprintf(scope, sizeof scope, "repository:%s:pull", r->ref.path);
	if (!c || strncmp(realm, r->insecure ? "http" : "https://", r->insecure ? 4 : 8)) {
		if (c)
			curl_easy_cleanup(c);
		image_fail_kind(FAIL_AUTH);
		return error_set(err, AEGIS_E_INVALID, 0, "auth failure: %s: token realm '%.200s' is not %s",
				 r->ref.domain, realm, r->insecure ? "an HTTP(S) URL" : "an HTTPS URL");
	}
	es = curl_easy_escape(c, service, 0);
	esc = curl_easy_escape(c, scope, 0);
	snprintf(url, sizeof url, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?",
		 es ? es : "", esc ? esc : "");
	curl_free(es);
	curl_free(esc);
	curl_easy_cleanup(c);
	/* the realm gets our credentials (Basic) when we have them */
	asker.bearer = NULL;
	asker.basic = r->have_creds;
	if (get(&asker, url, NULL, TOKEN_MAX, &resp, err) < 0)
		return error_prefix(err, "token");
	if (resp.code != 200) {
		char why[200];
		registry_describe(&resp, why, sizeof why);
		http_resp_free(&resp);
		if (!r->have_creds && (resp.code == 401 || resp.code == 403))
			return no_creds(r, err);
		image_fail_kind(FAIL_AUTH);
		return error_set(err, AEGIS_E_INVALID, 0, "auth failure: %s token service refused %s (%s)",
				 r->ref.domain, r->have_creds ? r->user : "anonymous access", why);
	}
	j = json_loadb(resp.body, resp.len, 0, NULL);
	tok = json_string_value(json_object_get(j, "token"));
	if (!tok)
		tok = json_string_value(json_object_get(j, "access_token"));
	free(r->bearer);
	r->bearer = tok && *tok ? strdup(tok) : NULL;
	json_decref(j);
	http_resp_free(&resp);
	if (!r->bearer) {
		image_fail_kind(FAIL_AUTH);
		return error_set(err, AEGIS_E_INVALID, 0, "auth failure: %s token service sent no token",
				 r->ref.domain);
	}
	return 0;
}

int registry_authenticate(struct registry *r, const char *ch, struct aegis_error *err)
{
	if (!strncasecmp(ch, "Bearer ", 7))
		return fetch_token(r, ch + 7, err);
	if (!strncasecmp(ch, "Basic", 5)) {
		if (!r->have_creds)
			return no_creds(r, err);
		r->basic = true;
		return 0;
	}
	image_fail_kind(FAIL_AUTH);
	return error_set(err, AEGIS_E_INVALID, 0, "auth failure: %s: unsupported challenge '%.60s'",
			 r->ref.domain, ch);
}

/* GET with one round of authentication when the registry asks for it. */
static int get_authed(struct registry *r, const char *url, const char *accept, size_t max,
		      struct http_resp *out, const char *what, struct aegis_error *err)
{
	for (int round = 0; round < 2; round++) {
		bool had_auth = r->bearer || r->basic;
		if (get(r, url, accept, max, out, err) < 0)
			return -1;
		if (out->code != 401)
			break;
		if (round == 1 || (had_auth && r->basic) || !out->www_auth[0]) {
			char why[200];
			registry_describe(out, why, sizeof why);
			image_fail_kind(FAIL_AUTH);
			return error_set(err, AEGIS_E_INVALID, 0, "auth failure: %s refused access to %s (%s)",
					 r->ref.domain, what, why);
		}
		if (registry_authenticate(r, out->www_auth, err) < 0)
			return -1;
	}
	if (out->code == 404) {
		char why[200];
		registry_describe(out, why, sizeof why);
		image_fail_kind(FAIL_NOT_FOUND);
		return error_set(err, AEGIS_E_NOTFOUND, 0, "%s not found (%s)", what, why);
	}
	if (out->code != 200) {
		char why[200];
		registry_describe(out, why, sizeof why);
		image_fail_kind(out->code == 403 ? FAIL_AUTH : FAIL_NETWORK);
		return error_set(err, AEGIS_E_SETUP, 0, "%s%s: %s", out->code == 403 ? "auth failure: " : "",
				 what, why);
	}
	return 0;
}

int registry_manifest(struct registry *r, const char *reference, struct http_resp *out,
		      struct aegis_error *err)
{
	char url[1024], what[700];

	snprintf(url, sizeof url, "%s/v2/%s/manifests/%s", r->base, r->ref.path, reference);
	snprintf(what, sizeof what, "manifest %s/%s%s%s", r->ref.domain, r->ref.path,
		 reference[0] == 's' && strchr(reference, ':') ? "@" : ":", reference);
	return get_authed(r, url, accept_manifests, OCI_MANIFEST_MAX, out, what, err);
}

int registry_blob_small(struct registry *r, const char *digest, size_t max, struct http_resp *out,
			struct aegis_error *err)
{
	char url[1024], what[700];

	registry_blob_url(r, digest, url, sizeof url);
	snprintf(what, sizeof what, "blob %s of %s/%s", digest, r->ref.domain, r->ref.path);
	return get_authed(r, url, NULL, max, out, what, err);
}
