/* cli.h — the `aegis` command line: one function per subcommand. */
#ifndef AEGIS_CLI_H
#define AEGIS_CLI_H

#include <stddef.h>

#include <aegis/aegis.h>

/* Exit statuses of `aegis` itself (the command's own pass through). */
enum {
	EXIT_AEGIS_ERROR = 125,	/* bad flag, setup failure */
	EXIT_CANNOT_EXEC = 126,
	EXIT_NOT_FOUND = 127,
	EXIT_TIMEOUT = 124,
};

int cmd_run(int argc, char **argv);
int cmd_aegix(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_down(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_instance(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_secret(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_workspace(int argc, char **argv);
int cmd_mcp(int argc, char **argv);
/* PROGRAM's path, next to this one (build dir or bindir); -1 if too long. */
int cli_sibling(const char *program, char *out, size_t len);
/* Start aegisd on demand; 0, or an exit status after a one-line error. */
int daemon_ensure(const char *sock);
/* The same, reporting through err instead: 0, or -1 with err. */
int daemon_start(const char *sock, struct aegis_error *err);

/* Print "aegis: MSG" on stderr and return the exit status for err. */
int cli_fail(const struct aegis_error *err);
/* Same for a usage error with a formatted message; returns 125. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
