/* guest.h — aegis-guest's parts (PID 1 of a vm-backend guest, docs/vm.md). */
#ifndef AEGIS_VM_GUEST_GUEST_H
#define AEGIS_VM_GUEST_GUEST_H

#include <jansson.h>

#include <aegis/aegis.h>

/* setup.c: the REQUEST's clock, seed and 9p shares; cgroup2 and loopback.
 * -1 with err: the run cannot go ahead. */
int guest_setup(json_t *req, struct aegis_error *err);

#endif
