/* csock listen ADDR | [HOST] PORT: wait for peers and relay them to
 * stdin/stdout (one peer, or many with -k), to each other (--broker,
 * --chat) or to a program each (-e/-c). The relay itself is in nc_*.c. */
#include <stdlib.h>
#include <string.h>

#include "cli/netcat.h"

static const char listen_usage[] =
    "usage: csock listen [options] ADDR\n"
    "       csock listen [options] [HOST] PORT\n"
    "       csock listen -U [options] PATH\n"
    "\n"
    "Listen on ADDR (tcp://HOST:PORT, tls://HOST:PORT, udp://HOST:PORT,\n"
    "unix:PATH, unixgram:PATH, HOST:PORT, or a bare PORT for every interface,\n"
    "ws://HOST:PORT/PATH, wss://HOST:PORT/PATH, or a socket passed in: fd:N,\n"
    "systemd:NAME, tls+ before either; see \"Behind a balancer\" below); tls://\n"
    "and wss:// need --cert and --key (see below). On ws:// each peer is a WebSocket client of PATH: its\n"
    "messages are written as lines, input lines go to it as text messages; a\n"
    "GET of PATH without Upgrade gets 426 (with --chat: the chat page).\n"
    "Without -k the first peer is\n"
    "served: stdin goes to it, what it sends goes to stdout, and csock exits when\n"
    "it leaves. Over UDP a peer is a sender address; each input line is one\n"
    "datagram.\n"
    "\n"
    "When the port was 0 (or with -v) the first line on stderr is\n"
    "  listening ADDR     (the real address, e.g. tcp://127.0.0.1:43125)\n"
    "stdout carries only the peers' data.\n"
    "\n"
    "Options:\n"
    "  -k, --keep-open        serve many peers: stdin goes to all of them, all they\n"
    "                         send goes to stdout; over UDP each sender is a peer\n"
    "      --broker           each peer's data goes to every other peer (not stdout)\n"
    "      --chat             a broker that tags each message '<userN> ' and\n"
    "                         announces arrivals and departures, as ncat does\n"
    "  -e, --exec PROG        run PROG (split on blanks, no shell) for each peer,\n"
    "                         its stdin/stdout wired to the peer\n"
    "  -c, --sh-exec CMD      the same with /bin/sh -c CMD\n"
    "  -m, --max-conns N      at most N peers at once; more are closed at once\n"
    "      --allow LIST       only these peers: addresses, CIDR ranges (IPv4, IPv6)\n"
    "                         and names, comma-separated, repeatable\n"
    "      --deny LIST        never these peers (deny wins over allow)\n"
    "      --allowfile FILE   --allow entries from FILE, '#' comments\n"
    "      --denyfile FILE    --deny entries from FILE\n"
    "  -i, --idle-timeout SECS  close a peer idle this long (without -k: fail)\n"
    "  -C, --crlf             send each LF from stdin, and each LF an -e/-c child\n"
    "                         writes, as CRLF (as ncat)\n"
    "  -x, --hex-dump FILE    dump all data, both directions, to FILE ('-': stderr)\n"
    "                         in ncat's format: offset, 16 bytes in hex, as text\n"
    "      --send-only        only send; ignore the peers' data; quit at end of input\n"
    "      --recv-only        only receive; do not read stdin\n"
    "  -q, --quit-after SECS  UDP without -k: after end of input, exit once no\n"
    "                         datagram came for SECS (default 1)\n"
    "  -u, --udp              PORT means UDP; with -U a Unix datagram socket\n"
    "  -U, --unixsock         the argument is a Unix socket path\n"
    "  -4 / -6                use IPv4 / IPv6 only\n"
    "      --ssl              HOST PORT (or a bare PORT) means tls:// (as ncat --ssl).\n"
    "                         TLS runs over TCP only: --ssl or a TLS option with\n"
    "                         -u, -U or a non-tls:// address is refused (no DTLS)\n"
    "  -v, --verbose          connection events (and child exit codes) on stderr\n"
    "      --binary           ws://: each read of stdin is a binary message; messages\n"
    "                         received are written as they are (no newline)\n"
    "      --ping SECS        ws://: ping a peer after SECS without input; a peer\n"
    "                         silent SECS more is dead\n"
    "      --subprotocol NAME ws://: speak NAME (repeatable, best first)\n"
    "      --origin URL       ws://: accept only this Origin (repeatable; 403 for\n"
    "                         others; a client sending none passes)\n"
    "      --proxy-type TYPE  be a proxy: http (CONNECT, and GET/POST/... to an\n"
    "                         absolute http:// URI forwarded, one request a\n"
    "                         connection) or socks5 (CONNECT; IPv4,\n"
    "                         IPv6 and names, resolved off the loop); --allow and\n"
    "                         --deny pick the clients; runs until SIGINT/SIGTERM\n"
    "      --proxy-auth USER:PASS  the proxy's clients must give these (SOCKS5\n"
    "                         username/password, HTTP Basic; else 407)\n"
    "  -h, --help             this help\n"
    "\n"
    "Exit status: 0 when the peer left normally (or stopped by SIGINT/SIGTERM),\n"
    "1 on a runtime error (cannot listen, the peer reset, idle timeout without\n"
    "-k, out of memory), 2 on a wrong argument (unknown option, conflicting\n"
    "options such as -u --ssl, bad address or CIDR, an -e program that does\n"
    "not exist).\n";

