/* logs.c — `aegis logs NAME [--follow] [--since WHEN] [--tail N]
 * [--timestamps]`: an instance's output, its stdout to stdout and its
 * stderr to stderr, byte for byte.
 *
 * Always the streamed form of GET /v1/instances/NAME/logs (JSON lines, as
 * stored; src/common/logrecord.h): unbounded, exact where the JSON answer
 * is bounded and shows bad UTF-8 as U+FFFD, and the same code follows. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/httpc.h"
#include "../common/logrecord.h"
#include "../common/paths.h"
#include "../common/util.h"
#include "cli.h"

#define LINE_MAX_BYTES (1U << 20)	/* a record is far smaller (LOGRECORD_LINE_MAX) */

static const char logs_usage[] =
	"usage: aegis logs NAME [--follow|-f] [--since WHEN] [--tail N] [--timestamps|-t]\n"
	"  --follow      keep printing new output until the instance ends\n"
	"  --since WHEN  only output from WHEN on: a duration back from now (10s, 5m, 2h),\n"
	"                unix seconds (1712345678.5) or RFC 3339 (2024-04-05T12:00:00Z)\n"
	"  --tail N      only the last N lines of stdout and of stderr (0: all)\n"
	"  --timestamps  begin each line with the time it was written (RFC 3339, UTC)\n";

struct printer {
	bool timestamps;
	bool mid_line[2];		/* the stream's last record did not end its line */
	unsigned char *raw;		/* room to decode a record's raw bytes */
};

/* WHEN → unix ns. A bare number is a time (unix seconds), as in docker;
 * with a unit it is a duration back from now. */
static int since_arg(const char *s, uint64_t *ns)
{
	struct timespec now;
	uint64_t ms, now_ns;

	if (*s && strspn(s, "0123456789.") == strlen(s))
		return logrecord_time_parse(s, ns);
	if (parse_duration_ms(s, &ms) < 0)
		return logrecord_time_parse(s, ns);
	clock_gettime(CLOCK_REALTIME, &now);
	now_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
	if (ms > now_ns / 1000000)
		return -1;
	*ns = now_ns - ms * 1000000;
	return 0;
}

/* One record's bytes to stdout or stderr, each line begun with its time if asked. */
static int print_bytes(struct printer *p, int stream, uint64_t t, const char *b, size_t n)
{
	char when[48];

	logrecord_time_format(t, when, sizeof when - 1);
	strcat(when, " ");
	while (n) {
		const char *nl = memchr(b, '\n', n);
		size_t k = nl ? (size_t)(nl - b) + 1 : n;
		if (p->timestamps && !p->mid_line[stream] && write_all(stream + 1, when, strlen(when)) < 0)
			return -1;
		if (write_all(stream + 1, b, k) < 0)
			return -1;
		p->mid_line[stream] = !nl;
		b += k;
		n -= k;
	}
	return 0;
}

/* One JSON line of the stream: 0, or an exit status after a one-line error. */
static int print_record(struct printer *p, const char *line, size_t n)
{
	json_t *r = json_loadb(line, n, JSON_ALLOW_NUL, NULL);
	json_t *s = json_object_get(r, "s"), *log = json_object_get(r, "log"), *raw = json_object_get(r, "raw");
	json_t *dropped = json_object_get(r, "dropped");
	uint64_t t = (uint64_t)json_integer_value(json_object_get(r, "t"));
	int stream = json_is_string(s) && !strcmp(json_string_value(s), "stderr"), rc = 0;
	ssize_t len;

	if (!r || !json_is_string(s) || (!json_is_string(log) && !json_is_integer(dropped))) {
		json_decref(r);
		return cli_usage_error("logs: aegisd sent something that is not a log record");
	}
	if (dropped) {
		/* the log says where it lost output; so do we, on stderr */
		fprintf(stderr, "aegis: logs: %lld bytes of %s were lost here (the log's disk was too slow or full)\n",
			(long long)json_integer_value(dropped), json_string_value(s));
	} else if (json_is_string(raw)) {
		/* not UTF-8: the exact bytes are in raw */
		len = json_string_length(raw) <= LINE_MAX_BYTES
		      ? logrecord_b64_decode(json_string_value(raw), json_string_length(raw), p->raw) : -1;
		if (len < 0)
			rc = cli_usage_error("logs: aegisd sent a record with bad raw bytes");
		else if (print_bytes(p, stream, t, (const char *)p->raw, (size_t)len) < 0)
			rc = cli_usage_error("logs: cannot write the output: %s", strerror(errno));
	} else if (print_bytes(p, stream, t, json_string_value(log), json_string_length(log)) < 0) {
		rc = cli_usage_error("logs: cannot write the output: %s", strerror(errno));
	}
	json_decref(r);
	return rc;
}

