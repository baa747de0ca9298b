/* csock bench ADDR: a load generator that checks every answer and measures
 * latency honestly (see bench_usage). This file: the options, the threads
 * and the live line; bench_run.c: a thread; bench_report.c: the results
 * (table and JSON); bench_plot.c: the SVG. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "cli/bench_conn.h"
#include "cli/bench_plot.h"

static const char bench_usage[] =
    "usage: csock bench ADDR [--echo | --upper | --http PATH | --ws] [OPTIONS]\n"
    "       csock bench --plot FILE.svg [ADDR [OPTIONS]] [EARLIER.json ...]\n"
    "\n"
    "Load the server at ADDR (tcp://, tls://, unix:, udp://, HOST:PORT,\n"
    "ws://HOST:PORT/PATH, wss://...) and measure its latency and throughput.\n"
    "Every answer is checked byte by byte.\n"
    "\n"
    "Modes:\n"
    "  --echo            messages of --size bytes, echoed back (default); over\n"
    "                    udp:// a datagram a message, one unanswered within\n"
    "                    --timeout is lost (a timeout error)\n"
    "  --upper           lines of --size bytes ('\\n' included) of lower-case\n"
    "                    letters, answered in upper case (csock serve upper)\n"
    "  --http PATH       HTTP/1.1 GET of PATH, keep-alive (--depth: pipelined);\n"
    "                    responses counted by status code, a non-2xx one is an\n"
    "                    error (non_2xx); after Connection: close, a new\n"
    "                    connection (not an error). Status codes are counted,\n"
    "                    by code and by class (2xx, 3xx, ...)\n"
    "  --method M        --http: the request's method (default GET; HEAD:\n"
    "                    responses without a body)\n"
    "  --header 'N: V'   --http: a header line (repeatable; a Host header\n"
    "                    replaces csock's)\n"
    "  --body STRING|@FILE  --http: the request's body (with Content-Length)\n"
    "  --pipeline N      --http: N requests written at once, the next N when\n"
    "                    all are answered (wrk's pipelining; not with --depth)\n"
    "  --ws              messages over a WebSocket (ADDR ws:// or wss://):\n"
    "                    binary messages of --size bytes, echoed (csock serve\n"
    "                    echo ws://...); with --upper, text messages of lower-\n"
    "                    case letters answered in upper case. A ws:// ADDR\n"
    "                    implies it\n"
    "\n"
    "Load:\n"
    "  -c, --conns N     connections (default 10)\n"
    "  -d, --depth D     closed loop: messages in flight on each connection;\n"
    "                    the next is sent when one is answered (default 1)\n"
    "  --connect         a new connection for every message: connect, one\n"
    "                    exchange, close (the connection rate; latency from\n"
    "                    the connect). Closed loop, not with --depth\n"
    "  -r, --rate R      open loop instead: R messages a second over all the\n"
    "                    connections, on a fixed schedule whatever the answers;\n"
    "                    latency counts from each message's intended send time,\n"
    "                    so a stall is charged to every message it held back\n"
    "                    (the wrk2 method). Not with --depth\n"
    "  -s, --size N      bytes a message (default 64)\n"
    "  -D, --duration SECS  measure this long (default 10)\n"
    "  -w, --warmup SECS    run this long first, not measured (default 0)\n"
    "  -t, --threads N   event loops (threads), connections spread over them\n"
    "                    (default 1)\n"
    "  --streams         plain tcp:// and unix: connections through csock\n"
    "                    streams (buffered writes, timeouts) instead of driving\n"
    "                    the sockets directly (a send and a recv a message, as\n"
    "                    bench/loadgen.c does); the io_uring backend always\n"
    "                    uses streams. It shows what the stream layer costs\n"
    "  --tls-groups LIST tls://, wss://: the key exchange groups to offer, in\n"
    "                    OpenSSL's syntax (P-256:X25519), instead of csock's\n"
    "                    X25519:P-256:P-384 (to load every server alike)\n"
    "  --timeout SECS    a connect or an answer taking longer is an error\n"
    "                    (timeout); the connection is made again (default 10)\n"
    "\n"
    "Output:\n"
    "  A table on stdout at the end: throughput, latency percentiles (p50,\n"
    "  p90, p99, p99.9, p99.99, max) and errors by kind (refused, reset,\n"
    "  timeout, wrong bytes, non-2xx, other; over the whole run, warm-up\n"
    "  included).\n"
    "  A failed connection is counted and made again. On a terminal, stderr\n"
    "  gets a live line each second (elapsed, rate, errors, that second's p99).\n"
    "  SIGINT or SIGTERM ends the run early: the results so far are reported.\n"
    "  --json FILE       the results and the whole latency histogram as JSON\n"
    "                    ('-': stdout, instead of the table)\n"
    "                    It holds throughput over time too (\"series\": messages\n"
    "                    answered in each interval of interval_s seconds).\n"
    "  --label TEXT      this run's name in the JSON and in plots\n"
    "  --server-pid PID  the server's CPU time (user+sys, /proc/PID/stat, with\n"
    "                    its children's, live and reaped) over the window\n"
    "                    too, per message (csock bench's own is\n"
    "                    always reported: the \"cpu\" line, \"cpu\" in the JSON)\n"
    "  --plot FILE.svg   a self-contained SVG: latency by percentile (log\n"
    "                    scale of 1/(1-p): 0%, 90%, 99%, 99.9%, ...) and\n"
    "                    throughput over time. EARLIER.json files (from --json)\n"
    "                    are drawn too, a colour and a legend entry each (their\n"
    "                    --label, else the file's name); with no ADDR, only them\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit status: 0 when every answer was right and no error happened, 1 on\n"
    "errors (or no answer at all), 2 on a wrong argument.\n";

enum {
    OPT_ECHO = 0x2000, OPT_UPPER, OPT_HTTP, OPT_WS, OPT_CONNECT, OPT_JSON, OPT_TIMEOUT,
    OPT_METHOD, OPT_HEADER, OPT_BODY, OPT_PIPELINE, OPT_PLOT, OPT_LABEL, OPT_SERVER_PID, OPT_STREAMS, OPT_TLS_GROUPS
};

#define DEFAULT_CONNS 10
#define DEFAULT_SIZE 64
#define DEFAULT_DURATION_MS 10000
#define DEFAULT_TIMEOUT_MS 10000
#define MAX_BENCH_CONNS (1u << 20)
#define MAX_DEPTH (1u << 16)
#define MAX_SIZE (1u << 24)
#define MAX_PIPELINE 1024
#define MAX_SERIES 600 /* throughput over time: at most this many intervals */

