/* paths.c — runtime and state locations, and private directories for them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "paths.h"

/* out = a + b, refused when it does not fit. */
static int fill(char *out, size_t len, const char *what, const char *a, const char *b,
		struct aegis_error *err)
{
	if ((size_t)snprintf(out, len, "%s%s", a, b) >= len)
		return error_set(err, AEGIS_E_INVALID, 0, "%s path too long", what);
	return 0;
}

int paths_socket(char *out, size_t len, struct aegis_error *err)
{
	const char *env = getenv("AEGIS_SOCKET"), *run = getenv("XDG_RUNTIME_DIR");

	if (env && *env)
		return fill(out, len, "socket", env, "", err);
	if (geteuid() == 0)
		return fill(out, len, "socket", "/run/aegis/aegisd.sock", "", err);
	if (!run || run[0] != '/')
		return error_set(err, AEGIS_E_INVALID, 0,
				 "no XDG_RUNTIME_DIR for the daemon's socket (set AEGIS_SOCKET)");
	return fill(out, len, "socket", run, "/aegis/aegisd.sock", err);
}

int paths_state(char *out, size_t len, struct aegis_error *err)
{
	const char *env = getenv("AEGIS_STATE_DIR"), *data = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");

	if (env && *env)
		return fill(out, len, "state", env, "", err);
	if (geteuid() == 0)
		return fill(out, len, "state", "/var/lib/aegis", "", err);
	if (data && data[0] == '/')
		return fill(out, len, "state", data, "/aegis", err);
	if (!home || home[0] != '/')
		return error_set(err, AEGIS_E_INVALID, 0, "no HOME for the state directory (set AEGIS_STATE_DIR)");
	return fill(out, len, "state", home, "/.local/share/aegis", err);
}

int paths_private_dir(const char *dir, struct aegis_error *err)
{
	char parent[4096], *slash;
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno == ENOENT) {
		/* the missing parents, as mkdir -p (a new user's ~/.local) */
		snprintf(parent, sizeof parent, "%s", dir);
		for (slash = strchr(parent + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
			*slash = '\0';
			if (mkdir(parent, 0755) < 0 && errno != EEXIST)
				return error_sys(err, "mkdir %s", parent);
			*slash = '/';
		}
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return error_sys(err, "mkdir %s", dir);
	}
	if (lstat(dir, &st) < 0)
		return error_sys(err, "%s", dir);
	if (!S_ISDIR(st.st_mode))
		return error_set(err, AEGIS_E_INVALID, 0, "%s is not a directory (a symlink?)", dir);
	if (st.st_uid != geteuid())
		return error_set(err, AEGIS_E_INVALID, 0, "%s belongs to uid %u, not to us", dir,
				 (unsigned)st.st_uid);
	if (st.st_mode & 077)
		return error_set(err, AEGIS_E_INVALID, 0, "%s is open to others (mode %04o; want 0700)", dir,
				 (unsigned)(st.st_mode & 07777));
	return 0;
}

int paths_default_backend(const char **out, struct aegis_error *err)
{
	const char *v = getenv("AEGIS_BACKEND");

	*out = "ns";
	if (!v || !*v)
		return 0;
	if (strcmp(v, "ns") && strcmp(v, "vm"))
		return error_set(err, AEGIS_E_INVALID, 0, "AEGIS_BACKEND must be ns or vm, not '%.32s'", v);
	*out = v;
	return 0;
}
