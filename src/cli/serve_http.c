/* csock serve http DIR ADDR...: the static-file server (issue 6).
 *
 * One csock_http_server and one csock_http_static (which caches small files)
 * per loop of a csock_server, found through the loop's data slot (the CLI
 * owns that slot). They are all made before anything listens, sharing one
 * fd of DIR: a loop that opened DIR once the listeners were accepting could
 * find the descriptors taken by clients and die of EMFILE at start-up;
 * this way start-up fails cleanly or not at all, and EMFILE later costs
 * only a client (the listener's reserve fd, or a 503). */
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static const char http_usage[] =
    "usage: csock serve http DIR ADDR... [options]\n"
    "\n"
    "Serve the files under DIR over HTTP/1.1 on every ADDR (tcp://, tls://,\n"
    "unix:, HOST:PORT); tls:// (https) needs --cert and --key (see below).\n"
    "For each endpoint one line goes to stdout once it is ready:\n"
    "  listening ADDR     (with the real port when 0 was asked for)\n"
    "\n"
    "GET and HEAD (other methods: 405), index.html, ETag/Last-Modified with\n"
    "If-Match/If-Unmodified-Since (412) and If-None-Match/If-Modified-Since\n"
    "(304), byte ranges (206, several as multipart/byteranges; 416). Paths\n"
    "never leave DIR: a symlink leading outside is 403.\n"
    "\n"
    "Options:\n"
    "  --list                  list directories that have no index.html\n"
    "  --snapshot-dir DIR      keep the snapshots of files of 8-256 KiB (an\n"
    "                          answer's head and the file, sent in one sendfile)\n"
    "                          as unlinked files in DIR, a disk file system,\n"
    "                          instead of memfds: less CPU per answer, some\n"
    "                          file system work (see csock(1))\n"
    "  --access-log FILE|-     log requests in the common log format ('-': stdout)\n"
    "  --max-body N            largest request body, bytes (default 1048576): 413\n"
    "  --keepalive-timeout SECS  close idle keep-alive connections (default 30)\n"
    "  --header-timeout SECS   a request head must arrive within SECS (default 10)\n"
    "  --body-timeout SECS     a request body must arrive within SECS (default 30)\n"
    "  --send-timeout SECS     close a client that takes no byte of an answer\n"
    "                          for SECS: it stopped reading (default 60)\n"
    "  -m, --max-conns N       at most N connections in all (every endpoint and\n"
    "                          thread); more are closed at once\n"
    "  -t, --threads N         event loops (threads), one per core by default\n"
    "  --drain-timeout SECS    on SIGINT/SIGTERM, stop accepting, let answers\n"
    "                          finish, close what is left after SECS (default 10);\n"
    "                          a second signal closes everything at once\n"
    "  --reuse-port            share each port with another server already on it\n"
    "                          (both need it; without it a port in use is an\n"
    "                          error). For a restart without downtime send\n"
    "                          SIGUSR2 instead (see csock serve --help)\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit status: 0 after a signal-driven stop, 1 on a runtime error (port in\n"
    "use, unreadable certificate, access log cannot be opened), 2 on a wrong\n"
    "argument (bad option or address, DIR missing, tls:// without --cert).\n";

#define MAX_BODY_CAP (1ul << 29) /* --max-body cap: 512 MiB, a typo guard */
#define LOG_TARGET_MAX 1024      /* access log: a request target cut to this */
#define LOG_METHOD_MAX 32        /* access log: a method cut to this */

typedef struct app {
    cli_acceptor plain, https;  /* the listeners' data (cli_on_accept), per kind */
    cli_tls tls_opts;           /* --cert, --key, ... */
    csock_tls_ctx *tls;         /* for tls:// endpoints, shared by the loops */
    csock_http_static_opts so;
    csock_http_static *root;    /* DIR's fd, shared by the loops' clones */
    csock_http_opts hopts;
    int log_fd;                 /* -1: no access log */
    csock_listen_opts lo;       /* --proxy-protocol, --proxy-timeout */
    cli_sd sd;                  /* systemd's readiness and watchdog */
    cli_restart restart;        /* SIGUSR2: hand the sockets to a new process */
} app;