/* The whole of a file (NUL-terminated, for the JSON reader), or NULL with errno. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf; n += got) {
        if (n + 1 >= cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) break;
            buf = b;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        if (!got) {
            int bad = ferror(f);
            fclose(f);
            if (bad) {
                free(buf);
                errno = EIO;
                return NULL;
            }
            buf[n] = '\0';
            *len = n;
            return buf;
        }
    }
    free(buf);
    fclose(f);
    errno = ENOMEM;
    return NULL;
}

/* --header: "Name: value", a token before the colon, no line breaks. */
static void check_header(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h) cli_die(CLI_USAGE, "--header: '%s' is not 'Name: value'", h);
    for (const char *p = h; *p; p++)
        if (*p == '\r' || *p == '\n' || (p < colon && (*p <= ' ' || *p == 0x7f)))
            cli_die(CLI_USAGE, "--header: no blanks in the name, no line breaks: '%s'", h);
}

/* The positional arguments: with --plot, *.json ones are earlier runs; the
 * one other (if any) is ADDR. */
static void positionals(int argc, char **argv, bench_opts *o)
{
    for (int i = optind; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (o->plot && n > 5 && !strcmp(argv[i] + n - 5, ".json")) {
            if (o->nearlier == sizeof o->earlier / sizeof o->earlier[0] - (o->target != NULL))
                cli_die(CLI_USAGE, "--plot: at most %d runs in one plot", BENCH_PLOT_MAX_RUNS);
            o->earlier[o->nearlier++] = argv[i];
        } else if (o->target) {
            cli_die(CLI_USAGE, "bench: one ADDR only, got '%s' too", argv[i]);
        } else {
            o->target = argv[i];
        }
    }
    if (!o->target && !o->nearlier) cli_die(CLI_USAGE, "bench: missing ADDR (see csock bench --help)");
}

