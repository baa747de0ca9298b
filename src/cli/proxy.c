/* csock proxy LISTEN... --to BACKEND...: accept on every LISTEN address,
 * connect each client to a backend, relay both ways. One loop on one
 * thread. SIGINT/SIGTERM drain: listeners close, relays finish (up to
 * --drain-timeout), then the process exits 0. */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/proxy_restart.h"
#include "cli/proxy_wsback.h"

static const char proxy_usage[] =
    "usage: csock proxy LISTEN... --to BACKEND... [options]\n"
    "\n"
    "Accept clients on every LISTEN address and relay each to a BACKEND, both\n"
    "ways, with half-close: what one side sends the other receives, and one\n"
    "side's EOF is passed on as a shutdown of the other's write side.\n"
    "For each LISTEN address one line goes to stdout once it is ready:\n"
    "  listening ADDR     (with the real port when 0 was asked for)\n"
    "\n"
    "LISTEN: tcp://HOST:PORT, unix:PATH, tls://HOST:PORT (TLS terminated here:\n"
    "  --cert, --key), fd:N or systemd:NAME (inherited sockets, tls+ before\n"
    "  either for TLS: see below), ws://HOST:PORT[/PATH] (each WebSocket message's bytes go\n"
    "  to the backend, the backend's bytes come back as binary messages: the\n"
    "  websockify job; tcp://, unix: or tls:// backends), wss://HOST:PORT[/PATH]\n"
    "  (the same over TLS: --cert, --key), udp://HOST:PORT\n"
    "  (udp:// backends only: a session per client address).\n"
    "BACKEND: tcp://HOST:PORT, unix:PATH, tls://HOST:PORT (TLS started here,\n"
    "  the certificate verified against HOST with the system CAs or --ca),\n"
    "  ws://HOST:PORT[/PATH] or wss://... (the client's bytes go as binary\n"
    "  messages, messages come back as bytes; not behind a ws:// listener),\n"
    "  udp://HOST:PORT. HOST may be a name: it is resolved without blocking\n"
    "  (again every 30 s), IPv6 and IPv4 raced (Happy Eyeballs).\n"
    "Between plain TCP or Unix sockets the bytes move with splice(2), never\n"
    "copied through the proxy.\n"
    "\n"
    "Options:\n"
    "  --to BACKEND         a backend (repeat for several)\n"
    "  --balance HOW        roundrobin (default), leastconn (fewest relays), or\n"
    "                       source (a hash of the client's IP address)\n"
    "  --check KIND         health checks: tcp (a connect) or http:/PATH (a GET\n"
    "                       answered 2xx or 3xx); a backend that fails --fall\n"
    "                       checks in a row is skipped until it passes --rise.\n"
    "                       Without checks, a backend that refuses --fall\n"
    "                       clients in a row is skipped for --check-interval\n"
    "  --check-interval SECS  between checks (default 2)\n"
    "  --rise N             checks passed to be up again (default 2)\n"
    "  --fall N             failures to be down (default 3)\n"
    "  -m, --max-conns N    at most N relays at once; more clients are closed\n"
    "  -i, --idle SECS      close a relay with no byte either way for SECS\n"
    "  --connect-timeout SECS  give up a backend's connect (default 10); the\n"
    "                       client then tries the next backend\n"
    "  --udp-idle SECS      udp: end a client's session after SECS (default 60)\n"
    "  --drain-timeout SECS  on SIGINT/SIGTERM, stop accepting, let relays\n"
    "                       finish, close what is left after SECS (default 10);\n"
    "                       a second signal closes everything at once (a\n"
    "                       ws:// backend gets a close 1001 and 2 s to answer)\n"
    "  --no-splice          relay through user space (the stream API) even\n"
    "                       between plain sockets\n"
    "  --send-proxy         start each backend connection with a PROXY protocol\n"
    "                       v1 header naming the client (HAProxy's send-proxy;\n"
    "                       behind --proxy-protocol, the client the header named)\n"
    "  --send-proxy-v2      the same in v2 (binary); to a tls:// backend the\n"
    "                       header goes first, then TLS (as HAProxy sends it).\n"
    "                       --check http: requests start with a LOCAL header\n"
    "  -v, --verbose        log each relay (both ends) and its bytes each way\n"
    "                       at the end, failed connects, backends up and down\n"
    "  -h, --help           this help\n"
    "\n"
    "Zero-downtime restart: on SIGUSR2 csock starts a new copy of itself (the\n"
    "binary now at the same path, the same arguments) and hands it the\n"
    "listening sockets (LISTEN_FDS); once it listens this process drains as on\n"
    "SIGTERM. Nothing waiting in an accept queue is refused. Not with ws://,\n"
    "wss:// or udp:// listeners (their sockets are not handed over).\n"
    "\n"
    "Exit status: 0 after a signal-driven stop, 1 on a runtime error (port in\n"
    "use), 2 on a wrong argument.\n";

