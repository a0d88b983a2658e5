/* shim.c — aegis-shim: the one supervisor process of an instance.
 *
 * Started in its own session and reparented away from aegisd, it runs the
 * instance's sandbox with the engine, writes its output to DIR's log
 * (logwriter.c) and, when the sandbox ends and the log is complete, how it
 * ended to DIR/exit.json. aegisd can die or restart meanwhile: the shim and
 * its sandbox do not notice. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <aegis/aegis.h>
#include "../common/error.h"
#include "../common/policy.h"
#include "../common/secretinject.h"
#include "../common/imagestore.h"
#include "../common/util.h"
#include "../common/workspaces.h"
#include "control.h"
#include "shim.h"
#include "statefile.h"
#include "logwriter.h"

static char **strings(json_t *arr)
{
	size_t i, n = json_array_size(arr);
	char **out = calloc(n + 1, sizeof *out);
	json_t *v;

	json_array_foreach(arr, i, v)
		if (out)
			out[i] = (char *)json_string_value(v);
	return out;
}

/* A state file, whole; j is ours to free. */
static void write_whole(int dirfd, const char *name, json_t *j)
{
	statefile_write(dirfd, name, j);
	json_decref(j);
}

/* An open file description lock on DIR/shim.lock, never released: it
 * goes when the shim does. (Not flock: a test of it would have to take it;
 * F_OFD_GETLK only looks.) The descriptor is close-on-exec and the
 * sandbox closes it before anything it runs could keep it. */
static int shim_lock(int dirfd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd = openat(dirfd, "shim.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	return fd < 0 || fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -1 : 0;
}

/* The secrets the config names, decrypted afresh at every start (the
 * config keeps names only) from the store in state. */
static int load_secrets(const char *state, json_t *config, char ***env, char ***files, struct aegis_error *err)
{
	json_t *list = json_object_get(config, "secrets");
	char **names;
	int r;

	if (!json_array_size(list))
		return 0;
	if (!(names = strings(list)))
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "secrets: out of memory");
	r = secret_inject_load(state, names, env, files, err);
	free(names);
	return r;
}

/* The instance's /workspace, as config.json gives it: a host directory; a
 * named workspace, held for the shim's life (its lock goes with the shim,
 * its image mounted if that is not done yet, data/ opened through no
 * symlink), found in the state dir the instance's directory is in; or,
 * without one, a directory of its own in dir, so a stop (idle or asked)
 * and the next start keep it. */
static int shim_workspace(const char *dir, const char *state, int dirfd, const char *given,
			  struct aegis_spec *spec, struct workspace_hold *hold, char *buf, size_t len,
			  struct aegis_error *err)
{
	if (given && !workspace_is_name(given)) {
		spec->workspace = given;
		return 0;
	}
	if (!given) {
		mkdirat(dirfd, "workspace", 0700);
		snprintf(buf, len, "%s/workspace", dir);
		spec->workspace = buf;
		return 0;
	}
	if (workspace_hold(state, given, hold, err) < 0)
		return -1;
	spec->workspace = hold->path;
	spec->workspace_fd = hold->data_fd;
	spec->workspace_name = given;
	return 0;
}

/* The instance's image, by the digest it was created with, held (prune
 * keeps away) for the shim's life: its layers, ref and digest into the
 * spec, its Env under the config's env, its WorkingDir unless the config
 * names a cwd. No image: the host's. */
static int shim_image(const char *state, json_t *config, struct aegis_spec *spec, struct image_root *img,
		      struct aegis_error *err)
{
	const char *pin = json_string_value(json_object_get(config, "image_digest"));
	int r;

	if (!pin)
		return 0;
	if ((r = image_store_resolve(state, pin, img, err)) != 0)
		return r < 0 ? -1 : error_set(err, AEGIS_E_INVALID, 0, "image %s (%s) is no longer in the store",
					      json_string_value(json_object_get(config, "image")), pin);
	return image_root_apply(img, spec, json_object_get(config, "cwd") != NULL, err);
}

/* What shim.json says: this shim, since when, and once the command runs,
 * since when it does (aegisd counts idleness from then: a vm instance's
 * first start can boot and build its snapshot for many seconds). */
struct shim_record {
	int dirfd;
	json_int_t started_unix;
};

static json_int_t unix_ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void shim_record(const struct shim_record *rec, bool command_started)
{
	json_t *j = json_pack("{s:i, s:I}", "pid", (int)getpid(), "started_unix", rec->started_unix);

	if (command_started)
		json_object_set_new(j, "running_unix_ms", json_integer(unix_ms_now()));
	/* not fsynced when rewritten: it tells a live shim's news, which no
	 * crash of the machine outlives; the rename keeps it whole */
	if (command_started)
		statefile_write_fast(rec->dirfd, "shim.json", j);
	else
		statefile_write(rec->dirfd, "shim.json", j);
	json_decref(j);
}

/* spec.on_started: the command runs from now. */
static void shim_command_started(void *arg)
{
	shim_record(arg, true);
}