static double parse_rate(const char *text)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v > 0) || v > 1e9)
        cli_die(CLI_USAGE, "--rate: '%s' is not a number of messages a second above 0", text);
    return v;
}

static double proc_cpu(int pid);

static void parse_args(int argc, char **argv, bench_opts *o, cli_tls *tls)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"echo", no_argument, NULL, OPT_ECHO},
        {"upper", no_argument, NULL, OPT_UPPER},
        {"http", required_argument, NULL, OPT_HTTP},
        {"ws", no_argument, NULL, OPT_WS},
        {"connect", no_argument, NULL, OPT_CONNECT},
        {"conns", required_argument, NULL, 'c'},
        {"depth", required_argument, NULL, 'd'},
        {"rate", required_argument, NULL, 'r'},
        {"size", required_argument, NULL, 's'},
        {"duration", required_argument, NULL, 'D'},
        {"warmup", required_argument, NULL, 'w'},
        {"threads", required_argument, NULL, 't'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", required_argument, NULL, OPT_JSON},
        {"method", required_argument, NULL, OPT_METHOD},
        {"header", required_argument, NULL, OPT_HEADER},
        {"body", required_argument, NULL, OPT_BODY},
        {"pipeline", required_argument, NULL, OPT_PIPELINE},
        {"plot", required_argument, NULL, OPT_PLOT},
        {"label", required_argument, NULL, OPT_LABEL},
        {"server-pid", required_argument, NULL, OPT_SERVER_PID},
        {"streams", no_argument, NULL, OPT_STREAMS},
        {"tls-groups", required_argument, NULL, OPT_TLS_GROUPS},
        CLI_TLS_LONGOPTS,
        {0, 0, 0, 0},
    };
    int c, depth_given = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hc:d:r:s:D:w:t:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(bench_usage, stdout); fputs(cli_tls_usage, stdout); exit(CLI_OK);
        case OPT_ECHO: o->mode = BENCH_ECHO; break;
        case OPT_UPPER: o->mode = BENCH_UPPER; break;
        case OPT_WS: o->ws = 1; break;
        case OPT_CONNECT: o->connect_each = 1; break;
        case OPT_STREAMS: o->streams = 1; break;
        case OPT_TLS_GROUPS: o->tls_groups = optarg; break;
        case OPT_HTTP:
            o->mode = BENCH_HTTP;
            o->http_path = optarg;
            break;
        case 'c': o->conns = (unsigned)cli_ulong("--conns", optarg, MAX_BENCH_CONNS); break;
        case 'd':
            o->depth = (unsigned)cli_ulong("--depth", optarg, MAX_DEPTH);
            depth_given = 1;
            break;
        case 'r': o->rate = parse_rate(optarg); break;
        case 's': o->size = cli_ulong("--size", optarg, MAX_SIZE); break;
        case 'D': o->duration_ns = cli_seconds("--duration", optarg) * 1000000ull; break;
        case 'w': o->warmup_ns = cli_seconds("--warmup", optarg) * 1000000ull; break;
        case 't': o->threads = (unsigned)cli_ulong("--threads", optarg, CLI_MAX_THREADS); break;
        case OPT_TIMEOUT: o->timeout_ns = cli_seconds("--timeout", optarg) * 1000000ull; break;
        case OPT_JSON: o->json = optarg; break;
        case OPT_PLOT: o->plot = optarg; break;
        case OPT_LABEL: o->label = optarg; break;
        case OPT_SERVER_PID:
            o->server_pid = (int)cli_ulong("--server-pid", optarg, 1u << 30);
            if (proc_cpu(o->server_pid) < 0) cli_die(CLI_USAGE, "--server-pid: no process %s to measure", optarg);
            break;
        case OPT_PIPELINE:
            o->pipeline = (unsigned)cli_ulong("--pipeline", optarg, MAX_PIPELINE);
            if (!o->pipeline) cli_die(CLI_USAGE, "--pipeline: at least 1 request");
            break;
        case OPT_METHOD:
            for (const char *p = optarg; *p; p++)
                if (*p <= ' ' || *p > '~') cli_die(CLI_USAGE, "--method: '%s' is not a method token", optarg);
            if (!*optarg) cli_die(CLI_USAGE, "--method: empty");
            o->method = optarg;
            break;
        case OPT_HEADER:
            if (o->nheaders == sizeof o->headers / sizeof o->headers[0])
                cli_die(CLI_USAGE, "--header: at most %zu", sizeof o->headers / sizeof o->headers[0]);
            check_header(optarg);
            o->headers[o->nheaders++] = optarg;
            break;
        case OPT_BODY:
            free(o->req_body);
            if (optarg[0] == '@') {
                o->req_body = slurp(optarg + 1, &o->req_body_len);
                if (!o->req_body)
                    cli_die(errno == ENOMEM ? CLI_ERR : CLI_USAGE, "--body %s: %s", optarg, strerror(errno));
            } else {
                o->req_body_len = strlen(optarg);
                o->req_body = strdup(optarg);
                if (!o->req_body) cli_die(CLI_ERR, "bench: out of memory");
            }
            break;
        default:
            if (cli_tls_option(tls, c, optarg)) break;
            cli_bad_option("bench", c, optopt, argv[optind - 1]);
        }
    }
    positionals(argc, argv, o);
    if ((o->method || o->nheaders || o->req_body || o->pipeline) && o->mode != BENCH_HTTP)
        cli_die(CLI_USAGE, "bench: --method, --header, --body and --pipeline are for --http");
    if (o->pipeline && (depth_given || o->rate > 0 || o->connect_each))
        cli_die(CLI_USAGE, "--pipeline: batches in the closed loop, not with --depth, --rate or --connect");
    if (!o->conns) cli_die(CLI_USAGE, "--conns: at least 1 connection");
    if (!o->depth) cli_die(CLI_USAGE, "--depth: at least 1 message in flight");
    if (!o->threads) cli_die(CLI_USAGE, "--threads: at least 1");
    if (!o->duration_ns) cli_die(CLI_USAGE, "--duration: more than 0 seconds");
    if (!o->timeout_ns) cli_die(CLI_USAGE, "--timeout: more than 0 seconds");
    if (o->rate > 0 && depth_given)
        cli_die(CLI_USAGE, "bench: --depth is for the closed loop; --rate sets the open loop's load");
    if (o->connect_each && (o->rate > 0 || depth_given))
        cli_die(CLI_USAGE, "bench: --connect is one message a connection, in the closed loop: "
                "not with --rate or --depth");
    if (o->mode == BENCH_UPPER && o->size < 2)
        cli_die(CLI_USAGE, "--size: --upper needs at least 2 bytes (a letter and '\\n')");
    if (!o->size) cli_die(CLI_USAGE, "--size: at least 1 byte");
    if (o->mode == BENCH_HTTP) {
        const unsigned char *p = (const unsigned char *)o->http_path;
        if (*p != '/') cli_die(CLI_USAGE, "--http: the path must start with '/': '%s'", o->http_path);
        for (; *p; p++)
            if (*p <= ' ' || *p == 0x7f)
                cli_die(CLI_USAGE, "--http: no spaces or control characters in the path");
    }
    if (o->threads > o->conns) o->threads = o->conns; /* a thread without connections idles */
}

