/* csock proxy: the state shared by its files.
 *
 *   proxy.c          options, listeners, accepting, the drain on SIGTERM
 *   proxy_relay.c    a client and its backend: splice(2) between plain
 *                    sockets, the stream API otherwise (TLS, ws)
 *   proxy_backend.c  backends: picking one (--balance), retries, health
 *                    checks, re-resolving names
 *   proxy_ws.c       ws:// listeners: one message in = its bytes out
 *   proxy_udp.c      udp:// to udp://: a session per client address
 *   proxy_wsback.c   ws:// and wss:// backends: bytes in = one message out
 *   proxy_restart.c  SIGUSR2: the stream listeners handed to a new process
 *
 * One loop on one thread: every relay, backend and timer belongs to it.
 */
#ifndef CSOCK_CLI_PROXY_H
#define CSOCK_CLI_PROXY_H

#include "cli/cli.h"
#include "cli/splice_relay.h"

#define PROXY_MAX_BACKENDS 64
#define PROXY_CHECK_INTERVAL_MS 2000
#define PROXY_RESOLVE_MS 30000     /* names of backends are resolved again this often */
#define PROXY_HIGH_WATER (256 * 1024) /* stream relays: stop reading past this much queued */

enum { BALANCE_ROUNDROBIN, BALANCE_LEASTCONN, BALANCE_SOURCE };
enum { CHECK_NONE, CHECK_TCP, CHECK_HTTP };

typedef struct proxy proxy;
typedef struct relay relay;
typedef struct wsback wsback;

typedef struct backend {
    proxy *px;
    const char *text;         /* as given */
    char name[CLI_ADDR_TEXT]; /* for logs */
    csock_addr addrs[CSOCK_RESOLVE_MAX];
    size_t naddrs;            /* 0 until the first resolution answers */
    int is_name;              /* a DNS name: resolved on the loop, again every PROXY_RESOLVE_MS */
    int tls;                  /* tls://: under --send-proxy dialled as TCP, the header
                                 written, then TLS started here (backend_start_tls) */
    char host[256];           /* tls://: the name to verify */
    csock_resolve *res;       /* resolution in flight */
    int up;                   /* taken for new clients */
    unsigned ok_run, fail_run;/* consecutive check results */
    uint64_t retry_at;        /* down without --check: try again from then (loop ms) */
    unsigned conns;           /* relays using it now (leastconn) */
    csock_timer *check_timer;
    csock_dial *check_dial;   /* a check's connect in flight */
    csock_stream *check_s;    /* a check's connection (http: the request) */
    uint64_t resolved_at;
} backend;

struct proxy {
    csock_loop *loop;
    /* options */
    int verbose;
    int no_splice;            /* --no-splice: the stream relay even between plain sockets */
    unsigned max_conns;
    uint64_t idle_ms, connect_ms, drain_ms, udp_idle_ms;
    int balance;
    int check;
    const char *check_path;
    uint64_t check_ms;
    unsigned rise, fall;
    cli_tls tls_opts;
    csock_tls_ctx *tls_server, *tls_client;
    csock_listen_opts lo;     /* --proxy-protocol, --proxy-timeout */
    int send_proxy;           /* --send-proxy (1), --send-proxy-v2 (2): header version */
    cli_sd sd;                /* the watchdog */
    /* backends */
    backend backends[PROXY_MAX_BACKENDS];
    unsigned nbackends;
    unsigned rr;              /* roundrobin's next */
    /* listeners */
    csock_listener *listeners[CLI_MAX_ENDPOINTS];
    struct udp_front *udp_fronts[CLI_MAX_ENDPOINTS];
    void *ws_states[CLI_MAX_ENDPOINTS];
    unsigned nlisteners, nudp, nws;
    /* relays */
    relay *relays;            /* every open relay (a list, for idle sweeps and the drain) */
    unsigned nrelays;         /* both lists' */
    wsback *wsbacks;          /* relays to ws:// backends (proxy_wsback.c): their own list,
                                 for they end with a close frame */
    csock_timer *sweep;       /* idle timeouts, coarse: one timer for all */
    csock_timer *drain_timer;
    csock_signal *sig_term, *sig_int;
    int draining;
    int stopping;             /* the drain is over: relays are being closed */
    splice_pool pool;         /* splice pipes not in use */
};

