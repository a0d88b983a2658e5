/* idle.h — what keeps an instance awake, and the timer that puts it to
 * sleep (idle.c). Activity: a routed connection, an exec, a log follower. */
#ifndef AEGIS_DAEMON_IDLE_H
#define AEGIS_DAEMON_IDLE_H

#include <stdint.h>

/* Something happened for the instance now. */
void idle_touch(const char *name);
/* +1 when a connection, exec stream or log follower starts, -1 when it
 * ends: while any is open the instance never counts as idle. */
void idle_hold(const char *name, int delta);
/* ms since the last activity (or since the daemon began watching it), and
 * how many holds are open now. */
void idle_state(const char *name, uint64_t *idle_ms, int *holds, uint64_t *last_unix_ms);
/* The timer: every instance's idle policy checked a few times a second. */
int idle_start(void);

#endif
