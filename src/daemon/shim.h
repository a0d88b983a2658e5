/* shim.h — aegis-shim, the one supervisor process of an instance (shim.c). */
#ifndef AEGIS_DAEMON_SHIM_H
#define AEGIS_DAEMON_SHIM_H

#define SHIM_PROGRAM "aegis-shim"	/* found next to aegisd */

/* `aegis-shim --shim DIR [READY_FD]`: run one instance's sandbox; never
 * returns. READY_FD (or -1) is written to once the shim holds its lock and
 * has written shim.json, and closed unwritten if another shim runs the
 * instance. */
__attribute__((noreturn)) void shim_main(const char *dir, int ready_fd);

#endif
