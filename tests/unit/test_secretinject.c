/* test_secretinject.c — secret requests ("NAME", "NAME:env", "NAME:file")
 * into the spec's secret_env and secret_files lists: the forms accepted and
 * refused, the split by how each is given, names asked for twice, unknown
 * names, values that a "NAME=value" string cannot carry; no error ever
 * holds a value (HOSTILE.md S-01). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/common/error.h"
#include "../../src/common/secretinject.h"
#include "../../src/common/secrets.h"
#include "tap.h"

static char dir[] = "/dev/shm/aegis-secretinject-test-XXXXXX";

static size_t count(char **list)
{
	size_t n = 0;

	while (list && list[n])
		n++;
	return n;
}

static void forms(void)
{
	static const char *const good[] = { "A", "A:env", "A:file", "_x9", "API_KEY:file", NULL };
	static const char *const bad[] = { "", ":", "A:", ":file", ":env", "A:dir", "A:FILE", "A:env:file",
					   "A:file ", "1A", "A-B", "../x:file", "A/B:file", "A=B", NULL };
	char name[200];
	bool all = true;

	for (int i = 0; good[i]; i++)
		if (!secret_request_valid(good[i]))
			all = false, printf("# refused: '%s'\n", good[i]);
	ok(all, "NAME, NAME:env, NAME:file are requests");
	all = true;
	for (int i = 0; bad[i]; i++)
		if (secret_request_valid(bad[i]))
			all = false, printf("# accepted: '%s'\n", bad[i]);
	ok(all, "malformed requests are refused");
	ok(!secret_request_valid(NULL), "NULL is not a request");
	memset(name, 'A', 128);
	strcpy(name + 128, ":file");
	ok(secret_request_valid(name), "a 128-character name");
	memset(name, 'A', 129);
	strcpy(name + 129, ":file");
	ok(!secret_request_valid(name), "a 129-character name is refused");
}

static void store(const char *state)
{
	struct aegis_error err = { 0 };
	char path[512];
	struct secrets s;

	snprintf(path, sizeof path, "%s/secrets", state);
	ok(secrets_open(&s, path, &err) == 0 && secrets_set(&s, "A", "alpha-value", 11, &err) == 0 &&
	   secrets_set(&s, "B", "bravo-value", 11, &err) == 0 && secrets_set(&s, "C", "charlie", 7, &err) == 0 &&
	   secrets_set(&s, "NUL", "in\0side", 7, &err) == 0, "a store with A, B, C and NUL: %s", err.msg);
	secrets_close(&s);
}

static void loads(const char *state)
{
	struct aegis_error err = { 0 };
	char *const reqs[] = { "A", "B:file", "C:env", NULL };
	char **env = NULL, **files = NULL;

	ok(secret_inject_load(state, reqs, &env, &files, &err) == 0, "load: %s", err.msg);
	ok(count(env) == 2 && !strcmp(env[0], "A=alpha-value") && !strcmp(env[1], "C=charlie"),
	   "NAME and NAME:env go to the environment list");
	ok(count(files) == 1 && !strcmp(files[0], "B=bravo-value"), "NAME:file goes to the files list");
	secret_inject_free(env);
	secret_inject_free(files);
}

static void empty(void)
{
	struct aegis_error err = { 0 };
	char *const none[] = { NULL };
	char **env = NULL, **files = NULL;
	struct stat st;

	ok(secret_inject_load("/nonexistent/aegis-state", none, &env, &files, &err) == 0 && env && files &&
	   !env[0] && !files[0], "no requests: two empty lists, not NULL");
	ok(stat("/nonexistent/aegis-state", &st) < 0, "and no store is opened or made for them");
	secret_inject_free(env);
	secret_inject_free(files);
	ok(secret_inject_load("/nonexistent/aegis-state", NULL, &env, &files, &err) == 0 && env && files,
	   "a NULL request list is no requests");
	secret_inject_free(env);
	secret_inject_free(files);
	secret_inject_free(NULL);
	ok(1, "secret_inject_free(NULL) is fine");
}

/* A failing load: -1, both lists NULL, the message has want and no value. */
static bool fails(const char *state, char *const *reqs, const char *want)
{
	struct aegis_error err = { 0 };
	char **env = (char **)1, **files = (char **)1;
	bool r = secret_inject_load(state, reqs, &env, &files, &err) < 0 && !env && !files &&
		 strstr(err.msg, want) && !strstr(err.msg, "alpha") && !strstr(err.msg, "bravo") &&
		 !strchr(err.msg, '\n');

	if (!r)
		printf("# got: %s\n", err.msg);
	return r;
}

static void errors(const char *state)
{
	char *const twice[] = { "A", "A:file", NULL };
	char *const twice_same[] = { "B:file", "C", "B:file", NULL };
	char *const unknown[] = { "A", "B:file", "ZED:file", NULL };
	char *const malformed[] = { "A", "B:dir", NULL };
	char *const nul[] = { "A", "NUL:file", NULL };

	ok(fails(state, twice, "A is asked for twice"), "the same name as env and as file: refused");
	ok(fails(state, twice_same, "B is asked for twice"), "the same request twice: refused");
	ok(fails(state, unknown, "no secret named ZED"), "an unknown name: named in the error");
	ok(fails(state, malformed, "'B:dir'"), "a malformed request: named in the error");
	ok(fails(state, nul, "NUL holds a NUL byte"), "a value with a NUL byte: refused, not cut short");
	ok(fails("/nonexistent/aegis-state", twice, "twice"), "requests are checked before the store is opened");
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	forms();
	store(dir);
	loads(dir);
	empty();
	errors(dir);
	{
		char cmd[600];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
	}
	return tap_done();
}
