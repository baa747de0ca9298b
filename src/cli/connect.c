/* csock connect ADDR | HOST PORT: stdin to the peer, the peer to stdout (or
 * a program's stdin/stdout with -e/-c). The relay itself is in nc_*.c;
 * this file sets up the connection, and runs -z port scans. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/netcat.h"

#define SCAN_PARALLEL 64     /* connects in flight during -z */
#define SCAN_TIMEOUT_MS 2000 /* -z without -w */

static const char connect_usage[] =
    "usage: csock connect [options] ADDR\n"
    "       csock connect [options] HOST PORT\n"
    "       csock connect -z [options] HOST PORTS\n"
    "\n"
    "Connect to ADDR (tcp://HOST:PORT, tls://HOST:PORT, udp://HOST:PORT,\n"
    "unix:PATH, unixgram:PATH, HOST:PORT, ws://HOST:PORT/PATH, wss://...).\n"
    "Standard input goes to the peer and what the peer sends goes to standard\n"
    "output. At the end of input the sending side is shut down and the peer's\n"
    "answer is still printed until the peer closes. Over UDP each input line is\n"
    "one datagram.\n"
    "\n"
    "WebSocket (ws://, wss://): each input line is a text message (its line\n"
    "ending stripped); each message received is written followed by a newline.\n"
    "At the end of input a close (1000) is sent and csock waits for the peer's\n"
    "(5 s at most). The peer's close ends csock: status 0 for codes 1000 and 1001,\n"
    "else 1 with the code and reason on stderr. wss:// takes the TLS options.\n"
    "\n"
    "Options:\n"
    "  -u, --udp              HOST PORT (or HOST:PORT) means UDP; with -U a Unix\n"
    "                         datagram socket\n"
    "  -U, --unixsock         ADDR is a Unix socket path\n"
    "  -4 / -6                use IPv4 / IPv6 only\n"
    "      --ssl              HOST PORT (or HOST:PORT) means tls:// (as ncat --ssl).\n"
    "                         TLS runs over TCP only: --ssl or a TLS option with\n"
    "                         -u, -U or a non-tls:// address is refused (no DTLS)\n"
    "  -w, --wait SECS        give up connecting after SECS (with --proxy: the\n"
    "                         connection to the proxy and the tunnel's set-up)\n"
    "  -i, --idle-timeout SECS  fail when nothing was sent or received for SECS\n"
    "  -q, --quit-after SECS  datagrams: after end of input, exit once no answer\n"
    "                         came for SECS (default 1)\n"
    "  -e, --exec PROG        run PROG (split on blanks, no shell) wired to the peer\n"
    "  -c, --sh-exec CMD      run CMD with /bin/sh -c, wired to the peer\n"
    "  -C, --crlf             send each LF from stdin, and each LF an -e/-c child\n"
    "                         writes, as CRLF (as ncat)\n"
    "  -x, --hex-dump FILE    dump all data, both directions, to FILE ('-': stderr)\n"
    "                         in ncat's format: offset, 16 bytes in hex, as text\n"
    "      --send-only        only send; ignore the peer's data; quit at end of input\n"
    "      --recv-only        only receive; do not read stdin\n"
    "  -z                     zero-I/O scan: PORTS is N, N-M or a comma list; print\n"
    "                         the open ports, one a line\n"
    "  -v, --verbose          report the connection (and closed ports with -z) on\n"
    "                         stderr; ws://: the handshake's lines too\n"
    "      --binary           ws://: each read of stdin is a binary message; messages\n"
    "                         received are written as they are (no newline)\n"
    "      --ping SECS        ws://: ping after SECS without input; a peer silent\n"
    "                         SECS more is dead\n"
    "      --header 'N: V'    ws://: add a field to the handshake (repeatable)\n"
    "      --subprotocol NAME ws://: offer NAME (repeatable; -v shows the chosen one)\n"
    "      --origin URL       ws://: send Origin: URL, as a browser does\n"
    "      --proxy HOST[:PORT]  connect through a proxy (TCP and tls:// targets; TLS\n"
    "                         runs to the target through the tunnel)\n"
    "      --proxy-type TYPE  socks4, socks4a, socks5 or http (default http: HTTP\n"
    "                         CONNECT); default port 1080 for SOCKS, 3128 for http\n"
    "      --proxy-auth USER[:PASS]  SOCKS5 username/password, HTTP Basic (USER:PASS);\n"
    "                         SOCKS4/4a: USER is the user id\n"
    "      --proxy-dns WHERE  resolve the target's name: local, remote (by the proxy;\n"
    "                         the default, local for socks4), both (here, else the\n"
    "                         proxy) or none (IP addresses only)\n"
    "  -h, --help             this help\n"
    "\n"
    "Exit status: 0 when the exchange ended normally (or, with -z, some port is\n"
    "open; or stopped by SIGINT/SIGTERM), 1 on a connection or I/O error (refused,\n"
    "timed out, reset, TLS handshake failed, idle timeout, out of memory, a\n"
    "refused WebSocket handshake, a close code other than 1000/1001, a proxy's\n"
    "refusal; with -z: no port open), 2 on a wrong argument (unknown option, conflicting\n"
    "options such as -u --ssl, bad address or port range, an -e program that\n"
    "does not exist).\n";

