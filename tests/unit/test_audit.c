/* test_audit.c — the audit log's hash chain: appending continues the chain
 * across opens and concurrent writers, and verify finds edits, removals,
 * reordering and truncation at the right line. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/common/audit.h"
#include "../../src/common/hash.h"
#include "tap.h"

/* tap.h's check() evaluates its condition twice; these conditions have side
 * effects (appends, verifies), so evaluate once. */
#define check(cond, ...) do { bool check_ = (cond); ok(check_, __VA_ARGS__); } while (0)

static char dir[] = "/tmp/aegis-test-audit-XXXXXX";

static char *tpath(const char *name)
{
	static char buf[8][256];
	static int i;
	char *p = buf[i++ % 8];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t cap = 0;

	if (!f)
		return NULL;
	FILE *m = open_memstream(&buf, &cap);
	int c;
	while ((c = fgetc(f)) != EOF)
		fputc(c, m);
	fclose(f);
	fclose(m);
	if (len)
		*len = cap;
	return buf;
}

static void spit(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "we");
	fwrite(data, 1, len, f);
	fclose(f);
}

/* Split into lines (each keeps its '\n'); returns the count. */
static size_t split(char *data, char **lines, size_t max)
{
	size_t n = 0;
	char *p = data;

	while (*p && n < max) {
		char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) + 1 : strlen(p);
		lines[n] = strndup(p, l);
		n++;
		p += l;
	}
	return n;
}

static void join(const char *path, char **lines, size_t n)
{
	FILE *f = fopen(path, "we");
	for (size_t i = 0; i < n; i++)
		fputs(lines[i], f);
	fclose(f);
}

static void free_lines(char **lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
}

/* Write n events to path through the library (open, append, close). */
static int write_events(const char *path, int n, const char *tag)
{
	struct aegis_error err = { 0 };
	struct audit_log *log;

	if (audit_open(path, &log, &err) < 0) {
		printf("# audit_open: %s\n", err.msg);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (audit_append(log, "exec", json_pack("{s:s, s:i, s:[ss]}", "tag", tag, "i", i,
							"argv", "sh", "-c"), &err) < 0) {
			printf("# audit_append: %s\n", err.msg);
			audit_close(log);
			return -1;
		}
	}
	audit_close(log);
	return 0;
}

static int verify(const char *path, struct audit_report *rep)
{
	struct aegis_error err = { 0 };
	int r = audit_verify(path, rep, &err);

	if (r < 0)
		printf("# audit_verify: %s\n", err.msg);
	else if (r > 0)
		printf("# line %zu: %s\n", rep->bad_line, rep->reason);
	return r;
}