void shim_main(const char *dir, int ready_fd)
{
	static const char *const ends[] = { "exited", "signaled", "timeout", "limit" };
	struct aegis_spec spec = AEGIS_SPEC_DEFAULT;
	struct aegis_result res;
	struct aegis_error err = { 0 };
	struct aegis_policy policy = { 0 };
	struct logwriter *lw;
	json_t *config, *v, *end;
	const char *backend;
	char **secret_env = NULL, **secret_files = NULL;
	struct image_root img = { .lock_fd = -1 };
	uint64_t log_max, log_lost;
	sigset_t all;
	char path[4400], audit[4400], workspace[4400], state[4400], *slash;
	struct workspace_hold hold;
	struct shim_record record;
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), null, r;

	snprintf(path, sizeof path, "%s/config.json", dir);
	/* dir is <state>/instances/NAME: the store of secrets, workspaces and
	 * images is the state dir above it */
	snprintf(state, sizeof state, "%s", dir);
	for (int up = 0; up < 2; up++)
		if ((slash = strrchr(state, '/')) && slash != state)
			*slash = '\0';
	if (dirfd < 0 || !(config = json_load_file(path, 0, NULL)))
		_exit(125);
	/* one shim per instance: the lock says this one is it, for as long as
	 * it lives (aegisd tests it to tell a live shim from a dead one) */
	if (shim_lock(dirfd) < 0)
		_exit(0);
	backend = json_string_value(json_object_get(config, "backend"));
	if (backend && !strcmp(backend, "vm"))
		spec.backend = AEGIS_BACKEND_VM;
	/* execs, connections and events come in here (aegisd passes them on);
	 * listening before we say we are ready, so the daemon's first call
	 * finds it (and waits in its backlog until the sandbox is up). For a
	 * vm instance the engine serving it is in the guest: the backend
	 * carries each connection there (src/vm/ctlproxy.c). */
	if ((spec.control_fd = control_listen(dirfd)) < 0)
		_exit(125);
	record = (struct shim_record){ dirfd, (json_int_t)time(NULL) };
	shim_record(&record, false);
	if (ready_fd >= 0) {
		/* the daemon may now find us (and stop us) by shim.json */
		(void)!write(ready_fd, "1", 1);
		close(ready_fd);
	}
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0)
		_exit(125);
	/* the command's output reaches the log through the writer's pipes */
	if (logwriter_max_bytes(&log_max, &err) < 0 ||
	    logwriter_start(&lw, dirfd, log_max, &spec.out_fd, &spec.err_fd, &err) < 0) {
		write_whole(dirfd, "exit.json", json_pack("{s:s, s:s}", "end", "error", "error", err.msg));
		_exit(0);
	}
	spec.freezable = true;	/* instances can be paused */
	spec.on_started = shim_command_started;
	spec.on_started_arg = &record;
	spec.cgroup_parent = json_string_value(json_object_get(config, "cgroup_parent"));
	/* every run of the instance, and every exec in it, on one hash chain */
	snprintf(audit, sizeof audit, "%s/audit.jsonl", dir);
	spec.audit_path = audit;
	spec.argv = strings(json_object_get(config, "argv"));
	spec.env = strings(json_object_get(config, "env"));
	if ((v = json_object_get(config, "cwd")))
		spec.cwd = json_string_value(v);
	spec.workspace_ro = json_is_true(json_object_get(config, "workspace_ro"));
	/* The rotated log bounds an instance's output on disk; the one-shot
	 * run's default cut would end a long-lived log for good. A policy's
	 * own output limit still holds. */
	spec.limits.output_bytes = UINT64_MAX;
	v = json_object_get(config, "policy");
	r = -1;
	if (shim_workspace(dir, state, dirfd, json_string_value(json_object_get(config, "workspace")), &spec,
			   &hold, workspace, sizeof workspace, &err) == 0 &&
	    shim_image(state, config, &spec, &img, &err) == 0 &&
	    policy_load(v ? json_string_value(v) : "default", &policy, &err) == 0 &&
	    load_secrets(state, config, &secret_env, &secret_files, &err) == 0) {
		spec.policy = &policy;
		policy_apply_limits(&policy, &spec.limits);
		spec.secret_env = secret_env;
		spec.secret_files = secret_files;
		r = aegis_run(&spec, &res, &err);
	}
	/* the sandbox had them; nothing here needs them any more */
	secret_inject_free(secret_env);
	secret_inject_free(secret_files);
	image_root_free(&img);
	/* The command is gone; what is left takes moments and a second
	 * SIGTERM must not cost the end of the log or exit.json. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	/* all of the output on disk before exit.json: a reader that sees
	 * exit.json and then reads to the end has everything */
	log_lost = logwriter_finish(lw);
	if (r < 0)
		end = json_pack("{s:s, s:s}", "end", "error", "error", err.msg);
	else
		end = json_pack("{s:s, s:i, s:o, s:o, s:f}", "end", ends[res.end], "exit_code", res.exit_code,
				"signal", res.term_signal ? json_integer(res.term_signal) : json_null(),
				"limit", res.limit ? json_string(res.limit) : json_null(),
				"wall_ms", res.wall_us / 1000.0);
	if (log_lost)	/* the disk could not keep up: say so where the end is told */
		json_object_set_new(end, "log_dropped_bytes", json_integer((json_int_t)log_lost));
	write_whole(dirfd, "exit.json", end);
	_exit(0);
}

/* A program of its own, small and static: one runs per instance, and its
 * sandbox's PID 1 is a fork of it, so what it maps every instance pays. */
int main(int argc, char **argv)
{
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "--shim"))
		shim_main(argv[2], argc == 4 ? atoi(argv[3]) : -1);
	fprintf(stderr, "usage: %s --shim DIR [READY_FD] (started by aegisd)\n", SHIM_PROGRAM);
	return 125;
}
