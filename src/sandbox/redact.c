/* redact.c — replacing injected secret values in a run's output.
 *
 * A tail of what came that could be the start of a value is held back
 * until more comes (or the end): a value split across two writes is still
 * found whole, and output that could not be one is never delayed. Only a
 * run that was given secrets pays for this. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"

/* Each "NAME=value" of list with a value long enough to look for. */
static int redact_add(struct redactor *r, char *const *list)
{
	for (char *const *e = list; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		size_t len = eq ? strlen(eq + 1) : 0;
		if (len < REDACT_MIN)
			continue;
		r->names[r->n] = strndup(*e, (size_t)(eq - *e));
		r->values[r->n] = strdup(eq + 1);
		if (!r->names[r->n] || !r->values[r->n])
			return -1;
		r->lens[r->n] = len;
		r->n++;
	}
	return 0;
}

int redact_init(struct redactor *r, char *const *secret_env, char *const *secret_files)
{
	int count = 0;

	memset(r, 0, sizeof *r);
	for (char *const *e = secret_env; e && *e; e++)
		count++;
	for (char *const *e = secret_files; e && *e; e++)
		count++;
	if (!count)
		return 0;
	r->names = calloc((size_t)count, sizeof *r->names);
	r->values = calloc((size_t)count, sizeof *r->values);
	r->lens = calloc((size_t)count, sizeof *r->lens);
	if (!r->names || !r->values || !r->lens)
		return -1;
	return redact_add(r, secret_env) < 0 || redact_add(r, secret_files) < 0 ? -1 : 0;
}

/* At buf[i]: the longest value that lies there whole (-1: none); *partial
 * when, the stream going on, the rest of buf could start a longer one. */
static int match_at(const struct redactor *r, const char *buf, size_t i, size_t total, bool *partial)
{
	int best = -1;

	*partial = false;
	for (int k = 0; k < r->n; k++) {
		if (i + r->lens[k] <= total) {
			if ((best < 0 || r->lens[k] > r->lens[best]) && !memcmp(buf + i, r->values[k], r->lens[k]))
				best = k;
		} else if (!memcmp(buf + i, r->values[k], total - i)) {
			*partial = true;
		}
	}
	return best;
}

void redact_feed(struct redactor *r, const char *data, size_t len, bool eof,
		 void (*emit)(void *arg, const char *buf, size_t len), void *arg)
{
	size_t total = r->nhold + len, i = 0, start = 0, keep = 0;
	char *buf = malloc(total ? total : 1), mark[200];

	if (!buf)
		return;
	if (r->nhold)
		memcpy(buf, r->hold, r->nhold);
	if (len)
		memcpy(buf + r->nhold, data, len);
	/* Only a tail that could be the start of a value is held back, so
	 * output (a shell's prompt) flows as it comes when it holds none. */
	while (i < total) {
		bool partial;
		int hit = match_at(r, buf, i, total, &partial);
		if (partial && !eof) {
			keep = total - i;	/* wait: maybe a (longer) value */
			break;
		}
		if (hit < 0) {
			i++;
			continue;
		}
		if (i > start)
			emit(arg, buf + start, i - start);
		snprintf(mark, sizeof mark, "[secret:%s]", r->names[hit]);
		emit(arg, mark, strlen(mark));
		i += r->lens[hit];
		start = i;
	}
	if (total - keep > start)
		emit(arg, buf + start, total - keep - start);
	OPENSSL_cleanse(r->hold, r->nhold);
	free(r->hold);
	r->nhold = keep;
	r->hold = keep ? malloc(keep) : NULL;
	if (r->hold)
		memcpy(r->hold, buf + total - keep, keep);
	else
		r->nhold = 0;
	OPENSSL_cleanse(buf, total);
	free(buf);
}

void redact_free(struct redactor *r)
{
	for (int k = 0; k < r->n; k++) {
		free(r->names[k]);
		if (r->values[k]) {
			OPENSSL_cleanse(r->values[k], r->lens[k]);
			free(r->values[k]);
		}
	}
	free(r->names);
	free(r->values);
	free(r->lens);
	if (r->hold) {
		OPENSSL_cleanse(r->hold, r->nhold);
		free(r->hold);
	}
	memset(r, 0, sizeof *r);
}