static void test_chain(void)
{
	const char *p = tpath("chain.log");
	struct audit_report rep;
	struct aegis_error err = { 0 };
	struct audit_log *log;
	struct stat st;
	char *data, *lines[16], zero_prev[80], h[HASH_HEX_LEN + 1], want[100];
	size_t n;

	check(write_events(p, 3, "first") == 0, "three events written to a new log");
	check(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600, "log created with mode 0600");
	check(write_events(p, 2, "second") == 0, "reopened log takes two more events");
	check(verify(p, &rep) == 0 && rep.events == 5 && rep.bad_line == 0,
	   "verify: intact, 5 events (got %zu)", rep.events);

	data = slurp(p, NULL);
	n = split(data, lines, 16);
	free(data);
	check(n == 5, "five lines in the file");
	check(!strncmp(lines[0], "{\"v\":1,\"seq\":0,\"ts\":\"", 21), "first line starts v, seq 0, ts: %.40s", lines[0]);
	check(strstr(lines[0], "\",\"type\":\"exec\",\"tag\":\"first\",\"i\":0,\"argv\":[\"sh\",\"-c\"],\"prev\":\"") != NULL,
	   "key order: ts, type, fields in order, prev");
	snprintf(zero_prev, sizeof zero_prev, "\"prev\":\"%064d\"}\n", 0);
	check(strstr(lines[0], zero_prev) != NULL, "first event's prev is 64 zeros");
	/* ts: 2026-11-30T12:00:00.123456Z */
	{
		const char *ts = strstr(lines[0], "\"ts\":\"") + 6;
		check(strlen(ts) > 27 && ts[4] == '-' && ts[10] == 'T' && ts[19] == '.' && ts[26] == 'Z' && ts[27] == '"',
		   "ts is RFC 3339 UTC with microseconds: %.27s", ts);
	}
	hash_sha256_hex(lines[2], strlen(lines[2]) - 1, h);
	snprintf(want, sizeof want, "\"prev\":\"%s\"}\n", h);
	check(strstr(lines[3], want) != NULL, "prev of line 4 is the sha256 of line 3 (across reopen)");
	check(strstr(lines[4], "\"seq\":4,") != NULL, "seq continues across reopen");
	free_lines(lines, n);

	/* Fields: NULL allowed; reserved keys and non-objects refused. */
	check(audit_open(p, &log, &err) == 0, "open again");
	check(audit_append(log, "run.end", NULL, &err) == 0, "event without fields");
	err.code = AEGIS_OK;
	check(audit_append(log, "x", json_pack("{s:i}", "seq", 9), &err) < 0 && err.code == AEGIS_E_INVALID,
	   "field \"seq\" refused: %s", err.msg);
	err.code = AEGIS_OK;
	check(audit_append(log, "x", json_pack("{s:s, s:s}", "a", "b", "prev", "0"), &err) < 0 &&
	   err.code == AEGIS_E_INVALID, "field \"prev\" refused");
	err.code = AEGIS_OK;
	check(audit_append(log, "x", json_pack("[i]", 1), &err) < 0 && err.code == AEGIS_E_INVALID,
	   "fields that are not an object refused");
	check(audit_append(log, "note", json_pack("{s:s}", "text", "line one\nline two \xc3\xa9"), &err) == 0,
	   "event with a newline and UTF-8 in a value");
	audit_close(log);
	check(verify(p, &rep) == 0 && rep.events == 7, "still intact after refused events, 7 events");
	data = slurp(p, NULL);
	n = split(data, lines, 16);
	free(data);
	check(n == 7 && strstr(lines[6], "line one\\nline two \\u00E9") != NULL,
	   "newline and non-ASCII escaped: one event stays one ASCII line");
	free_lines(lines, n);
}

/* A fresh copy of a 5-event log, tampered with by fn. */
static void make_log(const char *p, int n)
{
	unlink(p);
	write_events(p, n, "t");
}

