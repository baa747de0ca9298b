/* csock serve SERVICE ADDR...: the seed's services on every address at once,
 * stream and datagram alike. */
#include <ctype.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/serve_ws.h"

static const char serve_usage[] =
    "usage: csock serve SERVICE ADDR... [options]\n"
    "\n"
    "Serve SERVICE on every ADDR (tcp://, tls://, udp://, unix:, unixgram:,\n"
    "HOST:PORT, ws://HOST[:PORT][/PATH], wss://...); tls:// and wss:// need\n"
    "--cert and --key (see below).\n"
    "For each endpoint one line goes to stdout once it is ready:\n"
    "  listening ADDR     (with the real port when 0 was asked for)\n"
    "\n"
    "ws:// and wss:// (WebSocket): a GET of PATH (default /) with Upgrade\n"
    "becomes a WebSocket; without Upgrade it is answered 426, another path\n"
    "404. A message is a message: echo sends it back with its type (text or\n"
    "binary), upper in upper case (whole, not split into lines), discard\n"
    "drops it. A message over --max-line (default 1 MiB here) is closed with\n"
    "1009; the drain sends every WebSocket a close 1001 (going away).\n"
    "\n"
    "Services:\n"
    "  echo      send back every byte (every datagram)\n"
    "  upper     answer each line (each datagram) in upper case\n"
    "  discard   read and drop everything\n"
    "  chat      a chat room: lines go to every other client, tagged <userN>\n"
    "            (see csock serve chat --help)\n"
    "  http      static files over HTTP/1.1 (see csock serve http --help)\n"
    "\n"
    "Options:\n"
    "  --max-line N        longest line for line services, bytes (default 65536);\n"
    "                      a longer line closes that connection. ws://: the\n"
    "                      longest message (default 1 MiB; longer: close 1009)\n"
    "  -m, --max-conns N   at most N connections in all (every endpoint and\n"
    "                      thread); more are closed at once\n"
    "  -i, --idle-timeout SECS  close a connection idle this long (no byte\n"
    "                      either way; a WebSocket gets a close 1001)\n"
    "  --read-timeout SECS  close a client that leaves a line unfinished this\n"
    "                      long (line services; a slow sender is fine as long\n"
    "                      as its lines keep completing; ws://: a frame or a\n"
    "                      request head)\n"
    "  --write-timeout SECS close a client that takes no byte of its replies\n"
    "                      for this long (it stopped reading)\n"
    "  -t, --threads N     event loops (threads), one per core by default\n"
    "  --drain-timeout SECS  on SIGINT/SIGTERM, stop accepting, let replies\n"
    "                      finish, close what is left after SECS (default 10);\n"
    "                      a second signal closes everything at once\n"
    "  --reuse-port        share each port with another server already on it\n"
    "                      (both need --reuse-port; without it a port in use is\n"
    "                      an error). Stopping one of them resets connections\n"
    "                      waiting in its accept queue: to restart without\n"
    "                      downtime, send SIGUSR2 instead\n"
    "  --subprotocol NAME  ws://: a subprotocol to agree on when the client\n"
    "                      offers it (repeat it: the first one is preferred)\n"
    "  -v, --verbose       log connections to stderr (ws://: the path, the\n"
    "                      subprotocol, the close code, messages and bytes)\n"
    "  -h, --help          this help\n"
    "\n"
    "Zero-downtime restart: on SIGUSR2 csock starts a new copy of itself (the\n"
    "binary now at the same path, the same arguments) and hands it the\n"
    "listening sockets of its tcp://, tls://, unix: and fd:/systemd:\n"
    "addresses; once the new process listens, the old one stops accepting and\n"
    "drains as on SIGTERM. Nothing is refused or reset: the sockets and their\n"
    "queues never close. ws:// endpoints are bound anew (they need\n"
    "--reuse-port), udp:// and unixgram: ones cannot be: with them the new\n"
    "process fails to start. If the new process fails, the old one goes on.\n"
    "\n"
    "Exit status: 0 after a signal-driven stop, 1 on a runtime error (port in\n"
    "use, out of memory), 2 on a wrong argument.\n";

static long reply_echo(char *msg, size_t len) { return (long)len; }
static long reply_none(char *msg, size_t len) { return -1; }
static long reply_upper(char *msg, size_t len)
{
    for (size_t i = 0; i < len; i++) msg[i] = (char)toupper((unsigned char)msg[i]);
    return (long)len;
}

