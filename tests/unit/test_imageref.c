/* test_imageref.c — image references as users type them, normalised the
 * way docker does, and the malformed ones refused. */
#include <string.h>

#include "../../src/common/imagestore.h"
#include "../../src/common/imageref.h"
#include "tap.h"

static int canon_is(const char *in, const char *want)
{
	struct aegis_error err = { 0 };
	char out[512];

	return image_ref_canonical(in, out, sizeof out, &err) == 0 && !strcmp(out, want);
}

static int refused(const char *in)
{
	struct aegis_error err = { 0 };
	char out[512];

	return image_ref_canonical(in, out, sizeof out, &err) < 0 && err.msg[0];
}

int main(void)
{
	static const char dg[] = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	struct aegis_error err = { 0 };
	struct image_ref r;
	char buf[512];

	ok(canon_is("busybox", "docker.io/library/busybox:latest"), "short name: docker.io/library, :latest");
	ok(canon_is("python:3.12", "docker.io/library/python:3.12"), "short name with tag");
	ok(canon_is("python:3.12-alpine", "docker.io/library/python:3.12-alpine"), "tag with dash");
	ok(canon_is("team/tools", "docker.io/team/tools:latest"), "user repo on docker.io");
	ok(canon_is("docker.io/python", "docker.io/library/python:latest"), "explicit docker.io gets library/");
	ok(canon_is("index.docker.io/library/x:1", "docker.io/library/x:1"), "index.docker.io is docker.io");
	ok(canon_is("registry.example.com/team/tools:1.4", "registry.example.com/team/tools:1.4"),
	   "registry with a dot");
	ok(canon_is("localhost/app", "localhost/app:latest"), "localhost is a registry");
	ok(canon_is("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"), "registry with port, deep path");
	ok(canon_is("localhost:5000/app", "localhost:5000/app:latest"), "port colon is not a tag");
	snprintf(buf, sizeof buf, "alpine@%s", dg);
	ok(canon_is(buf, "docker.io/library/alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
	   "digest-pinned: no :latest added");
	snprintf(buf, sizeof buf, "alpine:3.19@%s", dg);
	ok(canon_is(buf, "docker.io/library/alpine:3.19@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
	   "tag and digest both kept");
	ok(canon_is(dg, dg), "a bare digest is its own name");
	ok(canon_is("a_b/c__d/e-f--g.h:T_1.x-y", "docker.io/a_b/c__d/e-f--g.h:T_1.x-y"), "separators");

	ok(refused(""), "empty refused");
	ok(refused("Python"), "uppercase repository refused");
	ok(refused("reg.io/Team/x"), "uppercase path refused");
	ok(refused("python:"), "empty tag refused");
	ok(refused("python:-x"), "tag starting with '-' refused");
	ok(refused("python:a/b"), "'/' after the tag colon makes a bad name");
	ok(refused("a..b/c"), "'..' in a component refused");
	ok(refused("a/../b"), "'..' as a component refused");
	ok(refused("/abs"), "leading slash refused");
	ok(refused("a//b"), "empty component refused");
	ok(refused("x@sha256:abc"), "short digest refused");
	ok(refused("x@sha512:0123"), "other digest algorithms refused");
	ok(refused("reg-.io/x"), "registry label ending in '-' refused");
	ok(refused("reg.io:99999/x"), "port out of range refused");
	ok(refused("x y"), "space refused");
	ok(refused("x\n"), "newline refused");
	{
		char longtag[200];
		memset(longtag, 'a', sizeof longtag - 1);
		longtag[sizeof longtag - 1] = '\0';
		snprintf(buf, sizeof buf, "x:%s", longtag);
		ok(refused(buf), "tag over 128 characters refused");
	}
	ok(imageref_parse("127.0.0.1:5000/a/b:v1", &r, &err) == 0 && !strcmp(r.domain, "127.0.0.1:5000") &&
	   !strcmp(r.path, "a/b") && !strcmp(r.tag, "v1") && !r.digest[0], "parts of a reference");
	ok(imageref_is_digest(dg) && !imageref_is_digest("sha256:ABCDEF") &&
	   !imageref_is_digest("sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"),
	   "digest syntax: lowercase hex only");
	return tap_done();
}
