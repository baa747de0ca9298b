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
} proxy_restart;

/* First of all, on the command line's addresses (cli_restart_addresses). */
void proxy_restart_addresses(proxy_restart *pr, char **addrs, int n);
/* Address `arg` has listeners proxy.listeners[first..first+count) (0 of
 * them for ws:// and udp://, which cannot be handed over). */
void proxy_restart_arg(proxy_restart *pr, unsigned arg, unsigned first, unsigned count);
/* Watch SIGUSR2 on px's loop, before any `listening` line. */
int proxy_restart_watch(proxy_restart *pr, proxy *px, void (*take_over)(proxy_restart *pr));
/* The drain begins (a signal, or our successor listens): no restart from
 * now on; the last process of a chain removes the Unix socket files its
 * inherited listeners serve. Call before the listeners close. */
void proxy_restart_drain(proxy_restart *pr);
/* Teardown: the signal and the pipe are closed. */
void proxy_restart_stop(proxy_restart *pr);

#endif
