/* exec.c — `aegis exec NAME -- CMD`: a command in a running instance, as
 * if it ran here. stdin goes in; stdout and stderr come out apart; ^C,
 * SIGTERM and the like reach the command; its exit status is ours. With
 * -t it gets a terminal (ours is put in raw mode meanwhile, restored
 * after, and its size follows ours).
 *
 * The API's streaming exec: POST /v1/instances/NAME/exec with
 * "Upgrade: aegis-exec.2", then frames (common/frames.h) both ways. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/frames.h"
#include "../common/httpc.h"
#include "../common/paths.h"
#include "../common/util.h"
#include "cli.h"

static const char exec_usage[] =
	"usage: aegis exec [-t] [-e K=V]... [-w DIR] NAME -- CMD [ARGS...]\n"
	"  -t, --tty        give the command a terminal (stdin must be one)\n"
	"  -e, --env K=V    an environment entry over the instance's own\n"
	"  -w, --cwd DIR    working directory inside the instance\n";

static struct termios saved_tty;
static bool raw_tty;

static void restore_tty(void)
{
	if (raw_tty)
		tcsetattr(0, TCSADRAIN, &saved_tty);
	raw_tty = false;
}

static void make_raw(void)
{
	struct termios t;

	if (tcgetattr(0, &saved_tty) < 0)
		return;
	t = saved_tty;
	cfmakeraw(&t);
	if (tcsetattr(0, TCSADRAIN, &t) == 0)
		raw_tty = true;
}

static void send_json(int fd, enum frame_type type, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);

	if (text)
		frame_send(fd, type, text, strlen(text));
	free(text);
	json_decref(j);
}

static void send_size(int fd)
{
	struct winsize ws;

	if (ioctl(0, TIOCGWINSZ, &ws) == 0)
		send_json(fd, FRAME_RESIZE, json_pack("{s:i, s:i}", "rows", ws.ws_row, "cols", ws.ws_col));
}

/* The exit frame: the command's status, or why it never ran. */
static int exit_status(const char *text, size_t len)
{
	json_t *j = json_loadb(text, len, 0, NULL), *e = json_object_get(j, "error");
	int code = json_is_integer(json_object_get(j, "exit_code"))
		   ? (int)json_integer_value(json_object_get(j, "exit_code")) : EXIT_AEGIS_ERROR;

	restore_tty();
	if (e)
		fprintf(stderr, "aegis: exec: %s\n", json_string_value(json_object_get(e, "message")) ?: "failed");
	json_decref(j);
	return code;
}

/* Relay until the exit frame. */
static int stream(int fd, bool tty)
{
	static char buf[FRAME_MAX + 1];
	sigset_t mask;
	bool in_open = true;
	int sfd;

	sigemptyset(&mask);
	for (int s = 1; s < 32; s++)
		if (s == SIGINT || s == SIGTERM || s == SIGHUP || s == SIGQUIT || s == SIGUSR1 ||
		    s == SIGUSR2 || s == SIGWINCH)
			sigaddset(&mask, s);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (tty) {
		make_raw();
		send_size(fd);
	}
	for (;;) {
		struct pollfd p[3] = { { .fd = fd, .events = POLLIN }, { .fd = in_open ? 0 : -1, .events = POLLIN },
				       { .fd = sfd, .events = POLLIN } };
		struct signalfd_siginfo si;
		enum frame_type type;
		size_t len;
		ssize_t n;

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents) {
			if (frame_recv(fd, &type, buf, &len) <= 0)
				break;
			if (type == FRAME_EXIT)
				return exit_status(buf, len);
			if ((type == FRAME_STDOUT || type == FRAME_STDERR) &&
			    write_all(type == FRAME_STDOUT ? 1 : 2, buf, len) < 0 && errno == EPIPE) {
				/* our reader is gone: end as a local command would (the
				 * exec gets SIGHUP when we hang up) */
				restore_tty();
				return 128 + SIGPIPE;
			}
		}
		if (p[1].revents) {
			n = read(0, buf, FRAME_MAX);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				in_open = false;
				frame_send(fd, FRAME_STDIN_CLOSE, NULL, 0);
			} else if (frame_send(fd, FRAME_STDIN, buf, (size_t)n) < 0) {
				break;
			}
		}
		while (p[2].revents && read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
			if (si.ssi_signo == SIGWINCH) {
				if (tty)
					send_size(fd);
				continue;
			}
			send_json(fd, FRAME_SIGNAL, json_pack("{s:i}", "signal", (int)si.ssi_signo));
		}
	}
	restore_tty();
	fprintf(stderr, "aegis: exec: the connection to the instance was lost\n");
	return EXIT_AEGIS_ERROR;
}

