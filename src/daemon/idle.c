/* idle.c — the daemon's memory of when each instance was last used, and
 * the timer that applies the instances' idle policies (instances_idle()).
 * Kept in memory: a restarted daemon counts idleness from its own start,
 * which can only make an instance sleep later, never sooner. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "../common/util.h"
#include "idle.h"
#include "instances.h"

#define IDLE_TICK_MS 200

struct activity {
	char name[INSTANCE_NAME_MAX + 1];
	uint64_t last_us;	/* monotonic */
	uint64_t last_unix_ms;
	int holds;
};

static struct activity *table;
static size_t n, cap;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t unix_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* The instance's entry (made now if new), under the lock. */
static struct activity *entry(const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(table[i].name, name))
			return &table[i];
	if (n == cap) {
		size_t grown = cap ? cap * 2 : 64;
		struct activity *t = realloc(table, grown * sizeof *t);
		if (!t)
			return NULL;
		table = t;
		cap = grown;
	}
	memset(&table[n], 0, sizeof table[n]);
	strncpy(table[n].name, name, INSTANCE_NAME_MAX);
	table[n].last_us = now_us();
	table[n].last_unix_ms = unix_ms();
	return &table[n++];
}

void idle_touch(const char *name)
{
	struct activity *a;

	pthread_mutex_lock(&lock);
	if ((a = entry(name))) {
		a->last_us = now_us();
		a->last_unix_ms = unix_ms();
	}
	pthread_mutex_unlock(&lock);
}

void idle_hold(const char *name, int delta)
{
	struct activity *a;

	pthread_mutex_lock(&lock);
	if ((a = entry(name))) {
		a->holds += delta;
		if (a->holds < 0)
			a->holds = 0;
		a->last_us = now_us();
		a->last_unix_ms = unix_ms();
	}
	pthread_mutex_unlock(&lock);
}

void idle_state(const char *name, uint64_t *idle_ms, int *holds, uint64_t *last_unix_ms)
{
	struct activity *a;

	*idle_ms = 0;
	*holds = 0;
	*last_unix_ms = 0;
	pthread_mutex_lock(&lock);
	if ((a = entry(name))) {
		*idle_ms = (now_us() - a->last_us) / 1000;
		*holds = a->holds;
		*last_unix_ms = a->last_unix_ms;
	}
	pthread_mutex_unlock(&lock);
}

static void *tick(void *arg)
{
	(void)arg;
	for (;;) {
		usleep(IDLE_TICK_MS * 1000);
		instances_idle_sweep();
	}
	return NULL;
}

int idle_start(void)
{
	pthread_attr_t attr;
	pthread_t t;
	int r;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, tick, NULL);
	pthread_attr_destroy(&attr);
	return r == 0 ? 0 : -1;
}