#define DEFAULT_MAX_LINE 65536 /* --max-line: a long text line, far from a flood */
#define MAX_MAX_LINE (1u << 28) /* --max-line cap: 256 MiB a connection is plenty */

static const service services[] = {
    {"echo", 0, 0, reply_echo},
    {"upper", 1, 1, reply_upper},
    {"discard", 0, 0, reply_none},
};

/* conn.why after a failed handshake: cli_log_handshake said it all. */
#define HANDSHAKE_LOGGED INT_MIN

/* However the stream closes (by us, a timeout, the server's drain): one
 * -v line per connection, once nothing more can be sent, with its bytes. */
static void conn_closed(csock_stream *s)
{
    conn *cn = csock_stream_data(s);
    char counts[64];
    if (cn->srv->verbose && cn->why != HANDSHAKE_LOGGED) {
        cli_counts_text(s, counts, sizeof counts);
        if (cn->why == CSOCK_EOF || cn->why == 0)
            cli_warn("closed %s (%s)", cn->peer, counts);
        else
            cli_warn("dropped %s: %s (%s)", cn->peer, csock_strerror(cn->why), counts);
    }
    free(cn);
}

static void stream_failed(conn *cn, csock_stream *s, int status)
{
    if (cn->srv->verbose) cn->why = status; /* a shared conn (see accept_shared) is read-only */
    if (status == CSOCK_EOF) {
        /* The peer finished: finish our replies, then close. */
        csock_stream_end(s, NULL);
        return;
    }
    /* An oversized line: the replies to the lines before it still go out
     * (end keeps what the socket has not taken yet); any other error
     * leaves nothing worth sending. */
    if (status == CSOCK_ETOOBIG)
        csock_stream_end(s, NULL);
    else
        csock_stream_close(s, NULL);
}

/* Line services: the message is the line with its ending (kept, so CRLF
 * clients get CRLF back). Messages are slices of the read buffer, which the
 * service may change in place: it is ours until the callback returns. */
static void on_line(csock_stream *s, int status, const char *msg, size_t len)
{
    conn *cn = csock_stream_data(s);
    if (status < 0) return stream_failed(cn, s, status);
    long n = cn->srv->svc->reply((char *)msg, len);
    if (n >= 0) csock_stream_write(s, msg, (size_t)n);
}

static size_t on_bytes(csock_stream *s, int status, const char *buf, size_t len)
{
    conn *cn = csock_stream_data(s);
    if (status < 0) {
        stream_failed(cn, s, status);
        return len;
    }
    long n = cn->srv->svc->reply((char *)buf, len);
    if (n >= 0) csock_stream_write(s, buf, (size_t)n);
    return len;
}

/* A failed or stalled TLS handshake costs only that connection: csock
 * closes it after the ready callback. */
int serve_handshake_ok(csock_stream *s, int status)
{
    conn *cn = csock_stream_data(s);
    if (status >= 0) return 1;
    if (!cn->srv->verbose) return 0;
    cli_log_handshake(s, status, cn->peer);
    cn->why = HANDSHAKE_LOGGED; /* that line was its close line */
    return 0;
}

/* Ready to serve: at once, or after the TLS handshake. */
static void start_service(csock_stream *s, int status)
{
    if (!serve_handshake_ok(s, status)) return;
    conn *cn = csock_stream_data(s);
    server *srv = cn->srv;
    /* Each is a store on the stream; none costs anything per read or write. */
    if (srv->idle_ms) csock_stream_set_idle_timeout(s, srv->idle_ms);
    if (srv->read_ms) csock_stream_set_read_timeout(s, srv->read_ms);
    if (srv->write_ms) csock_stream_set_write_timeout(s, srv->write_ms);
    int rc = srv->svc->line_based ? csock_stream_read_framed(s, &srv->framing, on_line)
                                  : csock_stream_read_start(s, on_bytes);
    if (rc < 0) csock_stream_close(s, NULL);
}

/* -m: the count is every loop's (csock_server_conns includes this one). A
 * refused client is closed at once and, with -v, logged. */
static int over_limit(const server *srv, const char *peer)
{
    unsigned n = csock_server_conns(srv->srv);
    if (!srv->max_conns || n <= srv->max_conns) return 0;
    if (srv->verbose) cli_warn("refused %s: %u connections already (-m)", peer, n - 1);
    return 1;
}

