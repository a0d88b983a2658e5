/* secret.c — `aegis secret set|list|delete`: the encrypted secrets store
 * (common/secrets.c) in <state>/secrets. A value is read from stdin (a
 * prompt without echo on a terminal), never from argv; `list` shows names
 * and times, never values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../common/error.h"
#include "../common/paths.h"
#include "../common/secrets.h"
#include "cli.h"

static const char secret_usage[] =
	"usage: aegis secret set NAME       (the value on stdin; prompted without echo on a terminal)\n"
	"       aegis secret list [--json]  (names and times, never values)\n"
	"       aegis secret delete NAME\n";

/* The value: all of stdin (one final newline dropped), or typed unechoed. */
static char *read_value(const char *name, size_t *len)
{
	size_t cap = 4096;
	char *buf = malloc(cap + 1);
	struct termios saved, quiet;
	bool tty = isatty(0) && tcgetattr(0, &saved) == 0;

	*len = 0;
	if (!buf)
		return NULL;
	if (tty) {
		fprintf(stderr, "value for %s: ", name);
		quiet = saved;
		quiet.c_lflag &= (tcflag_t)~ECHO;
		tcsetattr(0, TCSAFLUSH, &quiet);
	}
	for (;;) {
		ssize_t n;
		if (*len == cap) {
			char *grown = cap < SECRET_VALUE_MAX ? realloc(buf, (cap *= 2) + 1) : NULL;
			if (!grown)
				break;
			buf = grown;
		}
		n = read(0, buf + *len, tty ? 1 : cap - *len);
		if (n <= 0)
			break;
		*len += (size_t)n;
		if (tty && buf[*len - 1] == '\n')
			break;
	}
	if (tty) {
		tcsetattr(0, TCSAFLUSH, &saved);
		fputc('\n', stderr);
	}
	if (*len && buf[*len - 1] == '\n')
		(*len)--;
	buf[*len] = '\0';
	return buf;
}

static int open_store(struct secrets *s, struct aegis_error *err)
{
	char dir[4096];

	if (paths_state(dir, sizeof dir - 8, err) < 0 || paths_private_dir(dir, err) < 0)
		return -1;
	strcat(dir, "/secrets");
	return secrets_open(s, dir, err);
}

static int list(bool json)
{
	struct aegis_error err = { 0 };
	struct secrets s;
	json_t *all, *e;
	char *text;
	size_t i;

	if (open_store(&s, &err) < 0)
		return cli_fail(&err);
	text = secrets_list(&s, &err);
	secrets_close(&s);
	if (!text)
		return cli_fail(&err);
	if (json) {
		printf("%s\n", text);
		free(text);
		return 0;
	}
	all = json_loads(text, 0, NULL);
	free(text);
	printf("%-32s %-20s %s\n", "NAME", "CREATED", "UPDATED");
	json_array_foreach(all, i, e) {
		char when[2][32];
		for (int k = 0; k < 2; k++) {
			time_t t = (time_t)json_integer_value(json_object_get(e, k ? "updated" : "created"));
			struct tm tm;
			gmtime_r(&t, &tm);
			strftime(when[k], sizeof when[k], "%Y-%m-%dT%H:%M:%SZ", &tm);
		}
		printf("%-32s %-20s %s\n", json_string_value(json_object_get(e, "name")), when[0], when[1]);
	}
	json_decref(all);
	return 0;
}

int cmd_secret(int argc, char **argv)
{
	struct aegis_error err = { 0 };
	struct secrets s;
	const char *verb = argc > 1 ? argv[1] : "";
	char *value;
	size_t len;
	int r;

	if (!strcmp(verb, "list") && (argc == 2 || (argc == 3 && !strcmp(argv[2], "--json"))))
		return list(argc == 3);
	if ((!strcmp(verb, "set") || !strcmp(verb, "delete")) && argc == 3) {
		if (!secrets_name_valid(argv[2]))
			return cli_usage_error("secret: not a secret name: '%s' (letters, digits, _; not starting "
					       "with a digit)", argv[2]);
		if (open_store(&s, &err) < 0)
			return cli_fail(&err);
		if (!strcmp(verb, "delete")) {
			r = secrets_delete(&s, argv[2], &err);
		} else {
			if (!(value = read_value(argv[2], &len))) {
				secrets_close(&s);
				return cli_usage_error("secret: out of memory");
			}
			r = secrets_set(&s, argv[2], value, len, &err);
			secrets_wipe(value, len);
		}
		secrets_close(&s);
		if (r < 0)
			return cli_usage_error("%s", err.msg);
		printf("%s: %s\n", argv[2], !strcmp(verb, "delete") ? "deleted" : "stored");
		return 0;
	}
	if (!strcmp(verb, "--help") || !strcmp(verb, "help"))
		return fputs(secret_usage, stdout), 0;
	fputs(secret_usage, stderr);
	return EXIT_AEGIS_ERROR;
}
