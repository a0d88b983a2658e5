/* audit.h — the tamper-evident audit log (DESIGN.md §7).
 *
 * JSON Lines, one event per line, schema-versioned. Every line carries
 * "prev": the sha256 (hex) of the previous line's bytes (without its
 * newline; 64 zeros for the first line of a file), so an edit, a removed
 * line or two swapped lines break the chain and `aegis audit verify` says
 * where. Each line: {"v":1,"seq":N,"ts":"2026-11-30T12:00:00.123456Z",
 * "type":"run.start", ...event fields..., "prev":"<64 hex>"}. */
#ifndef AEGIS_COMMON_AUDIT_H
#define AEGIS_COMMON_AUDIT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include <aegis/aegis.h>

#define AUDIT_SCHEMA 1

struct audit_log;

/* Open (create 0600) for appending; the chain continues from the last line.
 * A file whose last line is not a valid event is refused (never extended). */
int audit_open(const char *path, struct audit_log **out, struct aegis_error *err);
/* Append one event of `type`; `fields` (an object, may be NULL) is consumed.
 * The line is written whole with one write() under an exclusive flock. */
int audit_append(struct audit_log *log, const char *type, json_t *fields,
		 struct aegis_error *err);
void audit_close(struct audit_log *log);
/* Now as an event's "ts" says it: "2026-11-30T12:00:00.123456Z" (UTC,
 * compares as a string): for a writer ordering events it holds back. */
void audit_timestamp(char out[32]);

struct audit_report {
	size_t events;		/* lines read */
	size_t bad_line;	/* 1-based line of the first problem; 0 if none */
	char reason[160];	/* what is wrong there */
};
/* 0: chain intact; 1: tampered (report says where); -1: could not read. */
int audit_verify(const char *path, struct audit_report *report, struct aegis_error *err);
/* A readable timeline of the events, one line each. */
int audit_show(const char *path, FILE *out, struct aegis_error *err);

#endif
