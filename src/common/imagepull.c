/* imagepull.c — running aegis-image for a pull (imagepull.h). It runs
 * with our environment (state dir, insecure registries, credentials
 * file) and as our user; nothing of ours but stdio is inherited (every
 * fd is O_CLOEXEC). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "imagepull.h"
#include "imagestore.h"

int imagepull_helper(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n < 0)
		return -1;
	self[n] = '\0';
	return (size_t)snprintf(out, len, "%s/aegis-image", dirname(self)) < len ? 0 : -1;
}

/* The last line aegis-image wrote, without its "aegis: ". */
static void last_line(int fd, char *out, size_t len)
{
	char buf[4096];
	size_t have = 0;
	ssize_t n;

	while ((n = read(fd, buf + have, sizeof buf - 1 - have)) > 0 || (n < 0 && errno == EINTR)) {
		if (n > 0)
			have += (size_t)n;
		if (have == sizeof buf - 1) {
			/* keep the tail */
			memmove(buf, buf + have / 2, have - have / 2);
			have -= have / 2;
		}
	}
	buf[have] = '\0';
	while (have && buf[have - 1] == '\n')
		buf[--have] = '\0';
	{
		char *line = strrchr(buf, '\n');
		line = line ? line + 1 : buf;
		if (!strncmp(line, "aegis: ", 7))
			line += 7;
		snprintf(out, len, "%s", line);
	}
}

int imagepull_run(const char *state_dir, const char *ref, bool quiet, struct aegis_error *err)
{
	char bin[PATH_MAX], msg[sizeof err->msg] = "";
	int p[2] = { -1, -1 }, status;
	pid_t pid;

	if (imagepull_helper(bin, sizeof bin) < 0)
		return error_set(err, AEGIS_E_SETUP, 0, "cannot find aegis-image");
	if (quiet && pipe2(p, O_CLOEXEC) < 0)
		return error_sys(err, "pull %s", ref);
	if ((pid = fork()) < 0) {
		if (quiet) {
			close(p[0]);
			close(p[1]);
		}
		return error_sys(err, "pull %s: fork", ref);
	}
	if (pid == 0) {
		if (setenv("AEGIS_STATE_DIR", state_dir, 1) < 0 || (quiet && dup2(p[1], 2) < 0))
			_exit(125);
		if (quiet)
			execl(bin, "aegis-image", "pull", "--quiet", ref, (char *)NULL);
		else
			execl(bin, "aegis-image", "pull", ref, (char *)NULL);
		_exit(127);
	}
	if (quiet) {
		close(p[1]);
		last_line(p[0], msg, sizeof msg);
		close(p[0]);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return error_set(err, AEGIS_E_SETUP, 0, "cannot run %s", bin);
	if (msg[0])
		return error_set(err, AEGIS_E_SETUP, 0, "%s", msg);
	return error_set(err, AEGIS_E_SETUP, 0, "pulling %s failed", ref);
}

int imagepull_resolve(const char *state_dir, const char *ref, bool quiet, struct image_root *out,
		      struct aegis_error *err)
{
	int r = image_store_resolve(state_dir, ref, out, err);

	if (r != 1)
		return r;
	if (imagepull_run(state_dir, ref, quiet, err) < 0)
		return -1;
	r = image_store_resolve(state_dir, ref, out, err);
	if (r == 1)
		return error_set(err, AEGIS_E_SETUP, 0, "image %s: pulled, but not in the store", ref);
	return r;
}
