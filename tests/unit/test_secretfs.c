/* test_secretfs.c — the engine's side of secrets as files: the names it
 * accepts for /run/secrets/NAME, never a path of another shape, never one
 * twice, whatever a caller of the library passes (HOSTILE.md S-06).
 * Redaction of file values: test_redact.c. */
#include <stdlib.h>
#include <string.h>

#include <aegis/aegis.h>
#include "../../src/sandbox/sandbox.h"
#include "tap.h"

static bool refused(char *const *files, const char *want)
{
	struct aegis_error err = { 0 };
	bool r = secretfs_check(files, &err) < 0 && strstr(err.msg, want) && !strstr(err.msg, "value");

	if (!r)
		printf("# got: %s\n", err.msg);
	return r;
}

static void names(void)
{
	struct aegis_error err = { 0 };
	char *const good[] = { "A=value", "B_2=", "_x=a=b", NULL };
	char *const dots[] = { "..=value", NULL };
	char *const slash[] = { "a/b=value", NULL };
	char *const up[] = { "../etc/x=value", NULL };
	char *const noeq[] = { "value", NULL };
	char *const empty[] = { "=value", NULL };
	char *const twice[] = { "A=value", "B=x", "A=other", NULL };
	char long_name[200];
	char *const too_long[] = { long_name, NULL };

	ok(secretfs_check(NULL, &err) == 0, "no files: nothing to check");
	ok(secretfs_check(good, &err) == 0, "store names, empty and '='-holding values: accepted (%s)", err.msg);
	ok(refused(dots, "valid NAME"), "'..' refused");
	ok(refused(slash, "valid NAME"), "a '/' refused");
	ok(refused(up, "valid NAME"), "'../etc/x' refused");
	ok(refused(noeq, "valid NAME"), "an entry without '=' refused, without echoing it");
	ok(refused(empty, "valid NAME"), "an empty name refused");
	ok(refused(twice, "secret file A given twice"), "a name twice refused");
	memset(long_name, 'A', 129);
	strcpy(long_name + 129, "=v");
	ok(refused(too_long, "valid NAME"), "a 129-character name refused");
}

int main(void)
{
	names();
	return tap_done();
}
