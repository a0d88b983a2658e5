/* netmux_guest.h — the guest's end of the vm network channel (docs/vm.md). */
#ifndef AEGIS_VM_GUEST_NETMUX_GUEST_H
#define AEGIS_VM_GUEST_NETMUX_GUEST_H

#include "../../common/error.h"

/* Where the engine in the guest relays its sandbox's proxy connections
 * (spec.net_upstream): the address netmux_guest_start() listens on. */
#define NETMUX_GUEST_UPSTREAM "127.0.0.1:3128"

/* --net allow: 127.0.0.1:3128 listening in the guest's root network
 * namespace (lo is up: setup.c) and the port "aegis-net" open. Before the
 * engine starts, so its relay finds the listener. -1 with err. */
struct guest_net;
int netmux_guest_prepare(struct guest_net **out, struct aegis_error *err);
/* The thread that makes each connection there a stream to the host's
 * egress proxy. After the engine is forked: PID 1 forks it with no other
 * thread, so no lock a thread held at the fork stays held in the engine.
 * Takes g. -1 with err. */
int netmux_guest_start(struct guest_net *g, struct aegis_error *err);

#endif
