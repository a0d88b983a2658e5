/* test_ctlwire.c — the header of a vm instance's control messages
 * (ctlwire.h): a round trip over a socketpair that leaves the bytes after
 * the message unread (they are the relayed connection's), and every way a
 * guest's answer can be malformed, refused with its reason; the host's
 * clock message after a resume, and every kind of junk the guest must
 * refuse instead of setting its clock from it. Also the relay
 * used on both sides: both ways, the outer side's half-close passed on,
 * and its end at the inner side's EOF. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../src/common/ctlwire.h"
#include "tap.h"

static void raw(int fd, const void *buf, size_t len)
{
	if (write(fd, buf, len) != (ssize_t)len)
		abort();
}

static const char *recv_why(const unsigned char *bytes, size_t len, size_t max)
{
	int sp[2];
	const char *why = NULL;
	bool with_fd;
	json_t *j;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		abort();
	raw(sp[0], bytes, len);
	close(sp[0]);
	j = ctlwire_recv(sp[1], max, 1000, &with_fd, &why);
	close(sp[1]);
	json_decref(j);
	return j ? NULL : why;
}

static void test_round_trip(void)
{
	int sp[2];
	const char *why = NULL, *msg = "{\"connect\":8000}";
	bool with_fd = false;
	char rest[16] = "";
	json_t *j;

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
	ok(ctlwire_send(sp[0], msg, strlen(msg), true) == 0, "a message is sent");
	raw(sp[0], "after", 5);	/* the connection's own bytes, right behind it */
	j = ctlwire_recv(sp[1], CTLWIRE_ANSWER_MAX, 1000, &with_fd, &why);
	ok(j && json_integer_value(json_object_get(j, "connect")) == 8000 && with_fd,
	   "it comes back whole, with its descriptor flag");
	ok(read(sp[1], rest, sizeof rest) == 5 && !memcmp(rest, "after", 5),
	   "and nothing past it was read: the relayed bytes are intact");
	json_decref(j);
	close(sp[0]);
	close(sp[1]);
}

static void test_refusals(void)
{
	unsigned char h[CTLWIRE_HEADER + 8];
	uint32_t len;
	bool fd;

	ctlwire_header(h, 2, false);
	memcpy(h + CTLWIRE_HEADER, "{}", 2);
	ok(recv_why(h, CTLWIRE_HEADER + 2, 100) == NULL, "a well-formed empty object is taken");
	h[4] = 0x80;
	ok(recv_why(h, CTLWIRE_HEADER + 2, 100) && strstr(recv_why(h, CTLWIRE_HEADER + 2, 100), "unknown flag"),
	   "an unknown flag is refused");
	ctlwire_header(h, 2, false);
	h[6] = 1;
	ok(ctlwire_parse_header(h, 100, &len, &fd) && strstr(ctlwire_parse_header(h, 100, &len, &fd), "reserved"),
	   "a non-zero reserved byte is refused");
	ctlwire_header(h, 0, false);
	ok(ctlwire_parse_header(h, 100, &len, &fd) != NULL, "an empty message is refused");
	ctlwire_header(h, 101, false);
	ok(ctlwire_parse_header(h, 100, &len, &fd) && strstr(ctlwire_parse_header(h, 100, &len, &fd), "bound"),
	   "a length over the bound is refused before anything is allocated");
	ctlwire_header(h, 0xffffffffu, false);
	ok(ctlwire_parse_header(h, CTLWIRE_REQUEST_MAX, &len, &fd) != NULL, "so is a 4 GiB length");
	ctlwire_header(h, 3, false);
	memcpy(h + CTLWIRE_HEADER, "[1]", 3);
	ok(recv_why(h, CTLWIRE_HEADER + 3, 100) && strstr(recv_why(h, CTLWIRE_HEADER + 3, 100), "JSON object"),
	   "JSON that is not an object is refused");
	ctlwire_header(h, 7, false);
	memcpy(h + CTLWIRE_HEADER, "{\"a\":1,", 7);
	ok(recv_why(h, CTLWIRE_HEADER + 7, 100) != NULL, "truncated JSON is refused");
	ctlwire_header(h, 40, false);
	ok(recv_why(h, CTLWIRE_HEADER + 4, 100) && strstr(recv_why(h, CTLWIRE_HEADER + 4, 100), "ended"),
	   "a stream that ends inside the message is refused");
	ok(recv_why(h, 3, 100) && strstr(recv_why(h, 3, 100), "ended"), "so is one that ends inside the header");
	{
		const char dup[] = "{\"ok\":true,\"ok\":false}";
		unsigned char m[CTLWIRE_HEADER + sizeof dup];

		ctlwire_header(m, sizeof dup - 1, true);
		memcpy(m + CTLWIRE_HEADER, dup, sizeof dup - 1);
		ok(recv_why(m, sizeof m - 1, 100) != NULL, "duplicate keys are refused");
	}
}

static const char *clock_why(const char *text)
{
	static char why[128];
	struct timespec ts = { -1, -1 };
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	const char *w = ctlwire_clock_parse(j, &ts);

	snprintf(why, sizeof why, "%s", w ? w : "");
	json_decref(j);
	if (!w && (ts.tv_sec < CTLWIRE_CLOCK_SEC_MIN || ts.tv_nsec < 0 || ts.tv_nsec >= 1000000000L))
		abort();	/* taken, yet out of its bounds */
	return w ? why : NULL;
}