/* The patterns messages are cut from: BENCH_PAT bytes repeated far enough
 * that a message may start anywhere in the first period. */
static void make_patterns(bench_opts *o)
{
    if (o->mode == BENCH_HTTP) {
        /* One request, the same for every message. */
        char host[sizeof o->addr.host + 16];
        if (o->addr.scheme == CSOCK_UNIX) snprintf(host, sizeof host, "localhost");
        else if (strchr(o->addr.host, ':')) snprintf(host, sizeof host, "[%s]:%d", o->addr.host, csock_addr_port(&o->addr));
        else snprintf(host, sizeof host, "%s:%d", o->addr.host, csock_addr_port(&o->addr));
        bench_http_req rq = {.method = o->method ? o->method : "GET", .path = o->http_path, .host = host,
                             .headers = o->headers, .nheaders = o->nheaders, .body = o->req_body,
                             .body_len = o->req_body_len, .copies = o->pipeline ? o->pipeline : 1};
        o->send_pat = bench_http_request(&rq, &o->size);
        if (!o->send_pat) cli_die(CLI_ERR, "bench: out of memory");
        o->want_pat = o->send_pat;
        o->body = o->size;
        return;
    }
    /* A line ends in '\n'; a WebSocket message is whole without one. */
    o->body = o->mode == BENCH_UPPER && !o->ws ? o->size - 1 : o->size;
    size_t n = BENCH_PAT + o->body;
    o->send_pat = malloc(n);
    o->want_pat = o->mode == BENCH_UPPER ? malloc(n) : o->send_pat;
    if (!o->send_pat || !o->want_pat) cli_die(CLI_ERR, "bench: out of memory");
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < BENCH_PAT; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift: no byte pattern a server could fake */
        if (o->mode == BENCH_UPPER) {
            o->send_pat[i] = (char)('a' + x % 26);
            o->want_pat[i] = (char)('A' + x % 26);
        } else {
            o->send_pat[i] = (char)(x >> 24);
        }
    }
    for (size_t i = BENCH_PAT; i < n; i++) {
        o->send_pat[i] = o->send_pat[i - BENCH_PAT];
        o->want_pat[i] = o->want_pat[i - BENCH_PAT];
    }
}

