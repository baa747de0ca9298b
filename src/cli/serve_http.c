/* csock serve http DIR ADDR...: the static-file server (issue 6). */
#include "cli/cli.h"

int cli_serve_http(int argc, char **argv)
{
    cli_die(CLI_USAGE, "serve: the http service is not built yet");
}