/* ---- -z: port scan ---------------------------------------------------------- */

typedef struct scan {
    csock_loop *loop;
    csock_addr base; /* the host; the port is set per probe */
    const nc_opts *o;
    int *ports;          /* every port to try, in order */
    unsigned char *open; /* open[i]: ports[i] accepted */
    size_t n, next, done;
} scan;

typedef struct probe {
    scan *sc;
    size_t index;
} probe;

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Ascending and each port once, so the output reads like a sorted set. */
static void sort_unique(scan *sc)
{
    qsort(sc->ports, sc->n, sizeof *sc->ports, cmp_int);
    size_t k = 0;
    for (size_t i = 0; i < sc->n; i++)
        if (!k || sc->ports[k - 1] != sc->ports[i]) sc->ports[k++] = sc->ports[i];
    sc->n = k;
}

/* "80", "8000-8100", "22,80,8000-8010": dies on anything else. */
static void parse_ports(const char *text, scan *sc)
{
    char *copy = strdup(text), *save = NULL;
    if (!copy) cli_die(CLI_ERR, "out of memory");
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok, '-');
        if (dash) *dash = '\0';
        unsigned long lo = cli_ulong("-z port", tok, UINT16_MAX),
                      hi = dash ? cli_ulong("-z port", dash + 1, UINT16_MAX) : lo;
        if (lo == 0) cli_die(CLI_USAGE, "-z: port 0 cannot be scanned");
        if (hi < lo) cli_die(CLI_USAGE, "-z: port range '%lu-%lu' is upside down", lo, hi);
        sc->ports = realloc(sc->ports, (sc->n + (hi - lo + 1)) * sizeof *sc->ports);
        if (!sc->ports) cli_die(CLI_ERR, "out of memory");
        for (unsigned long p = lo; p <= hi; p++)
            sc->ports[sc->n++] = (int)p;
    }
    free(copy);
    if (!sc->n) cli_die(CLI_USAGE, "-z: no ports in '%s'", text);
    sort_unique(sc);
}

static void scan_next(scan *sc);

static void on_probe(csock_stream *s, int status)
{
    probe *pr = csock_stream_data(s);
    scan *sc = pr->sc;
    if (status == 0) {
        sc->open[pr->index] = 1;
        csock_stream_close(s, NULL);
    } else if (sc->o->verbose) {
        cli_warn("port %d closed: %s", sc->ports[pr->index], csock_strerror(status));
    }
    free(pr);
    sc->done++;
    scan_next(sc);
}