/* The live line: "elapsed  rate  errors  p99" (that second's). */
static void live_line(const bench_opts *o, bench_thread *th, uint64_t t_start, uint64_t *last_msgs,
                      uint64_t *last_t)
{
    char v[32];
    uint64_t msgs = 0, errs = 0, p99 = 0, now = bench_now_ns();
    for (unsigned i = 0; i < o->threads; i++) {
        msgs += atomic_load_explicit(&th[i].live_msgs, memory_order_relaxed);
        errs += atomic_load_explicit(&th[i].live_errs, memory_order_relaxed);
        uint64_t p = atomic_load_explicit(&th[i].live_p99, memory_order_relaxed);
        if (p > p99) p99 = p;
    }
    bench_fmt_us(p99, v, sizeof v);
    fprintf(stderr, "\r\033[K%6.1f s  %10.1f msg/s  errors %llu  p99 %s", (double)(now - t_start) / 1e9,
            (double)(msgs - *last_msgs) * 1e9 / (double)(now - *last_t), (unsigned long long)errs, v);
    *last_msgs = msgs, *last_t = now;
}

/* CPU time (user + sys, seconds) of this process and of --server-pid's
 * (-1 when it cannot be read: gone, or not ours to see). */
typedef struct cpu_mark {
    double self, server;
} cpu_mark;

/* A process's CPU time in clock ticks, with that of the children it has
 * reaped; its parent's pid into *ppid. -1 when it is gone. */
static long long proc_ticks(int pid, int *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* After the command's ")": state is field 3, ppid 4, utime 14, stime
     * 15, cutime 16, cstime 17. */
    const char *p = strrchr(buf, ')');
    long long ut, st, cut, cst;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld %lld %lld", ppid, &ut, &st,
                     &cut, &cst) != 5)
        return -1;
    return ut + st + cut + cst;
}

/* The CPU seconds of the server: its own, its reaped children's and its
 * live children's (a server that forks a process a connection, as socat
 * does, spends them there). -1 when it is gone. */
static double proc_cpu(int pid)
{
    int ppid;
    long long ticks = proc_ticks(pid, &ppid);
    if (ticks < 0) return -1;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        char *end;
        long child = strtol(e->d_name, &end, 10);
        long long t;
        if (*end || child <= 0 || child == pid) continue;
        if ((t = proc_ticks((int)child, &ppid)) > 0 && ppid == pid) ticks += t;
    }
    if (d) closedir(d);
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