static void test_tamper(void)
{
	const char *p = tpath("tamper.log");
	struct audit_report rep;
	struct aegis_error err = { 0 };
	struct audit_log *log;
	char *data, *lines[16], *t;
	size_t n, len;

	/* One byte flipped inside line 2's content: caught by line 3's prev. */
	make_log(p, 5);
	data = slurp(p, NULL);
	n = split(data, lines, 16);
	free(data);
	t = strstr(lines[1], "\"tag\":\"t\"");
	t[7] = 'u';
	join(p, lines, n);
	check(verify(p, &rep) == 1 && rep.bad_line == 3 && strstr(rep.reason, "hash chain broken"),
	   "flipped byte in line 2 reported at line 3: %s", rep.reason);
	free_lines(lines, n);

	/* Line 2 removed. */
	make_log(p, 5);
	data = slurp(p, NULL);
	n = split(data, lines, 16);
	free(data);
	free(lines[1]);
	memmove(&lines[1], &lines[2], (n - 2) * sizeof lines[0]);
	n--;
	join(p, lines, n);
	check(verify(p, &rep) == 1 && rep.bad_line == 2 && strstr(rep.reason, "sequence jumps from 0 to 2"),
	   "removed line 2 reported at line 2: %s", rep.reason);
	check(rep.events == 2, "verify stops at the first problem (%zu lines read)", rep.events);
	free_lines(lines, n);

	/* Lines 2 and 3 swapped. */
	make_log(p, 5);
	data = slurp(p, NULL);
	n = split(data, lines, 16);
	free(data);
	t = lines[1];
	lines[1] = lines[2];
	lines[2] = t;
	join(p, lines, n);
	check(verify(p, &rep) == 1 && rep.bad_line == 2, "swapped lines 2 and 3 reported at line 2: %s", rep.reason);
	free_lines(lines, n);

	/* The last two lines swapped: the sequence goes back. */
	make_log(p, 5);
	data = slurp(p, NULL);
	n = split(data, lines, 16);
	free(data);
	t = lines[3];
	lines[3] = lines[4];
	lines[4] = t;
	join(p, lines, n);
	check(verify(p, &rep) == 1 && rep.bad_line == 4, "swapped lines 4 and 5 reported at line 4: %s", rep.reason);
	free_lines(lines, n);

	/* Line 3 replaced by a renumbered copy of line 2: the chain catches it. */
	make_log(p, 5);
	data = slurp(p, NULL);
	n = split(data, lines, 16);
	free(data);
	free(lines[2]);
	lines[2] = strdup(lines[1]);
	t = strstr(lines[2], "\"seq\":1,");
	t[6] = '2';
	join(p, lines, n);
	check(verify(p, &rep) == 1 && rep.bad_line == 3 && strstr(rep.reason, "hash chain"),
	   "forged line 3 with the right seq reported at line 3: %s", rep.reason);
	free_lines(lines, n);

	/* Not JSON. */
	make_log(p, 3);
	data = slurp(p, &len);
	data[1] = '#';
	spit(p, data, len);
	free(data);
	check(verify(p, &rep) == 1 && rep.bad_line == 1 && !strcmp(rep.reason, "not valid JSON"),
	   "garbage in line 1: %s", rep.reason);

	/* A first line with seq 0 must start the chain with zeros. */
	make_log(p, 3);
	data = slurp(p, &len);
	t = strstr(data, "\"prev\":\"0000");
	t[8] = '1';
	spit(p, data, len);
	free(data);
	check(verify(p, &rep) == 1 && rep.bad_line == 1, "first event with a nonzero prev: %s", rep.reason);

	/* Truncated last line: open refuses to extend it, verify says so. */
	make_log(p, 4);
	data = slurp(p, &len);
	spit(p, data, len - 10);
	free(data);
	err.code = AEGIS_OK;
	check(audit_open(p, &log, &err) < 0 && err.code == AEGIS_E_INVALID &&
	   strstr(err.msg, "last line is not a complete event (truncated?)") && strstr(err.msg, p),
	   "audit_open refuses a truncated log: %s", err.msg);
	check(verify(p, &rep) == 1 && rep.bad_line == 4 && !strcmp(rep.reason, "incomplete last line (truncated)"),
	   "verify: line 4 incomplete: %s", rep.reason);

	/* Only the newline missing: still refused (a writer never leaves that). */
	make_log(p, 2);
	data = slurp(p, &len);
	spit(p, data, len - 1);
	free(data);
	check(audit_open(p, &log, &err) < 0 && err.code == AEGIS_E_INVALID, "last line without newline refused");
	check(verify(p, &rep) == 1 && rep.bad_line == 2, "verify: line 2 incomplete");

	/* A last line that is JSON but not an event. */
	spit(p, "{\"hello\":1}\n", 12);
	check(audit_open(p, &log, &err) < 0 && err.code == AEGIS_E_INVALID, "foreign JSON line refused");
	spit(p, "\n", 1);
	check(audit_open(p, &log, &err) < 0 && err.code == AEGIS_E_INVALID, "empty last line refused");
	check(verify(p, &rep) == 1 && rep.bad_line == 1 && !strcmp(rep.reason, "empty line"), "verify: empty line");

	/* An empty file is a valid (empty) log. */
	spit(p, "", 0);
	check(verify(p, &rep) == 0 && rep.events == 0, "empty file: intact, 0 events");
}

/* Rotated log: the first line's seq is not 0; the chain is checked from there. */
static void test_rotated(void)
{
	const char *p = tpath("rot.log");
	struct audit_report rep;
	char *data, *lines[16];
	size_t n;

	make_log(p, 5);
	data = slurp(p, NULL);
	n = split(data, lines, 16);
	free(data);
	join(p, lines + 2, n - 2);
	check(verify(p, &rep) == 0 && rep.events == 3, "log starting at seq 2 (rotated) verifies");
	check(write_events(p, 1, "after") == 0 && verify(p, &rep) == 0 && rep.events == 4,
	   "and can be extended");
	free_lines(lines, n);
}

