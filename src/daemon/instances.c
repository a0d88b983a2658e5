/* instances.c — instance directories and their lifecycle, as the API sees it.
 *
 * <state>/instances/NAME/ holds config.json (what was asked: the desired
 * state), shim.json (the shim that runs it), exit.json (how it ended), and
 * its log, output.N.jsonl (logwriter.h). mkdir of the directory is the
 * create: exactly one of any number of racing creates of a name wins, the
 * rest get 409.
 * Files are written whole (temp, fsync, rename, fsync dir), so a daemon
 * killed at any point finds each of them old or new, never torn. */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/audit.h"
#include "../common/error.h"
#include "../common/policy.h"
#include "../common/paths.h"
#include "../common/util.h"
#include "../common/workspaces.h"
#include <aegis/aegis.h>
#include "daemon.h"
#include "expose.h"
#include "idle.h"
#include "instances.h"
#include "router.h"
#include "secrets_api.h"
#include "../common/secretinject.h"
#include "../common/imagestore.h"
#include "control.h"
#include "pause.h"
#include "shim.h"
#include "statefile.h"
#include "../vm/vm.h"

#define STOP_GRACE_MS 5000
#define IDLE_PAUSE_DEFAULT_S 60
#define EVENT_WAIT_MS 5000		/* a running shim answers at once */
#define WAKE_EVENT_WAIT_MS 30000	/* a fresh one once its sandbox is up */
#define IDLE_STOP_DEFAULT_S (15 * 60)
#define SHIM_READY_MS 5000

#define SECRETS_PER_INSTANCE 64
static char state_dir[4096];
static char instances_dir[4096];
/* `transition` orders the instances' pauses, resumes, wakes, idle pauses
 * and stops, and disables: each decides under it, from its instance's
 * flag files and activity.json, what to do. What waits on an instance's
 * shim runs outside it, the instance's name in `underway` meanwhile, which
 * keeps the instance's other transitions off it: a vm guest's QMP stop or
 * cont (up to 15 s when the shim hangs, pause.c), a record sent to the
 * shim, a stop's grace. So one instance's hang holds up no other instance's
 * transitions; its own next one waits for it (a wake, a disable) or is
 * refused (a pause or resume: 409; the idle sweep tries at its next
 * round). In memory only: a restarted aegisd has none under way (a pause
 * is marked "paused" once done, pause.c: whole or not at all). */
static pthread_mutex_t transition = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t underway_done = PTHREAD_COND_INITIALIZER;
#define UNDERWAY_MAX 64
static char underway[UNDERWAY_MAX][INSTANCE_NAME_MAX + 1];	/* "": a free slot */
static char shim_exe[4096];	/* aegis-shim, next to aegisd */
static const char *cgroup_parent;	/* $AEGIS_CGROUP_PARENT: new instances' cgroups go below it */

bool instance_name_valid(const char *name)
{
	return name_valid(name);	/* the same pattern as workspaces' (util.h) */
}

/* The next four with `transition` held. The slot of name, or -1. */
static int underway_find(const char *name)
{
	for (int i = 0; i < UNDERWAY_MAX; i++)
		if (!strcmp(underway[i], name))
			return i;
	return -1;
}

/* Until no transition of name is under way. */
static void underway_wait(const char *name)
{
	while (underway_find(name) >= 0)
		pthread_cond_wait(&underway_done, &transition);
}

/* name's transition goes on outside the lock (a slot: one of at most 64
 * slow ones at once, else it waits for one to end). */
static void underway_begin(const char *name)
{
	int i;

	while ((i = underway_find("")) < 0)
		pthread_cond_wait(&underway_done, &transition);
	snprintf(underway[i], sizeof underway[i], "%s", name);
}

static void underway_end(const char *name)
{
	int i = underway_find(name);

	if (i >= 0)
		underway[i][0] = '\0';
	pthread_cond_broadcast(&underway_done);
}