/* A new connection, plain or before its handshake: its state, or away. */
int serve_accepted(const cli_acceptor *a, csock_stream *s)
{
    server *srv = a->data;
    char peer[CLI_ADDR_TEXT] = "";
    if (srv->verbose) cli_peer_text(s, peer, sizeof peer); /* only -v shows it */
    if (over_limit(srv, peer)) {
        csock_stream_close(s, NULL);
        return -1;
    }
    size_t peer_len = srv->verbose ? strlen(peer) + 1 : 1;
    conn *cn = malloc(sizeof *cn + peer_len);
    if (!cn) {
        if (srv->verbose) cli_warn("refused %s: %s", peer, csock_strerror(-ENOMEM));
        csock_stream_close(s, NULL);
        return -1;
    }
    cn->srv = srv;
    cn->acc = a;
    cn->why = 0;
    memcpy(cn->peer, peer, peer_len);
    csock_stream_set_data(s, cn);
    csock_stream_on_close(s, conn_closed);
    if (srv->verbose) cli_warn("connection from %s", cn->peer);
    return 0;
}

/* Without -v a tcp:// or tls:// connection needs nothing of its own: its
 * conn would only say which server it belongs to, and the `why` of a close
 * line that is never printed. So they all share one read-only conn (the
 * acceptor's data), with no close callback: a malloc'd conn cost 48 of an
 * idle connection's ~350 bytes. ws:// connections keep their own (ws_ready
 * frees it), as does everything under -v (the peer's text). */
static int accept_shared(const cli_acceptor *a, csock_stream *s)
{
    conn *shared = a->data;
    if (over_limit(shared->srv, "")) {
        csock_stream_close(s, NULL);
        return -1;
    }
    csock_stream_set_data(s, shared);
    return 0;
}

static void on_datagram(csock_dgram *d, int status, const char *buf, size_t len,
                        const csock_addr *from)
{
    server *srv = csock_dgram_data(d);
    if (status < 0 || !from) return; /* a bad peer never stops the socket */
    char *copy = malloc(len ? len : 1);
    if (!copy) return;
    memcpy(copy, buf, len);
    long n = srv->svc->reply(copy, len);
    if (n >= 0) csock_dgram_send(d, copy, (size_t)n, from);
    free(copy);
}

static void add_subprotocol(server *srv, const char *name)
{
    if (!*name || strpbrk(name, " ,;\t\r\n\"()<>@:/[]?={}"))
        cli_die(CLI_USAGE, "--subprotocol: '%s' is not a token", name);
    if (srv->nsubprotocols == SERVE_MAX_SUBPROTOCOLS)
        cli_die(CLI_USAGE, "--subprotocol: at most %d", SERVE_MAX_SUBPROTOCOLS);
    srv->subprotocols[srv->nsubprotocols++] = name;
}

static const service *find_service(const char *name)
{
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++)
        if (!strcmp(name, services[i].name)) return &services[i];
    return NULL;
}

/* Parse an address argument (tcp, tls, udp, unix, ws, wss, fd:, systemd:)
 * or die: 1 for a ws:// or wss:// one. An inherited socket is given as
 * tcp:// (or tls:// with tls+), its real address known once served. */
static int parse_endpoint(const char *text, csock_addr *a)
{
    char path[CLI_WS_PATH];
    int fds[CLI_MAX_ENDPOINTS], tls;
    if (cli_inherited_fds(text, fds, CLI_MAX_ENDPOINTS, &tls)) {
        *a = (csock_addr){.scheme = tls ? CSOCK_TLS : CSOCK_TCP};
        return 0;
    }
    if (cli_ws_scheme(text)) {
        cli_ws_listen_addr(text, CSOCK_ADDR_PASSIVE, a, path);
        return 1;
    }
    cli_addr(text, CSOCK_ADDR_PASSIVE, a);
    return 0;
}

/* Parse every address first (a typo in the last one should not leave the
 * first ones half-served) and check the options against them. Returns 1
 * when one is ws:// or wss://. */
