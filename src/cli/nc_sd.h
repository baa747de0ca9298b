/* listen and serve chat under systemd (nc_session.c). A header of its own
 * only because netcat.h is another branch's file: nc_ctx_run_sd belongs
 * beside nc_ctx_run there. */
#ifndef CSOCK_CLI_NC_SD_H
#define CSOCK_CLI_NC_SD_H

#include "cli/netcat.h"

/* nc_ctx_run, with systemd's readiness protocol around the session (the
 * caller sent READY=1 once listening): WATCHDOG=1 every half
 * $WATCHDOG_USEC while it runs, STOPPING=1 when it ends (a signal, or the
 * last peer gone), before the teardown's last writes. */
int nc_ctx_run_sd(nc_ctx *c);

#endif