#define SWEEP_MS 250 /* the timeouts' granularity */

enum {
    OPT_TO = 0x2000, OPT_BALANCE, OPT_CHECK, OPT_CHECK_INTERVAL, OPT_RISE, OPT_FALL,
    OPT_CONNECT_TIMEOUT, OPT_DRAIN_TIMEOUT, OPT_UDP_IDLE, OPT_NO_SPLICE, OPT_SEND_PROXY,
    OPT_SEND_PROXY_V2,
};

/* ---- the end ---- */

static void finish(proxy *px) { csock_loop_stop(px->loop); }

void proxy_relay_gone(proxy *px)
{
    if (px->draining && px->nrelays == 0) finish(px);
}

static void close_listeners(proxy *px)
{
    for (unsigned i = 0; i < px->nlisteners; i++)
        if (px->listeners[i]) csock_listener_close(px->listeners[i], NULL);
    px->nlisteners = 0;
    proxy_ws_stop(px);
    proxy_udp_stop(px);
}

/* The drain is over (its timeout, a second signal): stream relays close
 * now; relays to ws:// backends send a close 1001 first and get up to
 * PROXY_WS_GOODBYE_MS for the backend's answer (the last of them gone,
 * proxy_relay_gone stops the loop). A third signal, or the goodbye's
 * timeout, stops at once. */
static void on_goodbye_timeout(csock_timer *t) { finish(csock_timer_data(t)); }

static void stop_relays(proxy *px)
{
    if (px->stopping) return finish(px);
    px->stopping = 1;
    if (px->verbose) cli_warn("drain: closing %u relay(s) still open", px->nrelays);
    relay_close_all(px);
    if (!proxy_wsback_close_all(px)) return finish(px);
    if (!px->drain_timer && csock_timer_new(px->loop, &px->drain_timer) < 0) return finish(px);
    csock_timer_set_data(px->drain_timer, px);
    csock_timer_start(px->drain_timer, on_goodbye_timeout, PROXY_WS_GOODBYE_MS, 0);
}

static void on_drain_timeout(csock_timer *t) { stop_relays(csock_timer_data(t)); }

/* Stop accepting and let the relays finish: on SIGINT/SIGTERM, or once a
 * new process took the listeners over (a restart). */
static void drain(proxy_restart *pr)
{
    proxy *px = pr->px;
    if (px->draining) return;
    px->draining = 1;
    cli_sd_loop_drain(&px->sd, 0);
    proxy_restart_drain(pr);
    if (px->verbose) cli_warn("draining: %u relay(s) open", px->nrelays);
    close_listeners(px);
    if (px->nrelays == 0) return finish(px);
    if (csock_timer_new(px->loop, &px->drain_timer) < 0) return finish(px);
    csock_timer_set_data(px->drain_timer, px);
    csock_timer_start(px->drain_timer, on_drain_timeout, px->drain_ms, 0);
}

static void on_signal(csock_signal *s, int signum)
{
    proxy_restart *pr = csock_signal_data(s);
    if (pr->px->draining) return stop_relays(pr->px); /* a second signal: now */
    drain(pr);
}

/* ---- accepting ---- */

