/* imagepull.h — pulling an image from the engine's side: run aegis-image
 * (installed next to the running program), so libaegis itself needs no
 * libcurl or libarchive. For `aegis run --image` and aegisd's instances. */
#ifndef AEGIS_COMMON_IMAGEPULL_H
#define AEGIS_COMMON_IMAGEPULL_H

#include <stdbool.h>

#include <aegis/aegis.h>

/* The aegis-image program next to /proc/self/exe. -1 when the path does not fit. */
int imagepull_helper(char *out, size_t len);
/* `aegis-image pull REF` into state_dir's store. quiet: no progress, and
 * its error line becomes err's message; else progress and errors go to
 * our stderr. 0 or -1 with err. */
int imagepull_run(const char *state_dir, const char *ref, bool quiet, struct aegis_error *err);
/* Resolve REF, pulling it first when the store lacks it. */
struct image_root;
int imagepull_resolve(const char *state_dir, const char *ref, bool quiet, struct image_root *out,
		      struct aegis_error *err);

#endif
