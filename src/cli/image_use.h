/* image_use.h — an image for a run or an instance (image_use.c). */
#ifndef AEGIS_CLI_IMAGE_USE_H
#define AEGIS_CLI_IMAGE_USE_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/imagestore.h"

/* REF from the store into *root (pulled first when missing; quiet: no
 * progress). 0; -1 with err; or a pull's exit status (> 0), aegis-image
 * having said why on stderr. The caller frees root (image_root_free) once
 * the sandbox is done with it. */
int image_use(const char *ref, bool quiet, struct image_root *root, struct aegis_error *err);

#endif
