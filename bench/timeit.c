/* timeit: cold-start timing driver for bench/run.sh.
 *
 * Usage: timeit RUNS WARMUPS CMD [ARGS...]
 * Spawns CMD (posix_spawnp, i.e. vfork-style) WARMUPS times untimed, then RUNS
 * times timed with CLOCK_MONOTONIC from spawn to reap. Prints one line:
 *   median_us p10_us p90_us
 * Any run that does not exit with status 0 aborts with exit 1 and a message.
 * Used instead of hyperfine, whose shell/process overhead distorts
 * sub-millisecond numbers. */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double run_once(char **argv)
{
	pid_t pid;
	int status, rc;
	double t0 = now_us();

	rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
	if (rc != 0) {
		fprintf(stderr, "timeit: spawn %s: %s\n", argv[0], strerror(rc));
		exit(1);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			perror("timeit: waitpid");
			exit(1);
		}
	}
	double dt = now_us() - t0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "timeit: FAILED: '%s' %s %d\n", argv[0],
			WIFEXITED(status) ? "exited with status" : "killed by signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		exit(1);
	}
	return dt;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s RUNS WARMUPS CMD [ARGS...]\n", argv[0]);
		return 2;
	}
	long runs = strtol(argv[1], NULL, 10);
	long warmups = strtol(argv[2], NULL, 10);
	if (runs < 1 || warmups < 0) {
		fprintf(stderr, "timeit: RUNS must be >= 1, WARMUPS >= 0\n");
		return 2;
	}
	double *t = malloc(runs * sizeof(*t));
	if (!t) {
		perror("timeit: malloc");
		return 1;
	}
	for (long i = 0; i < warmups; i++)
		run_once(argv + 3);
	for (long i = 0; i < runs; i++)
		t[i] = run_once(argv + 3);

	qsort(t, runs, sizeof(*t), cmp_double);
	/* nearest-rank percentiles on the sorted samples */
	double med = runs % 2 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;
	printf("%.0f %.0f %.0f\n", med, t[(runs - 1) * 10 / 100], t[(runs - 1) * 90 / 100]);
	free(t);
	return 0;
}
