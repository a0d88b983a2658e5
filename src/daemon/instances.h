/* instances.h — persistent named instances (issue 5): their directories
 * under the state dir, their shims, and the API's answers about them. */
#ifndef AEGIS_DAEMON_INSTANCES_H
#define AEGIS_DAEMON_INSTANCES_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#define INSTANCE_NAME_MAX 63

/* ^[a-z0-9][a-z0-9-]{0,62}$ — nothing else is ever used in a path. */
bool instance_name_valid(const char *name);

/* Set up <state>/instances; remember where aegisd is (its shims are next
 * to it) and the cgroup parent new instances get (NULL: the default). */
int instances_init(const char *state_dir, const char *self_exe, const char *cgroup_parent);

/* Each returns an HTTP status and sets *body (a JSON object, owned by the caller). */
unsigned instances_create(const char *request, json_t **body);
unsigned instances_list(json_t **body);
/* {"total": N, STATE: n...}: how many instances, by state. */
json_t *instances_counts(void);
unsigned instances_info(const char *name, json_t **body);
unsigned instances_delete(const char *name, json_t **body);
/* Stop and keep the config (no auto-start); start again from the config. */
unsigned instances_disable(const char *name, json_t **body);
unsigned instances_start(const char *name, json_t **body);
/* Pause or resume a running instance (pause.c: the freezer; QMP stop and
 * cont around it for a vm instance). */
unsigned instances_pause(const char *name, bool pause, json_t **body);
/* The directory of an existing instance; false for a bad or unknown name. */
bool instance_dir(const char *name, char *dir, size_t len);
/* Nothing more will be written to its log (dir as instance_dir gives it). */
bool instance_ended(const char *dir);

/* For an exec: the directory (O_DIRECTORY fd) of a running, unpaused
 * instance; 0, or an HTTP status with *body. */
unsigned instances_running_dir(const char *name, int *dirfd, json_t **body);

/* At daemon start: finish interrupted deletes, drop interrupted creates
 * that were never accepted, start accepted ones whose shim never ran,
 * adopt running instances, mark those whose shim was killed as failed. */
void instances_recover(void);
/* A watched shim ended: if it was killed (no exit.json), mark and clean up. */
void instances_reap(const char *name);
struct live_shim {
	char name[INSTANCE_NAME_MAX + 1];
	pid_t pid;
};
int instances_live(struct live_shim *out, int max);
bool instances_is_shim(const char *name, pid_t pid);

/* Scale to zero (idle.c, router.c): wake an instance that sleeps (resume
 * a paused one, start a stopped one again); 0 when it runs (or starts),
 * -1 when it may not (disabled, deleted, or ended on its own). */
int instances_wake(const char *name);
/* Its directory (O_DIRECTORY), or -1. */
int instances_dirfd(const char *name);
/* Apply every instance's idle policy once (pause, then stop). */
void instances_idle_sweep(void);

#endif