/* A new connection, before its handshake (tls://): its endpoint is its
 * data and, until the handshake ends, the session keeps it for teardown. */
static int accepted(const cli_acceptor *a, csock_stream *s)
{
    nc_endpoint *ep = a->data;
    csock_stream_set_data(s, ep);
    if (!a->tls) return 0;
    int rc = nc_handshake_add(ep->c, s);
    if (rc == 0) return 0;
    if (ep->c->o->verbose) cli_warn("TLS: %s", csock_strerror(rc));
    csock_stream_close(s, NULL);
    return -1;
}

/* The peer joins the session (tls://: once its handshake is done; a failed
 * or stalled one costs only that connection, and csock closes it). On a
 * ws:// endpoint the HTTP server takes it first: the upgrade makes the peer. */
static void on_ready(csock_stream *s, int status)
{
    nc_endpoint *ep = csock_stream_data(s);
    nc_ctx *c = ep->c;
    char peer[CLI_ADDR_TEXT] = "?";
    if (ep->acceptor.tls) nc_handshake_done(c, s, peer, sizeof peer);
    if (status < 0) {
        if (c->o->verbose) cli_log_handshake(s, status, peer);
        return;
    }
    if (ep->http) {
        int rc = csock_http_server_accept(ep->http, s); /* closed on failure */
        if (rc < 0 && c->o->verbose) cli_warn("HTTP: %s", csock_strerror(rc));
        return;
    }
    nc_peer_add_stream(c, s, 1);
    if (!c->o->keep_open && c->served) nc_close_listeners(c); /* one peer, as in nc */
}

/* The address line: always when the port was chosen by the kernel (the
 * caller must learn it), else only with -v; serve chat: always, on stdout. */
static void announce(const nc_ctx *c, const nc_endpoint *ep, const csock_addr *asked,
                     const csock_addr *bound)
{
    int ip = bound->sa.ss_family != AF_UNIX;
    csock_addr shown = *bound; /* the socket's address says tcp: peers must speak TLS */
    if (asked->scheme == CSOCK_TLS) shown.scheme = CSOCK_TLS;
    FILE *f = c->o->serve ? stdout : stderr;
    if (!c->o->serve && !c->o->verbose && !(ip && csock_addr_port(asked) == 0)) return;
    if (ep && ep->http)
        cli_print_ws_listening(f, bound, asked->scheme == CSOCK_TLS, ep->path);
    else
        cli_print_listening(f, &shown);
}

/* ADDR as a socket address (a ws:// one: its TCP or TLS part, and its path
 * into ep->path; an inherited socket: *fd, and only the scheme); checks the
 * options that go with it. Returns 1 for ws. */
