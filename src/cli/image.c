/* image.c — `aegis image pull|import|list|inspect|rm|prune`: handed whole
 * to aegis-image (installed next to aegis), which links libcurl and
 * libarchive; aegis itself stays static and small (docs/images.md). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

int cmd_image(int argc, char **argv)
{
	char bin[PATH_MAX];

	(void)argc;
	if (cli_sibling("aegis-image", bin, sizeof bin) < 0)
		return cli_usage_error("image: cannot find aegis-image");
	argv[0] = "aegis-image";
	execv(bin, argv);
	return cli_usage_error("image: cannot run %s: %s", bin, errno == ENOENT ?
			       "not installed next to aegis" : "exec failed");
}
