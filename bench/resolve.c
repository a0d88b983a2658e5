/* resolve.c — what an image adds to a sandbox's cold start on the store's
 * side: image_store_resolve() of a cached image, N times, median and p90
 * in microseconds. Built by bench/images.py against build/libaegis.a. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../src/common/imagestore.h"

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	int n = argc > 3 ? atoi(argv[3]) : 1000;
	double *us = calloc((size_t)n, sizeof *us);

	if (argc < 3 || !us)
		return fprintf(stderr, "usage: resolve STATE_DIR REF [N]\n"), 2;
	for (int i = 0; i < n; i++) {
		struct aegis_error err = { 0 };
		struct image_root root;
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		if (image_store_resolve(argv[1], argv[2], &root, &err) != 0)
			return fprintf(stderr, "resolve: %s\n", err.msg), 1;
		image_root_free(&root);
		clock_gettime(CLOCK_MONOTONIC, &b);
		us[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3;
	}
	qsort(us, (size_t)n, sizeof *us, cmp);
	printf("%.1f %.1f\n", us[n / 2], us[n * 9 / 10]);
	return 0;
}
