/* ctl_guest.h — the guest's end of an instance's control channel (docs/vm.md). */
#ifndef AEGIS_VM_GUEST_CTL_GUEST_H
#define AEGIS_VM_GUEST_CTL_GUEST_H

#include "../../common/error.h"

/* The engine's control socket (spec.control_fd: a listening
 * SOCK_SEQPACKET socket only aegis-guest reaches) and the port
 * "aegis-ctl" open. Before the engine starts, which inherits *listen_fd.
 * -1 with err. */
struct guest_ctl;
int ctl_guest_prepare(struct guest_ctl **out, int *listen_fd, struct aegis_error *err);
/* The thread that serves the host's streams, each by one connection to
 * that socket. After the engine is forked (no thread beside PID 1's
 * fork). Takes g. -1 with err. */
int ctl_guest_start(struct guest_ctl *g, struct aegis_error *err);

#endif