int instances_init(const char *state, const char *self_exe, const char *cgroup_parent_dir)
{
	const char *slash = strrchr(self_exe, '/');

	cgroup_parent = cgroup_parent_dir;

	snprintf(shim_exe, sizeof shim_exe, "%.*s%s", slash ? (int)(slash - self_exe + 1) : 0, self_exe,
		 SHIM_PROGRAM);
	snprintf(state_dir, sizeof state_dir, "%s", state);
	snprintf(instances_dir, sizeof instances_dir, "%s/instances", state);
	if (mkdir(state, 0700) < 0 && errno != EEXIST)
		return -1;
	if (mkdir(instances_dir, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static json_t *err_body(const char *code, const char *message, const char *field)
{
	json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message);

	if (field)
		json_object_set_new(e, "field", json_string(field));
	return json_pack("{s:o}", "error", e);
}

static int remove_tree(const char *dir);
static json_t *activity_of(const char *name, const char *dir, json_t *config);
static json_t *activity_load(const char *dir);
static void activity_save(const char *dir, json_t *a);
static void activity_add(json_t *a, const char *key, json_int_t v);
static void activity_end(const char *dir, const char *what, bool wake);
static uint64_t wall_ms(void);
static void event_later(const char *dir, const char *type, json_t *fields, int wait_ms);
static void mark(const char *dir, const char *name);
static bool dir_is_vm(const char *dir);
static bool vm_running(const char *dir, json_t *shim);

/* True when the request's policy puts the instance on the host's network. */
static bool expose_needs_own_net(json_t *req)
{
	struct aegis_policy pol;
	struct aegis_error perr;
	bool host;

	if (policy_load(json_string_value(json_object_get(req, "policy")) ?: "default", &pol, &perr) < 0)
		return false;
	host = pol.net_mode && !strcmp(pol.net_mode, "host");
	policy_free(&pol);
	return host;
}

/* "secrets": names (NAME, NAME:env, NAME:file) of secrets in the store,
 * each once; only the names are kept (the shim decrypts at each start).
 * NULL when fine, else why not. */
static const char *check_secrets(json_t *v)
{
	static __thread char why[200];
	char *names[SECRETS_PER_INSTANCE + 1] = { 0 };
	const char *missing;
	json_t *item;
	size_t i, j;
	bool broken;

	if (!json_is_array(v) || json_array_size(v) > SECRETS_PER_INSTANCE)
		return "must be an array of at most 64 NAME, NAME:env or NAME:file";
	json_array_foreach(v, i, item) {
		const char *req = json_string_value(item);
		if (!req || !secret_request_valid(req))
			return "must be an array of at most 64 NAME, NAME:env or NAME:file";
		for (j = 0; j < i; j++)
			if (strcspn(names[j], ":") == strcspn(req, ":") &&
			    !strncmp(names[j], req, strcspn(req, ":")))
				return "names the same secret twice";
		names[i] = (char *)req;
	}
	if (!(missing = secrets_api_missing(names, &broken)))
		return NULL;
	if (broken)
		return "the secrets store cannot be read (see aegis secret list)";
	snprintf(why, sizeof why, "no secret named %.*s (aegis secret set NAME)", (int)strcspn(missing, ":"),
		 missing);
	return why;
}

/* "image": a reference the store has (the daemon does not pull: the CLI
 * does first, as docker's clients do). The config keeps its canonical
 * name and its digest, which every start uses: the instance keeps the
 * image it was made with, whatever the tag names later. NULL when fine. */
static const char *pin_image(json_t *req, json_t *v)
{
	static __thread char why[300];
	struct image_root img = { .lock_fd = -1 };
	struct aegis_error err = { 0 };
	int r;

	if (!json_is_string(v))
		return "must be an image reference (or \"host\")";
	if (!strcmp(json_string_value(v), "host")) {
		json_object_del(req, "image");	/* the default */
		return NULL;
	}
	if ((r = image_store_resolve(state_dir, json_string_value(v), &img, &err)) != 0) {
		snprintf(why, sizeof why, "%s", r > 0 ? "not in the image store (aegis image pull REF first)" : err.msg);
		return why;
	}
	json_object_set_new(req, "image", json_string(img.ref));
	json_object_set_new(req, "image_digest", json_string(img.digest));
	image_root_free(&img);
	return NULL;
}

/* The request, checked field by field; NULL and *bad = the field at fault. */
static json_t *check_request(const char *text, const char **bad, const char **why)
{
	static const char *const known[] = { "name", "argv", "env", "cwd", "workspace", "workspace_ro",
					     "policy", "expose", "idle_pause_s", "idle_stop_s", "secrets", "image",
					     "backend", NULL };
	json_t *req = json_loads(text ? text : "", JSON_REJECT_DUPLICATES, NULL), *v, *item;
	const char *key, *name;
	struct aegis_policy pol;
	struct aegis_error perr;
	size_t i;

	*bad = NULL;
	if (!json_is_object(req))
		return *why = "the body must be a JSON object", json_decref(req), NULL;
	json_object_foreach(req, key, v) {
		bool ok = false;
		for (i = 0; known[i]; i++)
			ok |= !strcmp(key, known[i]);
		if (!ok) {
			/* the key dies with req: keep a copy for the error */
			static __thread char field[128];
			snprintf(field, sizeof field, "%s", key);
			return *bad = field, *why = "unknown field", json_decref(req), NULL;
		}
	}
	name = json_string_value(json_object_get(req, "name"));
	if (!name || !instance_name_valid(name))
		return *bad = "name", *why = "must match ^[a-z0-9][a-z0-9-]{0,62}$", json_decref(req), NULL;
	v = json_object_get(req, "argv");
	if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > 4096)
		return *bad = "argv", *why = "must be a non-empty array of strings", json_decref(req), NULL;
	json_array_foreach(v, i, item)
		if (!json_is_string(item))
			return *bad = "argv", *why = "must be a non-empty array of strings", json_decref(req), NULL;
	if ((v = json_object_get(req, "env"))) {
		if (!json_is_array(v))
			return *bad = "env", *why = "must be an array of NAME=VALUE", json_decref(req), NULL;
		json_array_foreach(v, i, item)
			if (!json_is_string(item) || !strchr(json_string_value(item), '=') ||
			    json_string_value(item)[0] == '=')
				return *bad = "env", *why = "must be an array of NAME=VALUE", json_decref(req), NULL;
	}
	if ((v = json_object_get(req, "backend")) &&
	    (!json_is_string(v) || (strcmp(json_string_value(v), "ns") && strcmp(json_string_value(v), "vm"))))
		return *bad = "backend", *why = "must be \"ns\" or \"vm\"", json_decref(req), NULL;
	if ((v = json_object_get(req, "cwd")) && (!json_is_string(v) || json_string_value(v)[0] != '/'))
		return *bad = "cwd", *why = "must be an absolute path", json_decref(req), NULL;
	if ((v = json_object_get(req, "workspace"))) {
		struct stat st;
		const char *ws = json_string_value(v);
		/* a host directory (absolute), or a named workspace, kept as
		 * given: the shim holds it by name at every start */
		if (!ws || (ws[0] == '/' ? stat(ws, &st) < 0 || !S_ISDIR(st.st_mode)
					  : !workspace_exists(state_dir, ws)))
			return *bad = "workspace", *why = "must be an existing directory (absolute path) or the name "
							 "of an existing workspace", json_decref(req), NULL;
	}
	if ((v = json_object_get(req, "workspace_ro")) && !json_is_boolean(v))
		return *bad = "workspace_ro", *why = "must be true or false", json_decref(req), NULL;
	if ((v = json_object_get(req, "secrets")) && (*why = check_secrets(v)))
		return *bad = "secrets", json_decref(req), NULL;
	if ((v = json_object_get(req, "image")) && (*why = pin_image(req, v)))
		return *bad = "image", json_decref(req), NULL;
	if ((v = json_object_get(req, "policy"))) {
		if (!json_is_string(v) || policy_load(json_string_value(v), &pol, &perr) < 0)
			return *bad = "policy", *why = "must name a valid policy (default, strict or a file)",
			       json_decref(req), NULL;
		policy_free(&pol);
	}
	for (i = 0; i < 2; i++) {
		const char *f = i ? "idle_stop_s" : "idle_pause_s";
		if ((v = json_object_get(req, f)) && (!json_is_integer(v) || json_integer_value(v) < 0 ||
						      json_integer_value(v) > 365 * 86400))
			return *bad = f, *why = "must be a whole number of seconds (0: never)", json_decref(req), NULL;
	}
	if ((v = json_object_get(req, "expose"))) {
		struct expose e;
		if (!json_is_array(v) || json_array_size(v) > EXPOSE_MAX)
			return *bad = "expose", *why = "must be an array of at most 16 [ADDR:]HOST:GUEST",
			       json_decref(req), NULL;
		json_array_foreach(v, i, item)
			if (!json_is_string(item) || expose_parse(json_string_value(item), &e) < 0)
				return *bad = "expose", *why = "must be [ADDR:]HOST:GUEST (numeric address, ports 1-65535)",
				       json_decref(req), NULL;
		if (json_array_size(v) && expose_needs_own_net(req))
			return *bad = "expose", *why = "a host-network instance has no ports of its own to expose",
			       json_decref(req), NULL;
	}
	return req;
}

static bool config_is_vm(json_t *config)
{
	const char *b = json_string_value(json_object_get(config, "backend"));

	return b && !strcmp(b, "vm");
}

/* What a vm instance can never have (docs/vm.md): the host's network.
 * Refused by name, never dropped. NULL when fine, else why, with *bad
 * the field. */
static const char *vm_unsupported(json_t *req, const char **bad)
{
	static __thread char why[200];
	struct aegis_policy pol;
	struct aegis_error perr;

	if (!config_is_vm(req))
		return NULL;
	if (policy_load(json_string_value(json_object_get(req, "policy")) ?: "default", &pol, &perr) < 0)
		return NULL;	/* check_request took it: it cannot fail here */
	why[0] = '\0';
	/* none and allow (the host's egress proxy over the guest's channel,
	 * as for aegis run) are the guest's; host would bypass the VM */
	if (pol.net_mode && !strcmp(pol.net_mode, "host"))
		snprintf(why, sizeof why, "the vm backend refuses the policy's network mode 'host': the guest never "
			 "shares the host's network (use allow)");
	policy_free(&pol);
	return why[0] ? (*bad = "policy", why) : NULL;
}

/* Start the instance's shim and wait until it has taken the instance
 * (its lock and shim.json): from then on a delete or stop finds it. */
static void spawn_shim(const char *dir)
{
	int ready[2];
	pid_t pid;

	if (pipe2(ready, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		/* the shim's own session and parent (init): it outlives us */
		setsid();
		if (fork() == 0) {
			char fd[16];
			int keep = fcntl(ready[1], F_DUPFD, 3);	/* without close-on-exec */
			snprintf(fd, sizeof fd, "%d", keep);
			execl(shim_exe, SHIM_PROGRAM, "--shim", dir, fd, (char *)NULL);
			_exit(127);
		}
		_exit(0);
	}
	close(ready[1]);
	if (pid > 0) {
		struct pollfd p = { .fd = ready[0], .events = POLLIN };
		char c;
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		/* a byte: it runs; EOF: it failed, or another shim has it */
		if (poll(&p, 1, SHIM_READY_MS) == 1)
			(void)!read(ready[0], &c, 1);
	}
	close(ready[0]);
}

unsigned instances_create(const char *request, json_t **body)
{
	char why_buf[200];
	const char *bad, *why;
	json_t *req = check_request(request, &bad, &why);
	char dir[4400];
	int dfd;

	if (!req) {
		*body = err_body("invalid", why, bad);
		return 400;
	}
	/* no backend named: the daemon's $AEGIS_BACKEND (checked at its start),
	 * stored, so a later daemon with another default changes nothing */
	if (!json_object_get(req, "backend")) {
		const char *backend;
		struct aegis_error berr = { 0 };
		(void)paths_default_backend(&backend, &berr);
		json_object_set_new(req, "backend", json_string(backend));
	}
	if ((why = vm_unsupported(req, &bad))) {
		json_decref(req);
		return *body = err_body("unsupported", why, bad), 501;
	}
	/* what the policy was when it was checked: info shows it */
	{
		struct aegis_policy pol;
		struct aegis_error perr;
		char digest[65];
		if (policy_load(json_string_value(json_object_get(req, "policy")) ?: "default", &pol, &perr) == 0) {
			policy_digest(&pol, digest);
			json_object_set_new(req, "policy_digest", json_sprintf("sha256:%s", digest));
			policy_free(&pol);
		}
	}
	if (cgroup_parent)
		json_object_set_new(req, "cgroup_parent", json_string(cgroup_parent));
	/* idle: paused after a minute, stopped after 15 min paused, unless asked otherwise */
	if (!json_object_get(req, "idle_pause_s"))
		json_object_set_new(req, "idle_pause_s", json_integer(IDLE_PAUSE_DEFAULT_S));
	if (!json_object_get(req, "idle_stop_s"))
		json_object_set_new(req, "idle_stop_s", json_integer(IDLE_STOP_DEFAULT_S));
	snprintf(dir, sizeof dir, "%s/%s", instances_dir, json_string_value(json_object_get(req, "name")));
	if (mkdir(dir, 0700) < 0) {
		json_decref(req);
		if (errno == EEXIST)
			return *body = err_body("exists", "an instance of that name exists", "name"), 409;
		return *body = err_body("storage", strerror(errno), NULL), 507;
	}
	daemon_fault("create-mkdir");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || statefile_write(dfd, "config.json", req) < 0) {
		if (dfd >= 0)
			close(dfd);
		rmdir(dir);
		json_decref(req);
		return *body = err_body("storage", "cannot write the instance's config", NULL), 507;
	}
	close(dfd);
	daemon_fault("create-config");
	if (router_open(json_string_value(json_object_get(req, "name")), json_object_get(req, "expose"), why_buf,
			sizeof why_buf) < 0) {
		remove_tree(dir);
		json_decref(req);
		return *body = err_body("port_unavailable", why_buf, "expose"), 409;
	}
	spawn_shim(dir);
	daemon_fault("create-spawned");
	*body = json_pack("{s:s, s:s}", "name", json_string_value(json_object_get(req, "name")),
			  "state", "starting");
	json_decref(req);
	return 201;
}

/* The directory of an existing instance, or false for a bad or unknown name. */
static bool existing_dir(const char *name, char *dir, size_t len)
{
	if (!instance_name_valid(name))
		return false;
	snprintf(dir, len, "%s/%s", instances_dir, name);
	return access(dir, F_OK) == 0;
}

static json_t *load(const char *dir, const char *file)
{
	char path[4500];

	snprintf(path, sizeof path, "%s/%s", dir, file);
	return json_load_file(path, 0, NULL);
}

/* The cgroup parent the instance in dir was created with (NULL: the
 * default), in buf. */
static const char *parent_of(const char *dir, char *buf, size_t len)
{
	json_t *config = load(dir, "config.json");
	const char *p = json_string_value(json_object_get(config, "cgroup_parent"));

	if (p)
		snprintf(buf, len, "%s", p);
	json_decref(config);
	return p ? buf : NULL;
}

/* The shim holds a write lock on DIR/shim.lock (an open file description
 * lock, shim.c) for its whole life: held means a shim runs the instance,
 * whatever became of any pid we recorded, and it is gone the instant the
 * shim dies. Testing it takes nothing, so it never races a starting shim. */
static bool shim_lock_held(const char *dir)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char path[4500];
	bool held;
	int fd;

	snprintf(path, sizeof path, "%s/shim.lock", dir);
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	held = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
	close(fd);
	return held;
}

