/* thrash.c — is a run at its memory limit thrashing instead of working?
 *
 * Without swap, the kernel OOM-kills a cgroup only when reclaim at its
 * limit frees nothing. A run whose anonymous memory fills its limit can
 * still have clean file pages to give: its own program text. Reclaim
 * evicts them, the next instruction faults them back in (with read-ahead,
 * which evicts the pages the previous fault brought), and reclaim "made
 * progress" again, for ever. Under the vm backend this was seen to last
 * for minutes: a Python hog's text over 9p, 124 pages of read-ahead a
 * fault against ~300 KiB of page cache left, re-read at 80 MB/s. On a
 * host the same hog, its program not yet in the host's page cache, was
 * seen doing it at ~470 MB/s for seconds (cgroup v1, no pressure files).
 *
 * Two signs, judged over one-second windows while the run is within 10%
 * of its limit; THRASH_WINDOWS of them in a row count as out of memory:
 * - every task stalled on memory at least half the window (cgroup v2
 *   pressure, "full"; as systemd-oomd does). The 9p re-reads above are not
 *   such stalls: the kernel does not see pages this short-lived as part of
 *   the working set, and 9p is no block device (no I/O pressure either).
 * - the page cache is squeezed (at most 1/16 of the limit: everything
 *   else is memory the run cannot give back) and the run re-read, in the
 *   window, REREAD_TIMES times all of it and at least REREAD_MIN: it lives on
 *   evicting what it needs next. Refaults are in memory.stat on v1 too.
 *   The hog above re-read 100 to 450 times its cache a second; a program
 *   holding 94% of its limit in the same guest, squeezed but working,
 *   2 to 9 times, for a second or two.
 * A run that streams files larger than its limit keeps a large page cache,
 * and a run near its limit whose working set fits re-reads nothing: both
 * work on. */
#include "sandbox.h"

#define THRASH_WINDOWS 3
#define WINDOW_US 1000000
#define REREAD_TIMES 16
#define REREAD_MIN (1u << 20)

bool thrash_near_limit(uint64_t current, uint64_t limit)
{
	return limit && current >= limit - limit / 10;
}

static uint64_t grew(uint64_t from, uint64_t to)
{
	return to > from ? to - from : 0;	/* a counter never goes back; 0 if it seems to */
}

static bool window_thrashed(const struct memory_sample *a, const struct memory_sample *b, uint64_t limit)
{
	uint64_t span = grew(a->at_us, b->at_us);
	uint64_t reread = grew(a->refault_bytes, b->refault_bytes);
	uint64_t cache = a->file_lru > b->file_lru ? a->file_lru : b->file_lru;
	bool stalled = span && grew(a->full_stall_us, b->full_stall_us) * 2 >= span;
	bool squeezed = cache <= limit / 16 && reread / REREAD_TIMES >= cache && reread >= REREAD_MIN;

	return stalled || squeezed;
}

/* The cgroup's files are read once a window, not at every tick of the
 * supervisor's loop (which is on every run's path). */
bool thrash_due(const struct thrash_watch *w, uint64_t now_us)
{
	return now_us >= w->next_us;
}

bool thrash_update(struct thrash_watch *w, const struct memory_sample *now, uint64_t limit)
{
	w->next_us = now->at_us + WINDOW_US;
	if (!thrash_near_limit(now->current, limit)) {
		/* well below the limit: nothing to judge, and the next
		 * window near it starts afresh */
		w->have_last = false;
		w->windows = 0;
		return false;
	}
	if (w->have_last)
		w->windows = window_thrashed(&w->last, now, limit) ? w->windows + 1 : 0;
	w->last = *now;
	w->have_last = true;
	return w->windows >= THRASH_WINDOWS;
}
