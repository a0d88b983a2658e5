/* workspaces.h — named workspaces: directories under the state dir that
 * outlive the runs and instances using them (DESIGN.md §6). The CLI,
 * aegisd and aegis-shim share this module.
 *
 * <state>/workspaces/NAME/
 *   meta.json  {"name", "created" (unix s), "size_bytes" (or null)}, written whole
 *   lock       open file description locks: byte 0 is read-locked by
 *              whoever is in it (a run or an instance's shim for its life,
 *              info while it counts) and write-locked by delete; byte 1 is
 *              write-locked around checking or making the image's mount;
 *              byte 2 is read-locked by runs and shims only (in_use)
 *   image      with a size limit only: a sparse ext4 image loop-mounted
 *              on data/ (wsimage.h)
 *   data/      what is mounted at /workspace
 *
 * A name is a name (name_valid, util.h), never a path: NAME/ and
 * everything in it is opened from the store's descriptor without
 * following a symlink, and what a sandbox left in data/ (symlinks out,
 * deep trees) is counted and removed without being followed.
 *
 * Failures say why in err->msg. err->code AEGIS_E_INVALID is the caller's
 * mistake and err->sys_errno says which (the API's status comes from it):
 * EINVAL a bad name or size, ENOENT no such workspace, EEXIST it exists,
 * EBUSY in use, EPERM a size limit without the privilege to mount it.
 * Any other code is the host's failure (storage, mkfs, mount). */
#ifndef AEGIS_COMMON_WORKSPACES_H
#define AEGIS_COMMON_WORKSPACES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include <aegis/aegis.h>

#define WORKSPACE_SIZE_MIN (16ULL << 20)
#define WORKSPACE_SIZE_MAX (16ULL << 40)

/* Does a --workspace argument name a workspace (Docker's volume rule)?
 * One with a '/', or starting with '.' or '~', is a host path. */
bool workspace_is_name(const char *arg);

/* Is there a workspace of that name? */
bool workspace_exists(const char *state, const char *name);
/* size_bytes 0: no limit. */
int workspace_create(const char *state, const char *name, uint64_t size_bytes, struct aegis_error *err);
/* {"workspaces": [{"name", "created", "size_bytes"}...]}, by name. */
json_t *workspace_list(const char *state, struct aegis_error *err);
/* The list's fields and "path" (of data/), "used_bytes", "used_complete"
 * (false: a bound cut the count short), "free_bytes" (size-limited ones),
 * "instances" (names of those whose config names it) and "in_use" (a
 * run or a running instance holds it now). */
json_t *workspace_info(const char *state, const char *name, struct aegis_error *err);
/* Refused (EBUSY) while a run holds it or an instance names it. */
int workspace_delete(const char *state, const char *name, struct aegis_error *err);

/* A workspace in use: its lock held (a delete waits or is refused), its
 * image mounted if it has one, data/ open. */
struct workspace_hold {
	int lock_fd;
	int data_fd;		/* data/, O_DIRECTORY: what the sandbox mounts */
	char path[4096];	/* data/'s path, for records and messages */
};

int workspace_hold(const char *state, const char *name, struct workspace_hold *h, struct aegis_error *err);
void workspace_release(struct workspace_hold *h);
/* The names of the instances (<state>/instances/X/config.json) whose
 * "workspace" is name, as a JSON array. */
json_t *workspace_users(const char *state, const char *name);

#endif