/* Common log format: host ident authuser [date] "request" status bytes. */
static void access_log(const csock_http_req *r, int status, int64_t body_len, void *data)
{
    app *a = data;
    char host[CLI_ADDR_TEXT] = "-", line[LOG_TARGET_MAX + 376], when[40];
    csock_addr peer;
    if (csock_stream_peer(csock_http_stream(r), &peer) == 0) {
        if (csock_addr_format(&peer, host, sizeof host) > 0) {
            /* "tcp://1.2.3.4:5" -> "1.2.3.4", "tcp://[::1]:5" -> "::1" */
            char *h = strstr(host, "://");
            h = h ? h + 3 : host;
            char *colon = strrchr(h, ':');
            if (colon && h[0] != 'u') *colon = 0;
            if (*h == '[') {
                h++;
                char *rb = strchr(h, ']');
                if (rb) *rb = 0;
            }
            memmove(host, h, strlen(h) + 1);
        }
    }
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
    csock_http_str m = csock_http_method(r), t = csock_http_target(r);
    int tl = t.len > LOG_TARGET_MAX ? LOG_TARGET_MAX : (int)t.len;
    /* "-": refused before a whole head came */
    char bytes[24] = "-", request[LOG_TARGET_MAX + LOG_METHOD_MAX + 44] = "-";
    if (body_len > 0 && !csock_http_is_head(r)) snprintf(bytes, sizeof bytes, "%lld", (long long)body_len);
    if (m.ptr && t.ptr)
        snprintf(request, sizeof request, "%.*s %.*s HTTP/1.%d", (int)(m.len > LOG_METHOD_MAX ? LOG_METHOD_MAX : m.len),
                 m.ptr, tl, t.ptr, csock_http_minor(r));
    int n = snprintf(line, sizeof line, "%s - - [%s] \"%s\" %d %s\n", host, when, request, status,
                     bytes);
    if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
    /* One write per line: lines from several loops never interleave (O_APPEND). */
    if (write(a->log_fd, line, (size_t)n) < 0) { /* a full disk must not stop the server */
    }
}

typedef struct per_loop {
    csock_http_server *hs;
    csock_http_static *st;
} per_loop;

/* Each loop's server and static handler, made on the main thread before
 * the loops run (and before anything listens). */
static int make_loops(csock_server *srv, app *a)
{
    for (unsigned i = 0; i < csock_server_threads(srv); i++) {
        csock_loop *loop = csock_server_loop(srv, i);
        per_loop *pl = calloc(1, sizeof *pl);
        if (!pl) return -ENOMEM;
        csock_loop_set_data(loop, pl);
        int rc = csock_http_static_clone(a->root, &pl->st);
        if (rc < 0) return rc;
        csock_http_opts o = a->hopts;
        o.handler = csock_http_static_handler;
        o.data = pl->st;
        rc = csock_http_server_new(loop, &o, &pl->hs);
        if (rc < 0) return rc;
    }
    return 0;
}

static void free_loop(csock_loop *loop)
{
    per_loop *pl = csock_loop_data(loop);
    if (!pl) return;
    if (pl->hs) csock_http_server_close(pl->hs); /* no handler runs after this */
    csock_http_static_free(pl->st);
    free(pl);
    csock_loop_set_data(loop, NULL);
}

static void loop_start(csock_server *srv, csock_loop *loop, unsigned index)
{
    cli_sd_loop_start(&((app *)csock_server_data(srv))->sd, loop, index);
}

static void loop_drain(csock_server *srv, csock_loop *loop, unsigned index)
{
    app *a = csock_server_data(srv);
    cli_sd_loop_drain(&a->sd, index);
    cli_restart_loop_drain(&a->restart, index);
}

static void loop_stop(csock_server *srv, csock_loop *loop, unsigned index)
{
    app *a = csock_server_data(srv);
    cli_sd_loop_stop(&a->sd, index);
    cli_restart_loop_stop(&a->restart, index);
    free_loop(loop);
}

/* Listen on command-line address number `arg` (the old process's sockets
 * after a restart), noting its endpoints for the next restart. */