/* ---- proxy.c ---- */
/* A relay ended: when draining and none is left, the proxy stops. */
void proxy_relay_gone(proxy *px);
/* How long ws:// backends get to answer our close frame when the drain
 * ends (timeout or a second signal) before the proxy exits anyway. */
#define PROXY_WS_GOODBYE_MS 2000

/* ---- proxy_relay.c ---- */
/* The PROXY protocol header (--send-proxy[-v2]) naming `client`'s peer and
 * the address it reached, into buf (CSOCK_PROXY_HEADER_MAX bytes); with
 * client NULL (a health check) UNKNOWN / LOCAL. Returns its length or
 * -errno. */
ssize_t proxy_header(const proxy *px, const csock_stream *client, unsigned char *buf);
/* Write it to a backend just connected, before any relayed byte: on its
 * raw socket `fd` (a fresh connection's send buffer takes it whole), or
 * into the stream `s` when fd < 0. Returns 0 or -errno. */
int proxy_send_header(const proxy *px, const csock_stream *client, csock_stream *s, int fd);
/* A client is ready (accepted, TLS done if any): find it a backend. Takes
 * the stream; `peer` is its address as text. */
void relay_start(proxy *px, csock_stream *client, const char *peer, const csock_addr *peer_addr);
/* A hash of the client's IP address (not the port), for --balance source. */
uint32_t proxy_addr_hash(const csock_addr *a);
/* Close every relay idle longer than --idle (the sweep timer). */
void relay_sweep(proxy *px);
/* Close every relay now (a second signal, the drain timeout). */
void relay_close_all(proxy *px);
/* Give pooled pipes back to the kernel. */
void relay_pool_free(proxy *px);

/* ---- proxy_backend.c ---- */
/* Parse a --to address (dies on a bad one). */
void backend_add(proxy *px, const char *text);
/* Start resolving names and the health checks. */
int backends_start(proxy *px);
void backends_stop(proxy *px);
/* The backend for a new client (attempt 0) or its retry (attempt > 0, after
 * `failed`); NULL when none is left to try. client_hash: of the client's
 * address, for --balance source. */
backend *backend_pick(proxy *px, uint32_t client_hash, unsigned attempt, const backend *failed);
/* Start connecting to b (giving up after timeout_ms); cb gets the result as
 * for csock_dial_start. */
int backend_dial(backend *b, uint64_t timeout_ms, csock_dial_cb cb, void *data, csock_dial **out);
/* A tls:// backend under --send-proxy is dialled as plain TCP, for the
 * PROXY header goes before TLS (as HAProxy sends it): write the header
 * naming `client` (NULL: a check's LOCAL one) on s, then start TLS;
 * `ready` gets the handshake's result as for csock_tls_wrap. Returns 0
 * (started), 1 (not such a backend: nothing done) or -errno (s is left
 * as it was). */
int backend_start_tls(backend *b, const csock_stream *client, csock_stream *s, csock_stream_cb ready);
/* A client's connect to b failed / worked (passive health). */
void backend_failed(backend *b, int status);
void backend_worked(backend *b);

/* ---- proxy_ws.c ---- */
/* Listen on ws://HOST:PORT[/PATH]; prints the listening line. */
void proxy_ws_listen(proxy *px, const char *text);
void proxy_ws_stop(proxy *px);

/* ---- proxy_udp.c ---- */
void proxy_udp_listen(proxy *px, const char *text);
void proxy_udp_stop(proxy *px);

int cli_proxy(int argc, char **argv);

#endif
