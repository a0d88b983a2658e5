/* error.h — the error object every engine function fills (crun's contract).
 *
 * A function returns 0 on success or -1 after filling a caller-provided
 * struct aegis_error; callers add context as the error travels up. Errors
 * never allocate, so they are safe between clone and exec. */
#ifndef AEGIS_COMMON_ERROR_H
#define AEGIS_COMMON_ERROR_H

#include <aegis/aegis.h>

/* Fill err with code, errno (0 for none) and a printf-style message. Returns -1. */
int error_set(struct aegis_error *err, enum aegis_errc code, int sys_errno,
	      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Shorthand: code AEGIS_E_SETUP with the current errno. Returns -1. */
#define error_sys(err, ...) error_set((err), AEGIS_E_SETUP, errno, __VA_ARGS__)

/* Prefix the existing message with "context: ". Returns -1. */
int error_prefix(struct aegis_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