static void cpu_sample(const bench_opts *o, cpu_mark *m)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    m->self = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
              (double)ru.ru_stime.tv_usec / 1e6;
    m->server = o->server_pid ? proc_cpu(o->server_pid) : -1;
}

/* Wait for the end of the run: the live line once a second on a terminal;
 * SIGINT or SIGTERM (blocked in every thread, taken here) ends it early,
 * and the results so far are reported. CPU times are taken at the window's
 * edges (cpu[0] at the end of the warm-up, cpu[1] at the end). Returns
 * when the run ends. */
static void wait_run(const bench_opts *o, bench_thread *th, uint64_t t_start, uint64_t t_end,
                     const sigset_t *sigs, cpu_mark cpu[2])
{
    uint64_t last_msgs = 0, last_t = t_start, next_live = t_start + 1000000000ull;
    uint64_t t_measure = t_start + o->warmup_ns;
    int marked = 0;
    for (;;) {
        uint64_t now = bench_now_ns();
        if (!marked && now >= t_measure) cpu_sample(o, &cpu[0]), marked = 1;
        if (now >= t_end) break;
        if (o->live && now >= next_live) {
            live_line(o, th, t_start, &last_msgs, &last_t);
            next_live += 1000000000ull;
        }
        uint64_t until = o->live && next_live < t_end ? next_live : t_end;
        if (!marked && t_measure < until) until = t_measure;
        uint64_t wait = until > now ? until - now : 0;
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000ull), .tv_nsec = (long)(wait % 1000000000ull)};
        if (sigtimedwait(sigs, NULL, &ts) > 0) {
            now = bench_now_ns();
            for (unsigned i = 0; i < o->threads; i++)
                atomic_store_explicit(&th[i].t_end, now, memory_order_relaxed);
            break;
        }
    }
    cpu_sample(o, &cpu[1]);
    if (!marked) cpu[0] = cpu[1]; /* stopped in the warm-up: nothing measured */
}

/* ADDR into o->addr (ws:// and wss:// too), and the TLS context it needs. */
static void resolve_target(bench_opts *o, const cli_tls *tls)
{
    int ws = cli_ws_scheme(o->target);
    if (ws) {
        char path[CLI_WS_PATH];
        cli_ws_listen_addr(o->target, 0, &o->addr, path); /* dies on a bad URL */
        if (o->mode == BENCH_HTTP) cli_die(CLI_USAGE, "bench: --http needs an http server's address, not '%s'", o->target);
        o->ws = 1;
    } else if (o->ws) {
        cli_die(CLI_USAGE, "bench: --ws needs a ws:// or wss:// address, not '%s'", o->target);
    } else {
        cli_addr(o->target, 0, &o->addr);
    }
    if (o->addr.scheme == CSOCK_UDP) {
        if (o->mode != BENCH_ECHO || o->connect_each)
            cli_die(CLI_USAGE, "bench: udp:// is for --echo (a datagram a message), not '%s'",
                    o->connect_each ? "--connect" : o->mode == BENCH_HTTP ? "--http" : "--upper");
        o->udp = 1;
    } else if (!csock_addr_is_stream(&o->addr)) {
        cli_die(CLI_USAGE, "bench: '%s' is not an address bench can load (tcp://, tls://, unix:, udp://, ws://)",
                o->target);
    }
    if (o->addr.scheme == CSOCK_TLS) o->tls = cli_tls_client_ctx(tls);
    else if (tls->given) cli_die(CLI_USAGE, "bench: --%s is for tls:// and wss:// addresses", tls->first);
    if (o->tls_groups && !o->tls) cli_die(CLI_USAGE, "bench: --tls-groups is for tls:// and wss:// addresses");
    /* Before any connection: the context is shared, and fixed once in use. */
    if (o->tls_groups && SSL_CTX_set1_groups_list(csock_tls_ctx_ssl(o->tls), o->tls_groups) != 1)
        cli_die(CLI_USAGE, "--tls-groups: '%s' is not a list of groups OpenSSL knows", o->tls_groups);
}