static pid_t shim_process(const char *dir, json_t *shim);

/* The shim's pid if it is alive and is really that instance's shim. */
static pid_t live_shim(const char *dir, json_t *shim)
{
	return shim_lock_held(dir) ? shim_process(dir, shim) : 0;
}

/* The pid in shim.json if that process is the instance's shim: its
 * command line names dir. (Alone, without the lock: a shim that died
 * leaves the lock held while a sandbox child it forked lingers.) */
static pid_t shim_process(const char *dir, json_t *shim)
{
	pid_t pid = (pid_t)json_integer_value(json_object_get(shim, "pid"));
	char path[64], cmd[4600];
	ssize_t n;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	n = read_file_at(AT_FDCWD, path, cmd, sizeof cmd);
	if (n <= 0)
		return 0;
	for (ssize_t i = 0; i < n; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	return strstr(cmd, "--shim") && strstr(cmd, dir) ? pid : 0;
}

/* A flag file in the instance's directory: "paused", "disabled". */
static bool flag(const char *dir, const char *name)
{
	char path[4500];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static bool paused(const char *dir)
{
	return flag(dir, "paused");
}

/* The shim was killed, or the sandbox could not be set up. */
static bool ended_badly(json_t *exitj)
{
	const char *end = json_string_value(json_object_get(exitj, "end"));

	return end && (!strcmp(end, "failed") || !strcmp(end, "error"));
}

/* An instance whose config.json is there but unreadable: we never write
 * one torn (temp, fsync, rename), so something else damaged it. It is
 * listed as broken, kept as it is for a look, and can be deleted. NULL if
 * there is no config at all (a create cut short, never accepted). */
static json_t *damaged(const char *dir, const char *name)
{
	char path[4500], why[300];
	json_error_t e;
	json_t *j;

	snprintf(path, sizeof path, "%s/config.json", dir);
	if (access(path, F_OK) < 0)
		return NULL;
	if ((j = json_load_file(path, 0, &e))) {	/* repaired meanwhile */
		json_decref(j);
		snprintf(why, sizeof why, "config.json changed while being read");
	} else {
		snprintf(why, sizeof why, "config.json is damaged: %s (line %d)", e.text, e.line);
	}
	return json_pack("{s:s, s:s, s:[], s:s}", "name", name, "state", "broken", "argv", "error", why);
}

static json_t *describe(const char *name)
{
	char dir[4400];
	json_t *config, *shim, *exitj, *out;
	const char *state;

	snprintf(dir, sizeof dir, "%s/%s", instances_dir, name);
	if (!(config = load(dir, "config.json")))
		return damaged(dir, name);
	shim = load(dir, "shim.json");
	exitj = load(dir, "exit.json");
	state = flag(dir, "deleting") ? "deleting" : flag(dir, "disabled") ? "disabled"
		: flag(dir, "stopped") && !live_shim(dir, shim) ? "stopped"
		: exitj ? (ended_badly(exitj) ? "failed" : "exited") : !shim ? "starting"
		: !live_shim(dir, shim) ? "failed" : flag(dir, "paused") ? "paused"
		: !json_object_get(shim, "running_unix_ms") ? "starting" : "running";
	out = json_pack("{s:s, s:s, s:O, s:s}", "name", name, "state", state, "argv",
			json_object_get(config, "argv"), "policy",
			json_string_value(json_object_get(config, "policy")) ?: "default");
	if (json_object_get(config, "policy_digest"))
		json_object_set(out, "policy_digest", json_object_get(config, "policy_digest"));
	json_object_set_new(out, "backend", json_string(config_is_vm(config) ? "vm" : "ns"));
	json_object_set_new(out, "image", json_string(json_string_value(json_object_get(config, "image")) ?: "host"));
	if (json_object_get(config, "image_digest"))
		json_object_set(out, "image_digest", json_object_get(config, "image_digest"));
	json_object_set(out, "expose", json_object_get(config, "expose") ?: json_array());
	json_object_set_new(out, "activity", activity_of(name, dir, config));
	if (json_object_get(config, "workspace")) {
		json_object_set(out, "workspace", json_object_get(config, "workspace"));
		/* what a client writing into the workspace (aegis mcp) must honour */
		json_object_set_new(out, "workspace_ro", json_boolean(json_is_true(json_object_get(config, "workspace_ro"))));
	}
	if (json_object_get(config, "secrets"))	/* names: the values are never read here */
		json_object_set(out, "secrets", json_object_get(config, "secrets"));
	if (shim) {
		struct aegis_usage u;
		json_object_set(out, "shim_pid", json_object_get(shim, "pid"));
		if ((!strcmp(state, "running") || !strcmp(state, "paused")) &&
		    aegis_run_usage((int)json_integer_value(json_object_get(shim, "pid")),
				    json_string_value(json_object_get(config, "cgroup_parent")), &u) == 0)
			json_object_set_new(out, "resources", json_pack("{s:I, s:I, s:f, s:I}",
				"memory_bytes", (json_int_t)u.memory_bytes, "memory_peak_bytes",
				(json_int_t)u.memory_peak_bytes, "cpu_s", u.cpu_us / 1e6, "pids", (json_int_t)u.pids));
		if (!strcmp(state, "running") || !strcmp(state, "paused"))
			json_object_set_new(out, "uptime_s", json_integer(
				(json_int_t)time(NULL) - json_integer_value(json_object_get(shim, "started_unix"))));
	}
	if (exitj)
		json_object_set(out, "exit", exitj);
	json_decref(config);
	json_decref(shim);
	json_decref(exitj);
	return out;
}

unsigned instances_list(json_t **body)
{
	DIR *d = opendir(instances_dir);
	struct dirent *e;
	json_t *list = json_array();

	while (d && (e = readdir(d))) {
		json_t *one;
		if (!instance_name_valid(e->d_name) || !(one = describe(e->d_name)))
			continue;
		json_array_append_new(list, one);
	}
	if (d)
		closedir(d);
	*body = json_pack("{s:o}", "instances", list);
	return 200;
}

unsigned instances_info(const char *name, json_t **body)
{
	json_t *one = instance_name_valid(name) ? describe(name) : NULL;

	if (!one)
		return *body = err_body("not_found", "no instance of that name", "name"), 404;
	*body = one;
	return 200;
}

/* Everything below the directory dirfd, never following a link (the
 * workspace holds what the sandbox made). */
static void remove_below(int dirfd)
{
	DIR *d = opendir_at(dirfd);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		int sub;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (unlinkat(dirfd, e->d_name, 0) == 0 || (errno != EISDIR && errno != EPERM))
			continue;
		sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0) {
			remove_below(sub);
			close(sub);
		}
		unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
	}
	if (d)
		closedir(d);
}