static int over_limit(proxy *px, csock_stream *s)
{
    if (!px->max_conns || px->nrelays < px->max_conns) return 0;
    if (px->verbose) {
        char peer[CLI_ADDR_TEXT];
        cli_warn("refused %s: %u relays already (-m)", cli_peer_text(s, peer, sizeof peer),
                 px->nrelays);
    }
    csock_stream_close(s, NULL);
    return 1;
}

static void client_ready(csock_stream *s, int status)
{
    proxy *px = csock_stream_data(s);
    char peer[CLI_ADDR_TEXT] = "";
    if (status < 0) { /* a failed handshake: csock closes s */
        if (px->verbose) cli_log_handshake(s, status, cli_peer_text(s, peer, sizeof peer));
        return;
    }
    if (px->draining || over_limit(px, s)) {
        if (px->draining) csock_stream_close(s, NULL);
        return;
    }
    csock_addr pa;
    /* getpeername costs a syscall a connection: only when it is used. */
    int have = (px->balance == BALANCE_SOURCE || px->verbose) && csock_stream_peer(s, &pa) == 0;
    if (have) cli_addr_unmap(&pa);
    if (px->verbose) cli_peer_text(s, peer, sizeof peer);
    relay_start(px, s, peer, have ? &pa : NULL);
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    proxy *px = csock_listener_data(l);
    if (status < 0) {
        if (px->verbose) cli_log_accept_error(status);
        return;
    }
    csock_stream_set_data(s, px);
    client_ready(s, 0);
}

static void on_accept_tls(csock_listener *l, csock_stream *s, int status)
{
    proxy *px = csock_listener_data(l);
    if (status < 0) {
        if (px->verbose) cli_log_accept_error(status);
        return;
    }
    if (over_limit(px, s)) return;
    csock_stream_set_data(s, px);
    int rc = csock_tls_accept(s, px->tls_server, client_ready);
    if (rc < 0) {
        if (px->verbose) cli_warn("TLS: %s", csock_strerror(rc));
        csock_stream_close(s, NULL);
    }
}

static void add_listener(proxy *px, csock_listener *l, int tls)
{
    px->listeners[px->nlisteners++] = l;
    csock_addr bound;
    csock_listener_addr(l, &bound);
    if (tls) bound.scheme = CSOCK_TLS;
    cli_print_listening(stdout, &bound);
}

/* tcp://, tls://, unix:, or sockets passed in (fd:N, systemd:NAME). */
static void listen_stream(proxy *px, const char *text)
{
    int fds[CLI_MAX_ENDPOINTS], tls = 0;
    int n = cli_inherited_fds(text, fds, CLI_MAX_ENDPOINTS, &tls);
    if ((unsigned)n + px->nlisteners > CLI_MAX_ENDPOINTS)
        cli_die(CLI_USAGE, "proxy: at most %d listeners", CLI_MAX_ENDPOINTS);
    csock_listener *l;
    for (int i = 0; i < n; i++) {
        int rc = csock_listen_fd(px->loop, fds[i], &px->lo, tls ? on_accept_tls : on_accept, px, &l);
        if (rc < 0) cli_die(CLI_ERR, "listen %s (fd %d): %s", text, fds[i], csock_strerror(rc));
        add_listener(px, l, tls);
    }
    if (n) return;
    csock_addr a;
    cli_addr(text, CSOCK_ADDR_PASSIVE, &a);
    tls = a.scheme == CSOCK_TLS;
    if (tls) a.scheme = CSOCK_TCP;
    int rc = csock_listen(px->loop, &a, &px->lo, tls ? on_accept_tls : on_accept, px, &l);
    if (rc < 0) cli_die(CLI_ERR, "listen %s: %s", text, csock_strerror(rc));
    add_listener(px, l, tls);
}

/* ---- options ---- */

static int parse_balance(const char *text)
{
    if (!strcmp(text, "roundrobin")) return BALANCE_ROUNDROBIN;
    if (!strcmp(text, "leastconn")) return BALANCE_LEASTCONN;
    if (!strcmp(text, "source")) return BALANCE_SOURCE;
    cli_die(CLI_USAGE, "proxy: --balance: '%s' is not roundrobin, leastconn or source", text);
}

