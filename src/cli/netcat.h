/* Shared plumbing for `csock connect` and `csock listen`: the netcat-class
 * relay between standard input/output (or a child process per connection)
 * and one or many peers, over streams (TCP, Unix) and datagrams (UDP, Unix
 * datagrams).
 *
 * One nc_ctx holds the whole session; there is no global state. connect.c
 * and listen.c parse their arguments into an nc_opts, create the endpoint
 * (a connection, a listener or a datagram socket) and hand every peer to
 * nc_peer_add_stream() or nc_dgram_attach(); from there on the data flow
 * is the same for both.
 *
 * The relay's files, one job each (this header is private to them and to
 * connect.c / listen.c):
 *   nc_args.c       the command line: options, -e/-c, the address text
 *   nc_acl.c        --allow / --deny: CIDR lists and the check of a peer
 *   nc_transform.c  byte transforms: -x hex dump, -C CRLF, --chat tags
 *   nc_relay.c      who feeds whom, flow control, stdin and stdout
 *   nc_exec.c       -e / -c: a child process per peer, reaped on SIGCHLD
 *   nc_peer.c       a peer's life: admission, reading, close, chat notices
 *   nc_dgram.c      datagram peers (UDP, Unix datagrams)
 *   nc_session.c    set-up, the end of the session, teardown
 *   nc_chat.c       --chat: announcements, tags, the /nick command
 *   nc_ws.c         WebSocket peers: messages <-> lines, the closing handshake
 *   nc_ws_listen.c  ws:// / wss:// endpoints: the HTTP server that upgrades
 *                   (and serves the chat page, or 426 to a plain GET)
 */
#ifndef CSOCK_CLI_NETCAT_H
#define CSOCK_CLI_NETCAT_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "cli/cli.h"
#include "csock/ws.h"

/* One --allow / --deny entry: an address and how many leading bits count. */
typedef struct nc_cidr {
    int family;           /* AF_INET or AF_INET6 */
    unsigned char ip[16]; /* network byte order; 4 bytes used for AF_INET */
    int bits;             /* prefix length: 0-32 or 0-128 */
} nc_cidr;

typedef struct nc_cidr_list {
    nc_cidr *v;
    size_t n, cap;
    int set; /* given on the command line (an empty --allowfile allows nobody) */
} nc_cidr_list;