static int remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4600];

	if (!d)
		return errno == ENOENT ? 0 : -1;
	/* the "deleting" mark goes last: a delete cut short is finished later */
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "deleting")) {
			snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
			if (unlink(path) < 0 && errno == EISDIR) {
				int sub = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (sub >= 0) {
					remove_below(sub);
					close(sub);
				}
				rmdir(path);
			}
			daemon_fault("delete-partial");
		}
	closedir(d);
	snprintf(path, sizeof path, "%s/deleting", dir);
	unlink(path);
	return rmdir(dir);
}

/* Mark the instance in dir: a flag file, durable before we go on. */
static void mark(const char *dir, const char *name)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		return;
	close(openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
	fsync(dfd);
	close(dfd);
}

/* Stop whatever runs for the instance in dir: SIGTERM, SIGKILL after the
 * grace, a paused one thawed first; a killed shim's cgroup removed. */
static void stop_instance(const char *dir)
{
	char parent[256];
	json_t *shim = load(dir, "shim.json"), *exitj;
	pid_t pid;
	int pidfd;

	/* a pidfd first, then the check that it is our shim: no PID reuse mistakes */
	if (shim && (pid = (pid_t)json_integer_value(json_object_get(shim, "pid"))) > 0 &&
	    (pidfd = (int)syscall(SYS_pidfd_open, pid, 0)) >= 0) {
		if (live_shim(dir, shim)) {
			uint64_t deadline = now_us() + STOP_GRACE_MS * 1000ULL;
			struct aegis_error ignored;
			/* frozen tasks cannot even die: thaw first (a paused instance,
			 * or one a failed pause left freezing); a paused vm instance's
			 * guest runs again too (the idle stop has marked it "stopped"
			 * by now), so it ends as a running one does */
			bool asleep = flag(dir, "paused") || flag(dir, "stopped");

			pause_run(dir, pid, parent_of(dir, parent, sizeof parent), asleep && vm_running(dir, shim), false,
				  &ignored);
			syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0);
			while (live_shim(dir, shim) && now_us() < deadline)
				usleep(10000);
			/* the shim's death takes its sandbox with it (parent-death signal) */
			syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		}
		close(pidfd);
	}
	/* a shim that was killed (by us or anyone) leaves its run cgroup */
	exitj = load(dir, "exit.json");
	if (shim && !exitj && (pid = (pid_t)json_integer_value(json_object_get(shim, "pid"))) > 0) {
		aegis_cleanup_killed_run((int)pid, parent_of(dir, parent, sizeof parent));
		if (dir_is_vm(dir))	/* and a vm instance's QEMU its run directory */
			vm_qemu_sweep();
	}
	json_decref(exitj);
	json_decref(shim);
}