static int check_endpoints(const server *srv, char **addrs, int n)
{
    int any_tls = 0, any_ws = 0, any_wss = 0;
    for (int i = 0; i < n; i++) {
        csock_addr a;
        int ws = parse_endpoint(addrs[i], &a);
        any_ws |= ws;
        any_tls |= a.scheme == CSOCK_TLS;
        any_wss |= ws && a.scheme == CSOCK_TLS;
    }
    /* Said here, in wss:// words, before anything listens. */
    if (any_wss && !srv->tls_opts.cert)
        cli_die(CLI_USAGE, "serve: wss:// needs --cert FILE (and --key FILE unless the key is in it)");
    /* A certificate given for no tls:// address would be ignored in silence. */
    if (srv->tls_opts.given && !any_tls)
        cli_die(CLI_USAGE, "serve: --%s needs a tls:// address (or wss://)", srv->tls_opts.first);
    if (srv->nsubprotocols && !any_ws)
        cli_die(CLI_USAGE, "serve: --subprotocol needs a ws:// or wss:// address");
    return any_ws;
}

static void open_endpoint(server *srv, const char *text, unsigned arg, conn *shared)
{
    csock_addr a;
    srv->restart.args[arg].first = srv->neps;
    srv->restart.args[arg].count = 1;
    srv->restart.nargs = arg + 1;
    if (parse_endpoint(text, &a)) { /* ws://: bound anew by a restarted process */
        serve_ws_listen(srv, text, srv->neps++);
        return;
    }
    int tls = a.scheme == CSOCK_TLS;
    if (tls && !srv->tls) srv->tls = cli_tls_server_ctx(&srv->tls_opts);
    cli_acceptor *acc = tls ? &srv->tls_acc : &srv->plain;
    *acc = (cli_acceptor){.tls = srv->tls, .verbose = srv->verbose, .accepted = serve_accepted,
                          .ready = start_service, .data = srv};
    if (!srv->verbose) {
        acc->accepted = accept_shared;
        acc->data = shared;
    }
    if (csock_addr_is_stream(&a)) {
        unsigned n = cli_server_listen(srv->srv, text, &srv->lo, &srv->plain, &srv->tls_acc);
        srv->restart.args[arg].count = n;
        srv->restart.args[arg].pass = 1;
        srv->neps += n;
        return;
    }
    int rc = csock_server_dgram(srv->srv, &a, on_datagram, srv);
    if (rc < 0) cli_die(CLI_ERR, "listen %s: %s", text, csock_strerror(rc));
    csock_addr bound;
    csock_server_addr(srv->srv, srv->neps++, &bound);
    cli_print_listening(stdout, &bound);
}

/* The server's loop callbacks: systemd's readiness protocol and the ws://
 * endpoints' per-loop work. */
static void loop_start(csock_server *cs, csock_loop *loop, unsigned index)
{
    server *srv = csock_server_data(cs);
    cli_sd_loop_start(&srv->sd, loop, index);
    serve_ws_loop_start(srv, loop, index);
}

static void loop_drain(csock_server *cs, csock_loop *loop, unsigned index)
{
    server *srv = csock_server_data(cs);
    cli_sd_loop_drain(&srv->sd, index);
    cli_restart_loop_drain(&srv->restart, index);
    serve_ws_loop_drain(srv, index);
}

static void loop_stop(csock_server *cs, csock_loop *loop, unsigned index)
{
    server *srv = csock_server_data(cs);
    cli_sd_loop_stop(&srv->sd, index);
    cli_restart_loop_stop(&srv->restart, index);
    serve_ws_loop_stop(srv, index);
}