static void parse_check(proxy *px, const char *text)
{
    if (!strcmp(text, "tcp")) {
        px->check = CHECK_TCP;
        return;
    }
    if (!strncmp(text, "http:/", 6) && !strpbrk(text + 5, " \t\r\n")) {
        px->check = CHECK_HTTP;
        px->check_path = text + 5;
        return;
    }
    cli_die(CLI_USAGE, "proxy: --check: '%s' is not tcp or http:/PATH", text);
}

typedef enum { L_STREAM, L_WS, L_UDP } listen_kind;

static listen_kind kind_of(const char *text)
{
    if (cli_ws_scheme(text)) return L_WS;
    if (!strncasecmp(text, "udp://", 6)) return L_UDP;
    return L_STREAM;
}

/* Every address is checked before anything listens: a typo in the last
 * one must not leave the first ones serving. */
static void check_addresses(proxy *px, char **listen, int nlisten)
{
    int any_tls_in = 0, any_udp_in = 0, any_stream_in = 0, any_tls_out = 0, any_udp_out = 0;
    for (int i = 0; i < nlisten; i++) {
        listen_kind k = kind_of(listen[i]);
        csock_addr a = {.scheme = CSOCK_TCP};
        char path[CLI_WS_PATH];
        int fds[CLI_MAX_ENDPOINTS], tls = 0;
        if (k == L_WS) cli_ws_listen_addr(listen[i], CSOCK_ADDR_PASSIVE, &a, path);
        else if (cli_inherited_fds(listen[i], fds, CLI_MAX_ENDPOINTS, &tls) > 0) a.scheme = tls ? CSOCK_TLS : CSOCK_TCP;
        else cli_addr(listen[i], CSOCK_ADDR_PASSIVE, &a);
        if (k == L_STREAM && !csock_addr_is_stream(&a))
            cli_die(CLI_USAGE, "proxy: cannot listen on '%s' (tcp://, tls://, unix:, ws://, wss:// or udp://)",
                    listen[i]);
        any_tls_in |= a.scheme == CSOCK_TLS;
        any_udp_in |= k == L_UDP;
        any_stream_in |= k != L_UDP;
    }
    for (unsigned i = 0; i < px->nbackends; i++) {
        const backend *b = &px->backends[i];
        int udp = !strncasecmp(b->text, "udp://", 6);
        if (!udp && !b->is_name && !csock_addr_is_stream(&b->addrs[0]))
            cli_die(CLI_USAGE, "proxy: cannot relay to '%s' (tcp://, tls://, unix:, ws://, wss:// or udp://)", b->text);
        any_udp_out |= udp;
        any_tls_out |= !strncasecmp(b->text, "tls://", 6) || !strncasecmp(b->text, "wss://", 6);
    }
    if (any_udp_in != any_udp_out || (any_udp_in && any_stream_in))
        cli_die(CLI_USAGE, "proxy: udp:// listeners go with udp:// backends only");
    if (px->send_proxy && any_udp_out)
        cli_die(CLI_USAGE, "proxy: --send-proxy%s goes with tcp://, tls://, unix:, ws:// and wss:// backends",
                px->send_proxy == 2 ? "-v2" : "");
    if (px->lo.proxy_protocol && any_udp_in)
        cli_die(CLI_USAGE, "proxy: --proxy-protocol applies to stream listeners, not udp://");
    if (any_tls_in && !px->tls_opts.cert)
        cli_die(CLI_USAGE, "proxy: a tls:// or wss:// listener needs --cert FILE (and --key FILE unless the key is in it)");
    if (px->tls_opts.given && !any_tls_in && !any_tls_out)
        cli_die(CLI_USAGE, "proxy: --%s needs a tls:// listener or backend", px->tls_opts.first);
    if (any_tls_in) px->tls_server = cli_tls_server_ctx(&px->tls_opts);
    if (any_tls_out) {
        cli_tls client = px->tls_opts;
        client.cert = client.key = NULL; /* those are the listener's */
        px->tls_client = cli_tls_client_ctx(&client);
    }
}

