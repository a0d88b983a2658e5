/* netmux_guest.h — the guest's end of the vm network channel (docs/vm.md). */
#ifndef AEGIS_VM_GUEST_NETMUX_GUEST_H
#define AEGIS_VM_GUEST_NETMUX_GUEST_H

#include "../../common/error.h"

/* Where the engine in the guest relays its sandbox's proxy connections
 * (spec.net_upstream): the address netmux_guest_start() listens on. */
#define NETMUX_GUEST_UPSTREAM "127.0.0.1:3128"

/* --net allow: 127.0.0.1:3128 listening in the guest's root network
 * namespace (lo is up: setup.c), and a thread that makes each connection
 * there a stream to the host's egress proxy over the port "aegis-net".
 * -1 with err. */
int netmux_guest_start(struct aegis_error *err);

#endif
