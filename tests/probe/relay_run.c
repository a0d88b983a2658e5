/* relay_run.c — aegis-relay-run UPSTREAM CMD...: one ns-backend run in the
 * allow mode's relay mode (spec.net_upstream), which no `aegis run` flag
 * or policy key reaches (the engine inside a vm guest sets it). For
 * tests/integration/test_net_relay.py only; not installed. Exits with the
 * run's exit status, or 125 with the error on stderr. */
#include <stdio.h>

#include <aegis/aegis.h>

int main(int argc, char **argv)
{
	struct aegis_policy policy = { .name = "relay-test", .net_mode = "allow" };
	struct aegis_spec spec = AEGIS_SPEC_DEFAULT;
	struct aegis_result res;
	struct aegis_error err = { 0 };

	if (argc < 3) {
		fprintf(stderr, "usage: aegis-relay-run UPSTREAM CMD [ARG...]\n");
		return 2;
	}
	spec.net_upstream = argv[1];
	spec.argv = argv + 2;
	spec.policy = &policy;
	spec.cwd = "/";
	if (aegis_run(&spec, &res, &err) < 0) {
		fprintf(stderr, "aegis-relay-run: %s\n", err.msg);
		return 125;
	}
	return res.exit_code;
}
