/* The parts of a zero-downtime restart that do not depend on what serves
 * (sd_restart.c): serve's restart (cli_restart_*, cli.h) and proxy's
 * (proxy_restart.c) are built of them. */
#ifndef CSOCK_CLI_SD_RESTART_H
#define CSOCK_CLI_SD_RESTART_H

#include "cli/cli.h"

#define CLI_RESTART_MAX_FDS 256 /* sockets handed over: 64 addresses, a few loops each */

/* /proc/self/exe's path into exe (size bytes): the binary now at that path
 * is the one a restart runs (an upgrade). */
void cli_restart_exe(char *exe, size_t size);

/* Append "csock-epA" (the name of command-line address A's sockets) to the
 * LISTEN_FDNAMES list names[0..*off), colon-separated. 0 or -ENOSPC. */
int cli_restart_name(char *names, size_t size, size_t *off, unsigned a);

/* Start exe with our own argv, handing it the n listening fds (LISTEN_FDS
 * from 3 on, named by `names`) and the write end of a pipe
 * (CSOCK_RESTART_FD) on which it says it listens. On 0, *child is its pid
 * and *pipe a stream on loop over the read end, read by ready_cb with
 * `data`; on -errno nothing is left behind. */
int cli_restart_spawn(csock_loop *loop, const char *exe, const int *fds, int n, const char *names,
                      csock_read_cb ready_cb, void *data, csock_stream **pipe, long *child);

/* In ready_cb, what the pipe said: 1 the new process listens; 0 it failed
 * (reaped, a line logged, *child -1); -1 nothing yet. On 1 and 0 the pipe
 * is closed and *pipe NULL. ready_cb returns len in every case. */
int cli_restart_heard(csock_stream *s, int status, size_t len, csock_stream **pipe, long *child);

/* We stop with a restart's new process not heard from yet (*pipe not
 * NULL): it holds our sockets and may serve them, so *handed becomes 1
 * (its files are left to it); the pipe is closed. */
void cli_restart_forget_child(csock_stream **pipe, int *handed);

/* Remove the Unix socket file at addr's path (a Unix address with a path;
 * others are left alone) if it is stale: a socket nobody listens on any
 * more (the library's rule for a stale file at bind), or one this very
 * process listens on (its sockets not freed yet). Called by a process
 * that served the file as it ends, unless a new process took its
 * sockets over: a socket someone else listens on is left alone. */
void cli_restart_unlink(const csock_addr *addr);

#endif
