/* fuzz_auditrelay.c — libFuzzer target for what a vm guest writes to its
 * io/audit.jsonl, as the host's auditrelay.c reads it into the real log
 * (src/vm/auditrelay.c). The input is the guest's file, written in two
 * parts with a read between them (a line cut across reads), then the run
 * ends. Properties beyond "no crash": whatever the guest wrote, the host's
 * log is one hash chain that verifies, opened by a run.start and closed
 * by exactly one run.end. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/vm/auditrelay.c"

/* backend.c's and record.c's, which the relay calls for run.start's and
 * net.connect's fields; the chain does not depend on what they add */
void vm_start_json(json_t *o, bool restored, uint64_t restore_us, uint64_t build_us, const char *why)
{
	(void)restore_us, (void)build_us, (void)why;
	json_object_set_new(o, "start", json_string(restored ? "restore" : "cold"));
}

void vm_image_json(json_t *o, bool erofs, uint64_t build_us)
{
	(void)build_us;
	if (erofs)
		json_object_set_new(o, "image_root", json_string("erofs"));
}

json_t *record_connection_json(const char *id, const struct proxy_conn_report *c)
{
	(void)c;
	return json_pack("{s:s}", "id", id);
}

static char dir[64];

/* the scratch directory goes when the fuzzer ends */
static void cleanup(void)
{
	char path[160];

	snprintf(path, sizeof path, "%s/io/audit.jsonl", dir), unlink(path);
	snprintf(path, sizeof path, "%s/io", dir), rmdir(path);
	snprintf(path, sizeof path, "%s/host.jsonl", dir), unlink(path);
	rmdir(dir);
}

static void put(const char *path, const uint8_t *data, size_t size, int flags)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0600);

	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char io[128], file[160], logpath[128], line[4096], first[4096] = "", last[4096] = "";
	struct vm_result r = { .kvm = false, .kernel = "6.1.0-fuzz" };
	struct aegis_error err = { 0 };
	struct audit_report rep = { 0 };
	struct audit_log *log;
	struct auditrelay *a;
	size_t half = size / 2, ends = 0;
	FILE *f;

	if (!dir[0]) {
		snprintf(dir, sizeof dir, "/tmp/fuzz-auditrelay-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		atexit(cleanup);
	}
	snprintf(io, sizeof io, "%s/io", dir);
	snprintf(file, sizeof file, "%s/audit.jsonl", io);
	snprintf(logpath, sizeof logpath, "%s/host.jsonl", dir);
	mkdir(io, 0700);
	unlink(file);
	unlink(logpath);
	if (audit_open(logpath, &log, &err) < 0 || !(a = auditrelay_new(log, true)))
		abort();
	auditrelay_begin(a, dir, &r);
	auditrelay_poll(a);	/* no file yet */
	put(file, data, half, O_TRUNC);
	auditrelay_poll(a);
	put(file, data + half, size - half, O_APPEND);
	auditrelay_poll(a);
	auditrelay_end(a, &r, NULL);
	auditrelay_free(a);
	audit_close(log);
	if (audit_verify(logpath, &rep, &err) != 0)
		abort();
	if (!(f = fopen(logpath, "r")))
		abort();
	while (fgets(line, sizeof line, f)) {
		if (!first[0])
			snprintf(first, sizeof first, "%s", line);
		snprintf(last, sizeof last, "%s", line);
		ends += strstr(line, "\"type\":\"run.end\"") != NULL;
	}
	fclose(f);
	if (!strstr(first, "\"type\":\"run.start\"") || !strstr(last, "\"type\":\"run.end\"") || ends != 1)
		abort();
	return 0;
}