/* Keep SCAN_PARALLEL probes in flight until every port was tried. */
static void scan_next(scan *sc)
{
    while (sc->next < sc->n && sc->next - sc->done < SCAN_PARALLEL) {
        size_t i = sc->next++;
        probe *pr = malloc(sizeof *pr);
        if (!pr) cli_die(CLI_ERR, "out of memory");
        *pr = (probe){sc, i};
        csock_addr a = sc->base;
        csock_addr_set_port(&a, sc->ports[i]);
        csock_connect_opts co = {.timeout_ms = sc->o->wait_ms ? sc->o->wait_ms : SCAN_TIMEOUT_MS};
        csock_stream *s;
        int rc = csock_connect(sc->loop, &a, &co, on_probe, pr, &s);
        if (rc < 0) { /* e.g. out of descriptors: count it as closed */
            if (sc->o->verbose) cli_warn("port %d: %s", sc->ports[i], csock_strerror(rc));
            free(pr);
            sc->done++;
        }
    }
    if (sc->done == sc->n) csock_loop_stop(sc->loop);
}

static int run_scan(const nc_opts *o)
{
    if (o->ntarget != 2) cli_die(CLI_USAGE, "connect -z: expected HOST PORTS");
    scan sc = {.o = o};
    parse_ports(o->target[1], &sc);
    char host[NC_TARGET_TEXT];
    const char *h = o->target[0];
    int v6 = strchr(h, ':') != NULL && h[0] != '[';
    snprintf(host, sizeof host, "tcp://%s%s%s:0", v6 ? "[" : "", h, v6 ? "]" : "");
    cli_addr(host, o->family, &sc.base);
    sc.open = calloc(sc.n, 1);
    if (!sc.open) cli_die(CLI_ERR, "out of memory");
    if (o->udp) { /* -z -u: nc_scan_udp.c probes every port, as ncat */
        nc_scan_udp(o, &sc.base, sc.ports, sc.n, sc.open, o->wait_ms ? o->wait_ms : SCAN_TIMEOUT_MS);
        sc.next = sc.done = sc.n;
    }
    cli_raise_nofile();
    int rc = csock_loop_new(NULL, &sc.loop);
    if (rc < 0) cli_die_loop("event loop", rc);
    scan_next(&sc);
    if (sc.done < sc.n) csock_loop_run(sc.loop, CSOCK_RUN_DEFAULT);
    int any = 0;
    for (size_t i = 0; i < sc.n; i++) {
        if (!sc.open[i]) continue;
        printf("%d\n", sc.ports[i]);
        any = 1;
    }
    fflush(stdout);
    /* Every probe has ended; the open ports' streams are closing: finish. */
    while (csock_loop_run(sc.loop, CSOCK_RUN_DEFAULT) > 0) {
    }
    csock_loop_free(sc.loop);
    free(sc.ports);
    free(sc.open);
    return any ? CLI_OK : CLI_ERR;
}

/* ---- a connection ------------------------------------------------------------ */

static void on_connected(csock_stream *s, int status)
{
    nc_ctx *c = csock_stream_data(s);
    char target[NC_TARGET_TEXT];
    c->connecting = NULL; /* from here a peer, or closed by csock */
    nc_target_text(c->o, 0, target, sizeof target);
    if (status < 0) {
        /* csock closes the stream after this callback. */
        char why[CLI_REASON_TEXT];
        cli_warn("connect %s: %s", target, cli_tls_reason(s, status, why, sizeof why));
        return nc_finish(c, CLI_ERR);
    }
    if (c->tls && c->o->verbose) {
        const char *alpn = csock_tls_alpn(s);
        cli_warn("%s %s%s%s", csock_tls_version(s), csock_tls_cipher(s), alpn ? " alpn " : "",
                 alpn ? alpn : "");
    }
    nc_peer_add_stream(c, s, 0);
}

/* ---- a name: resolved off the loop, IPv6 and IPv4 raced ---------------------
 * csock_dial_start() resolves in a thread and races the addresses (Happy
 * Eyeballs), so a slow DNS server stalls nothing, and a host whose IPv6
 * address is dead still connects over IPv4 at once. TLS goes on the winner
 * here (csock_tls_wrap), so a failed handshake is reported with its reason
 * as on the direct path. */

