/* redact.h — injected secrets cut out of a stream of output (redact.c). */
#ifndef AEGIS_SANDBOX_REDACT_H
#define AEGIS_SANDBOX_REDACT_H

#include <stdbool.h>
#include <stddef.h>

#define REDACT_MIN 4	/* shorter values would blank out ordinary text */

struct redactor {
	char **names, **values;
	size_t *lens;
	int n;
	char *hold;		/* the tail that may be the start of a value */
	size_t nhold;
};

/* From spec.secret_env and spec.secret_files ("NAME=value"): a value
 * read from a file is as secret as one from the environment. 0, or -1
 * (out of memory); n stays 0 when there is nothing to redact. */
int redact_init(struct redactor *r, char *const *secret_env, char *const *secret_files);
/* Data in; what is safe to pass on out through emit, each value replaced
 * by "[secret:NAME]", even when split across feeds. eof: the rest too. */
void redact_feed(struct redactor *r, const char *data, size_t len, bool eof,
		 void (*emit)(void *arg, const char *buf, size_t len), void *arg);
void redact_free(struct redactor *r);

#endif
