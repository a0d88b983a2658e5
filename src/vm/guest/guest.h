/* guest.h — aegis-guest's parts (PID 1 of a vm-backend guest, docs/vm.md). */
#ifndef AEGIS_VM_GUEST_GUEST_H
#define AEGIS_VM_GUEST_GUEST_H

#include <jansson.h>

#include <aegis/aegis.h>

/* setup.c: what needs no request, done before the greeting (and so
 * before a snapshot): the tmpfs root, cgroup2, overcommit, loopback. */
int guest_prepare(struct aegis_error *err);

/* setup.c: the REQUEST's clock, seed and 9p shares. -1 with err: the run
 * cannot go ahead. */
int guest_setup(json_t *req, struct aegis_error *err);

/* setup.c: the host's clock message {"clock": {"sec", "nsec"}}
 * (ctlwire.h), checked, as the guest's CLOCK_REALTIME: after a resume
 * (QMP cont) the guest's clock is behind by the time it stood. -1 with
 * err (junk is refused, nothing set). */
int guest_clock_set(json_t *msg, struct aegis_error *err);

/* guest.c: the virtio-serial port named port, opened (O_CLOEXEC), waiting
 * a while for it to appear. -1 when it never did. */
int guest_port_open(const char *port);

#endif