static int endpoint_addr(nc_ctx *c, nc_endpoint *ep, const char *target, csock_addr *addr, int *fd)
{
    const nc_opts *o = c->o;
    int ws = cli_ws_scheme(target), tls = 0;
    if (ws || !o->serve) nc_check_ws(o, ws, target); /* serve chat: see check_endpoints */
    *fd = -1;
    if (!ws && cli_inherited_fds(target, fd, 1, &tls) > 0)
        *addr = (csock_addr){.scheme = tls ? CSOCK_TLS : CSOCK_TCP};
    else if (ws)
        cli_ws_listen_addr(target, o->family | CSOCK_ADDR_PASSIVE, addr, ep->path);
    else
        cli_addr(target, o->family | CSOCK_ADDR_PASSIVE, addr);
    if (c->neps > 1 && !csock_addr_is_stream(addr))
        cli_die(CLI_USAGE, "serve chat: %s: datagram addresses serve alone", target);
    if (addr->scheme == CSOCK_TLS && !c->tls) c->tls = cli_tls_server_ctx(&o->tls);
    return ws;
}

static void open_stream_endpoint(nc_ctx *c, nc_endpoint *ep, const csock_addr *addr,
                                 const char *target, int ws, int fd)
{
    /* -m is counted by the relay, so it can log; -6: IPv6 only, else [::]
     * takes IPv4 too; --proxy-protocol, --proxy-timeout */
    csock_listen_opts lo = c->o->deploy_lo;
    lo.v6only = (c->o->family & CSOCK_ADDR_IPV6) != 0;
    ep->c = c;
    ep->acceptor = (cli_acceptor){.tls = addr->scheme == CSOCK_TLS ? c->tls : NULL,
                                  .verbose = c->o->verbose, .accepted = accepted,
                                  .ready = on_ready, .data = ep};
    csock_addr tcp = *addr; /* csock_listen is the TCP part: TLS is ours (cli_on_accept) */
    if (tcp.scheme == CSOCK_TLS) tcp.scheme = CSOCK_TCP;
    int rc = ws ? nc_ws_endpoint(ep) : 0;
    if (rc == 0 && fd >= 0) rc = csock_listen_fd(c->loop, fd, &lo, cli_on_accept, &ep->acceptor, &ep->listener);
    else if (rc == 0) rc = csock_listen(c->loop, &tcp, &lo, cli_on_accept, &ep->acceptor, &ep->listener);
    csock_addr bound;
    if (rc == 0) rc = csock_listener_addr(ep->listener, &bound);
    if (rc < 0) cli_die(CLI_ERR, "listen %s: %s", target, csock_strerror(rc));
    announce(c, ep, addr, &bound);
}

static void open_endpoint(nc_ctx *c, nc_endpoint *ep, const char *target)
{
    csock_addr addr, bound;
    int fd;
    int ws = endpoint_addr(c, ep, target, &addr, &fd);
    if (csock_addr_is_stream(&addr)) return open_stream_endpoint(c, ep, &addr, target, ws, fd);
    csock_dgram *d;
    int rc = csock_dgram_new(c->loop, &addr, NULL, &d);
    if (rc == 0) rc = nc_dgram_attach(c, d, NULL);
    if (rc == 0) rc = csock_dgram_local(d, &bound);
    if (rc < 0) cli_die(CLI_ERR, "listen %s: %s", target, csock_strerror(rc));
    announce(c, NULL, &addr, &bound);
}

/* The address text of endpoint i. */
static void target_of(const nc_opts *o, size_t i, char *out, size_t size)
{
    if (o->naddrs)
        nc_addr_text(o, o->addrs[i], NULL, 1, out, size);
    else
        nc_target_text(o, 1, out, size);
}

/* Before anything opens: TLS options with no TLS endpoint would leave the
 * data in plaintext, TLS does not run over UDP, and WebSocket options need a
 * ws:// endpoint (serve chat: one of them). */
static void check_endpoints(const nc_opts *o, size_t n)
{
    char target[NC_TARGET_TEXT] = "";
    int any = 0, any_ws = 0;
    for (size_t i = 0; i < n; i++) {
        target_of(o, i, target, sizeof target);
        int ws = cli_ws_scheme(target), fd, tls = 0;
        csock_addr a = {.scheme = CSOCK_TCP};
        if (!ws && cli_inherited_fds(target, &fd, 1, &tls) > 0) a.scheme = tls ? CSOCK_TLS : CSOCK_TCP;
        else if (!ws) cli_addr(target, o->family | CSOCK_ADDR_PASSIVE, &a);
        if (o->deploy_lo.proxy_protocol && !ws && !csock_addr_is_stream(&a))
            cli_die(CLI_USAGE, "%s: --proxy-protocol with %s: PROXY headers come on stream sockets",
                    o->serve ? "serve chat" : "listen", target);
        if (!ws && a.scheme == CSOCK_TLS) nc_check_tls(o, &a, target);
        any |= ws == 2 || (!ws && a.scheme == CSOCK_TLS);
        any_ws |= ws != 0;
    }
    if (o->serve && !any_ws) nc_check_ws(o, 0, target); /* WebSocket options, no ws:// */
    if (any || (!o->ssl && !o->tls.given)) return;
    cli_die(CLI_USAGE, "%s: --%s needs a tls:// address (or wss://; TLS runs over TCP only: no "
                       "DTLS, no TLS over Unix sockets); %s would carry plaintext",
            o->serve ? "serve chat" : "listen", o->ssl ? "ssl" : o->tls.first, target);
}