/* The backend the threads' loops will get (a static string), from one
 * loop made now: a loop that cannot start (CSOCK_BACKEND=uring where
 * io_uring is forbidden) fails every thread, so it is said now, in one
 * line, not after the run's whole duration and a report of nothing. */
static const char *loop_backend(void)
{
    csock_loop *loop;
    int rc = csock_loop_new(NULL, &loop);
    if (rc < 0) cli_die_loop("bench: event loop", rc);
    const char *name = csock_loop_backend(loop);
    csock_loop_free(loop);
    return name;
}

/* One thread a loop, each with its share of the connections; the start
 * and the end of the measured window are the same for all. */
static uint64_t start_threads(const bench_opts *o, bench_thread *th)
{
    uint64_t t_start = bench_now_ns();
    unsigned first = 0;
    for (unsigned i = 0; i < o->threads; i++) {
        bench_thread *t = &th[i];
        t->o = o;
        t->index = i;
        t->first_conn = first;
        t->nconns = o->conns / o->threads + (i < o->conns % o->threads);
        first += t->nconns;
        t->t_start = t_start;
        t->st.series = calloc(o->nseries, sizeof *t->st.series);
        if (!t->st.series) cli_die(CLI_ERR, "bench: out of memory");
        t->t_measure = t_start + o->warmup_ns;
        atomic_init(&t->t_end, t->t_measure + o->duration_ns);
        int rc = pthread_create(&t->tid, NULL, bench_thread_main, t);
        if (rc) cli_die(CLI_ERR, "bench: thread: %s", strerror(rc));
    }
    return t_start;
}

/* Join the threads and add up what they measured into `all`. Returns the
 * number of threads that could not run. */
static int collect(const bench_opts *o, bench_thread *th, bench_stats *all)
{
    uint64_t *series = all->series;
    memset(all, 0, sizeof *all);
    all->series = series;
    bench_hist_init(&all->hist);
    uint64_t t_end = atomic_load(&th[0].t_end), t_measure = th[0].t_measure;
    all->window_ns = t_end > t_measure ? t_end - t_measure : 0;
    int failed = 0;
    for (unsigned i = 0; i < o->threads; i++) {
        pthread_join(th[i].tid, NULL);
        if (th[i].rc < 0 && !failed++) cli_warn("bench: thread %u: %s", i, csock_strerror(th[i].rc));
        bench_stats *s = &th[i].st;
        all->msgs += s->msgs, all->bytes += s->bytes, all->unsent += s->unsent;
        all->connects += s->connects, all->answered += s->answered, all->up_at_end += s->up_at_end;
        for (int k = 0; k < BENCH_ERR_KINDS; k++) all->err[k] += s->err[k];
        for (int k = 0; k < 600; k++) all->status[k] += s->status[k];
        bench_hist_merge(&all->hist, &s->hist);
        for (unsigned k = 0; k < o->nseries; k++) all->series[k] += s->series[k];
        free(s->series);
    }
    return failed;
}

/* Throughput over time: 100 ms intervals, longer ones (a multiple) for a
 * long run so there are at most MAX_SERIES. */
static void size_series(bench_opts *o)
{
    uint64_t step = 100000000ull;
    uint64_t iv = step * ((o->duration_ns + step * MAX_SERIES - 1) / (step * MAX_SERIES));
    o->series_ns = iv;
    o->nseries = (unsigned)((o->duration_ns + iv - 1) / iv);
}

/* The --plot runs from earlier --json files, read before the run so a bad
 * one is said at once: runs[0..o->nearlier). */