typedef struct dialer {
    nc_ctx *c;
    csock_dial *dial;
    char target[NC_TARGET_TEXT];
    char host[NC_TARGET_TEXT]; /* the name to verify (tls://) */
} dialer;

static void on_dialed(csock_dial *d, int status, csock_stream *s)
{
    dialer *dl = csock_dial_data(d);
    nc_ctx *c = dl->c;
    dl->dial = NULL;
    c->dialing = NULL;
    if (status == 0 && c->stopped) { /* stopped in this very iteration: the session is over */
        csock_stream_close(s, NULL);
        return;
    }
    if (status < 0) {
        cli_warn("connect %s: %s", dl->target, csock_strerror(status));
        return nc_finish(c, CLI_ERR);
    }
    csock_stream_set_data(s, c);
    if (!c->tls) return on_connected(s, 0);
    c->connecting = s;
    int rc = csock_tls_wrap(s, c->tls, dl->host, on_connected);
    if (rc < 0) {
        c->connecting = NULL;
        csock_stream_close(s, NULL);
        cli_warn("connect %s: %s", dl->target, csock_strerror(rc));
        nc_finish(c, CLI_ERR);
    }
}

/* A tcp:// or tls:// target whose host is a name (not an IP address), and
 * no -n, -s or -p (a source is bound before connecting, to the resolved
 * family: nc_connect_from). Fills dl's texts; the dial itself is TCP. */
static int is_dialable_name(const nc_opts *o, const char *target, dialer *dl, char *tcp, size_t size)
{
    csock_addr a;
    if (o->source || o->source_port || (o->family & CSOCK_ADDR_NUMERIC)) return 0;
    if (csock_addr_parse(target, o->family | CSOCK_ADDR_NUMERIC, &a) != CSOCK_ENONAME) return 0;
    const char *rest = strstr(target, "://");
    if (!rest || (strncasecmp(target, "tcp://", 6) && strncasecmp(target, "tls://", 6))) return 0;
    rest += 3;
    const char *colon = strrchr(rest, ':');
    if (!colon) return 0;
    snprintf(dl->target, sizeof dl->target, "%s", target);
    snprintf(dl->host, sizeof dl->host, "%.*s", (int)(colon - rest), rest);
    snprintf(tcp, size, "tcp://%s", rest);
    return 1;
}

static int connect_name(nc_opts *o, dialer *dl, const char *tcp)
{
    csock_addr a = {.scheme = strncasecmp(dl->target, "tls://", 6) ? CSOCK_TCP : CSOCK_TLS};
    nc_check_tls(o, &a, dl->target);
    nc_ctx c;
    nc_ctx_init(&c, o);
    dl->c = &c;
    if (a.scheme == CSOCK_TLS) c.tls = cli_tls_client_ctx(&o->tls);
    csock_dial_opts dopts = {.timeout_ms = o->wait_ms,
                             .flags = o->family & (CSOCK_ADDR_IPV4 | CSOCK_ADDR_IPV6)};
    int rc = csock_dial_start(c.loop, tcp, &dopts, on_dialed, dl, &dl->dial);
    if (rc < 0) cli_die(CLI_ERR, "connect %s: %s", dl->target, csock_strerror(rc));
    c.dialing = dl->dial; /* a SIGINT before the answer: teardown cancels it */
    rc = nc_ctx_run(&c);
    csock_tls_ctx_free(c.tls);
    nc_opts_free(o);
    return rc;
}

