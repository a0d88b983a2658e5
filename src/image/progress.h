/* progress.h — per-layer progress of a pull on a terminal (stderr). */
#ifndef AEGIS_IMAGE_PROGRESS_H
#define AEGIS_IMAGE_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct progress_line {
	char label[24];		/* short digest */
	uint64_t have, total;
	const char *state;	/* "waiting", "downloading", "unpacking", "done", "exists" */
};

struct progress {
	bool on;		/* a terminal, and not --quiet or --json */
	size_t n;
	struct progress_line *lines;
	uint64_t last_us;
	bool drawn;
};

void progress_init(struct progress *p, bool on, size_t n);
void progress_set(struct progress *p, size_t i, const char *digest, uint64_t total,
		  const char *state);
void progress_update(struct progress *p, size_t i, uint64_t have, const char *state);
/* Redraw (at most ten times a second unless force). */
void progress_draw(struct progress *p, bool force);
void progress_free(struct progress *p);

#endif
