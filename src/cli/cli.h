/* Shared pieces of the csock command: errors people read, option parsing
 * helpers and the subcommand table. */
#ifndef CSOCK_CLI_H
#define CSOCK_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "csock/csock.h"

/* Exit statuses, documented in csock(1). */
enum {
    CLI_OK = 0,
    CLI_ERR = 1,      /* a runtime failure: connect refused, I/O error */
    CLI_USAGE = 2,    /* a wrong argument */
};

/* One line to stderr: "csock: <what>", then exit(status). */
_Noreturn void cli_die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "csock: <what>: <error>" when a loop or server would not start, naming
 * CSOCK_BACKEND where it is the cause; then exit(CLI_ERR). */
_Noreturn void cli_die_loop(const char *what, int rc);
/* One line to stderr, no exit. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_say_backend(const csock_loop *loop); /* -v: "event loop: uring" */

/* Parse an address argument or die with a one-line reason. `flags` as for
 * csock_addr_resolve(). */
void cli_addr(const char *text, int flags, csock_addr *out);
/* Parse a non-negative number (with an optional unit for durations via
 * cli_seconds) or die naming the option. */
unsigned long cli_ulong(const char *opt, const char *text, unsigned long max);
/* A time as milliseconds: seconds, possibly fractional ("1.5"), or with
 * ncat's units ("3000ms", "2s", "1m", "1h"). */
uint64_t cli_seconds(const char *opt, const char *text);
/* Die with "unknown option" / "missing argument" for a getopt error char. */
_Noreturn void cli_bad_option(const char *cmd, int c, int optopt_char, const char *arg);

/* Ignore SIGPIPE and SIGXFSZ (writes report EPIPE, EFBIG instead). */
void cli_init_process(void);
/* Raise RLIMIT_NOFILE to its hard limit: servers hold many connections. */
void cli_raise_nofile(void);
/* Block SIGINT and SIGTERM for the rest of the process, before a loop
 * watches them: commands that stop on them stay stoppable (the loop's
 * signalfd reads them), and a signal that comes once the command is
 * already ending is dropped at the exit instead of killing it. */
void cli_hold_stop_signals(void);

/* A dual-stack socket ([::] with IPV6_V6ONLY off) sees IPv4 peers as
 * ::ffff:a.b.c.d: make such an address plain IPv4 (others stay), for
 * people and scripts; and csock_addr_format() of that. */
void cli_addr_unmap(csock_addr *a);
int cli_addr_name(const csock_addr *a, char *buf, size_t size);

/* Room for an address as text: what csock_addr_format can write. */
#define CLI_ADDR_TEXT CSOCK_ADDR_STRLEN
/* Room for a one-line reason (csock_strerror, a TLS error in words). */
#define CLI_REASON_TEXT 300

/* Limits and defaults the serving commands share (see their --help). */
#define CLI_MAX_ENDPOINTS 64         /* addresses per serve: csock_server's own limit */
#define CLI_MAX_THREADS 1024         /* -t: far beyond any core count, still a typo guard */
#define CLI_MAX_CONNS (1u << 24)     /* -m: beyond what RLIMIT_NOFILE allows anyway */
#define CLI_DRAIN_TIMEOUT_MS 10000   /* --drain-timeout default: replies in flight finish */

/* Subcommands: each takes argc/argv with argv[0] the command's name. */
int cli_serve(int argc, char **argv);
int cli_connect(int argc, char **argv);
int cli_listen(int argc, char **argv);
/* csock serve chat ADDR...: argv[0] is "chat". */
int cli_serve_chat(int argc, char **argv);
/* csock serve http DIR ADDR...: argv[0] is "http". */
int cli_serve_http(int argc, char **argv);

/* ---- TLS options (tls_opts.c), shared by connect, listen and serve ---- */

/* getopt_long values of the TLS options; outside the char range. */
enum {
    CLI_TLS_CERT = 0x1000, CLI_TLS_KEY, CLI_TLS_CA, CLI_TLS_INSECURE, CLI_TLS_ALPN,
    CLI_TLS_VERIFY_CLIENT, CLI_TLS_HS_TIMEOUT,
};

