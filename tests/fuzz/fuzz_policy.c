/* fuzz_policy.c — libFuzzer target for policy files, which come from users.
 * Properties checked beyond "no crash, no leak": a refused input gives one
 * line of AEGIS_E_INVALID and leaves the policy empty; an accepted input's
 * canonical JSON parses again to the same digest (the canonical form is a
 * fixed point, so the audit log's policy hash is stable). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <aegis/aegis.h>
#include "../../src/common/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct aegis_policy empty;
	struct aegis_policy p, q;
	struct aegis_error err;
	char d1[65], d2[65], *text;
	json_t *j;

	memset(&err, 0, sizeof err);
	if (policy_parse((const char *)data, size, "fuzz", &p, &err) < 0) {
		if (err.code != AEGIS_E_INVALID || !memchr(err.msg, '\0', sizeof err.msg) ||
		    strchr(err.msg, '\n') || memcmp(&p, &empty, sizeof p) != 0)
			abort();
		return 0;
	}
	j = policy_to_json(&p);
	text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (!text)
		abort();
	if (policy_parse(text, strlen(text), "fuzz-again", &q, &err) < 0)
		abort();
	policy_digest(&p, d1);
	policy_digest(&q, d2);
	if (strlen(d1) != 64 || strcmp(d1, d2) != 0)
		abort();
	free(text);
	json_decref(j);
	policy_free(&p);
	policy_free(&q);
	return 0;
}
