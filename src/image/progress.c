/* progress.c — the lines a long pull redraws on a terminal: one per layer
 * with its bytes so far. Off the terminal (or --quiet, --json) nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "progress.h"

void progress_init(struct progress *p, bool on, size_t n)
{
	memset(p, 0, sizeof *p);
	p->on = on && n > 0 && (p->lines = calloc(n, sizeof *p->lines));
	p->n = p->on ? n : 0;
}

void progress_set(struct progress *p, size_t i, const char *digest, uint64_t total,
		  const char *state)
{
	if (!p->on || i >= p->n)
		return;
	snprintf(p->lines[i].label, sizeof p->lines[i].label, "%.12s", digest + 7);
	p->lines[i].total = total;
	p->lines[i].state = state;
}

void progress_update(struct progress *p, size_t i, uint64_t have, const char *state)
{
	if (!p->on || i >= p->n)
		return;
	p->lines[i].have = have;
	if (state)
		p->lines[i].state = state;
}

static void mib(uint64_t n, char *out, size_t len)
{
	snprintf(out, len, "%.1f MiB", (double)n / (1 << 20));
}

void progress_draw(struct progress *p, bool force)
{
	uint64_t now = now_us();

	if (!p->on || (!force && now - p->last_us < 100000))
		return;
	p->last_us = now;
	if (p->drawn)
		fprintf(stderr, "\033[%zuA", p->n);
	for (size_t i = 0; i < p->n; i++) {
		char have[32], total[32];
		mib(p->lines[i].have, have, sizeof have);
		mib(p->lines[i].total, total, sizeof total);
		fprintf(stderr, "\r\033[K%s  %-11s %s / %s\n", p->lines[i].label,
			p->lines[i].state ? p->lines[i].state : "", have, total);
	}
	p->drawn = true;
	fflush(stderr);
}

void progress_free(struct progress *p)
{
	free(p->lines);
	p->lines = NULL;
}