/* An answer that is not 200: aegisd's error, one line. */
static int print_error(struct httpc_stream *hs, const char *name)
{
	struct aegis_error err = { 0 };
	char body[65536];
	size_t len = 0;
	ssize_t n;
	json_t *j, *e;
	int rc;

	while (len < sizeof body - 1 && (n = httpc_stream_read(hs, body + len, sizeof body - 1 - len, &err)) > 0)
		len += (size_t)n;
	body[len] = '\0';
	j = json_loads(body, 0, NULL);
	e = json_object_get(j, "error");
	if (!e)
		rc = cli_usage_error("logs: %s: aegisd answered %d", name, hs->status);
	else
		rc = cli_usage_error("logs: %s%s%s", json_string_value(json_object_get(e, "field")) ?: "",
				     json_object_get(e, "field") ? ": " : "",
				     json_string_value(json_object_get(e, "message")) ?: "error");
	json_decref(j);
	return rc;
}

/* Read the stream to its end, printing each record as its line completes. */
static int print_stream(struct httpc_stream *hs, struct printer *p)
{
	struct aegis_error err = { 0 };
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	ssize_t n = 0;
	int rc = 0;

	if (!buf)
		return cli_usage_error("logs: out of memory");
	while (rc == 0 && (n = httpc_stream_read(hs, buf + len, cap - len, &err)) > 0) {
		char *start = buf, *nl;
		len += (size_t)n;
		while (rc == 0 && (nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
			rc = print_record(p, start, (size_t)(nl - start));
			start = nl + 1;
		}
		len -= (size_t)(start - buf);
		memmove(buf, start, len);
		if (len == cap) {
			char *grown = cap < LINE_MAX_BYTES ? realloc(buf, cap *= 2) : NULL;
			if (!grown) {
				rc = cli_usage_error("logs: aegisd sent a record longer than %u bytes", LINE_MAX_BYTES);
				break;
			}
			buf = grown;
		}
	}
	if (rc == 0 && n < 0)
		rc = cli_fail(&err);
	else if (rc == 0 && len)
		rc = cli_usage_error("logs: aegisd's answer ended inside a record");
	free(buf);
	return rc;
}

int cmd_logs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' }, { "since", required_argument, NULL, 's' },
		{ "tail", required_argument, NULL, 'n' }, { "timestamps", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	struct aegis_error err = { 0 };
	struct printer p = { 0 };
	struct httpc_stream hs;
	const char *name;
	char sock[256], path[256], since[48] = "";
	uint64_t tail = 0, when;
	bool follow = false;
	int opt, rc;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "fn:th", opts, NULL)) != -1) {
		switch (opt) {
		case 'f': follow = true; break;
		case 't': p.timestamps = true; break;
		case 'h': return fputs(logs_usage, stdout), 0;
		case 'n':
			if (parse_u64(optarg, &tail) < 0 || tail > 1000000000)
				return cli_usage_error("logs: --tail takes a whole number, got '%s'", optarg);
			break;
		case 's':
			if (since_arg(optarg, &when) < 0)
				return cli_usage_error("logs: --since takes a duration (10s, 5m, 2h), unix seconds or "
						       "RFC 3339 time, got '%s'", optarg);
			snprintf(since, sizeof since, "&since=%llu.%09llu", (unsigned long long)(when / 1000000000),
				 (unsigned long long)(when % 1000000000));
			break;
		default:
			return cli_usage_error("logs: option '%s' is unknown or needs a value (see 'aegis logs --help')",
					       argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("logs: needs one instance name (usage: aegis logs NAME [--follow] "
				       "[--since WHEN] [--tail N] [--timestamps])");
	name = argv[optind];
	if (strlen(name) > 64 || strcspn(name, "/?&#% ") != strlen(name) || !*name)
		return cli_usage_error("logs: not an instance name: '%s'", name);
	snprintf(path, sizeof path, "/v1/instances/%s/logs?format=ndjson&tail=%llu%s%s", name,
		 (unsigned long long)tail, since, follow ? "&follow=true" : "");
	if (paths_socket(sock, sizeof sock, &err) < 0)
		return cli_fail(&err);
	if ((rc = daemon_ensure(sock)) != 0)
		return rc;
	if (httpc_stream_open(sock, path, &hs, &err) < 0)
		return cli_fail(&err);
	if (hs.status != 200)
		rc = print_error(&hs, name);
	else if (!(p.raw = malloc(LINE_MAX_BYTES)))
		rc = cli_usage_error("logs: out of memory");
	else
		rc = print_stream(&hs, &p);
	httpc_stream_close(&hs);
	free(p.raw);
	return rc;
}
