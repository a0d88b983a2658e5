/* logwriter.h — an instance's log: the shim's side, which writes it, and
 * where its files are. The record format is src/common/logrecord.h.
 *
 * Files: DIR/output.NNNNNNNN.jsonl, the highest number the newest. A file
 * is closed for good when the next one exists; the writer never renames, so
 * a reader holding one keeps reading it, then moves to the next number. */
#ifndef AEGIS_DAEMON_LOGWRITER_H
#define AEGIS_DAEMON_LOGWRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <aegis/aegis.h>

#define LOG_MAX_BYTES_DEFAULT (8ULL << 20)	/* per file, before the next one */
#define LOG_MAX_BYTES_MIN 1024ULL
#define LOG_MAX_BYTES_MAX (1ULL << 30)
#define LOG_KEEP 3		/* older files kept besides the newest: at most 4 × max on disk */
#define LOG_MAX_BYTES_ENV "AEGIS_LOG_MAX_BYTES"	/* read by aegisd, inherited by its shims */

/* The file size from AEGIS_LOG_MAX_BYTES ("8m", "64k", bytes), the default if unset. */
int logwriter_max_bytes(uint64_t *out, struct aegis_error *err);

/* "output.00000007.jsonl" and back. */
void logwriter_file_name(uint32_t seq, char *out, size_t len);
bool logwriter_file_seq(const char *name, uint32_t *seq);

struct logwriter;

/* Start writing dirfd's log: *out_fd and *err_fd become the write ends of
 * the pipes it reads, for spec.out_fd / spec.err_fd. Owns them. */
int logwriter_start(struct logwriter **lw, int dirfd, uint64_t max_bytes, int *out_fd, int *err_fd,
		    struct aegis_error *err);
/* After the command's end: close the write ends, write out everything
 * still in the pipes and in memory, sync, free. Returns the bytes of
 * output that were lost (0 unless the disk was too slow or full). */
uint64_t logwriter_finish(struct logwriter *lw);

#endif
