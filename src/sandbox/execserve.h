/* execserve.h — execs into a running sandbox, the supervisor's side
 * (execserve.c). Used by supervise.c only. */
#ifndef AEGIS_SANDBOX_EXECSERVE_H
#define AEGIS_SANDBOX_EXECSERVE_H

struct execserve;
struct sync_msg;
struct record;
struct aegis_spec;

/* Serve the control socket of the run whose PID 1 is at the other end of
 * sync_fd: execs, connections to its own ports, the daemon's events. The
 * spec (its cwd, its secrets to redact) must outlive the server. */
struct execserve *execserve_new(int sync_fd, const struct aegis_spec *spec, struct record *rec);
/* A connection is waiting on the control socket: serve it in a thread. */
void execserve_accept(struct execserve *srv, int listen_fd);
/* PID 1's EXEC_STARTED / EXEC_EXIT, for the session it belongs to;
 * passed: a terminal's master side that came with STARTED, or -1 (taken). */
void execserve_news(struct execserve *srv, const struct sync_msg *msg, int passed);
/* The sandbox is gone: end every session (briefly waited for) and let go. */
void execserve_end(struct execserve *srv);

#endif