/* Entries for a command's struct option table (no terminator). */
#define CLI_TLS_LONGOPTS                                                                 \
    {"cert", required_argument, NULL, CLI_TLS_CERT},                                     \
    {"key", required_argument, NULL, CLI_TLS_KEY},                                       \
    {"ca", required_argument, NULL, CLI_TLS_CA},                                         \
    {"insecure", no_argument, NULL, CLI_TLS_INSECURE},                                   \
    {"alpn", required_argument, NULL, CLI_TLS_ALPN},                                     \
    {"verify-client", no_argument, NULL, CLI_TLS_VERIFY_CLIENT},                         \
    {"handshake-timeout", required_argument, NULL, CLI_TLS_HS_TIMEOUT}

/* Help text for those options, to append to a command's usage. */
extern const char cli_tls_usage[];

typedef struct cli_tls {
    const char *cert, *key, *ca, *alpn; /* file names / ALPN list as given */
    int insecure;                       /* --insecure: skip server verification */
    int verify_client;                  /* --verify-client: require client certs */
    uint64_t handshake_timeout_ms;      /* --handshake-timeout SECS (0: default) */
    int given;                          /* some TLS option was on the command line */
    const char *first;                  /* the first one given ("--cert"), for messages */
} cli_tls;

/* Take getopt's `c` if it is a TLS option: returns 1 (handled) or 0. */
int cli_tls_option(cli_tls *t, int c, const char *arg);
/* Build the context or die with a one-line reason (CLI_USAGE for missing
 * --cert/--key, CLI_ERR for unreadable or bad files). The client one warns on
 * stderr when --insecure turns verification off. */
csock_tls_ctx *cli_tls_server_ctx(const cli_tls *t);
csock_tls_ctx *cli_tls_client_ctx(const cli_tls *t);
/* "connect HOST: <reason>" for a failed TLS stream: the TLS reason if there
 * is one, else csock_strerror(status), into buf. */
const char *cli_tls_reason(const csock_stream *s, int status, char *buf, size_t size);

/* ---- serving (cli_common.c), shared by serve, serve http and listen ---- */

/* The `listening ADDR` line on `f` (stdout or stderr), flushed: tests and
 * scripts wait for it to learn the port, so its format is fixed. */
void cli_print_listening(FILE *f, const csock_addr *a);

/* The peer's address as text into buf, or "?" when the socket no longer
 * knows it (getpeername fails after a reset): take it at accept time. */
const char *cli_peer_text(const csock_stream *s, char *buf, size_t size);

/* "N bytes in, M out" for a -v close line (csock_stream_counts: what the
 * stream delivered to us and what the kernel took from it). */
const char *cli_counts_text(const csock_stream *s, char *buf, size_t size);

/* The -v line for a failed TLS handshake with `peer`. */
void cli_log_handshake(const csock_stream *s, int status, const char *peer);

/* A listener's data for cli_on_accept(): what the command does with a new
 * connection. It must outlive the listeners; it is only read (by every
 * loop of a csock_server). */
typedef struct cli_acceptor cli_acceptor;
struct cli_acceptor {
    csock_tls_ctx *tls; /* tls:// endpoints: the handshake comes first; NULL: plain */
    int verbose;        /* -v: accept errors on stderr */
    /* A new connection, before any handshake (may be NULL): set the
     * stream's data slot; return 0, or -1 when it was turned away (closed). */
    int (*accepted)(const cli_acceptor *a, csock_stream *s);
    /* The connection is ready to serve (status 0), or its TLS handshake
     * failed (status < 0; csock closes the stream after this callback). */
    csock_stream_cb ready;
    void *data; /* the command's state, for `accepted` */
};

/* The accept callback of every serving command: listener data is a
 * cli_acceptor. Errors cost one connection; the listener goes on. */
