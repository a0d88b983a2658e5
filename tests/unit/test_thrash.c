/* test_thrash.c — when a run at its memory limit counts as out of memory.
 *
 * The thrashing trace is what a Python hog under --memory 64m did in a
 * TCG guest (memory.stat and memory.pressure once a second): anon at 63
 * MiB, ~300 KiB of page cache, ~100 MB of it re-read every second, "full"
 * pressure around 40%. The others are the runs that must live on. */
#include <stdint.h>

#include "../../src/sandbox/sandbox.h"
#include "tap.h"

#define MIB (1ULL << 20)
#define LIMIT (64 * MIB)
#define PAGE 4096ULL

/* Feed one sample a second; the second at which the run is stopped, or 0. */
static unsigned stopped_at(const struct memory_sample *trace, unsigned n)
{
	struct thrash_watch w = { 0 };

	for (unsigned i = 0; i < n; i++) {
		struct memory_sample s = trace[i];
		s.at_us = (uint64_t)i * 1000000 + 1;
		if (!thrash_due(&w, s.at_us))
			return 1000;	/* a window a second must always be due */
		if (thrash_update(&w, &s, LIMIT))
			return i;
	}
	return 0;
}

int main(void)
{
	/* current, file LRU, refaulted bytes, full stall µs (at_us is set per second) */
	const struct memory_sample hog[] = {
		{ 0, 262144, 0, 0, 0 },
		{ 0, 66895872, 1789952, 213 * PAGE, 31034 },
		{ 0, 67104768, 303104, 1275 * PAGE, 60674 },
		{ 0, 67108864, 319488, 29684 * PAGE, 482927 },
		{ 0, 67108864, 319488, 55002 * PAGE, 894720 },
		{ 0, 67072000, 282624, 77030 * PAGE, 1360842 },
		{ 0, 67108864, 282624, 103344 * PAGE, 1832831 },
		{ 0, 67039232, 249856, 136494 * PAGE, 2298546 },
	};
	/* its first window at the limit re-read only 2.4 times its cache */
	ok(stopped_at(hog, 8) == 5, "the Python hog seen thrashing over 9p is stopped after 3 windows");

	/* The same on cgroup v1: no pressure file, the refaults alone. */
	struct memory_sample v1[8];
	for (unsigned i = 0; i < 8; i++)
		v1[i] = hog[i], v1[i].full_stall_us = 0;
	ok(stopped_at(v1, 8) == 5, "without pressure (v1) the refaults tell the same");

	/* Pressure alone still counts (anon-side stalls; systemd-oomd's sign). */
	struct memory_sample stall[6];
	for (unsigned i = 0; i < 6; i++)
		stall[i] = (struct memory_sample){ 0, 66 * MIB, 20 * MIB, 0, i * 600000ULL };
	ok(stopped_at(stall, 6) == 3, "every task stalled over half the time, 3 windows in a row");

	/* Streaming files twice its limit through the page cache: re-reads
	 * galore, but most of the memory is cache it can give back. */
	struct memory_sample stream[8];
	for (unsigned i = 0; i < 8; i++)
		stream[i] = (struct memory_sample){ 0, LIMIT, 60 * MIB, i * 500 * MIB, i * 100000ULL };
	ok(stopped_at(stream, 8) == 0, "a run streaming files through a full cache works on");

	/* Holding 92% of the limit, its working set in what is left: nothing re-read. */
	struct memory_sample holder[8];
	for (unsigned i = 0; i < 8; i++)
		holder[i] = (struct memory_sample){ 0, 62 * MIB, 3 * MIB, 40 * PAGE, i * 20000ULL };
	ok(stopped_at(holder, 8) == 0, "a run near its limit that re-reads nothing works on");

	/* Holding 94% of its limit in a guest (seen): squeezed, re-reading a
	 * few times its cache for a while, working. One more such second than
	 * seen, so that a looser rule would have stopped it. */
	const struct memory_sample squeezed[] = {
		{ 0, 44126208, 15159296, 0, 0 },
		{ 0, 67100672, 4112384, 261 * PAGE, 107227 },
		{ 0, 67067904, 4050944, 468 * PAGE, 116955 },
		{ 0, 66990080, 2965504, 7109 * PAGE, 282919 },
		{ 0, 66920448, 2887680, 10486 * PAGE, 332915 },
		{ 0, 66920448, 2887680, 13863 * PAGE, 332915 },
		{ 0, 66920448, 2887680, 13863 * PAGE, 332915 },
		{ 0, 67018752, 2998272, 15532 * PAGE, 364556 },
	};
	ok(stopped_at(squeezed, 8) == 0, "a squeezed run re-reading its cache a few times over works on");

	/* A squeezed cache re-read at a trickle is not thrashing. */
	struct memory_sample trickle[8];
	for (unsigned i = 0; i < 8; i++)
		trickle[i] = (struct memory_sample){ 0, LIMIT, 16 * 1024, i * 128 * PAGE, 0 };
	ok(stopped_at(trickle, 8) == 0, "re-reading under REREAD_MIN a second works on");

	/* Far from the limit nothing counts, however it re-reads. */
	struct memory_sample low[8];
	for (unsigned i = 0; i < 8; i++)
		low[i] = (struct memory_sample){ 0, 40 * MIB, 100 * 1024, i * 100 * MIB, i * 900000ULL };
	ok(stopped_at(low, 8) == 0, "below 90%% of the limit nothing is judged");

	/* Thrashing windows must be in a row: a calm one in between resets. */
	struct memory_sample broken[8];
	for (unsigned i = 0; i < 8; i++)
		broken[i] = (struct memory_sample){ 0, LIMIT, 300 * 1024, i * 50 * MIB, 0 };
	for (unsigned i = 3; i < 8; i++)
		broken[i].refault_bytes = broken[2].refault_bytes + (i >= 4 ? (i - 3) * 50 * MIB : 0);
	ok(stopped_at(broken, 8) == 6, "a calm window starts the count again");

	/* Leaving the limit's band forgets the last sample: no window spans it. */
	struct memory_sample dip[8];
	for (unsigned i = 0; i < 8; i++)
		dip[i] = (struct memory_sample){ 0, LIMIT, 300 * 1024, i * 50 * MIB, 0 };
	dip[3].current = 10 * MIB;
	ok(stopped_at(dip, 8) == 7, "a dip below the band starts the count again");

	/* Counters that seem to go back (a new cgroup file) never count as growth. */
	struct memory_sample back[5];
	for (unsigned i = 0; i < 5; i++)
		back[i] = (struct memory_sample){ 0, LIMIT, 300 * 1024, (5 - i) * 50 * MIB, (5 - i) * 900000ULL };
	ok(stopped_at(back, 5) == 0, "counters going back are no evidence");

	ok(thrash_near_limit(58 * MIB, LIMIT) && !thrash_near_limit(57 * MIB, LIMIT) &&
	   !thrash_near_limit(LIMIT, 0), "the band is the top 10%% of a set limit");
	return tap_done();
}