/* connect ws:// or wss://: one WebSocket peer, lines <-> messages. */
static int connect_ws(nc_opts *o, const char *url)
{
    nc_ctx c;
    nc_ctx_init(&c, o);
    if (cli_ws_scheme(url) == 2) c.tls = cli_tls_client_ctx(&o->tls);
    int rc = nc_ws_connect(&c, url);
    if (rc == -EINVAL || rc == CSOCK_EBADADDR || rc == CSOCK_ENOPORT || rc == CSOCK_EBADPORT ||
        rc == CSOCK_EBRACKETS)
        cli_die(CLI_USAGE, "bad address '%s': %s; expected ws://HOST[:PORT][/PATH] or wss://...",
                url, csock_strerror(rc));
    if (rc < 0) cli_die(CLI_ERR, "connect %s: %s", url, csock_strerror(rc));
    rc = nc_ctx_run(&c);
    csock_tls_ctx_free(c.tls);
    nc_opts_free(o);
    return rc;
}

/* connect --proxy: the tunnel first (nc_proxy.c), then the session as usual. */
static int connect_proxy(nc_opts *o, const char *target)
{
    csock_addr a = {.scheme = strncasecmp(target, "tls://", 6) ? CSOCK_TCP : CSOCK_TLS};
    nc_check_tls(o, &a, target);
    nc_ctx c;
    nc_ctx_init(&c, o);
    if (a.scheme == CSOCK_TLS) c.tls = cli_tls_client_ctx(&o->tls);
    int rc = nc_proxy_connect(&c, target, on_connected);
    if (rc < 0) cli_die(CLI_ERR, "connect %s via --proxy: %s", target, csock_strerror(rc));
    rc = nc_ctx_run(&c);
    csock_tls_ctx_free(c.tls);
    nc_opts_free(o);
    return rc;
}

int cli_connect(int argc, char **argv)
{
    nc_opts o;
    nc_parse_args(argc, argv, 0, connect_usage, &o);
    if (o.zero_io) {
        /* A scan goes direct: the proxy checks refuse -z with --proxy (and
         * proxy options without it) before they would look at a target. */
        nc_proxy_check(&o, "");
        int st = run_scan(&o);
        nc_opts_free(&o);
        return st;
    }
    char target[NC_TARGET_TEXT];
    nc_target_text(&o, 0, target, sizeof target);
    nc_proxy_check(&o, target);
    if (o.proxy && (o.source || o.source_port))
        cli_die(CLI_USAGE, "-s/-p and --proxy: a source address through a proxy is not supported");
    if (o.proxy) return connect_proxy(&o, target);
    int ws = cli_ws_scheme(target);
    nc_check_ws(&o, ws, target);
    if (ws) return connect_ws(&o, target);
    dialer dl = {0};
    char tcp[NC_TARGET_TEXT + 8];
    if (is_dialable_name(&o, target, &dl, tcp, sizeof tcp)) return connect_name(&o, &dl, tcp);
    csock_addr addr;
    cli_addr(target, o.family, &addr);
    nc_check_tls(&o, &addr, target);

    nc_ctx c;
    nc_ctx_init(&c, &o);
    if (addr.scheme == CSOCK_TLS) c.tls = cli_tls_client_ctx(&o.tls);
    int rc;
    csock_addr src_addr; /* -s/-p: the source, or NULL */
    const csock_addr *src = nc_source(&o, target, &addr, &src_addr);
    if (csock_addr_is_stream(&addr)) {
        csock_connect_opts co = {.timeout_ms = o.wait_ms};
        csock_stream *s;
        rc = src     ? nc_connect_from(&c, &addr, src, on_connected, &s) /* bound first */
             : c.tls ? csock_tls_connect(c.loop, &addr, c.tls, &co, on_connected, &c, &s)
                     : csock_connect(c.loop, &addr, &co, on_connected, &c, &s);
        if (rc == 0) c.connecting = s;
    } else {
        csock_dgram *d;
        rc = csock_dgram_new(c.loop, src, &addr, &d);
        if (rc == 0) rc = nc_dgram_attach(&c, d, &addr);
    }
    if (rc < 0) cli_die(CLI_ERR, "connect %s: %s", target, csock_strerror(rc));
    rc = nc_ctx_run(&c);
    csock_tls_ctx_free(c.tls);
    nc_opts_free(&o);
    return rc;
}