/* What the command line asked for. Filled by nc_parse_args(), then read-only. */
typedef struct nc_opts {
    int listen;        /* csock listen (else connect) */
    int udp, unixsock; /* -u, -U */
    int family;        /* CSOCK_ADDR_IPV4 / CSOCK_ADDR_IPV6 / 0, | CSOCK_ADDR_NUMERIC (-n) */
    int keep_open;     /* -k: many clients */
    int broker, chat;  /* --broker, --chat (chat implies broker) */
    int crlf;          /* -C: LF from stdin goes out as CRLF */
    int send_only, recv_only;
    int verbose;           /* -v: connection events on stderr */
    int zero_io;           /* -z: port scan */
    char **exec_argv;      /* -e / -c: the program to run per connection, or NULL */
    const char *exec_text; /* -e / -c as written, for messages */
    int exec_shell;        /* -c: exec_argv is /bin/sh -c TEXT */
    FILE *hexdump;         /* -x (or --hex-dump-annotated): where the dump goes, or NULL */
    uint64_t wait_ms;      /* -w: connect timeout */
    uint64_t idle_ms;      /* -i: close a connection idle this long */
    uint64_t quiet_ms;     /* -q: datagram connect: exit this long after the last answer */
    unsigned max_conns;    /* -m: 0 unlimited */
    nc_cidr_list allow, deny;
    const char *target[2]; /* the ADDR, or HOST PORT, as written */
    int ntarget;
    int ssl;               /* --ssl: HOST PORT means tls:// (ncat's habit) */
    int serve;             /* csock serve chat: announce `listening` on stdout, always */
    cli_tls tls;           /* --cert, --key, --ca, --insecure, ... */
    csock_listen_opts deploy_lo; /* listen: --proxy-protocol, --proxy-timeout */
    char **addrs;          /* serve chat: every ADDR (naddrs 0: target, as listen) */
    int naddrs;
    /* WebSocket (ws://, wss://) */
    int binary;                /* --binary: chunks are binary messages, written raw */
    uint64_t ping_ms;          /* --ping SECS: keep-alive interval */
    const char **headers;      /* --header: extra handshake fields (connect) */
    size_t nheaders;
    const char **subprotocols; /* --subprotocol: offered (connect) / spoken (listen) */
    size_t nsubprotocols;
    const char **origins;      /* --origin: sent (connect, one) / accepted (listen) */
    size_t norigins;
    char *origin_field;        /* connect --origin: "Origin: URL", one of headers */
    /* --proxy: connect through a SOCKS or HTTP proxy (nc_proxy.c) */
    const char *proxy;      /* --proxy HOST[:PORT] as written, or NULL */
    int proxy_type;         /* NC_PROXY_HTTP ... (0: --proxy-type not given: http) */
    const char *proxy_auth; /* --proxy-auth USER[:PASS], or NULL */
    int proxy_dns;          /* NC_PROXY_DNS_* (0: not given: remote, socks4 local) */
    /* ncat's everyday flags (issue 12) */
    const char *source;        /* -s ADDR: connect from this address, or NULL */
    int source_port;           /* -p PORT: connect from this port (0: any) */
    const char *port_text;     /* -p as written: listen -p PORT is the port to listen on */
    const char *output_path;   /* -o FILE: the session's bytes, both ways */
    const char *dump_path;     /* -x FILE: ncat's hex dump ('-': stderr) */
    int hexdump_annotated;     /* --hex-dump-annotated FILE: csock's dump instead */
    int append_output;         /* --append-output: -o and -x files are appended to */
    FILE *output;              /* -o: open, or NULL */
    int no_shutdown;           /* --no-shutdown: no half-close at the end of stdin */
    int progress;              /* --progress: a line on stderr (a terminal) */
    char ephemeral_path[32];   /* listen TLS without --cert: "/proc/self/fd/N", or "" */
    int ephemeral_fd;          /* ... its memory file (PEM key and certificate) */
    uint64_t delay_ms;         /* -d/--delay: pause reading this long after each read */
} nc_opts;

/* --proxy-type and --proxy-dns values. */
enum { NC_PROXY_HTTP = 1, NC_PROXY_SOCKS4, NC_PROXY_SOCKS4A, NC_PROXY_SOCKS5 };
enum { NC_PROXY_DNS_LOCAL = 1, NC_PROXY_DNS_REMOTE, NC_PROXY_DNS_BOTH, NC_PROXY_DNS_NONE };

typedef struct nc_ctx nc_ctx;
typedef struct nc_peer nc_peer;
typedef struct nc_child nc_child;

/* One listening endpoint: `listen` has one, `serve chat` one per ADDR. */
typedef struct nc_endpoint {
    nc_ctx *c;
    csock_listener *listener;
    cli_acceptor acceptor;    /* the listener's data; its data is this endpoint */
    csock_http_server *http;  /* ws://, wss://: the server that upgrades, else NULL */
    char path[CLI_WS_PATH];   /* ws: the path of the socket (and of the chat page) */
} nc_endpoint;

/* listen tls://: a connection in its handshake, not yet a peer. */
typedef struct nc_handshake {
    csock_stream *s;
    char peer[CLI_ADDR_TEXT]; /* taken at accept: after a reset the socket no longer knows */
} nc_handshake;

#define HIGH_WATER (256u * 1024) /* a sink over this stops its sources */
#define MAX_DGRAM 65507          /* the largest UDP payload */
/* Our address text, built from ADDR or HOST PORT (each up to ~512 bytes
 * as typed) and a scheme. */
