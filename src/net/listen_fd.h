/* Listening sockets made elsewhere (systemd's, an inherited fd): the
 * checks csock_listen_fd() and csock_server_listen_fd() share. */
#ifndef CSOCK_LISTEN_FD_H
#define CSOCK_LISTEN_FD_H

#include "net/net_int.h"

/* Is fd a listening SOCK_STREAM socket of a family csock serves (IPv4,
 * IPv6, Unix)? Then it is made non-blocking and close-on-exec, *scheme is
 * set (tcp or unix) and 0 returned; else -EBADF, -ENOTSOCK,
 * -ESOCKTNOSUPPORT, -EAFNOSUPPORT or -EINVAL (not listening). */
int csock__check_listen_fd(int fd, csock_scheme *scheme);

/* A server's drain: stop accepting for good (the listening fd is closed if
 * the listener owns it, its Unix socket file removed) but keep the
 * listener, so connections whose PROXY header is still arriving are
 * finished and handed to the accept callback (they join the drain) rather
 * than cut. csock_listener_close() releases it later as usual. */
void csock__listener_stop(csock_listener *l);

#endif
