/* tap.h — a minimal TAP producer for unit tests run by `meson test`. */
#ifndef AEGIS_TAP_H
#define AEGIS_TAP_H

#include <stdio.h>

static int tap_n, tap_failed;

#define ok(cond, ...) do { \
	int tap_ok_ = !!(cond); \
	tap_n++; \
	if (!tap_ok_) tap_failed++; \
	printf("%s %d - ", tap_ok_ ? "ok" : "not ok", tap_n); \
	printf(__VA_ARGS__); \
	printf("\n"); \
} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