#define NC_TARGET_TEXT 1100
/* A stack buffer for transforming one chunk (CRLF, chat tags) without an
 * allocation in the common case; larger chunks are allocated. */
#define NC_STACK_CHUNK 8192
/* --chat: the longest "<NAME> " tag (a /nick name is up to 32 bytes), rounded up. */
#define CHAT_NICK_MAX 32
#define CHAT_TAG_MAX 40


struct nc_peer {
    nc_ctx *c;
    nc_peer *prev, *next;
    unsigned id;       /* chat: <userN> */
    char tag[CHAT_NICK_MAX + 1]; /* chat: "userN", or the /nick name */
    int midline;       /* chat: its last chunk did not end a line (no /nick here) */
    char name[CLI_ADDR_TEXT]; /* tcp://127.0.0.1:5555, for -v and -x */
    char host[CLI_ADDR_TEXT]; /* chat announce: the host alone, as ncat writes it */
    csock_stream *s;   /* a stream peer, or NULL */
    csock_addr addr;   /* a datagram peer's address */
    int has_addr;      /* 0: the connected datagram peer */
    csock_timer *idle; /* datagram peers with -i */
    uint64_t last_io;
    csock_stream *child_in;  /* exec: the pipe to the child's stdin */
    csock_stream *child_out; /* exec: the pipe from the child's stdout */
    int congested;           /* counted in c->peers_congested */
    int eof;                 /* the peer has finished sending */
    int gone;                /* taken out of the session (peer_close) */
    int announced;           /* chat: the others were told it joined */
    int lost;                /* a write to it failed: bytes lost (a negative errno) */
    int child_cr;            /* -C on -e/-c output: its last byte was CR */
    csock_ws *ws;            /* a WebSocket peer, or NULL */
    int ws_open;             /* connect ws://: the handshake is done */
    char *wline;             /* ws text mode: the start of a line not ended yet */
    size_t nwline, capwline;
};

struct nc_child {
    pid_t pid;
    char name[CLI_ADDR_TEXT]; /* the peer it served, for the -v exit line */
};

/* --progress (nc_progress.c): the counts and the redraw timer. */
typedef struct nc_progress {
    csock_timer *timer;  /* NULL: no progress line */
    uint64_t sent;       /* bytes read from stdin */
    uint64_t received;   /* bytes received from peers */
    uint64_t total;      /* stdin's size when it is a regular file, else 0 */
    uint64_t t0;         /* loop time at the start */
    int drawn;           /* a line is on the terminal */
} nc_progress;

/* The session: every handle the relay uses, and the flow-control state. */
struct nc_ctx {
    const nc_opts *o;
    csock_loop *loop;
    csock_stream *in, *out;   /* stdin / stdout; NULL when not used */
    nc_endpoint *eps;         /* listen over stream schemes: the endpoints */
    size_t neps;
    csock_stream *connecting; /* connect: the stream until its connect callback */
    csock_dial *dialing;      /* connect NAME: the dial until its callback (teardown cancels it) */
    nc_handshake *handshakes;  /* listen tls://: accepted, handshake not done yet */
    size_t nhandshakes, cap_handshakes;
    csock_dgram *dg;          /* the datagram socket (listen -u, connect -u) */
    csock_timer *quiet;       /* datagram connect: the -q timer */
    csock_signal *sig[3];     /* SIGCHLD, SIGINT, SIGTERM */
    nc_peer *head, *tail;     /* peers, oldest first (ascending id) */
    unsigned npeers;
    nc_peer *ending;      /* peers out of the session whose stream still closes */
    csock_stream **pipes; /* exec: stdin pipes of children that outlived their peer */
    size_t npipes, cap_pipes;
    unsigned next_id;   /* chat: <userN> numbers; 0 is stdin */
    nc_child *children; /* exec: processes not yet reaped */
    size_t nchildren, cap_children;
    unsigned peers_congested; /* peer sinks over the high water mark */
    int out_congested;        /* stdout over the high water mark */
    int capture_failed;       /* -o (1), -x (2): a write failed, said once */
    int in_eof;               /* stdin has ended */
    int in_reading;           /* stdin reading is on */
    int eof_grace;            /* the peer's EOF came first: the quiet timer waits for stdin */
    int crlf_cr;              /* -C: the last stdin byte was CR */
    int served;               /* one peer was taken (single-peer modes end with it) */
    int quitting;             /* --send-only after EOF: close peers, then exit */
    int stopped;
    int status; /* exit status so far */
    csock_tls_ctx *tls; /* tls:// endpoints: the context (freed by the command) */
    nc_progress progress;
    csock_timer *delay;  /* -d: the pause after a read, or NULL */
    int delaying;        /* -d: in the pause: no source is read */
};