static void open_endpoint(csock_server *srv, app *a, const char *text, unsigned arg, unsigned *neps)
{
    unsigned n = cli_server_listen(srv, text, &a->lo, &a->plain, &a->https);
    a->restart.args[arg].first = *neps;
    a->restart.args[arg].count = n;
    a->restart.args[arg].pass = 1;
    a->restart.nargs = arg + 1;
    *neps += n;
}

/* A connection to serve (https: once its handshake is done; a failed or
 * stalled one costs only that connection, and csock closes it). */
static void on_ready(csock_stream *s, int status)
{
    if (status < 0) return;
    per_loop *pl = csock_loop_data(csock_stream_loop(s));
    if (!pl) {
        csock_stream_close(s, NULL);
        return;
    }
    csock_http_server_accept(pl->hs, s);
}

int cli_serve_http(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"list", no_argument, NULL, 'l'},
        {"snapshot-dir", required_argument, NULL, 'Z'},
        {"access-log", required_argument, NULL, 'A'},
        {"max-body", required_argument, NULL, 'B'},
        {"keepalive-timeout", required_argument, NULL, 'K'},
        {"header-timeout", required_argument, NULL, 'H'},
        {"body-timeout", required_argument, NULL, 'T'},
        {"send-timeout", required_argument, NULL, 'S'},
        {"max-conns", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 't'},
        {"drain-timeout", required_argument, NULL, 'D'},
        {"reuse-port", no_argument, NULL, 'P'},
        CLI_TLS_LONGOPTS,
        CLI_DEPLOY_LONGOPTS,
        {0, 0, 0, 0},
    };
    app a = {.log_fd = -1};
    csock_server_opts sopts = {.handle_signals = 1, .drain_timeout_ms = CLI_DRAIN_TIMEOUT_MS};
    const char *log_path = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hm:t:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(http_usage, stdout);
            fputs(cli_tls_usage, stdout);
            fputs(cli_deploy_usage, stdout);
            return CLI_OK;
        case 'l': a.so.list = 1; break;
        case 'Z':
            if (!*optarg) cli_die(CLI_USAGE, "serve http: --snapshot-dir needs a directory");
            a.so.snapshot_dir = optarg;
            break;
        case 'A': log_path = optarg; break;
        case 'B': a.hopts.max_body = cli_ulong("--max-body", optarg, MAX_BODY_CAP); break;
        case 'K': a.hopts.keepalive_timeout_ms = cli_seconds("--keepalive-timeout", optarg); break;
        case 'H': a.hopts.header_timeout_ms = cli_seconds("--header-timeout", optarg); break;
        case 'T': a.hopts.body_timeout_ms = cli_seconds("--body-timeout", optarg); break;
        case 'S': a.hopts.send_timeout_ms = cli_seconds("--send-timeout", optarg); break;
        case 'm': sopts.max_conns = (unsigned)cli_ulong("--max-conns", optarg, CLI_MAX_CONNS); break;
        case 't': sopts.threads = (unsigned)cli_ulong("--threads", optarg, CLI_MAX_THREADS); break;
        case 'D': sopts.drain_timeout_ms = cli_seconds("--drain-timeout", optarg); break;
        case 'P': sopts.reuseport = 1; break;
        default:
            if (cli_tls_option(&a.tls_opts, c, optarg)) break;
            if (cli_deploy_option(&a.lo, c, optarg)) break;
            cli_bad_option("serve http", c, optopt, argv[optind - 1]);
        }
    }
    if (optind >= argc) cli_die(CLI_USAGE, "serve http: missing DIR to serve");
    const char *dir = argv[optind++];
    if (optind >= argc) cli_die(CLI_USAGE, "serve http: missing ADDR to listen on");
    if (argc - optind > CLI_MAX_ENDPOINTS)
        cli_die(CLI_USAGE, "serve http: at most %d addresses", CLI_MAX_ENDPOINTS);
    /* Started by a restart: the old process's sockets, not new ones. */
    cli_restart_addresses(&a.restart, argv + optind, argc - optind);
    for (int i = optind; i < argc; i++) {
        csock_addr addr;
        int fds[CLI_MAX_ENDPOINTS], tls;
        if (cli_inherited_fds(argv[i], fds, CLI_MAX_ENDPOINTS, &tls))
            addr = (csock_addr){.scheme = tls ? CSOCK_TLS : CSOCK_TCP}; /* a stream socket */
        else
            cli_addr(argv[i], CSOCK_ADDR_PASSIVE, &addr);
        if (addr.scheme == CSOCK_TLS && !a.tls) a.tls = cli_tls_server_ctx(&a.tls_opts);
        if (!csock_addr_is_stream(&addr))
            cli_die(CLI_USAGE, "serve http: %s: HTTP needs a stream address", argv[i]);
    }
    /* A certificate given for no tls:// address would be ignored in silence. */
    if (a.tls_opts.given && !a.tls)
        cli_die(CLI_USAGE, "serve http: --%s needs a tls:// address", a.tls_opts.first);
    /* Open DIR now, for a one-line error before anything listens. Only a
     * DIR that is missing or not a directory is a wrong argument; so is a
     * --snapshot-dir that cannot hold a snapshot. */
    int rc = csock_http_static_new(dir, &a.so, &a.root);
    if (rc < 0) {
        /* Which of the two failed: DIR, if it fails alone. */
        const char *snap = a.so.snapshot_dir;
        csock_http_static *alone = NULL;
        a.so.snapshot_dir = NULL;
        if (snap && csock_http_static_new(dir, &a.so, &alone) == 0) {
            csock_http_static_free(alone);
            cli_die(rc == -ENOENT || rc == -ENOTDIR || rc == -EACCES || rc == -EOPNOTSUPP || rc == -EROFS
                        ? CLI_USAGE
                        : CLI_ERR,
                    "serve http: --snapshot-dir %s: %s", snap, csock_strerror(rc));
        }
        cli_die(rc == -ENOENT || rc == -ENOTDIR || rc == -EACCES ? CLI_USAGE : CLI_ERR,
                "serve http: %s: %s", dir, csock_strerror(rc));
    }
    if (log_path) {
        a.log_fd = strcmp(log_path, "-") ? open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)
                                         : STDOUT_FILENO;
        if (a.log_fd < 0) cli_die(CLI_ERR, "serve http: access log %s: %s", log_path, csock_strerror(-errno));
        a.hopts.log = access_log;
        a.hopts.log_data = &a;
    }
    a.plain = (cli_acceptor){.ready = on_ready};
    a.https = (cli_acceptor){.tls = a.tls, .ready = on_ready};
    sopts.loop_start = loop_start;
    sopts.loop_drain = loop_drain;
    sopts.loop_stop = loop_stop;
    sopts.data = &a;
    if (!sopts.drain_timeout_ms) sopts.drain_timeout_ms = 1;
    cli_raise_nofile();
    csock_server *srv;
    cli_hold_stop_signals(); /* the server watches them (handle_signals) */
    rc = csock_server_new(&sopts, &srv);
    if (rc < 0) cli_die_loop("server", rc);
    rc = make_loops(srv, &a);
    if (rc < 0) cli_die(CLI_ERR, "serve http: %s", csock_strerror(rc));
    /* SIGUSR2 is watched before any `listening` line (see serve.c). */
    cli_restart_init(&a.restart, srv);
    rc = cli_restart_watch(&a.restart);
    if (rc < 0) cli_die(CLI_ERR, "serve http: SIGUSR2: %s", csock_strerror(rc));
    unsigned neps = 0;
    for (int i = optind; i < argc; i++) open_endpoint(srv, &a, argv[i], (unsigned)(i - optind), &neps);
    cli_inherited_done();
    cli_sd_ready();
    cli_restart_child_ready();
    rc = csock_server_run(srv);
    cli_restart_cleanup(&a.restart);
    /* A loop whose thread never started still holds its part. */
    for (unsigned i = 0; i < csock_server_threads(srv); i++) free_loop(csock_server_loop(srv, i));
    csock_server_free(srv);
    csock_http_static_free(a.root);
    csock_tls_ctx_free(a.tls);
    if (a.log_fd > STDOUT_FILENO) close(a.log_fd);
    if (rc < 0) cli_die(CLI_ERR, "server: %s", csock_strerror(rc));
    return CLI_OK;
}
