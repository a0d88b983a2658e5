/* ctlwire.h — one control message over a vm instance's "aegis-ctl" port
 * (docs/vm.md, Instances): what aegisd sent to the shim's control socket
 * (a JSON object, with or without a descriptor beside it), carried as the
 * first bytes of a netmux stream, host to guest; and the guest's answer
 * to a request that came without one, guest to host.
 *
 * An 8-byte header — the JSON's length (big-endian 32 bits), a flags byte
 * (bit 0: a descriptor came with it; its bytes follow the JSON on the same
 * stream), three zero bytes — then the JSON. What the guest sends is not
 * trusted: a bad header, a length over the bound or text that is not one
 * JSON object is refused with the reason. Bump CTLWIRE_VERSION with any
 * incompatible change.
 *
 * One message the host sends of its own, on a stream of its own: the
 * clock, {"clock": {"sec": S, "nsec": N}} (the host's CLOCK_REALTIME),
 * after a resume (QMP cont), whose guest's clock stood while it was
 * stopped. aegis-guest (PID 1) sets its clock and answers {"ok": true},
 * or {"error", "errno"}. The same JSON is the exec stream's FRAME_CLOCK
 * (frames.h) for `aegis run`, which has no control channel. */
#ifndef AEGIS_COMMON_CTLWIRE_H
#define AEGIS_COMMON_CTLWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#define CTLWIRE_VERSION "aegis-ctl.1"
#define CTLWIRE_PORT_NAME "aegis-ctl"	/* the virtio-serial port's name */
#define CTLWIRE_HEADER 8
#define CTLWIRE_FLAG_FD 0x01
#define CTLWIRE_REQUEST_MAX (128 * 1024)	/* an exec request: argv and env (execserve's bound) */
#define CTLWIRE_ANSWER_MAX 4096			/* an answer: what control_call() takes */

/* The header for len bytes of JSON, with_fd as said. */
void ctlwire_header(unsigned char h[CTLWIRE_HEADER], size_t len, bool with_fd);
/* A header's JSON length and flag; NULL when it is valid (0 < len <= max,
 * no unknown flag, reserved bytes zero), else what is wrong. */
const char *ctlwire_parse_header(const unsigned char h[CTLWIRE_HEADER], size_t max, uint32_t *len,
				 bool *with_fd);
/* The JSON of a message: one object, no duplicate keys. NULL when not,
 * with *why. */
json_t *ctlwire_parse_json(const char *text, size_t len, const char **why);

/* Bounds of a clock the guest takes: not before 2000-01-01, not past
 * 2^40 s (no time_t overflow anywhere); nsec below 10^9. */
#define CTLWIRE_CLOCK_SEC_MIN 946684800LL
#define CTLWIRE_CLOCK_SEC_MAX (1LL << 40)

/* {"clock": {"sec", "nsec"}} with the host's CLOCK_REALTIME now; NULL
 * when out of memory. */
json_t *ctlwire_clock_now(void);
/* A clock value {"sec": S, "nsec": N}: exactly those two integers, in
 * their bounds, into *ts. NULL when valid, else what is wrong. */
const char *ctlwire_clock_value(json_t *clock, struct timespec *ts);
/* A clock message: an object whose one key is "clock", its value as
 * ctlwire_clock_value takes it. NULL when valid, else what is wrong. */
const char *ctlwire_clock_parse(json_t *msg, struct timespec *ts);

/* Send one message on a blocking stream fd. 0, or -1 with errno. */
int ctlwire_send(int fd, const char *json, size_t len, bool with_fd);
/* Read one message from a stream fd, waiting at most timeout_ms (-1:
 * forever) for each read: exactly its bytes, nothing past them. The JSON
 * object, or NULL with *why (the peer's EOF, a timeout, or what is wrong). */
json_t *ctlwire_recv(int fd, size_t max, int timeout_ms, bool *with_fd, const char **why);

/* Relay the sockets outer and inner both ways, user space, without
 * changing either's flags (both may be shared): until inner's EOF has been
 * passed on to outer (outer is not shut: the caller may still write to it),
 * or an error on either side. outer's EOF becomes a half-close of inner,
 * and the relay goes on (the other side answers it). 0 at inner's EOF, -1
 * on an error. */
int ctlwire_relay(int outer, int inner);
/* The same, with heard(arg) called each time bytes came from inner, before
 * they go to outer (the vm's control channel takes the guest's new audit
 * events there, so an exec's events are on the chain before its user
 * reads how it ended). */
int ctlwire_relay_each(int outer, int inner, void (*heard)(void *), void *arg);

#endif