/* Parse the command line of connect (listen == 0), listen (1) or serve chat
 * (2: every argument an ADDR, in o->addrs) into *o; prints
 * help and exits, or dies with a one-line error and CLI_USAGE. */
void nc_parse_args(int argc, char **argv, int listen, const char *usage, nc_opts *o);

/* Build our address text from ADDR, HOST PORT, -u, -U. `passive`: a bare
 * PORT means every interface. */
void nc_target_text(const nc_opts *o, int passive, char *out, size_t size);

/* The same for one address `a` (and `port`, or NULL): serve chat's ADDRs. */
void nc_addr_text(const nc_opts *o, const char *a, const char *port, int passive, char *out,
                  size_t size);

/* ws (cli_ws_scheme() of the address `target`): die (CLI_USAGE) on options
 * that do not go with it (-u, -U, -e, -C, --ssl, TLS options on ws://,
 * --header on listen, --binary with --chat); not ws: on WebSocket options. */
void nc_check_ws(const nc_opts *o, int ws, const char *target);

/* TLS runs over TCP only: die (CLI_USAGE) when --ssl or a TLS option was
 * given but the endpoint `a` (written `target`) is not tls://, or when -u
 * goes with a tls:// address. Else the data would go out as plaintext. */
void nc_check_tls(const nc_opts *o, const csock_addr *a, const char *target);
/* fd:N, systemd:NAME, tls+ either: a listening socket passed in. */
int nc_inherited_form(const char *a);

/* Set up the loop, stdin/stdout streams (unless exec or not needed) and the
 * signal watchers. Dies on failure. */
void nc_ctx_init(nc_ctx *c, const nc_opts *o);

/* Run until done, then close every handle and free the loop (and the
 * options' allocations); returns the exit status. */
int nc_ctx_run(nc_ctx *c);
/* nc_ctx_run, with systemd's readiness protocol around the session (the
 * caller sent READY=1 once listening): WATCHDOG=1 every half
 * $WATCHDOG_USEC while it runs, STOPPING=1 when it ends (a signal, or the
 * last peer gone), before the teardown's last writes. */
int nc_ctx_run_sd(nc_ctx *c);

/* Free what nc_parse_args() allocated. */
void nc_opts_free(nc_opts *o);

/* Stop the loop with `status` (the first error wins over a later 0). */
void nc_finish(nc_ctx *c, int status);

/* Is a peer with this address let in by --allow / --deny? Unix peers always are. */
int nc_acl_permits(const nc_opts *o, const csock_addr *a);

/* Hand a connected stream to the relay: the peer is added (or refused by
 * the ACL or -m, with a -v line) and data starts to flow. */
void nc_peer_add_stream(nc_ctx *c, csock_stream *s, int accepted);

/* Relay a datagram socket. listen: each distinct sender address becomes a
 * peer (-k), or only the first one. connect: `peer` is the address the
 * socket is connected to, and the one peer. Returns 0 or a negative errno
 * (out of memory: the caller reports it and exits). */
int nc_dgram_attach(nc_ctx *c, csock_dgram *d, const csock_addr *peer);

