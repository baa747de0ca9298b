/* What csock serve (serve.c) shares with its ws:// and wss:// endpoints
 * (serve_ws.c): the server's state, a connection's, the services. */
#ifndef CSOCK_CLI_SERVE_WS_H
#define CSOCK_CLI_SERVE_WS_H

#include "cli/cli.h"

typedef struct service {
    const char *name;
    int line_based;
    int changes; /* reply writes into msg (a WebSocket message is copied first) */
    /* Transform a message (a line with its ending, a chunk, a datagram, a
     * WebSocket message) in place into the reply; return its length, or -1
     * for no reply. */
    long (*reply)(char *msg, size_t len);
} service;

typedef struct serve_ws serve_ws;

/* --subprotocol: at most this many */
#define SERVE_MAX_SUBPROTOCOLS 16

typedef struct server {
    cli_acceptor plain, tls_acc; /* the listeners' data (cli_on_accept), per kind */
    csock_server *srv;
    const service *svc;
    csock_framing framing;
    int max_line_given; /* --max-line was given (ws: the max message, else 1 MiB) */
    uint64_t idle_ms, read_ms, write_ms, drain_ms;
    unsigned max_conns; /* -m: counted here (not by csock) so a refusal can be logged */
    int verbose;
    cli_tls tls_opts;   /* --cert, --key, ... as given */
    csock_tls_ctx *tls; /* made at the first tls:// or wss:// endpoint; shared by all loops */
    const char *subprotocols[SERVE_MAX_SUBPROTOCOLS]; /* --subprotocol, best first */
    size_t nsubprotocols;
    serve_ws *ws; /* the ws:// endpoints' state; NULL without any */
    csock_listen_opts lo; /* --proxy-protocol, --proxy-timeout: every stream endpoint */
    cli_sd sd;            /* systemd's readiness and watchdog */
    cli_restart restart;  /* SIGUSR2: hand the sockets to a new process */
    unsigned neps;        /* endpoints opened so far (csock_server_addr's index) */
} server;

/* One connection. With -v, the peer as text, taken when it was accepted,
 * because after a reset the socket no longer knows it (getpeername fails);
 * without -v peer is "" and costs one byte, not CLI_ADDR_TEXT (a third of
 * an idle connection's memory). */
typedef struct conn {
    server *srv;
    const cli_acceptor *acc; /* the endpoint's: a ws:// one leads to its path */
    int why; /* what ended it, for the -v close line: 0 (us, a drain) or the read status */
    char peer[];
} conn;

/* serve.c: the acceptor's `accepted` (the -m check, the conn, -v line) and
 * the start of `ready`: 0 when the connection is ready to serve, -1 when its
 * TLS handshake failed (logged; csock closes it). */
int serve_accepted(const cli_acceptor *a, csock_stream *s);
int serve_handshake_ok(csock_stream *s, int status);

/* ---- serve_ws.c ---- */

/* Before csock_server_new, when some address is ws:// or wss://: the ws
 * state (per-loop HTTP servers, the idle sweep, the drain's close 1001).
 * Dies on out of memory. */
void serve_ws_prepare(server *srv);

/* The loop callbacks of the ws:// endpoints (serve.c's own call them;
 * no-ops without a ws:// endpoint): per-loop idle sweep, the drain's
 * close 1001, closing the HTTP servers. */
void serve_ws_loop_start(server *srv, csock_loop *loop, unsigned index);
void serve_ws_loop_drain(server *srv, unsigned index);
void serve_ws_loop_stop(server *srv, unsigned index);

/* Listen on ws:// address `text`, the server's endpoint number `index`, and
 * print its `listening ws://HOST:PORT/PATH` line. Dies on failure. */
void serve_ws_listen(server *srv, const char *text, unsigned index);

/* After csock_server_run: close the HTTP servers left (loops that never
 * ran); after csock_server_free: free the rest. NULL-safe. */
void serve_ws_stop(server *srv);
void serve_ws_free(server *srv);

#endif
