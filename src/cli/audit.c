/* placeholder: being written */
#include "cli.h"
int cmd_audit(int argc, char **argv) { (void)argc; (void)argv; return cli_usage_error("audit: not built yet"); }