static void parse_options(proxy *px, int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"to", required_argument, NULL, OPT_TO},
        {"balance", required_argument, NULL, OPT_BALANCE},
        {"check", required_argument, NULL, OPT_CHECK},
        {"check-interval", required_argument, NULL, OPT_CHECK_INTERVAL},
        {"rise", required_argument, NULL, OPT_RISE},
        {"fall", required_argument, NULL, OPT_FALL},
        {"max-conns", required_argument, NULL, 'm'},
        {"idle", required_argument, NULL, 'i'},
        {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
        {"udp-idle", required_argument, NULL, OPT_UDP_IDLE},
        {"no-splice", no_argument, NULL, OPT_NO_SPLICE},
        {"send-proxy", no_argument, NULL, OPT_SEND_PROXY},
        {"send-proxy-v2", no_argument, NULL, OPT_SEND_PROXY_V2},
        CLI_DEPLOY_LONGOPTS,
        {"verbose", no_argument, NULL, 'v'},
        CLI_TLS_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hm:i:v", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(proxy_usage, stdout);
            fputs(cli_tls_usage, stdout);
            fputs(cli_deploy_usage, stdout);
            exit(CLI_OK);
        case OPT_TO: backend_add(px, optarg); break;
        case OPT_BALANCE: px->balance = parse_balance(optarg); break;
        case OPT_CHECK: parse_check(px, optarg); break;
        case OPT_CHECK_INTERVAL:
            px->check_ms = cli_seconds("--check-interval", optarg);
            if (!px->check_ms) cli_die(CLI_USAGE, "proxy: --check-interval must be above 0");
            break;
        case OPT_RISE: px->rise = (unsigned)cli_ulong("--rise", optarg, 1000); break;
        case OPT_FALL: px->fall = (unsigned)cli_ulong("--fall", optarg, 1000); break;
        case 'm': px->max_conns = (unsigned)cli_ulong("--max-conns", optarg, CLI_MAX_CONNS); break;
        case 'i': px->idle_ms = cli_seconds("--idle", optarg); break;
        case OPT_CONNECT_TIMEOUT: px->connect_ms = cli_seconds("--connect-timeout", optarg); break;
        case OPT_DRAIN_TIMEOUT: px->drain_ms = cli_seconds("--drain-timeout", optarg); break;
        case OPT_UDP_IDLE: px->udp_idle_ms = cli_seconds("--udp-idle", optarg); break;
        case OPT_NO_SPLICE: px->no_splice = 1; break;
        case OPT_SEND_PROXY: px->send_proxy = 1; break;
        case OPT_SEND_PROXY_V2: px->send_proxy = 2; break;
        case 'v': px->verbose = 1; break;
        default:
            if (cli_tls_option(&px->tls_opts, c, optarg)) break;
            if (cli_deploy_option(&px->lo, c, optarg)) break;
            cli_bad_option("proxy", c, optopt, argv[optind - 1]);
        }
    }
    if (!px->rise) px->rise = 1;
    if (!px->fall) px->fall = 1;
}

/* ---- running ---- */

static void on_sweep(csock_timer *t) { relay_sweep(csock_timer_data(t)); }

static int start_timers(proxy *px, proxy_restart *pr)
{
    /* One timer for every relay's idle and connect timeouts: coarse (a
     * quarter of --idle, at most 250 ms), and no timer per relay. */
    int rc = csock_timer_new(px->loop, &px->sweep);
    if (rc < 0) return rc;
    csock_timer_set_data(px->sweep, px);
    uint64_t every = SWEEP_MS;
    if (px->idle_ms && px->idle_ms / 4 < every) every = px->idle_ms / 4 ? px->idle_ms / 4 : 1;
    csock_timer_start(px->sweep, on_sweep, every, every);
    cli_hold_stop_signals();
    csock_signal **sigs[2] = {&px->sig_term, &px->sig_int};
    int nums[2] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2 && rc == 0; i++) {
        rc = csock_signal_new(px->loop, sigs[i]);
        if (rc < 0) break;
        csock_signal_set_data(*sigs[i], pr);
        rc = csock_signal_start(*sigs[i], on_signal, nums[i]);
        csock_signal_unref(*sigs[i]);
    }
    return rc < 0 ? rc : backends_start(px);
}