/* The request (req, env: the caller's, freed by it) from the command line,
 * then the exec. */
static int exec_with(int argc, char **argv, json_t *req, json_t *env)
{
	static const struct option opts[] = {
		{ "tty", no_argument, NULL, 't' }, { "env", required_argument, NULL, 'e' },
		{ "cwd", required_argument, NULL, 'w' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct aegis_error err = { 0 };
	struct httpc_response r;
	json_t *args, *j;
	char sock[256], path[160], *text;
	const char *name;
	bool tty = false;
	int c, fd, rc;

	while ((c = getopt_long(argc, argv, "+te:w:h", opts, NULL)) != -1) {
		switch (c) {
		case 't': tty = true; break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return cli_usage_error("exec: --env wants NAME=VALUE, not '%s'", optarg);
			json_array_append_new(env, json_string(optarg));
			break;
		case 'w':
			if (optarg[0] != '/')
				return cli_usage_error("exec: --cwd must be an absolute path: %s", optarg);
			json_object_set_new(req, "cwd", json_string(optarg));
			break;
		case 'h': return fputs(exec_usage, stdout), 0;
		default: return fputs(exec_usage, stderr), EXIT_AEGIS_ERROR;
		}
	}
	if (optind >= argc)
		return cli_usage_error("exec: no instance named (aegis exec NAME -- CMD)");
	name = argv[optind++];
	/* getopt stopped at NAME; a "--" may follow it */
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (optind >= argc)
		return cli_usage_error("exec: no command given (aegis exec %s -- CMD)", name);
	if (strlen(name) > 63 || strchr(name, '/') || !*name)
		return cli_usage_error("exec: not an instance name: '%s'", name);
	if (tty && !isatty(0))
		return cli_usage_error("exec: -t needs a terminal on stdin");
	/* a terminal's type travels with it, unless given */
	if (tty && getenv("TERM")) {
		bool given = false;
		size_t i;
		json_array_foreach(env, i, j)
			given |= !strncmp(json_string_value(j), "TERM=", 5);
		if (!given) {
			char term[256];
			snprintf(term, sizeof term, "TERM=%s", getenv("TERM"));
			json_array_append_new(env, json_string(term));
		}
	}
	args = json_array();
	for (int i = optind; i < argc; i++)
		json_array_append_new(args, json_string(argv[i]));
	json_object_set_new(req, "argv", args);
	if (json_array_size(env))
		json_object_set(req, "env", env);
	if (tty)
		json_object_set_new(req, "tty", json_true());
	text = json_dumps(req, JSON_COMPACT);
	if (!text)
		return cli_usage_error("exec: arguments are not valid UTF-8");
	snprintf(path, sizeof path, "/v1/instances/%s/exec", name);
	if (paths_socket(sock, sizeof sock, &err) < 0) {
		free(text);
		return cli_fail(&err);
	}
	if ((rc = daemon_ensure(sock)) != 0) {
		free(text);
		return rc;
	}
	fd = httpc_upgrade(sock, path, text, FRAMES_VERSION, &r, &err);
	free(text);
	if (fd < 0)
		return cli_fail(&err);
	if (r.status != 101) {
		j = json_loads(r.body ? r.body : "", 0, NULL);
		httpc_response_free(&r);
		rc = cli_usage_error("exec: %s",
				     json_string_value(json_object_get(json_object_get(j, "error"), "message")) ?:
				     "aegisd refused the exec");
		json_decref(j);
		return rc;
	}
	rc = stream(fd, tty);
	close(fd);
	return rc;
}

int cmd_exec(int argc, char **argv)
{
	json_t *req = json_object(), *env = json_array();
	int rc = exec_with(argc, argv, req, env);

	json_decref(req);
	json_decref(env);
	return rc;
}
