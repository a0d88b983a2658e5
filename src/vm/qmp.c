/* qmp.c — a minimal client of QEMU's machine protocol (QMP).
 *
 * JSON objects one per line over the unix socket QEMU serves in the run
 * directory: a greeting, then qmp_capabilities to leave negotiation mode,
 * then one command at a time; asynchronous events between the replies are
 * skipped. Only aegis talks here (the socket is in the 0700 run directory);
 * what QEMU answers is still parsed with bounds: QEMU runs guest-facing
 * device code, so it is not trusted to be well-formed. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "../common/error.h"
#include "../common/util.h"
#include "vm.h"

#define QMP_LINE_MAX 65536
#define QMP_WAIT_MS 2000	/* per reply: QEMU's main loop answers in microseconds */

/* One line (one JSON object) into a new json_t, or NULL (error set). */
static json_t *qmp_read(struct vm_qmp *m, struct aegis_error *err)
{
	for (;;) {
		char *nl = memchr(m->buf, '\n', m->len);
		ssize_t n;

		if (nl) {
			json_t *j = json_loadb(m->buf, (size_t)(nl - m->buf), 0, NULL);

			m->len -= (size_t)(nl + 1 - m->buf);
			memmove(m->buf, nl + 1, m->len);
			if (!j)
				error_set(err, AEGIS_E_SETUP, EPROTO, "vm: QMP: a line that is not JSON");
			return j;
		}
		if (m->len == sizeof m->buf) {
			error_set(err, AEGIS_E_SETUP, EPROTO, "vm: QMP: a line over %d bytes", QMP_LINE_MAX);
			return NULL;
		}
		if (poll(&(struct pollfd){ m->fd, POLLIN, 0 }, 1, QMP_WAIT_MS) <= 0) {
			error_set(err, AEGIS_E_SETUP, ETIMEDOUT, "vm: QMP: no answer within %d ms", QMP_WAIT_MS);
			return NULL;
		}
		n = read(m->fd, m->buf + m->len, sizeof m->buf - m->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			error_set(err, AEGIS_E_SETUP, n ? errno : ECONNRESET, "vm: QMP: read");
			return NULL;
		}
		m->len += (size_t)n;
	}
}

int vm_qmp_execute(struct vm_qmp *m, const char *command, json_t **ret, struct aegis_error *err)
{
	char line[256];
	int n = snprintf(line, sizeof line, "{\"execute\":\"%s\"}\n", command);

	if (write_all(m->fd, line, (size_t)n) < 0)
		return error_sys(err, "vm: QMP: send %s", command);
	for (;;) {
		json_t *j = qmp_read(m, err), *r;

		if (!j)
			return -1;
		if ((r = json_object_get(j, "return"))) {
			if (ret)
				*ret = json_incref(r);
			json_decref(j);
			return 0;
		}
		if ((r = json_object_get(j, "error"))) {
			error_set(err, AEGIS_E_SETUP, 0, "vm: QMP %s: %s", command,
				  json_string_value(json_object_get(r, "desc")) ?: "error");
			json_decref(j);
			return -1;
		}
		json_decref(j);	/* an event: not our reply */
	}
}

int vm_qmp_open(struct vm_qmp *m, const char *path, struct aegis_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *greeting;

	m->len = 0;
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	if ((m->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return error_sys(err, "vm: QMP: socket");
	if (connect(m->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		error_sys(err, "vm: QMP: connect %s", path);
		goto fail;
	}
	if (!(greeting = qmp_read(m, err)))
		goto fail;
	if (!json_object_get(greeting, "QMP")) {
		json_decref(greeting);
		error_set(err, AEGIS_E_SETUP, EPROTO, "vm: QMP: no greeting");
		goto fail;
	}
	json_decref(greeting);
	if (vm_qmp_execute(m, "qmp_capabilities", NULL, err) < 0)
		goto fail;
	return 0;
fail:
	close(m->fd);
	m->fd = -1;
	return -1;
}

int vm_qmp_status(struct vm_qmp *m, char *out, size_t cap, struct aegis_error *err)
{
	json_t *r;

	if (vm_qmp_execute(m, "query-status", &r, err) < 0)
		return -1;
	snprintf(out, cap, "%s", json_string_value(json_object_get(r, "status")) ?: "unknown");
	json_decref(r);
	return 0;
}

void vm_qmp_close(struct vm_qmp *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}
