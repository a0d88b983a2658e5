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
#include <stdio.h>
#include <stdlib.h>
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

/* Send one command line, with fd riding along (SCM_RIGHTS) when >= 0. */
static int qmp_send(struct vm_qmp *m, const char *line, size_t len, int fd)
{
	char control[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { (void *)line, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	ssize_t n;

	if (fd < 0)
		return write_all(m->fd, line, len);
	msg.msg_control = control;
	msg.msg_controllen = sizeof control;
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	do
		n = sendmsg(m->fd, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	/* The descriptor went with the first byte; the rest is plain text. */
	return (size_t)n == len ? 0 : write_all(m->fd, line + n, len - (size_t)n);
}

static int qmp_call(struct vm_qmp *m, const char *command, json_t *args, int fd, json_t **ret,
		    struct aegis_error *err)
{
	json_t *req = args ? json_pack("{s:s, s:O}", "execute", command, "arguments", args)
			   : json_pack("{s:s}", "execute", command);
	char *line = req ? json_dumps(req, JSON_COMPACT) : NULL;
	size_t n = line ? strlen(line) : 0;
	int sent;

	json_decref(req);
	if (!line || !(line = realloc(line, n + 2))) {
		free(line);
		return error_set(err, AEGIS_E_SETUP, ENOMEM, "vm: QMP: %s", command);
	}
	line[n++] = '\n';
	sent = qmp_send(m, line, n, fd);
	free(line);
	if (sent < 0)
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

int vm_qmp_execute(struct vm_qmp *m, const char *command, json_t **ret, struct aegis_error *err)
{
	return qmp_call(m, command, NULL, -1, ret, err);
}

int vm_qmp_call(struct vm_qmp *m, const char *command, json_t *args, json_t **ret, struct aegis_error *err)
{
	return qmp_call(m, command, args, -1, ret, err);
}

int vm_qmp_getfd(struct vm_qmp *m, const char *name, int fd, struct aegis_error *err)
{
	json_t *args = json_pack("{s:s}", "fdname", name);
	int r = qmp_call(m, "getfd", args, fd, NULL, err);

	json_decref(args);
	return r;
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

int vm_qmp_once(const char *dir, const char *command, struct aegis_error *err)
{
	struct vm_qmp m = { .fd = -1 };
	char path[128];
	int r;

	snprintf(path, sizeof path, "%s/qmp.sock", dir);
	r = vm_qmp_open(&m, path, err) < 0 ? -1 : vm_qmp_execute(&m, command, NULL, err);
	vm_qmp_close(&m);
	return r;
}
