/* test_redact.c — secret values cut out of a stream of output (redact.c):
 * whole or split across writes, the longest value first, and output that
 * cannot be the start of a value passed on at once. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/sandbox/redact.h"
#include "tap.h"

struct out {
	char buf[4096];
	size_t len;
};

static void collect(void *arg, const char *data, size_t len)
{
	struct out *o = arg;

	memcpy(o->buf + o->len, data, len);
	o->len += len;
	o->buf[o->len] = '\0';
}

/* Feed the pieces (NULL-terminated) and then the end; the output. */
static bool through(struct redactor *r, const char *const *pieces, const char *want)
{
	struct out o = { .len = 0 };

	for (; *pieces; pieces++)
		redact_feed(r, *pieces, strlen(*pieces), false, collect, &o);
	redact_feed(r, NULL, 0, true, collect, &o);
	return !strcmp(o.buf, want);
}

int main(void)
{
	char *env[] = { "API_KEY=sk-live-0123456789", "SHORT=abc", "LONGER=sk-live-0123456789-extra", NULL };
	char *files[] = { "DB=hunter2-db", NULL };
	struct redactor r;
	struct out o = { .len = 0 };

	ok(redact_init(&r, env, files) == 0 && r.n == 3, "values of 4 bytes or more are kept (%d)", r.n);
	ok(through(&r, (const char *[]){ "key=sk-live-0123456789\n", NULL }, "key=[secret:API_KEY]\n"),
	   "a whole value");
	ok(through(&r, (const char *[]){ "a sk-li", "ve-01234", "56789 b", NULL }, "a [secret:API_KEY] b"),
	   "a value split across three writes");
	ok(through(&r, (const char *[]){ "sk-live-0123456789-extra!", NULL }, "[secret:LONGER]!"),
	   "the longest value that matches wins");
	ok(through(&r, (const char *[]){ "sk-live-0123456789", "-extra", NULL }, "[secret:LONGER]"),
	   "a value that may go on into a longer one waits for it");
	ok(through(&r, (const char *[]){ "db: hunter2-db abc", NULL }, "db: [secret:DB] abc"),
	   "file secrets too; a 3-byte value is left alone");
	ok(through(&r, (const char *[]){ "sk-live-01", NULL }, "sk-live-01"),
	   "a value's start at the end of the stream is passed on");
	/* nothing held back when the tail cannot start a value: a prompt shows */
	redact_feed(&r, "$ ", 2, false, collect, &o);
	ok(o.len == 2 && !memcmp(o.buf, "$ ", 2), "a prompt is passed on at once");
	redact_feed(&r, "x sk-", 5, false, collect, &o);
	ok(o.len == 4 && !memcmp(o.buf, "$ x ", 4), "only the tail that could start a value waits");
	redact_feed(&r, "nope", 4, false, collect, &o);
	ok(o.len == 11 && !strcmp(o.buf, "$ x sk-nope"),
	   "and goes once it cannot");
	redact_free(&r);
	ok(redact_init(&r, NULL, NULL) == 0 && r.n == 0, "nothing to redact");
	redact_free(&r);
	return tap_done();
}