/* Large events: the tail search grows beyond its first window. */
static void test_large(void)
{
	const char *p = tpath("large.log");
	struct audit_report rep;
	struct aegis_error err = { 0 };
	struct audit_log *log;
	size_t big = 200 << 10;
	char *s = malloc(big + 1);

	memset(s, 'x', big);
	s[big] = '\0';
	unlink(p);
	check(audit_open(p, &log, &err) == 0, "open large.log");
	check(audit_append(log, "a", NULL, &err) == 0, "small event");
	check(audit_append(log, "blob", json_pack("{s:s}", "data", s), &err) == 0, "200 KiB event");
	audit_close(log);
	check(write_events(p, 1, "next") == 0 && verify(p, &rep) == 0 && rep.events == 3,
	   "reopen after a 200 KiB last line continues the chain");

	s = realloc(s, (1 << 20) + 10);
	memset(s, 'y', (1 << 20) + 9);
	s[(1 << 20) + 9] = '\0';
	check(audit_open(p, &log, &err) == 0, "open again");
	err.code = AEGIS_OK;
	check(audit_append(log, "blob", json_pack("{s:s}", "data", s), &err) < 0 && err.code == AEGIS_E_INVALID,
	   "event over 1 MiB refused: %s", err.msg);
	audit_close(log);
	check(verify(p, &rep) == 0 && rep.events == 3, "log unchanged by the refused event");

	/* A file whose last line exceeds 1 MiB is not ours to extend. */
	{
		FILE *f = fopen(p, "we");
		fprintf(f, "{\"v\":1,\"seq\":0,\"ts\":\"x\",\"type\":\"t\",\"d\":\"%s\",\"prev\":\"%064d\"}\n", s, 0);
		fclose(f);
	}
	check(audit_open(p, &log, &err) < 0 && err.code == AEGIS_E_INVALID && strstr(err.msg, "longer than"),
	   "last line over 1 MiB refused: %s", err.msg);
	free(s);
}

static void test_open_refusals(void)
{
	struct aegis_error err = { 0 };
	struct audit_log *log;
	struct audit_report rep;

	check(symlink(tpath("chain.log"), tpath("link.log")) == 0, "symlink made");
	check(audit_open(tpath("link.log"), &log, &err) < 0 && err.sys_errno == ELOOP,
	   "a symlink at the log path is not followed: %s", err.msg);
	check(audit_open(dir, &log, &err) < 0, "a directory refused: %s", err.msg);
	check(audit_verify(tpath("missing.log"), &rep, &err) == -1 && err.sys_errno == ENOENT &&
	   strstr(err.msg, "missing.log"), "verify of a missing file: -1, %s", err.msg);
	check(audit_verify(dir, &rep, &err) == -1, "verify of a directory: -1, %s", err.msg);
	check(audit_show(tpath("missing.log"), stdout, &err) == -1, "show of a missing file: -1");
}

/* Two writers on one file, interleaved in one process: each sees the other's lines. */
static void test_two_handles(void)
{
	const char *p = tpath("two.log");
	struct aegis_error err = { 0 };
	struct audit_log *a, *b;
	struct audit_report rep;
	bool good = true;

	unlink(p);
	check(audit_open(p, &a, &err) == 0 && audit_open(p, &b, &err) == 0, "two handles on one log");
	for (int i = 0; i < 10; i++) {
		good &= audit_append(a, "a", NULL, &err) == 0;
		good &= audit_append(b, "b", NULL, &err) == 0;
		good &= audit_append(b, "b", NULL, &err) == 0;
	}
	check(good, "30 interleaved appends");
	audit_close(a);
	audit_close(b);
	check(verify(p, &rep) == 0 && rep.events == 30, "chain intact across handles, 30 events");
}