void cli_on_accept(csock_listener *l, csock_stream *s, int status);
/* The -v line of a listener's accept error (a bad or late PROXY protocol
 * header, out of descriptors, ...). */
void cli_log_accept_error(int status);

/* ---- behind balancers and systemd (cli_common.c, sd_listen.c, sd_notify.c) ---- */

/* getopt_long values of --proxy-protocol and --proxy-timeout. */
enum { CLI_PROXY_PROTOCOL = 0x1100, CLI_PROXY_TIMEOUT };
#define CLI_DEPLOY_LONGOPTS                                                      \
    {"proxy-protocol", no_argument, NULL, CLI_PROXY_PROTOCOL},                    \
    {"proxy-timeout", required_argument, NULL, CLI_PROXY_TIMEOUT}

/* Help text for those options and the fd:/systemd: address forms. */
extern const char cli_deploy_usage[];

/* Take getopt's `c` if it is one of those options, into the listen
 * options: returns 1 (handled) or 0. */
int cli_deploy_option(csock_listen_opts *lo, int c, const char *arg);

/* Listening sockets passed in rather than bound: the address forms
 *   fd:N           descriptor N (inherited, already listening);
 *   systemd:NAME   every socket systemd passed (LISTEN_FDS, LISTEN_PID)
 *                  whose LISTEN_FDNAMES entry is NAME (FileDescriptorName=;
 *                  systemd's default name is the socket unit's name);
 * each with tls+ before it (tls+fd:3) for TLS on the accepted streams.
 * Returns how many fds it put in fds (at most max) and sets *tls, or 0
 * when `text` is another form; dies (CLI_USAGE, one line) on a malformed
 * one, or on a name systemd did not pass. */
int cli_inherited_fds(const char *text, int *fds, int max, int *tls);

/* Serve `text` on srv: inherited sockets (see above) or a stream address
 * to bind, with the listen options `lo`; the listener data is `plain` or,
 * for tls:// and tls+ forms, `tls`. Prints a `listening ADDR` line for each
 * socket and returns how many endpoints it added. Dies on failure. */
unsigned cli_server_listen(csock_server *srv, const char *text, const csock_listen_opts *lo,
                           cli_acceptor *plain, cli_acceptor *tls);

/* After every endpoint is open: forget systemd's LISTEN_* variables (as
 * sd_listen_fds(1) does), so no child process takes them for its own. */
void cli_inherited_done(void);

/* sd_notify(3)'s datagram protocol, without libsystemd: `state` ("READY=1",
 * "STOPPING=1", ...) to $NOTIFY_SOCKET (a path, or @name in the abstract
 * namespace). Returns 0 (sent, or no NOTIFY_SOCKET) or -errno. */
int cli_sd_notify(const char *state);

/* The readiness protocol over a server's life: READY=1 (with MAINPID) once
 * listening, WATCHDOG=1 every half $WATCHDOG_USEC from loop 0 while it
 * runs, STOPPING=1 when the drain begins. Call the hooks from the server's
 * loop_start, loop_drain and loop_stop. */
typedef struct cli_sd {
    csock_timer *watchdog; /* loop 0's, while it runs */
} cli_sd;
void cli_sd_ready(void);
void cli_sd_loop_start(cli_sd *sd, csock_loop *loop, unsigned index);
void cli_sd_loop_drain(cli_sd *sd, unsigned index);
void cli_sd_loop_stop(cli_sd *sd, unsigned index);

/* How many sockets systemd passed under `name` (0: none, or no LISTEN_FDS
 * for this process). Never dies. */
int cli_inherited_named(const char *name);

/* Zero-downtime restart on SIGUSR2 (sd_restart.c says how and why): the
 * server's listening sockets go to a new copy of the process (LISTEN_FDS,
 * names csock-epA for the command line's address number A), which takes
 * over; this one drains once it listens. */