static int run_listen(nc_opts o)
{
    char target[NC_TARGET_TEXT];
    size_t n = o.naddrs ? (size_t)o.naddrs : 1;
    check_endpoints(&o, n);
    nc_ctx c;
    nc_ctx_init(&c, &o);
    c.eps = calloc(n, sizeof *c.eps);
    if (!c.eps) cli_die(CLI_ERR, "out of memory");
    c.neps = n;
    for (size_t i = 0; i < n; i++) {
        target_of(&o, i, target, sizeof target);
        open_endpoint(&c, &c.eps[i], target);
    }
    cli_inherited_done(); /* -e/-c children must not take systemd's sockets for theirs */
    cli_sd_ready();
    if (o.keep_open) nc_stdin_start(&c);
    int rc = nc_ctx_run_sd(&c);
    csock_tls_ctx_free(c.tls);
    nc_opts_free(&o);
    return rc;
}

int cli_listen(int argc, char **argv)
{
    nc_opts o;
    nc_parse_args(argc, argv, 1, listen_usage, &o);
    nc_proxy_check(&o, "");
    if (o.proxy_type && (o.deploy_lo.proxy_protocol || nc_inherited_form(o.target[0])))
        cli_die(CLI_USAGE, "listen: --proxy-type takes neither --proxy-protocol nor fd:/systemd: addresses");
    if (o.proxy_type) { /* a proxy server, not a relay to stdin/stdout */
        char target[NC_TARGET_TEXT];
        nc_target_text(&o, 1, target, sizeof target);
        int rc = nc_proxy_serve(&o, target);
        nc_opts_free(&o);
        return rc;
    }
    return run_listen(o);
}

static const char chat_usage[] =
    "usage: csock serve chat ADDR... [options]\n"
    "\n"
    "One chat room on every ADDR (tcp://, tls://, unix:, HOST:PORT,\n"
    "ws://HOST:PORT/PATH, wss://...): each line a client sends goes to every other\n"
    "client tagged with\n"
    "its sender, as ncat --chat does (\"<user1> hello\"), with \"<announce>\"\n"
    "lines as clients come and go. On ws:// a message is a line, and each line\n"
    "for the client is a text message; a GET of PATH without Upgrade gets the\n"
    "chat page, so a browser joins. \"/nick NAME\" (1-32 of A-Z a-z 0-9 _ -)\n"
    "renames a client: \"<announce> <user1> is now known as <NAME>.\".\n"
    "Prints \"listening ADDR\" on stdout for each ADDR once ready. It is `csock\n"
    "listen -k --chat --recv-only` on every ADDR, so the options of `csock listen\n"
    "--help` apply (-m, -i, --allow/--deny, -v, --ping, the TLS options).\n"
    "\n"
    "Try:  csock serve chat tcp://127.0.0.1:7001 ws://127.0.0.1:8080/\n"
    "      then a browser at http://127.0.0.1:8080/ and nc 127.0.0.1 7001\n";

/* csock serve chat: the listen relay in chat mode, without stdin. */
int cli_serve_chat(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(chat_usage, stdout);
            return CLI_OK;
        }
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args) cli_die(CLI_ERR, "out of memory");
    args[0] = "serve chat";
    args[1] = "-k";
    args[2] = "--chat";
    args[3] = "--recv-only";
    for (int i = 1; i < argc; i++) args[i + 3] = argv[i];
    nc_opts o;
    nc_parse_args(argc + 3, args, 2, chat_usage, &o);
    nc_proxy_check(&o, "");
    int rc = run_listen(o);
    free(args);
    return rc;
}
