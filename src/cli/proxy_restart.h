/* csock proxy's zero-downtime restart (SIGUSR2), as serve's (sd_restart.c
 * says how and why): the stream listeners' sockets go to a new copy of the
 * process (LISTEN_FDS, named csock-epA for the command line's address A),
 * which takes over; this one drains once the new one listens. */
#ifndef CSOCK_CLI_PROXY_RESTART_H
#define CSOCK_CLI_PROXY_RESTART_H

#include "cli/proxy.h"

typedef struct proxy_restart {
    /* The addresses' bookkeeping (args[A]: its listeners, first and count
     * in proxy.listeners), the exe, the child and its pipe, the signal.
     * Its srv is unused: a proxy is no csock_server. */
    cli_restart r;
    proxy *px;
    void (*take_over)(struct proxy_restart *pr); /* the new process listens: drain */
    csock_addr files[CLI_MAX_ENDPOINTS]; /* the Unix listeners' addresses, noted before they close */
    unsigned nfiles;
    int noted;
} proxy_restart;

/* First of all, on the command line's addresses (cli_restart_addresses). */
void proxy_restart_addresses(proxy_restart *pr, char **addrs, int n);
/* Address `arg` has listeners proxy.listeners[first..first+count) (0 of
 * them for ws:// and udp://, which cannot be handed over). */
void proxy_restart_arg(proxy_restart *pr, unsigned arg, unsigned first, unsigned count);
/* Watch SIGUSR2 on px's loop, before any `listening` line. */
int proxy_restart_watch(proxy_restart *pr, proxy *px, void (*take_over)(proxy_restart *pr));
/* The drain begins (a signal, or our successor listens): no restart from
 * now on. Call before the listeners close (their Unix addresses are noted
 * for proxy_restart_cleanup). */
void proxy_restart_drain(proxy_restart *pr);
/* Teardown, before the listeners close: the signal and the pipe are
 * closed. */
void proxy_restart_stop(proxy_restart *pr);
/* Once the listeners' closes are finished: the Unix socket files they
 * served are removed if nobody listens there any more (cli_restart_unlink),
 * unless a new process took them over. Asking for the fds made the
 * listeners leave their files: a failed restart leaves them to us. */
void proxy_restart_cleanup(proxy_restart *pr);

#endif