/* listen tls://: an accepted stream whose handshake runs, kept with its
 * peer's address so that teardown can close it (0, or -ENOMEM: the caller
 * closes it); and its end (done or failed): the peer as text into buf. */
int nc_handshake_add(nc_ctx *c, csock_stream *s);
const char *nc_handshake_done(nc_ctx *c, csock_stream *s, char *buf, size_t size);

/* Single-peer modes: the peer came; close the listeners (later peers are
 * refused by the kernel, as in nc). */
void nc_close_listeners(nc_ctx *c);

/* Start reading stdin now (single-peer modes start it when the peer comes). */
void nc_stdin_start(nc_ctx *c);

/* connect -s/-p (nc_source.c): the source address for the connection to
 * `addr` (the target, written `target`; re-resolved in the family of -s
 * when the first answer has another one) into *src, or NULL when neither
 * was given. Dies on a source that is not an address of this host. */
const csock_addr *nc_source(const nc_opts *o, const char *target, csock_addr *addr,
                            csock_addr *src);

/* Connect a stream to `addr` from `src` (bound first), TLS too when c->tls
 * is set: `cb` runs from the loop as for csock_connect(). Returns 0 and
 * *out, or a negative errno (refused, timed out: the connect failed). */
int nc_connect_from(nc_ctx *c, const csock_addr *addr, const csock_addr *src,
                    csock_stream_cb cb, csock_stream **out);

/* connect -z -u (nc_scan_udp.c): probe ports[0..n) of `host` (its port
 * ignored) with a zero byte each; open[i] = 0 when ICMP said the port is
 * closed within wait_ms, else 1 (open or filtered, as ncat judges). */
void nc_scan_udp(const nc_opts *o, const csock_addr *host, const int *ports, size_t n,
                 unsigned char *open, uint64_t wait_ms);

/* listen --ssl / tls:// without --cert (nc_ephemeral.c): make a temporary
 * self-signed certificate, point o->tls.cert at it and print its SHA-256
 * fingerprint on stderr, as ncat does. Dies if OpenSSL cannot. */
void nc_ephemeral_cert(nc_opts *o);

/* --progress: start the line (when stderr is a terminal), and clear it. */
void progress_start(nc_ctx *c);
void progress_end(nc_ctx *c);

/* ---- between the relay's files (src/cli/nc_*.c); the comments at the
 * definitions say more ---- */

/* nc_acl.c: --allow / --deny entries; die naming `opt` on a bad one. */
void cidr_parse_list(const char *opt, const char *text, nc_cidr_list *l);
void cidr_parse_file(const char *opt, const char *path, nc_cidr_list *l);

/* nc_transform.c: pure byte transforms (and the -o copy, the -x dump). */
void hexdump(nc_ctx *c, int sent, const nc_peer *p, const char *buf, size_t len);
size_t to_crlf(const char *in, size_t len, char *out, int *cr);
size_t chat_escape(const char *in, size_t len, char *out);
size_t chat_tag(const char *tag, const char *in, size_t len, char *out);
size_t next_dgram(const char *buf, size_t len, int final);

/* nc_relay.c: sending to the sinks, flow control, stdin and stdout. */
int exec_mode(const nc_ctx *c);
int peer_write(nc_peer *p, csock_stream *s, const char *buf, size_t len);
void peer_send(nc_peer *p, const char *buf, size_t len);
void broadcast(nc_ctx *c, const nc_peer *from, const char *buf, size_t len);
void out_write(nc_ctx *c, const char *buf, size_t len);
int peers_may_read(const nc_ctx *c);
/* -d: a source was read: pause every source for the delay (not in exec
 * mode, which throttles pairwise). */
void delay_after_read(nc_ctx *c);
void sync_sources(nc_ctx *c);
void quiet_start(nc_ctx *c);
void close_finished_peers(nc_ctx *c);
void on_out_drain(csock_stream *out, int status);
/* -C: buf with each LF not after a CR as CRLF (*cr: the last byte was a
 * CR) to sink(arg, ...): at once, or in pieces when memory is short (a
 * datagram is dropped then). From stdin, and from -e/-c children. */
