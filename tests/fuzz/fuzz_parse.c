/* fuzz_parse.c — libFuzzer target for the parsers that read user input:
 * durations, sizes and counts from flags, NAME=VALUE environment entries.
 * Properties checked beyond "no crash": an accepted value re-parses to
 * itself when printed back, and env_build keeps every accepted entry. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <aegis/aegis.h>
#include "../../src/common/util.h"
#include "../../src/sandbox/sandbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), back[32];
	struct aegis_spec spec = AEGIS_SPEC_DEFAULT;
	struct aegis_error err;
	char *env[2] = { s, NULL };
	uint64_t v, again;
	char **envp;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (parse_size(s, &v) == 0) {
		snprintf(back, sizeof back, "%llu", (unsigned long long)v);
		if (parse_size(back, &again) != 0 || again != v)
			abort();
	}
	if (parse_duration_ms(s, &v) == 0 && v % 1000 == 0) {
		snprintf(back, sizeof back, "%llus", (unsigned long long)(v / 1000));
		if (parse_duration_ms(back, &again) != 0 || again != v)
			abort();
	}
	(void)parse_u64(s, &v);
	spec.env = env;
	envp = env_build(&spec, &err);
	if (envp) {
		bool found = false;
		for (char **e = envp; *e; e++)
			found |= strcmp(*e, s) == 0;
		if (!found)
			abort();
		env_free(envp);
	} else if (strchr(s, '=') && s[0] != '=' && strlen(s) == size) {
		abort();	/* a well-formed entry must be accepted */
	}
	free(s);
	return 0;
}
