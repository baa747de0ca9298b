/* csock proxy's ws:// and wss:// backends (proxy_wsback.c), for the relay
 * (proxy_relay.c) and the backends (proxy_backend.c). */
#ifndef CSOCK_CLI_PROXY_WSBACK_H
#define CSOCK_CLI_PROXY_WSBACK_H

#include "cli/proxy.h"

/* 1 for a ws:// or wss:// backend (b->text is its URL), else 0. */
int backend_is_ws(const backend *b);

/* A client and a ws:// backend whose stream `s` is connected (TLS done for
 * wss://, a PROXY header sent): the WebSocket handshake on s, then the
 * client's bytes go as binary messages and the backend's messages come
 * back as bytes. Takes both streams and counts itself in px->nrelays and
 * be->conns. `peer`: the client's address for -v (may be NULL). Returns 0,
 * or -errno with both streams untouched. */
int proxy_wsback_start(proxy *px, backend *be, csock_stream *client, csock_stream *s, const char *peer);

/* The drain is over (its timeout, a second signal): every relay to a ws://
 * backend ends now, the backend told with a close 1001 "going away" (one
 * still in its handshake is aborted); each leaves the list when its
 * CLOSED comes (the backend's answer, or close_timeout). Returns how many
 * are still on the list. */
unsigned proxy_wsback_close_all(proxy *px);

#endif
