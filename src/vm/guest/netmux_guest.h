/* netmux_guest.h — the guest's end of the vm network channel (docs/vm.md). */
#ifndef AEGIS_VM_GUEST_NETMUX_GUEST_H
#define AEGIS_VM_GUEST_NETMUX_GUEST_H

#include <jansson.h>

#include "../../common/error.h"

/* When the REQUEST says "network": "allow": lo up, 127.0.0.1:3128 listening
 * in the guest's root network namespace, and a thread that makes each
 * connection there a stream to the host's egress proxy over the port
 * "aegis-net". 0 when done or not asked; -1 with err. */
int netmux_guest_start(json_t *req, struct aegis_error *err);

#endif
