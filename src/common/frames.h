/* frames.h — the exec stream: how stdin, stdout, stderr, signals and the
 * exit status of one `aegis exec` share a single connection.
 *
 * Each frame is an 8-byte header — type, three zero bytes, payload length
 * (big-endian 32 bits) — then the payload: Docker's attach framing, with
 * types of our own for control. The user's side sends STDIN, STDIN_CLOSE,
 * SIGNAL and RESIZE; the sandbox side sends STDOUT, STDERR and, last,
 * EXIT. Bump FRAMES_VERSION with any incompatible change. */
#ifndef AEGIS_COMMON_FRAMES_H
#define AEGIS_COMMON_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#define FRAMES_VERSION "aegis-exec.2"	/* the HTTP Upgrade token; .2: the vm frames (HELLO, REQUEST, RESULT) */
#define FRAME_MAX (64 * 1024)		/* payload bytes */

enum frame_type {
	FRAME_STDIN = 0,
	FRAME_STDOUT = 1,
	FRAME_STDERR = 2,
	FRAME_EXIT = 3,		/* JSON {"exit_code", "signal"} or {"exit_code", "error": {code, message}} */
	FRAME_STDIN_CLOSE = 4,	/* no payload */
	FRAME_SIGNAL = 5,	/* JSON {"signal": N} */
	FRAME_RESIZE = 6,	/* JSON {"rows": R, "cols": C} */
	/* The vm backend's channel to aegis-guest (docs/vm.md) opens with these: */
	FRAME_HELLO = 7,	/* guest → host, first: JSON {"version", "kernel"} */
	FRAME_REQUEST = 8,	/* host → guest, once: JSON {"spec", "mounts", "clock", "seed"} */
	FRAME_RESULT = 9,	/* guest → host, last: JSON {"result": {...}} or {"error": {code, errno, message}} */
	FRAME_STARTED = 10,	/* guest → host, first answer to REQUEST once set up (else RESULT):
				 * {"setup_ms"}, the guest's time from the request to its engine started */
	FRAME_CLOCK = 11,	/* host → guest, after a resume from ^Z (QMP cont): JSON {"clock": {"sec",
				 * "nsec"}} (ctlwire.h), the host's time for the guest's stopped clock */
};

/* Write one frame whole, to a socket or (the vm guest's virtio-serial
 * port) a character device. -1 with errno. */
int frame_send(int fd, enum frame_type type, const void *data, size_t len);
/* Read one frame into buf (FRAME_MAX + 1 bytes; payload NUL-terminated).
 * 1 got one, 0 clean EOF before a header, -1 error or malformed (errno). */
int frame_recv(int fd, enum frame_type *type, char *buf, size_t *len);

#endif
