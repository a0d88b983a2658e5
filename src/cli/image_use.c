/* image_use.c — `--image REF` for `aegis run` and `aegis instance start`:
 * the image as the store has it, pulled first when it is not there. The
 * pull itself is aegis-image's (libcurl, libarchive: a program of its own,
 * next to this one), so this static binary stays small. */
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/paths.h"
#include "cli.h"
#include "image_use.h"

extern char **environ;

/* `aegis-image pull [--quiet] REF`: its progress and its one-line error
 * go to our stderr. Its exit status (0 pulled), or -1 with err. */
static int pull(const char *ref, bool quiet, struct aegis_error *err)
{
	char bin[PATH_MAX], *argv[5];
	int status, k = 0;
	pid_t pid;

	argv[k++] = "aegis-image";
	argv[k++] = "pull";
	if (quiet)
		argv[k++] = "--quiet";
	argv[k++] = (char *)ref;
	argv[k] = NULL;
	if (cli_sibling("aegis-image", bin, sizeof bin) < 0 || access(bin, X_OK) < 0)
		return error_set(err, AEGIS_E_SETUP, ENOENT, "image: aegis-image not found next to this program");
	if ((errno = posix_spawn(&pid, bin, NULL, NULL, argv, environ)) != 0)
		return error_sys(err, "image: start aegis-image");
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return error_sys(err, "image: wait for aegis-image");
	return WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_AEGIS_ERROR;
}

int image_use(const char *ref, bool quiet, struct image_root *root, struct aegis_error *err)
{
	char state[4096];
	int r;

	if (paths_state(state, sizeof state, err) < 0)
		return -1;
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((r = image_store_resolve(state, ref, root, err)) != 1)
			return r;
		/* not in the store: pull it (once), as `docker run` does */
		if (attempt == 0 && (r = pull(ref, quiet, err)) != 0)
			return r;	/* -1 with err, or aegis-image's status after its own line */
	}
	return error_set(err, AEGIS_E_SETUP, 0, "image %s: still not in the store after pulling it", ref);
}