int cli_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"max-line", required_argument, NULL, 'L'},
        {"max-conns", required_argument, NULL, 'm'},
        {"idle-timeout", required_argument, NULL, 'i'},
        {"read-timeout", required_argument, NULL, 'R'},
        {"write-timeout", required_argument, NULL, 'W'},
        {"threads", required_argument, NULL, 't'},
        {"drain-timeout", required_argument, NULL, 'D'},
        {"verbose", no_argument, NULL, 'v'},
        {"reuse-port", no_argument, NULL, 'P'},
        {"subprotocol", required_argument, NULL, 'S'},
        CLI_TLS_LONGOPTS,
        CLI_DEPLOY_LONGOPTS,
        {0, 0, 0, 0},
    };
    server srv = {.framing = {.kind = CSOCK_FRAME_LINE, .max = DEFAULT_MAX_LINE, .keep_delimiter = 1}};
    csock_server_opts so = {.handle_signals = 1, .drain_timeout_ms = CLI_DRAIN_TIMEOUT_MS,
                            .loop_start = loop_start, .loop_drain = loop_drain, .loop_stop = loop_stop,
                            .data = &srv};
    int c;
    /* HTTP has its own options (a directory, TLS, logs): its own file. */
    if (argc > 1 && !strcmp(argv[1], "http")) return cli_serve_http(argc - 1, argv + 1);
    /* chat is the listen relay's broker (one loop: every client sees every other). */
    if (argc > 1 && !strcmp(argv[1], "chat")) return cli_serve_chat(argc - 1, argv + 1);
    opterr = 0;
    /* Options may come before or after SERVICE and the addresses. */
    while ((c = getopt_long(argc, argv, ":hm:i:t:v", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(serve_usage, stdout);
            fputs(cli_tls_usage, stdout);
            fputs(cli_deploy_usage, stdout);
            return CLI_OK;
        case 'L':
            srv.framing.max = cli_ulong("--max-line", optarg, MAX_MAX_LINE);
            srv.max_line_given = 1;
            break;
        case 'm': srv.max_conns = (unsigned)cli_ulong("--max-conns", optarg, CLI_MAX_CONNS); break;
        case 'i': srv.idle_ms = cli_seconds("--idle-timeout", optarg); break;
        case 'R': srv.read_ms = cli_seconds("--read-timeout", optarg); break;
        case 'W': srv.write_ms = cli_seconds("--write-timeout", optarg); break;
        case 't': so.threads = (unsigned)cli_ulong("--threads", optarg, CLI_MAX_THREADS); break;
        case 'D': so.drain_timeout_ms = cli_seconds("--drain-timeout", optarg); break;
        case 'v': srv.verbose = 1; break;
        case 'P': so.reuseport = 1; break;
        case 'S': add_subprotocol(&srv, optarg); break;
        default:
            if (cli_tls_option(&srv.tls_opts, c, optarg)) break;
            if (cli_deploy_option(&srv.lo, c, optarg)) break;
            cli_bad_option("serve", c, optopt, argv[optind - 1]);
        }
    }
    if (optind >= argc) cli_die(CLI_USAGE, "serve: missing SERVICE (echo, upper, discard, chat or http)");
    srv.svc = find_service(argv[optind]);
    if (!srv.svc)
        cli_die(CLI_USAGE, "serve: unknown service '%s' (echo, upper, discard, chat or http)", argv[optind]);
    optind++;
    if (optind >= argc) cli_die(CLI_USAGE, "serve: missing ADDR to listen on");
    if (argc - optind > CLI_MAX_ENDPOINTS)
        cli_die(CLI_USAGE, "serve: at most %d addresses", CLI_MAX_ENDPOINTS);
    /* Started by a restart: the old process's sockets, not new ones. */
    cli_restart_addresses(&srv.restart, argv + optind, argc - optind);
    int any_ws = check_endpoints(&srv, argv + optind, argc - optind);
    cli_raise_nofile();
    if (!so.drain_timeout_ms) so.drain_timeout_ms = 1; /* 0 means: do not wait */
    srv.drain_ms = so.drain_timeout_ms;
    if (any_ws) serve_ws_prepare(&srv);
    cli_hold_stop_signals(); /* the server watches them (handle_signals) */
    int rc = csock_server_new(&so, &srv.srv);
    if (rc < 0) cli_die_loop("server", rc);
    if (srv.verbose) cli_say_backend(csock_server_loop(srv.srv, 0));
    /* SIGUSR2 is watched before any `listening` line: a restart asked for
     * as soon as one appears must not kill the process. */
    cli_restart_init(&srv.restart, srv.srv);
    rc = cli_restart_watch(&srv.restart);
    if (rc < 0) cli_die(CLI_ERR, "serve: SIGUSR2: %s", csock_strerror(rc));
    conn shared = {.srv = &srv}; /* every connection's without -v (accept_shared) */
    for (int i = optind; i < argc; i++) open_endpoint(&srv, argv[i], (unsigned)(i - optind), &shared);
    cli_inherited_done();
    cli_sd_ready();
    cli_restart_child_ready();
    rc = csock_server_run(srv.srv);
    cli_restart_cleanup(&srv.restart);
    serve_ws_stop(&srv);
    csock_server_free(srv.srv);
    serve_ws_free(&srv);
    csock_tls_ctx_free(srv.tls);
    if (rc < 0) cli_die(CLI_ERR, "server: %s", csock_strerror(rc));
    return CLI_OK;
}