static void load_earlier(const bench_opts *o, bench_plot_run *runs)
{
    for (unsigned i = 0; i < o->nearlier; i++) {
        const char *path = o->earlier[i], *base = strrchr(path, '/');
        size_t len;
        char *text = slurp(path, &len);
        if (!text) cli_die(errno == ENOMEM ? CLI_ERR : CLI_USAGE, "--plot: %s: %s", path, strerror(errno));
        base = base ? base + 1 : path;
        snprintf(runs[i].label, sizeof runs[i].label, "%.*s", (int)(strlen(base) - 5), base);
        int rc = bench_plot_parse(text, &runs[i]);
        free(text);
        if (rc == -ENOMEM) cli_die(CLI_ERR, "bench: out of memory");
        if (rc < 0) cli_die(CLI_USAGE, "--plot: %s is not a csock bench --json file", path);
    }
}

/* Draw the earlier runs and this one (st, or NULL for none) into o->plot. */
static void plot(const bench_opts *o, bench_plot_run *runs, const bench_stats *st)
{
    size_t n = o->nearlier;
    if (st) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (!m) cli_die(CLI_ERR, "bench: out of memory");
        bench_write_json(m, o, st);
        if (fclose(m)) cli_die(CLI_ERR, "bench: out of memory");
        bench_plot_run *r = &runs[n++];
        snprintf(r->label, sizeof r->label, "%s %s", o->target, bench_mode_name(o));
        int rc = bench_plot_parse(buf, r);
        free(buf);
        if (rc < 0) cli_die(CLI_ERR, "--plot: %s", csock_strerror(rc));
    }
    FILE *f = fopen(o->plot, "w");
    if (!f) cli_die(CLI_ERR, "--plot %s: %s", o->plot, strerror(errno));
    int rc = bench_plot_svg(f, runs, n);
    if (fclose(f) || rc < 0) cli_die(CLI_ERR, "--plot %s: %s", o->plot, strerror(errno ? errno : EIO));
    for (size_t i = 0; i < n; i++) bench_plot_run_free(&runs[i]);
}

int cli_bench(int argc, char **argv)
{
    bench_opts o = {.mode = BENCH_ECHO, .size = DEFAULT_SIZE, .conns = DEFAULT_CONNS, .depth = 1,
                    .threads = 1, .duration_ns = DEFAULT_DURATION_MS * 1000000ull,
                    .timeout_ns = DEFAULT_TIMEOUT_MS * 1000000ull};
    cli_tls tls = {0};
    bench_plot_run runs[BENCH_PLOT_MAX_RUNS];
    memset(runs, 0, sizeof runs);
    parse_args(argc, argv, &o, &tls);
    load_earlier(&o, runs);
    if (!o.target) { /* --plot of earlier runs only */
        plot(&o, runs, NULL);
        free(o.req_body);
        return CLI_OK;
    }
    resolve_target(&o, &tls);
    o.raw = bench_raw_wanted(&o, loop_backend());
    size_series(&o);
    o.live = isatty(STDERR_FILENO);
    make_patterns(&o);
    cli_raise_nofile();

    bench_thread *th = calloc(o.threads, sizeof *th);
    bench_stats *all = malloc(sizeof *all);
    if (!th || !all || !(all->series = calloc(o.nseries, sizeof *all->series)))
        cli_die(CLI_ERR, "bench: out of memory");
    /* Threads inherit the mask: the signals wait for wait_run(). */
    sigset_t sigs, old_mask;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old_mask);
    uint64_t t_start = start_threads(&o, th);
    cpu_mark cpu[2];
    wait_run(&o, th, t_start, t_start + o.warmup_ns + o.duration_ns, &sigs, cpu);
    int failed = collect(&o, th, all);
    all->load_cpu_s = cpu[1].self - cpu[0].self;
    all->server_cpu_s = cpu[0].server >= 0 && cpu[1].server >= 0 ? cpu[1].server - cpu[0].server : -1;
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (o.live) fputs("\r\033[K", stderr);
    int status = bench_report(&o, all);
    if (failed) status = CLI_ERR;
    if (o.plot) plot(&o, runs, all);
    free(th);
    free(all->series);
    free(all);
    free(o.req_body);
    if (o.want_pat != o.send_pat) free(o.want_pat);
    free(o.send_pat);
    csock_tls_ctx_free(o.tls);
    return status;
}
