/* recover.h — the daemon's hold on its instances across crashes (recover.c). */
#ifndef AEGIS_DAEMON_RECOVER_H
#define AEGIS_DAEMON_RECOVER_H

/* Make the instance table match reality, then watch every shim (pidfds)
 * in a thread of its own: one that dies without reporting is marked
 * failed and cleaned up at once. */
int recover_start(void);

#endif