static void unlink_in(const char *dir, const char *file)
{
	char path[4500];

	snprintf(path, sizeof path, "%s/%s", dir, file);
	unlink(path);
}

unsigned instances_delete(const char *name, json_t **body)
{
	char dir[4400];

	if (!existing_dir(name, dir, sizeof dir))
		return *body = err_body("not_found", "no instance of that name", "name"), 404;
	/* desired state first: a daemon killed from here on finishes the delete */
	mark(dir, "deleting");
	router_close(name);
	daemon_fault("delete-marked");
	stop_instance(dir);
	daemon_fault("delete-stopped");
	if (remove_tree(dir) < 0)
		return *body = err_body("storage", strerror(errno), NULL), 507;
	*body = json_pack("{s:s, s:s}", "name", name, "state", "deleted");
	return 200;
}

/* Stop it and keep its config; it stays stopped until started again. */
unsigned instances_disable(const char *name, json_t **body)
{
	char dir[4400], flag[4500];

	if (!existing_dir(name, dir, sizeof dir))
		return *body = err_body("not_found", "no instance of that name", "name"), 404;
	pthread_mutex_lock(&transition);
	underway_wait(name);
	router_close(name);	/* refused, not woken: a disabled instance stays down */
	underway_begin(name);
	pthread_mutex_unlock(&transition);
	/* outside the lock: its grace, and a paused vm guest's cont first */
	stop_instance(dir);
	pthread_mutex_lock(&transition);
	unlink_in(dir, "paused");
	unlink_in(dir, "stopped");
	snprintf(flag, sizeof flag, "%s/disabled", dir);
	close(open(flag, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	underway_end(name);
	pthread_mutex_unlock(&transition);
	*body = json_pack("{s:s, s:s}", "name", name, "state", "disabled");
	return 200;
}

/* Start a stopped instance again from its stored config. */
unsigned instances_start(const char *name, json_t **body)
{
	char dir[4400];
	json_t *shim;
	bool running;

	if (!existing_dir(name, dir, sizeof dir))
		return *body = err_body("not_found", "no instance of that name", "name"), 404;
	shim = load(dir, "shim.json");
	running = shim && live_shim(dir, shim);
	json_decref(shim);
	if (running)
		return *body = err_body("running", "the instance is running already", "name"), 409;
	if (flag(dir, "disabled")) {
		json_t *config = load(dir, "config.json");
		char why[200];
		int r = router_open(name, json_object_get(config, "expose"), why, sizeof why);
		json_decref(config);
		if (r < 0)
			return *body = err_body("port_unavailable", why, "expose"), 409;
	}
	stop_instance(dir);	/* tidy what a failed shim left */
	unlink_in(dir, "disabled");
	unlink_in(dir, "stopped");
	unlink_in(dir, "paused");
	unlink_in(dir, "exit.json");
	unlink_in(dir, "shim.json");
	spawn_shim(dir);
	*body = json_pack("{s:s, s:s}", "name", name, "state", "starting");
	return 200;
}

bool instance_dir(const char *name, char *dir, size_t len)
{
	return existing_dir(name, dir, len);
}

/* Nothing more will be written to the instance's log: it ended (its shim
 * writes exit.json after the last record), its shim died, or it is gone. */
bool instance_ended(const char *dir)
{
	json_t *shim;
	bool ended;

	if (access(dir, F_OK) < 0 || flag(dir, "exit.json"))
		return true;
	if (!(shim = load(dir, "shim.json")))
		return false;	/* starting: its shim has yet to say so */
	ended = !live_shim(dir, shim);
	json_decref(shim);
	return ended;
}

/* Pause or resume a running instance (pause.c: the cgroup freezer, and
 * QMP stop/cont for a vm instance; memory kept, no CPU). Remembered in the
 * instance's directory as a "paused" file. */
unsigned instances_pause(const char *name, bool pause, json_t **body)
{
	char parent[256];
	struct aegis_error err = { 0 };
	char dir[4400];
	json_t *shim, *a;
	pid_t pid = 0;
	bool was, vm, starting;
	char busy[200];
	int r;

	if (!existing_dir(name, dir, sizeof dir))
		return *body = err_body("not_found", "no instance of that name", "name"), 404;
	pthread_mutex_lock(&transition);
	if (underway_find(name) >= 0) {
		pthread_mutex_unlock(&transition);
		snprintf(busy, sizeof busy, "instance %s is busy: a pause, resume or stop of it is under way", name);
		return *body = err_body("busy", busy, "name"), 409;
	}
	shim = load(dir, "shim.json");
	if (shim)
		pid = live_shim(dir, shim);
	vm = dir_is_vm(dir);
	starting = vm && !vm_running(dir, shim);
	json_decref(shim);
	if (!pid) {
		pthread_mutex_unlock(&transition);
		return *body = err_body("not_running", "the instance is not running", "name"), 409;
	}
	/* a vm instance's guest is paused through the shim's control channel,
	 * which serves once the guest runs the command */
	if (starting) {
		pthread_mutex_unlock(&transition);
		return *body = err_body("not_running", "the instance is still starting", "name"), 409;
	}
	underway_begin(name);
	pthread_mutex_unlock(&transition);
	r = pause_run(dir, pid, parent_of(dir, parent, sizeof parent), vm, pause, &err);
	pthread_mutex_lock(&transition);
	if (r < 0) {
		underway_end(name);
		pthread_mutex_unlock(&transition);
		return *body = err_body(vm ? "vm" : "freezer", err.msg, NULL), 500;
	}
	/* the time asleep counts the same whoever put it to sleep */
	was = flag(dir, "paused");
	a = activity_load(dir);
	if (pause && !was) {
		mark(dir, "paused");
		json_object_set_new(a, "paused_since", json_integer((json_int_t)wall_ms()));
	}
	activity_save(dir, a);
	json_decref(a);
	if (!pause && was) {
		unlink_in(dir, "paused");
		activity_end(dir, "paused", false);
	}
	underway_end(name);
	pthread_mutex_unlock(&transition);
	if (pause != was)
		event_later(dir, pause ? "instance.pause" : "instance.resume", json_pack("{s:s}", "reason", "asked"),
			    EVENT_WAIT_MS);
	idle_touch(name);	/* asked by hand: its idle time starts now */
	*body = json_pack("{s:s, s:s}", "name", name, "state", pause ? "paused" : "running");
	return 200;
}

static bool dir_is_vm(const char *dir)
{
	json_t *config = load(dir, "config.json");
	bool vm = config_is_vm(config);

	json_decref(config);
	return vm;
}

/* A vm instance whose shim said its command runs: the shim's control
 * channel is up (pause.c pauses its guest through it). */
static bool vm_running(const char *dir, json_t *shim)
{
	return json_object_get(shim, "running_unix_ms") && dir_is_vm(dir);
}

/* For an exec: the directory (O_DIRECTORY fd) of a running, unpaused
 * instance; 0, or an HTTP status with *body. */
unsigned instances_running_dir(const char *name, int *dirfd, json_t **body)
{
	char dir[4400];
	json_t *shim;
	pid_t pid = 0;

	if (!existing_dir(name, dir, sizeof dir))
		return *body = err_body("not_found", "no instance of that name", "name"), 404;
	shim = load(dir, "shim.json");
	if (shim && !flag(dir, "disabled"))
		pid = live_shim(dir, shim);
	json_decref(shim);
	if (!pid)
		return *body = err_body("not_running", "the instance is not running", "name"), 409;
	if (paused(dir))
		return *body = err_body("paused", "the instance is paused (resume it first)", "name"), 409;
	if ((*dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return *body = err_body("storage", strerror(errno), NULL), 507;
	return 0;
}

/* A shim gone without writing exit.json was killed: say so, and remove
 * the cgroup it left (its sandbox died with it: parent-death signal). */
static void reap(const char *dir, json_t *shim)
{
	char parent[256];
	pid_t pid = (pid_t)json_integer_value(json_object_get(shim, "pid"));
	int dfd;

	aegis_cleanup_killed_run((int)pid, parent_of(dir, parent, sizeof parent));
	/* a vm instance's QEMU died with the shim (parent-death signal, or
	 * killed with the cgroup just now); its run directory is left */
	if (dir_is_vm(dir))
		vm_qemu_sweep();
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return;
	{
		json_t *exitj = json_pack("{s:s, s:s}", "end", "failed", "error",
					  "the instance's shim ended without reporting (killed?)");
		statefile_write(dfd, "exit.json", exitj);
		json_decref(exitj);
	}
	close(dfd);
	unlink_in(dir, "paused");
}

void instances_reap(const char *name)
{
	char dir[4400];
	json_t *shim, *exitj;

	if (!existing_dir(name, dir, sizeof dir) || flag(dir, "deleting"))
		return;
	shim = load(dir, "shim.json");
	exitj = load(dir, "exit.json");
	if (shim && !exitj && !shim_process(dir, shim)) {
		reap(dir, shim);
		daemon_log("warn", "instance failed: its shim was killed", "instance", name);
	}
	json_decref(shim);
	json_decref(exitj);
}

/* At start: make the table match reality after whatever stopped the last
 * daemon, at whatever step. */
void instances_recover(void)
{
	DIR *d = opendir(instances_dir);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char dir[4400];
		json_t *config, *shim, *exitj;
		if (!existing_dir(e->d_name, dir, sizeof dir))
			continue;
		if (flag(dir, "deleting")) {
			stop_instance(dir);
			remove_tree(dir);
			daemon_log("info", "finished an interrupted delete", "instance", e->d_name);
			continue;
		}
		config = load(dir, "config.json");
		shim = load(dir, "shim.json");
		exitj = load(dir, "exit.json");
		if (config && !flag(dir, "disabled") && json_array_size(json_object_get(config, "expose"))) {
			char why[200];
			if (router_open(e->d_name, json_object_get(config, "expose"), why, sizeof why) < 0)
				daemon_log("error", why, "instance", e->d_name);
		}
		if (shim && live_shim(dir, shim)) {
			daemon_log("info", "adopted a running instance", "instance", e->d_name);
		} else if (shim_lock_held(dir)) {
			;	/* a shim starting up (or the last child of a dead one): the watcher sees to it */
		} else if (!config && (config = damaged(dir, e->d_name))) {
			daemon_log("error", json_string_value(json_object_get(config, "error")), "instance", e->d_name);
		} else if (!config) {
			/* cut short between mkdir and its config: never accepted */
			remove_tree(dir);
			daemon_log("info", "removed an interrupted create", "instance", e->d_name);
		} else if (!exitj && !flag(dir, "disabled") && shim && !shim_process(dir, shim)) {
			reap(dir, shim);
			daemon_log("warn", "instance failed while the daemon was down: its shim was killed",
				   "instance", e->d_name);
		} else if (!exitj && !flag(dir, "disabled")) {
			/* accepted, its shim never ran: start it, as was asked */
			spawn_shim(dir);
			daemon_log("info", "started an instance whose create was interrupted", "instance", e->d_name);
		}
		json_decref(config);
		json_decref(shim);
		json_decref(exitj);
	}
	if (d)
		closedir(d);
}

/* Live shims (name, pid), for the watcher; at most max. One that died
 * before the watcher ever saw it is reaped here. */
int instances_live(struct live_shim *out, int max)
{
	DIR *d = opendir(instances_dir);
	struct dirent *e;
	int n = 0;

	while (d && n < max && (e = readdir(d))) {
		char dir[4400];
		json_t *shim;
		pid_t pid;
		if (!existing_dir(e->d_name, dir, sizeof dir) || !(shim = load(dir, "shim.json")))
			continue;
		if ((pid = live_shim(dir, shim)) > 0) {
			snprintf(out[n].name, sizeof out[n].name, "%s", e->d_name);
			out[n++].pid = pid;
		} else {
			instances_reap(e->d_name);
		}
		json_decref(shim);
	}
	if (d)
		closedir(d);
	return n;
}

/* Is pid still the live shim of name (after a pidfd was opened for it)? */
bool instances_is_shim(const char *name, pid_t pid)
{
	char dir[4400];
	json_t *shim;
	bool same;

	if (!existing_dir(name, dir, sizeof dir) || !(shim = load(dir, "shim.json")))
		return false;
	same = live_shim(dir, shim) == pid;
	json_decref(shim);
	return same;
}

/* {"total": N, STATE: n...} for aegis status. */
json_t *instances_counts(void)
{
	json_t *list, *counts = json_pack("{s:i}", "total", 0), *one;
	size_t i;

	instances_list(&list);
	json_array_foreach(json_object_get(list, "instances"), i, one) {
		const char *state = json_string_value(json_object_get(one, "state"));
		json_object_set_new(counts, state, json_integer(json_integer_value(json_object_get(counts, state)) + 1));
		json_object_set_new(counts, "total", json_integer((json_int_t)i + 1));
	}
	json_decref(list);
	return counts;
}

/* ---- sleeping and waking (idle.c, router.c, exec.c) ---- */

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* DIR/activity.json: wakes, time asleep. Written on each transition. */
static json_t *activity_load(const char *dir)
{
	json_t *a = load(dir, "activity.json");

	return json_is_object(a) ? a : (json_decref(a), json_pack("{s:i, s:i, s:i}", "wake_count", 0,
								   "paused_ms", 0, "stopped_ms", 0));
}

static void activity_save(const char *dir, json_t *a)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd >= 0) {
		statefile_write_fast(dfd, "activity.json", a);
		close(dfd);
	}
}

static void activity_add(json_t *a, const char *key, json_int_t v)
{
	json_object_set_new(a, key, json_integer(json_integer_value(json_object_get(a, key)) + v));
}

/* A stretch asleep ("paused" or "stopped") ends: its time is added up;
 * a wake is counted. */
static void activity_end(const char *dir, const char *what, bool wake)
{
	json_t *a = activity_load(dir);
	char since[32], total[32];

	snprintf(since, sizeof since, "%s_since", what);
	snprintf(total, sizeof total, "%s_ms", what);
	if (json_object_get(a, since))
		activity_add(a, total, (json_int_t)wall_ms() - json_integer_value(json_object_get(a, since)));
	json_object_del(a, since);
	if (wake)
		activity_add(a, "wake_count", 1);
	activity_save(dir, a);
	json_decref(a);
}

static json_t *activity_of(const char *name, const char *dir, json_t *config)
{
	json_t *a = activity_load(dir), *out;
	uint64_t idle_ms, last_ms, now = wall_ms();
	json_int_t since;
	int holds;
	char when[40];
	time_t t;
	struct tm tm;

	idle_state(name, &idle_ms, &holds, &last_ms);
	t = (time_t)(last_ms / 1000);
	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	out = json_pack("{s:s, s:I, s:i, s:I, s:I}", "last_activity", when, "idle_ms", (json_int_t)idle_ms,
			"connections", holds, "wake_count", json_integer_value(json_object_get(a, "wake_count")),
			"idle_pause_s", json_integer_value(json_object_get(config, "idle_pause_s")));
	json_object_set(out, "idle_stop_s", json_object_get(config, "idle_stop_s"));
	/* time asleep so far, the current stretch included */
	since = json_integer_value(json_object_get(a, "paused_since"));
	json_object_set_new(out, "paused_s", json_real((double)(json_integer_value(json_object_get(a, "paused_ms")) +
						       (since ? (json_int_t)now - since : 0)) / 1000.0));
	since = json_integer_value(json_object_get(a, "stopped_since"));
	json_object_set_new(out, "stopped_s", json_real((double)(json_integer_value(json_object_get(a, "stopped_ms")) +
							(since ? (json_int_t)now - since : 0)) / 1000.0));
	json_decref(a);
	return out;
}

/* The daemon's word on the instance's audit chain, through its shim
 * (retried while a fresh shim is not yet answering, up to wait_ms). */
/* A vm instance's shim has no control socket (its engine runs in the
 * guest): the event goes onto the instance's chain from here, under the
 * log's lock (audit.c: appends from several processes stay one chain). */
static void vm_instance_event(const char *dir, const char *type, json_t *fields)
{
	struct audit_log *log = NULL;
	struct aegis_error err = { 0 };
	char path[4500];

	snprintf(path, sizeof path, "%s/audit.jsonl", dir);
	if (audit_open(path, &log, &err) < 0) {
		json_decref(fields);
		daemon_log("warn", "instance event not recorded", "error", err.msg);
		return;
	}
	if (audit_append(log, type, fields, &err) < 0)	/* takes fields either way */
		daemon_log("warn", "instance event not recorded", "error", err.msg);
	audit_close(log);
}

static void instance_event(const char *dir, const char *type, json_t *fields, int wait_ms)
{
	uint64_t deadline = now_us() + (uint64_t)wait_ms * 1000;
	int dfd;
	json_t *req, *reply = NULL;

	if (dir_is_vm(dir)) {
		vm_instance_event(dir, type, fields);
		return;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	req = json_pack("{s:s, s:o}", "event", type, "fields", fields);

	while (dfd >= 0 && !reply && now_us() < deadline) {
		reply = control_call(dfd, req, NULL, (int)((deadline - now_us()) / 1000) + 1);
		if (!reply)
			usleep(20000);
	}
	json_decref(reply);
	if (dfd >= 0)
		close(dfd);
	json_decref(req);
}

struct later {
	char dir[4400];
	const char *type;
	json_t *fields;
	int wait_ms;
};

static void *event_thread(void *arg)
{
	struct later *l = arg;

	instance_event(l->dir, l->type, l->fields, l->wait_ms);
	free(l);
	return NULL;
}

/* The same, in a thread of its own: a wake must not wait for its record. */
static void event_later(const char *dir, const char *type, json_t *fields, int wait_ms)
{
	struct later *l = malloc(sizeof *l);
	pthread_attr_t attr;
	pthread_t t;

	if (!l) {
		json_decref(fields);
		return;
	}
	snprintf(l->dir, sizeof l->dir, "%s", dir);
	l->type = type;
	l->fields = fields;
	l->wait_ms = wait_ms;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	if (pthread_create(&t, &attr, event_thread, l) != 0)
		event_thread(l);
	pthread_attr_destroy(&attr);
}

int instances_dirfd(const char *name)
{
	char dir[4400];

	if (!existing_dir(name, dir, sizeof dir))
		return -1;
	return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

int instances_wake(const char *name)
{
	char dir[4400], parent[256];
	struct aegis_error err;
	const char *woke = NULL;
	json_t *shim;
	pid_t pid = 0;
	bool vm;
	int r = 0;

	if (!existing_dir(name, dir, sizeof dir))
		return -1;
	pthread_mutex_lock(&transition);
	/* a connection or exec that comes while its pause is under way waits
	 * for it, then resumes what it paused */
	underway_wait(name);
	shim = load(dir, "shim.json");
	if (shim)
		pid = live_shim(dir, shim);
	vm = vm_running(dir, shim);
	json_decref(shim);
	if (flag(dir, "deleting") || flag(dir, "disabled")) {
		r = -1;
	} else if (pid && flag(dir, "paused")) {
		underway_begin(name);
		pthread_mutex_unlock(&transition);
		r = pause_run(dir, pid, parent_of(dir, parent, sizeof parent), vm, false, &err);
		pthread_mutex_lock(&transition);
		underway_end(name);
		if (r < 0) {
			daemon_log("warn", "instance not woken", "error", err.msg);
			r = -1;
		} else {
			unlink_in(dir, "paused");
			activity_end(dir, "paused", true);
			woke = "paused";
		}
	} else if (pid && flag(dir, "stopped")) {
		/* still being stopped: once it is gone, the next try starts it */
		r = 0;
	} else if (!pid && flag(dir, "stopped")) {
		unlink_in(dir, "stopped");
		unlink_in(dir, "exit.json");
		unlink_in(dir, "shim.json");
		spawn_shim(dir);
		activity_end(dir, "stopped", true);
		woke = "stopped";
	} else if (!pid) {
		json_t *exitj = load(dir, "exit.json");
		r = exitj ? -1 : 0;	/* ended on its own: not ours to restart; else starting */
		json_decref(exitj);
	}
	pthread_mutex_unlock(&transition);
	/* on the record once the shim takes it (a fresh one may take a while
	 * on a busy machine); others need not wait for that */
	if (woke)
		event_later(dir, "instance.wake", json_pack("{s:s}", "from", woke), WAKE_EVENT_WAIT_MS);
	if (r == 0)
		idle_touch(name);
	return r;
}

/* An idle pause or stop the sweep decided, done in a thread of its own:
 * a vm instance's QMP stop waits on its shim (15 s when the shim hangs),
 * a stop on its grace, and the sweep must not hold the other instances'
 * idle policies meanwhile. The instance's name is under way (taken by the
 * sweep) until the job ends. */
struct idle_job {
	char name[INSTANCE_NAME_MAX + 1];
	char dir[4400];
	pid_t pid;
	bool vm, stop;
	uint64_t idle_ms;
	json_int_t since;	/* stop: paused since, unix ms */
	json_t *a;		/* activity.json, the job's */
};

static void idle_pause(struct idle_job *j)
{
	char parent[256];
	struct aegis_error err;

	/* one that fails stays running (pause.c) and is tried again at the
	 * next sweep; the record still goes before any wake's */
	if (pause_run(j->dir, j->pid, parent_of(j->dir, parent, sizeof parent), j->vm, true, &err) == 0) {
		mark(j->dir, "paused");
		json_object_set_new(j->a, "paused_since", json_integer((json_int_t)wall_ms()));
		activity_save(j->dir, j->a);
		instance_event(j->dir, "instance.pause", json_pack("{s:s, s:I}", "reason", "idle", "idle_s",
								   (json_int_t)(j->idle_ms / 1000)), EVENT_WAIT_MS);
	}
	pthread_mutex_lock(&transition);
	underway_end(j->name);
	pthread_mutex_unlock(&transition);
}

static void idle_stop(struct idle_job *j)
{
	instance_event(j->dir, "instance.stop", json_pack("{s:s, s:I}", "reason", "idle", "paused_s",
							  ((json_int_t)wall_ms() - j->since) / 1000), EVENT_WAIT_MS);
	pthread_mutex_lock(&transition);
	underway_end(j->name);
	mark(j->dir, "stopped");
	unlink_in(j->dir, "paused");
	activity_add(j->a, "paused_ms", (json_int_t)wall_ms() - j->since);
	json_object_del(j->a, "paused_since");
	json_object_set_new(j->a, "stopped_since", json_integer((json_int_t)wall_ms()));
	activity_save(j->dir, j->a);
	pthread_mutex_unlock(&transition);
	/* thawed, then SIGTERM (the shim writes exit.json), SIGKILL after
	 * the grace: outside the lock, so no other instance waits on it */
	stop_instance(j->dir);
}

static void *idle_job_main(void *arg)
{
	struct idle_job *j = arg;

	if (j->stop)
		idle_stop(j);
	else
		idle_pause(j);
	json_decref(j->a);
	free(j);
	return NULL;
}

/* The job in a thread (or here, when none can be made). With `transition`
 * held and name under way; returns without it. */
static void idle_job_start(struct idle_job *j)
{
	pthread_attr_t attr;
	pthread_t t;
	int r;

	pthread_mutex_unlock(&transition);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	r = pthread_create(&t, &attr, idle_job_main, j);
	pthread_attr_destroy(&attr);
	if (r != 0)
		idle_job_main(j);
}

/* The idle policy of one instance, idle_ms since its last activity. */
static void idle_one(const char *name)
{
	char dir[4400];
	json_t *config, *shim, *a;
	json_int_t pause_s, stop_s, since = 0, running;
	uint64_t idle_ms, last;
	int holds;
	pid_t pid = 0;
	bool vm, stop;
	struct idle_job *j;

	if (!existing_dir(name, dir, sizeof dir) || !(config = load(dir, "config.json")))
		return;
	pause_s = json_integer_value(json_object_get(config, "idle_pause_s"));
	stop_s = json_integer_value(json_object_get(config, "idle_stop_s"));
	json_decref(config);
	if ((!pause_s && !stop_s) || flag(dir, "disabled") || flag(dir, "deleting") || flag(dir, "stopped"))
		return;
	idle_state(name, &idle_ms, &holds, &last);
	if (holds)
		return;
	pthread_mutex_lock(&transition);
	if (underway_find(name) >= 0) {	/* its own transition comes first */
		pthread_mutex_unlock(&transition);
		return;
	}
	shim = load(dir, "shim.json");
	if (shim)
		pid = live_shim(dir, shim);
	/* idle counts from when the command runs, not from the start: a vm
	 * instance's guest may boot (or first build its snapshot) for long */
	running = json_integer_value(json_object_get(shim, "running_unix_ms"));
	if (!running)
		pid = 0;
	else if (wall_ms() - (uint64_t)running < idle_ms)
		idle_ms = wall_ms() - (uint64_t)running;
	vm = vm_running(dir, shim);
	json_decref(shim);
	a = activity_load(dir);
	stop = pid && flag(dir, "paused") && stop_s && (since = json_integer_value(json_object_get(a, "paused_since"))) &&
	       (json_int_t)wall_ms() - since >= stop_s * 1000;
	if ((!stop && !(pid && !flag(dir, "paused") && pause_s && idle_ms >= (uint64_t)pause_s * 1000)) ||
	    !(j = calloc(1, sizeof *j))) {
		json_decref(a);
		pthread_mutex_unlock(&transition);
		return;
	}
	snprintf(j->name, sizeof j->name, "%s", name);
	snprintf(j->dir, sizeof j->dir, "%s", dir);
	j->pid = pid, j->vm = vm, j->stop = stop, j->idle_ms = idle_ms, j->since = since, j->a = a;
	underway_begin(name);
	idle_job_start(j);
}

void instances_idle_sweep(void)
{
	DIR *d = opendir(instances_dir);
	struct dirent *e;

	while (d && (e = readdir(d)))
		if (instance_name_valid(e->d_name))
			idle_one(e->d_name);
	if (d)
		closedir(d);
}
