/* run_flags.h — what `aegis run` and `aegix` were asked to do. */
#ifndef AEGIS_CLI_RUN_FLAGS_H
#define AEGIS_CLI_RUN_FLAGS_H

#include <stdbool.h>
#include <stddef.h>

#include <aegis/aegis.h>
#include "cli.h"

struct run_flags {
	struct aegis_spec spec;
	struct aegis_policy policy;	/* loaded from --policy (or "default") */
	bool have_policy;
	const char *policy_name;
	char **env;
	size_t nenv;
	char **secrets;		/* --secret NAME[:env|:file] requests (secretinject.h) */
	size_t nsecrets;
	const char *cmd;	/* aegix --cmd */
	const char *ws_mode;	/* --workspace-mode */
	const char *image;	/* --image REF; NULL: the host image */
	bool cwd_set;		/* --cwd given: the image's WorkingDir does not apply */
	bool json;
	bool vm;		/* --backend vm (docs/vm.md) */
};

/* 0: parsed, optind at the command; -1: --help was asked; else the exit status. */
int run_flags_parse(int argc, char **argv, struct run_flags *f, bool aegix);
void run_flags_free(struct run_flags *f);
/* Run the spec in f and report as `aegis run` does; returns the exit status. */
int run_execute(struct run_flags *f);


#endif