static void test_fork_refused(void)
{
	const char *p = tpath("fork.log");
	struct aegis_error err = { 0 };
	struct audit_log *log;
	int status = -1;
	pid_t pid;

	unlink(p);
	audit_open(p, &log, &err);
	pid = fork();
	if (pid == 0) {
		int r = audit_append(log, "child", NULL, &err);
		_exit(r < 0 && err.code == AEGIS_E_INVALID ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "a log inherited through fork() refuses to append (flock would not exclude)");
	audit_close(log);
}

static void test_concurrent(void)
{
	const char *p = tpath("conc.log");
	struct audit_report rep;
	pid_t pids[2];
	bool children_ok = true;
	char *data, *lines[512];
	size_t n, per[2] = { 0, 0 };
	bool increasing = true;

	int gate[2];
	size_t switches = 0;

	unlink(p);
	/* Both writers open the log first, then start together when the gate
	 * closes, so their appends really interleave. */
	if (pipe2(gate, O_CLOEXEC) < 0)
		return;
	for (int c = 0; c < 2; c++) {
		pids[c] = fork();
		if (pids[c] == 0) {
			struct aegis_error err = { 0 };
			struct audit_log *log;
			char b;

			close(gate[1]);
			if (audit_open(p, &log, &err) < 0)
				_exit(2);
			while (read(gate[0], &b, 1) < 0 && errno == EINTR)
				;
			for (int i = 0; i < 200; i++) {
				if (audit_append(log, "exec", json_pack("{s:i, s:i}", "child", c, "i", i), &err) < 0)
					_exit(3);
				/* flock is not fair: without a pause outside the
				 * lock one writer would take it back every time. */
				usleep(20);
			}
			audit_close(log);
			_exit(0);
		}
	}
	close(gate[0]);
	usleep(20000);
	close(gate[1]);
	for (int c = 0; c < 2; c++) {
		int status;
		waitpid(pids[c], &status, 0);
		children_ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	check(children_ok, "two forked writers appended 200 events each");
	check(verify(p, &rep) == 0 && rep.events == 400, "verify: intact, 400 events (got %zu)", rep.events);
	data = slurp(p, NULL);
	n = split(data, lines, 512);
	free(data);
	for (size_t i = 0; i < n; i++) {
		json_t *ev = json_loads(lines[i], 0, NULL);
		json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
		json_int_t child = json_integer_value(json_object_get(ev, "child"));

		increasing &= seq == (json_int_t)i;
		if (child == 0 || child == 1)
			per[child]++;
		if (i > 0 && !strstr(lines[i], "\"child\":0") != !strstr(lines[i - 1], "\"child\":0"))
			switches++;
		json_decref(ev);
	}
	check(n == 400 && increasing, "seq strictly increasing 0..399");
	check(switches > 0, "the writers' events interleave (%zu alternations)", switches);
	check(per[0] == 200 && per[1] == 200, "200 events from each writer (%zu, %zu)", per[0], per[1]);
	free_lines(lines, n);
}

static void test_show(void)
{
	const char *p = tpath("show.log");
	struct aegis_error err = { 0 };
	struct audit_log *log;
	char *out = NULL;
	size_t outlen = 0;
	FILE *m;
	int r;

	unlink(p);
	audit_open(p, &log, &err);
	audit_append(log, "run.start", json_pack("{s:s, s:[ss], s:s}", "id", "ab12", "argv", "python3",
						 "fix.py", "image", "host"), &err);
	audit_append(log, "note", json_pack("{s:s, s:i, s:b}", "text", "evil\n12:00:00.000  run.end  \x1b[2J",
					    "n", 7, "ok", 1), &err);
	audit_close(log);
	{
		FILE *f = fopen(p, "ae");
		fputs("not json\n", f);
		fclose(f);
	}
	m = open_memstream(&out, &outlen);
	r = audit_show(p, m, &err);
	fclose(m);
	for (char *l = out, *e; *l; l = e + 1) {
		e = strchrnul(l, '\n');
		printf("# %.*s\n", (int)(e - l), l);
		if (!*e)
			break;
	}
	check(r == 0, "show returns 0");
	check(strstr(out, "  run.start  id=ab12 argv=[\"python3\",\"fix.py\"] image=host\n") != NULL,
	   "run.start shown with its fields, arrays as compact JSON");
	check(out[2] == ':' && out[5] == ':' && out[8] == '.' && out[12] == ' ', "line begins HH:MM:SS.mmm");
	check(strstr(out, "note  text=\"evil\\n12:00:00.000  run.end  \\u001B[2J\" n=7 ok=true\n") != NULL,
	   "strings with newlines and escapes are quoted, not printed raw");
	check(strstr(out, "?? unparseable line 3\n") != NULL, "unparseable line shown as such");
	check(!strstr(out, " seq=") && !strstr(out, " prev=") && !strstr(out, " v=") && !strstr(out, " ts="), "v, seq, prev not repeated");
	free(out);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_chain();
	test_tamper();
	test_rotated();
	test_large();
	test_open_refusals();
	test_two_handles();
	test_fork_refused();
	test_concurrent();
	test_show();
	{
		char cmd[300];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
	}
	return tap_done();
}