/* Close what is left (relays first: they hold descriptors of their own),
 * let the closes finish and free the loop. */
static void teardown(proxy *px, proxy_restart *pr)
{
    proxy_restart_stop(pr);
    relay_close_all(px);
    close_listeners(px);
    backends_stop(px);
    cli_sd_loop_stop(&px->sd, 0);
    csock_loop_walk(px->loop, csock_handle_close, NULL);
    /* Waits (no spin) for the closes and for a resolver thread still in
     * getaddrinfo(): its answer is the loop's last post. */
    while (csock_loop_run(px->loop, CSOCK_RUN_ONCE) > 0) {}
    proxy_restart_cleanup(pr); /* the listeners' sockets are closed now */
    relay_pool_free(px);
    csock_loop_free(px->loop);
    csock_tls_ctx_free(px->tls_server);
    csock_tls_ctx_free(px->tls_client);
}

int cli_proxy(int argc, char **argv)
{
    proxy *px = calloc(1, sizeof *px);
    if (!px) cli_die(CLI_ERR, "proxy: %s", csock_strerror(-ENOMEM));
    px->connect_ms = 10000;
    px->drain_ms = CLI_DRAIN_TIMEOUT_MS;
    px->check_ms = PROXY_CHECK_INTERVAL_MS;
    px->udp_idle_ms = 60000;
    px->rise = 2;
    px->fall = 3;
    parse_options(px, argc, argv);
    int nlisten = argc - optind;
    if (nlisten <= 0) cli_die(CLI_USAGE, "proxy: missing LISTEN address");
    if (nlisten > CLI_MAX_ENDPOINTS) cli_die(CLI_USAGE, "proxy: at most %d addresses", CLI_MAX_ENDPOINTS);
    if (!px->nbackends) cli_die(CLI_USAGE, "proxy: missing --to BACKEND");
    if (!px->drain_ms) px->drain_ms = 1;
    proxy_restart pr;
    /* Started by a restart: the old process's sockets, not new ones. */
    proxy_restart_addresses(&pr, argv + optind, nlisten);
    check_addresses(px, argv + optind, nlisten);
    cli_raise_nofile();
    int rc = csock_loop_new(NULL, &px->loop);
    if (rc < 0) cli_die_loop("event loop", rc);
    if (px->verbose) cli_say_backend(px->loop);
    /* SIGUSR2 is watched before any `listening` line: a restart asked for
     * as soon as one appears must not kill the process. */
    rc = proxy_restart_watch(&pr, px, drain);
    if (rc < 0) cli_die(CLI_ERR, "proxy: SIGUSR2: %s", csock_strerror(rc));
    for (int i = optind; i < argc; i++) {
        listen_kind k = kind_of(argv[i]);
        unsigned first = px->nlisteners;
        if (k == L_WS) proxy_ws_listen(px, argv[i]);
        else if (k == L_UDP) proxy_udp_listen(px, argv[i]);
        else listen_stream(px, argv[i]);
        proxy_restart_arg(&pr, (unsigned)(i - optind), first, px->nlisteners - first);
    }
    cli_inherited_done(); /* the variables were for us, not for a child */
    rc = start_timers(px, &pr);
    if (rc < 0) cli_die(CLI_ERR, "proxy: %s", csock_strerror(rc));
    cli_sd_loop_start(&px->sd, px->loop, 0);
    cli_sd_ready();
    cli_restart_child_ready();
    rc = csock_loop_run(px->loop, CSOCK_RUN_DEFAULT);
    teardown(px, &pr);
    free(px);
    if (rc < 0) cli_die(CLI_ERR, "loop: %s", csock_strerror(rc));
    return CLI_OK;
}
