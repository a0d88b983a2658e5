/* netmux.h — many TCP streams over one byte channel: the vm backend's
 * network channel (docs/vm.md), a virtio-serial port named "aegis-net"
 * between aegis-guest and the host's egress proxy, and an instance's
 * control channel, the port "aegis-ctl" (src/vm/ctlproxy.c).
 *
 * Each frame is an 8-byte header — type, one zero byte, stream id
 * (big-endian 16 bits), payload length (big-endian 32 bits) — then the
 * payload. Only one side opens streams (the guest on "aegis-net", the host
 * on "aegis-ctl"); the other answers each OPEN by serving the stream or
 * refusing it with CLOSE.
 *
 *   OPEN    no payload: a new stream with this id
 *   DATA    1..NETMUX_DATA_MAX bytes of the stream, within the sender's credit
 *   CREDIT  4 bytes (big-endian): the receiver took that many more bytes
 *   SHUT    no payload: the sender sends nothing more (half-close)
 *   CLOSE   no payload: the sender is done with the stream; the other side
 *           answers CLOSE unless it had sent one, and only then is the id free
 *
 * Flow control is per stream: each side may have at most NETMUX_WINDOW
 * bytes of a stream unacknowledged, so a stalled stream holds at most a
 * window on the receiving side and never stops the channel for the others.
 * A frame that breaks these rules ends the whole channel with the reason;
 * it is never trusted further. Bump NETMUX_VERSION with any incompatible
 * change. */
#ifndef AEGIS_COMMON_NETMUX_H
#define AEGIS_COMMON_NETMUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define NETMUX_VERSION "aegis-netmux.1"
#define NETMUX_PORT_NAME "aegis-net"	/* the virtio-serial port's name */
#define NETMUX_HEADER 8
#define NETMUX_DATA_MAX 16384		/* payload bytes of one DATA frame */
#define NETMUX_WINDOW (64 * 1024)	/* unacknowledged bytes per stream and direction */
#define NETMUX_MAX_STREAMS 256		/* ids 0..255: the proxy's own concurrency bound */

enum netmux_type {
	NETMUX_OPEN = 1,
	NETMUX_DATA = 2,
	NETMUX_CREDIT = 3,
	NETMUX_SHUT = 4,
	NETMUX_CLOSE = 5,
};

/* The serving side's answer to OPEN: a connected socket for the stream
 * (the mux takes it), or -1 to refuse it. */
typedef int (*netmux_open_fn)(void *arg, unsigned id);

struct netmux;

/* A mux on chan (a socket or the virtio-serial port; made non-blocking).
 * open: NULL on the opening side, where an OPEN from the peer is an error.
 * The mux does not own chan. NULL with errno. */
struct netmux *netmux_new(int chan, netmux_open_fn open, void *open_arg);
void netmux_free(struct netmux *m);	/* closes every stream's socket */

/* The opening side: a connected socket becomes a new stream (the mux
 * takes it). -1 (fd closed) when every id is in use or the channel has
 * failed. */
int netmux_add(struct netmux *m, int fd);

/* Serve until the channel ends, stop_fd (-1: none) is readable, or the
 * peer breaks the protocol. listen_fd (-1: none): each connection
 * accepted there becomes a stream (netmux_add). 0 on a clean end (the
 * channel's EOF or stop); -1 with err naming the broken rule or the
 * failed call. */
int netmux_run(struct netmux *m, int listen_fd, int stop_fd, struct aegis_error *err);

/* Streams open now (for tests and the audit). */
size_t netmux_active(const struct netmux *m);

#endif