typedef struct cli_restart {
    csock_server *srv;
    csock_signal *sig;      /* SIGUSR2 on loop 0 */
    csock_stream *pipe;     /* the new process's "listening" byte */
    long child;             /* its pid, -1: none */
    int stopping;           /* draining: no restart */
    char exe[4096];         /* /proc/self/exe's path when we started */
    struct {
        unsigned first, count; /* its endpoints (csock_server_addr numbers) */
        int pass;              /* a stream address whose sockets can be handed over */
        int inherited;         /* its sockets came from the process before us */
    } args[CLI_MAX_ENDPOINTS];
    unsigned nargs;
    int handed;             /* a new process took our sockets over (or was
                               still starting when we stopped) */
    char handed_text[CLI_MAX_ENDPOINTS][48]; /* "systemd:csock-epA" for inherited ones */
} cli_restart;
/* First of all, on the command line's addresses: in a process a restart
 * started, each address whose sockets were handed over becomes
 * "systemd:csock-epA" ("tls+..." for a tls:// one), so it is served from
 * them and never bound or looked up again (an address systemd named for
 * the old process is no longer in LISTEN_FDNAMES). Then, once the server
 * exists, cli_restart_init. */
void cli_restart_addresses(cli_restart *r, char **addrs, int n);
void cli_restart_init(cli_restart *r, csock_server *srv);
/* Watch SIGUSR2: call from the main thread before csock_server_run. */
int cli_restart_watch(cli_restart *r);
void cli_restart_loop_drain(cli_restart *r, unsigned index);
void cli_restart_loop_stop(cli_restart *r, unsigned index);
/* Once listening: tell the old process (CSOCK_RESTART_FD), if any. */
void cli_restart_child_ready(void);
/* After run: remove the Unix socket files the server served (inherited
 * ones, and ours whose fds a failed restart asked for) when nobody else
 * listens there, unless we handed them on. */
void cli_restart_cleanup(cli_restart *r);

/* ---- ws:// and wss:// addresses (cli_common.c) ---- */

/* Room for the path of a ws:// address ("/chat"). */
#define CLI_WS_PATH 256

/* 1 for a ws:// address, 2 for wss:// (scheme case-insensitive), else 0. */
int cli_ws_scheme(const char *text);

/* Split a listening address ws://HOST:PORT[/PATH] (or wss://) into the socket
 * address to listen on (tcp://HOST:PORT; wss: tls://HOST:PORT) and the path
 * the WebSocket is served on ("/" when none). `flags` as for cli_addr(). Dies
 * with a one-line reason (CLI_USAGE) on a bad address or a path with a query,
 * a fragment, spaces or control characters. */
void cli_ws_listen_addr(const char *text, int flags, csock_addr *addr, char path[CLI_WS_PATH]);

/* The `listening ws://127.0.0.1:8080/PATH` line (wss:// when `tls`) for the
 * socket address `bound`, flushed, as cli_print_listening(). */
void cli_print_ws_listening(FILE *f, const csock_addr *bound, int tls, const char *path);

/* The address to dial for a ws:// URL: tcp://HOST:PORT (wss: tls://, the
 * default ports 80 and 443 filled in) into buf. 0, or -EINVAL (not ws://
 * or wss://, or too long). */
int cli_ws_dial_text(const char *url, char *buf, size_t size);

/* Why a client WebSocket ended before OPEN, for a one-line message:
 * "refused: 403 Forbidden" (the status line of a refused handshake, from
 * CLOSED's http_status and head) or the status's text. Returns buf or a
 * static string. */
const char *cli_ws_failure(const csock_ws_event *ev, char *buf, size_t size);

/* The length (1-4) of the UTF-8 character at s[0..n), n >= 1; 0 when
 * it is not a well-formed one (an invalid byte, a sequence cut short, an
 * overlong form, a surrogate, past U+10FFFF). */
size_t cli_utf8_char(const unsigned char *s, size_t n);

/* An HTTP answer with a short text body ("404 Not Found\n") and an
 * optional field `name: value`. */
void cli_http_answer(csock_http_req *r, int status, const char *name, const char *value);

#endif