typedef void (*crlf_sink)(void *arg, const char *buf, size_t len);
void crlf_send(const nc_ctx *c, const char *buf, size_t len, int *cr, crlf_sink sink, void *arg);

/* nc_exec.c: the child process of a peer (-e / -c). */
int child_start(nc_peer *p);
void child_in_finish(nc_peer *p);
void child_forget_pipes(nc_peer *p);
void on_pipe_shut(csock_stream *s, int status);
size_t on_child_out(csock_stream *s, int status, const char *buf, size_t len);
void on_sigchld(csock_signal *sig, int signum);

/* nc_peer.c: a peer's life in the session. */
nc_peer *peer_new(nc_ctx *c, const csock_addr *a);
int admit(nc_ctx *c, const csock_addr *a, const char *name);
int peer_start(nc_peer *p);
void peer_input(nc_peer *p, const char *buf, size_t len);
size_t on_peer_read(csock_stream *s, int status, const char *buf, size_t len);
void peer_close(nc_peer *p, int graceful);
void peer_failed(nc_peer *p, int status);
void peer_unlink(nc_peer *p);
void ending_add(nc_peer *p);
void ending_remove(nc_peer *p);
void peer_free(nc_peer *p);
void peer_idle_timeout(const nc_ctx *c, csock_stream *s);
void on_peer_stream_closed(csock_stream *s);

/* nc_chat.c: --chat's announcements and commands. */
int chat_announce_join(nc_ctx *c, nc_peer *p);
void chat_announce_leave(nc_ctx *c, const nc_peer *gone);
void chat_input(nc_peer *p, const char *buf, size_t len);

/* nc_ws.c: WebSocket peers. */
int nc_ws_connect(nc_ctx *c, const char *url);
void nc_ws_accepted(nc_ctx *c, csock_ws *ws);
void nc_ws_on_event(csock_ws *ws, const csock_ws_event *ev, void *data);
void nc_ws_send(nc_peer *p, const char *buf, size_t len);
void nc_ws_finish(nc_peer *p, int graceful);
csock_ws_opts nc_ws_opts(const nc_ctx *c);

/* nc_ws_listen.c: a ws:// or wss:// endpoint's HTTP server. */
int nc_ws_endpoint(nc_endpoint *ep);

/* nc_proxy.c: --proxy. Parse --proxy-type / --proxy-dns (die on a bad one);
 * check the proxy options against the rest (die, CLI_USAGE); connect to
 * the proxy, negotiate the tunnel to the target `target` (our tcp:// or
 * tls:// text), then call ready(s, 0) with the stream (data c) or, for
 * tls://, run TLS to the target and call ready with its result. A refusal
 * is one line on stderr and the session ends with CLI_ERR. */
int nc_proxy_type_parse(const char *text);
int nc_proxy_dns_parse(const char *text);
void nc_proxy_check(const nc_opts *o, const char *target);
int nc_proxy_connect(nc_ctx *c, const char *target, csock_stream_cb ready);
/* base64 of n bytes into out (4 * ceil(n / 3) + 1 bytes); returns its length. */
size_t nc_base64(const unsigned char *in, size_t n, char *out);
/* nc_proxy_server.c: listen --proxy-type http|socks5 on `target` until
 * SIGINT/SIGTERM; returns the exit status. */
int nc_proxy_serve(const nc_opts *o, const char *target);

/* nc_dgram.c */
void on_dgram(csock_dgram *d, int status, const char *buf, size_t len, const csock_addr *from);

/* nc_session.c: end the session once nothing is left to do. */
void check_done(nc_ctx *c);
/* The array `v` (capacity *cap) with room for `need` > 0 elements of `elem`
 * bytes: `v` itself, or a larger copy; NULL when out of memory (`v` stays). */
void *grow(void *v, size_t *cap, size_t need, size_t elem);

#endif