static void test_clock(void)
{
	static const char *const junk[] = {
		"{}",						/* no clock */
		"[1]", "null", "\"clock\"",			/* not an object */
		"{\"clock\":{\"sec\":1700000000,\"nsec\":0},\"argv\":[\"sh\"]}",	/* more than the clock */
		"{\"clock\":null}", "{\"clock\":[1700000000,0]}",
		"{\"clock\":{\"sec\":1700000000}}",		/* nsec missing */
		"{\"clock\":{\"sec\":1700000000,\"nsec\":0,\"tz\":1}}",	/* a key more */
		"{\"clock\":{\"sec\":\"1700000000\",\"nsec\":0}}",	/* a string */
		"{\"clock\":{\"sec\":1700000000.5,\"nsec\":0}}",	/* a real */
		"{\"clock\":{\"sec\":true,\"nsec\":0}}",
		"{\"clock\":{\"sec\":1700000000,\"nsec\":-1}}",
		"{\"clock\":{\"sec\":1700000000,\"nsec\":1000000000}}",
		"{\"clock\":{\"sec\":0,\"nsec\":0}}",		/* 1970: before the bound */
		"{\"clock\":{\"sec\":-1,\"nsec\":0}}",
		"{\"clock\":{\"sec\":1099511627777,\"nsec\":0}}",	/* past 2^40 */
		"{\"clock\":{\"sec\":9223372036854775807,\"nsec\":0}}",
	};
	struct timespec now, ts = { 0, 0 };
	json_t *j = ctlwire_clock_now(), *bad;
	char *text;
	size_t refused = 0;

	clock_gettime(CLOCK_REALTIME, &now);
	ok(j && !ctlwire_clock_parse(j, &ts) && ts.tv_sec >= now.tv_sec - 1 && ts.tv_sec <= now.tv_sec,
	   "the host's clock message is taken, with the host's time");
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	ok(text && !strncmp(text, "{\"clock\":{\"sec\":", 16), "it is {\"clock\": {\"sec\", \"nsec\"}} (%s)",
	   text ? text : "none");
	free(text);
	json_decref(j);
	ok(!clock_why("{\"clock\":{\"nsec\":999999999,\"sec\":1700000000}}"), "keys in any order, nsec up to 10^9 - 1");
	bad = json_pack("{s:I, s:I}", "sec", (json_int_t)1700000000, "nsec", (json_int_t)7);
	ok(!ctlwire_clock_value(bad, &ts) && ts.tv_sec == 1700000000 && ts.tv_nsec == 7,
	   "the bare value (the REQUEST's clock) is taken as it is");
	json_decref(bad);
	for (size_t i = 0; i < sizeof junk / sizeof *junk; i++)
		if (clock_why(junk[i]))
			refused++;
		else
			printf("# taken: %s\n", junk[i]);
	ok(refused == sizeof junk / sizeof *junk, "every malformed clock is refused with a reason (%zu of %zu)",
	   refused, sizeof junk / sizeof *junk);
	ok(clock_why("{\"clock\":{\"sec\":1700000000,\"nsec\":1000000000}}") &&
		   strstr(clock_why("{\"clock\":{\"sec\":1700000000,\"nsec\":1000000000}}"), "nsec"),
	   "the reason names the field");
}

static void test_timeout(void)
{
	int sp[2];
	const char *why = NULL;
	bool fd;

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
	raw(sp[0], "\0\0", 2);	/* a header begun and never finished */
	ok(!ctlwire_recv(sp[1], 100, 100, &fd, &why) && why && strstr(why, "in time"),
	   "a peer that stops mid-message is given up on");
	close(sp[0]);
	close(sp[1]);
}

struct relay_args {
	int outer, inner;
	int rc;
};

static void *relay_thread(void *arg)
{
	struct relay_args *a = arg;

	a->rc = ctlwire_relay(a->outer, a->inner);
	return NULL;
}

static char big_buf[300000];	/* more than a socket buffer */

static void *writer_thread(void *arg)
{
	int fd = *(int *)arg;

	memset(big_buf, 'x', sizeof big_buf);
	raw(fd, big_buf, sizeof big_buf);
	close(fd);
	return NULL;
}

static void test_relay(void)
{
	int o[2], i[2];
	struct relay_args a;
	pthread_t t, w;
	char buf[65536];
	size_t big = sizeof big_buf, got = 0;
	ssize_t n;

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, o);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, i);
	a = (struct relay_args){ .outer = o[1], .inner = i[0], .rc = 9 };
	pthread_create(&t, NULL, relay_thread, &a);
	raw(o[0], "ping", 4);
	shutdown(o[0], SHUT_WR);	/* the outer side's half-close */
	n = read(i[1], buf, sizeof buf);
	ok(n == 4 && !memcmp(buf, "ping", 4), "outer to inner");
	ok(read(i[1], buf, sizeof buf) == 0, "the outer side's half-close reaches inner");
	/* the relay must keep going after outer's EOF */
	pthread_create(&w, NULL, writer_thread, &i[1]);
	/* outer is not shut at the end: the caller may still write to it */
	while (got < big && (n = read(o[0], buf, sizeof buf)) > 0)
		got += (size_t)n;
	pthread_join(t, NULL);
	pthread_join(w, NULL);
	ok(got == big, "inner to outer, every byte after outer's half-close (%zu)", got);
	ok(a.rc == 0, "the relay ends at inner's EOF");
	close(o[0]);
	close(o[1]);
	close(i[0]);
}

int main(void)
{
	test_round_trip();
	test_refusals();
	test_clock();
	test_timeout();
	test_relay();
	return tap_done();
}
