/* placeholder: being written */
#include "cli.h"
int cmd_policy(int argc, char **argv) { (void)argc; (void)argv; return cli_usage_error("policy: not built yet"); }
