/* unpack.h — unpacking one layer (a tar, plain, gzip or zstd) into an
 * empty directory as an overlayfs lower layer, in a child process that can
 * write nowhere else (docs/images.md: "Unpacking hostile layers"). */
#ifndef AEGIS_IMAGE_UNPACK_H
#define AEGIS_IMAGE_UNPACK_H

#include <stdint.h>
#include <sys/types.h>

#include <aegis/aegis.h>

struct unpack_result {
	int ok;			/* 1: unpacked; 0: msg says why not */
	char diff_id[72];	/* sha256 of the uncompressed tar stream */
	uint64_t bytes;		/* uncompressed bytes read */
	uint64_t entries;	/* entries written */
	uint64_t neutralised;	/* entries refused: escapes, devices, ... */
	char msg[256];
};

struct unpack_job {
	pid_t pid;
	int result_fd;		/* the child's report arrives here */
};

/* Start unpacking the blob on blob_fd into the empty directory dir_fd,
 * refusing any file over max_bytes and more than max_bytes in all. */
int unpack_spawn(int blob_fd, int dir_fd, uint64_t max_bytes, struct unpack_job *job,
		 struct aegis_error *err);
/* Wait for the child and take its report; -1 with err if it died without
 * one (killed, crashed). */
int unpack_wait(struct unpack_job *job, struct unpack_result *res, struct aegis_error *err);
/* Both: unpack and wait. */
int unpack_run(int blob_fd, int dir_fd, uint64_t max_bytes, struct unpack_result *res,
	       struct aegis_error *err);

/* The unpacking itself, in the calling process (the child, and unit
 * tests). 0 or -1 with res->msg. */
int unpack_stream(int blob_fd, int dir_fd, uint64_t max_bytes, struct unpack_result *res);

#endif
