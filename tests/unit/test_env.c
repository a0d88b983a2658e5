/* test_env.c — the command's environment: clean defaults, overrides, errors. */
#include <stdlib.h>
#include <string.h>

#include <aegis/aegis.h>
#include "../../src/sandbox/sandbox.h"
#include "tap.h"

static const char *lookup(char **envp, const char *name)
{
	size_t n = strlen(name);

	for (; *envp; envp++)
		if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

int main(void)
{
	struct aegis_spec spec = AEGIS_SPEC_DEFAULT;
	struct aegis_error err = { 0 };
	char *extra[] = { "FOO=bar", "PATH=/custom", "EMPTY=", NULL };
	char *bad[] = { "NOEQUALS", NULL };
	char **envp;

	setenv("AEGIS_TEST_LEAK", "secret", 1);
	spec.env = extra;
	envp = env_build(&spec, &err);
	ok(envp != NULL, "env builds");
	ok(envp && lookup(envp, "FOO") && !strcmp(lookup(envp, "FOO"), "bar"), "--env value present");
	ok(envp && !strcmp(lookup(envp, "PATH"), "/custom"), "--env overrides a default");
	ok(envp && lookup(envp, "EMPTY") && !*lookup(envp, "EMPTY"), "empty value allowed");
	ok(envp && !strcmp(lookup(envp, "HOME"), "/root"), "HOME default");
	ok(envp && lookup(envp, "AEGIS_TEST_LEAK") == NULL, "caller's environment does not leak");
	env_free(envp);

	spec.env = bad;
	envp = env_build(&spec, &err);
	ok(envp == NULL && err.code == AEGIS_E_INVALID && strstr(err.msg, "NOEQUALS"),
	   "entry without '=' refused with its text: %s", err.msg);
	return tap_done();
}
