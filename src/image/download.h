/* download.h — fetching layer blobs: in parallel, resumable, verified. */
#ifndef AEGIS_IMAGE_DOWNLOAD_H
#define AEGIS_IMAGE_DOWNLOAD_H

#include "image.h"
#include "progress.h"
#include "registry.h"

struct dl_item {
	char digest[72];
	/* the layer the blob unpacks to: another pull may have unpacked it
	 * (and dropped the blob) while this one waited for the blob's lock */
	char diff_id[72];
	uint64_t size;		/* declared by the manifest: more is an error */
	size_t line;		/* progress line */
	uint64_t fetched;	/* bytes this process received */
	bool verified;		/* this process checked its digest (no need to hash it again) */
};

/* Make sure every item's blob is in the store (blobs/sha256/<hex>),
 * each downloaded at most once however many pulls want it at once. */
int download_blobs(struct store *s, struct registry *r, struct dl_item *items, size_t n,
		   struct progress *p, struct aegis_error *err);

#endif
