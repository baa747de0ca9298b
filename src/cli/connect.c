/* csock connect ADDR: stdin to the peer, the peer to stdout. At EOF on stdin
 * the write side is shut down (half-close) and the peer's reply is still
 * printed until it closes. */
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define HIGH_WATER (256u * 1024) /* stop reading one side while the other lags */
#define MAX_DGRAM 65507

static const char connect_usage[] =
    "usage: csock connect [options] ADDR\n"
    "       csock connect [options] HOST PORT\n"
    "\n"
    "Connect to ADDR (tcp://HOST:PORT, tls://HOST:PORT, udp://HOST:PORT, unix:PATH,\n"
    "unixgram:PATH, HOST:PORT). Standard input goes to the peer and what the peer sends goes to\n"
    "standard output. At the end of input the sending side is shut down and the\n"
    "peer's answer is still printed until the peer closes. Over UDP each input\n"
    "line is one datagram.\n"
    "\n"
    "Options:\n"
    "  -u, --udp           HOST PORT means UDP\n"
    "  -U, --unixsock      ADDR is a Unix socket path\n"
    "  -4 / -6             use IPv4 / IPv6 only\n"
    "  -w, --wait SECS     give up connecting after SECS\n"
    "  -q, --quit-after SECS  datagrams: after end of input, exit once no answer\n"
    "                      came for SECS (default 1)\n"
    "  -v, --verbose       report the connection on stderr\n"
    "  -h, --help          this help\n"
    "\n"
    "Exit status: 0 when the exchange ended normally, 1 on a connection or I/O\n"
    "error (refused, timed out, reset), 2 on a wrong argument.\n";

typedef struct session {
    csock_loop *loop;
    csock_stream *in, *out, *peer;
    csock_dgram *dg;
    csock_timer *quiet;
    uint64_t quiet_ms;
    const char *target;
    int verbose;
    int status;
    int in_eof;
    cli_tls tls_opts;   /* --cert, --ca, --insecure, ... */
    csock_tls_ctx *tls; /* for tls:// */
} session;

static void finish(session *ss, int status)
{
    ss->status = status;
    csock_loop_stop(ss->loop);
}

/* ---- streams ---------------------------------------------------------------- */

static void out_drained_exit(csock_stream *out, int status)
{
    session *ss = csock_stream_data(out);
    finish(ss, status < 0 ? CLI_ERR : ss->status);
}

static size_t on_peer(csock_stream *peer, int status, const char *buf, size_t len)
{
    session *ss = csock_stream_data(peer);
    if (len) csock_stream_write(ss->out, buf, len);
    if (status == CSOCK_EOF) {
        if (ss->verbose) cli_warn("connection closed by %s", ss->target);
        ss->status = CLI_OK;
        if (!csock_stream_write_queue_size(ss->out)) finish(ss, CLI_OK);
        else csock_stream_on_drain(ss->out, out_drained_exit);
    } else if (status < 0) {
        char why[200];
        cli_warn("%s: %s", ss->target, cli_tls_reason(peer, status, why, sizeof why));
        finish(ss, CLI_ERR);
    } else if (csock_stream_write_queue_size(ss->out) > HIGH_WATER) {
        csock_stream_read_stop(peer); /* stdout is slow: let the peer wait */
    }
    return len;
}

static void resume_peer(csock_stream *out, int status)
{
    session *ss = csock_stream_data(out);
    if (status < 0) return finish(ss, CLI_ERR);
    if (ss->peer) csock_stream_read_start(ss->peer, on_peer);
}

static size_t on_stdin(csock_stream *in, int status, const char *buf, size_t len);

static void resume_stdin(csock_stream *peer, int status)
{
    session *ss = csock_stream_data(peer);
    if (status == 0 && !ss->in_eof) csock_stream_read_start(ss->in, on_stdin);
}

static size_t on_stdin(csock_stream *in, int status, const char *buf, size_t len)
{
    session *ss = csock_stream_data(in);
    if (len) csock_stream_write(ss->peer, buf, len);
    if (status == CSOCK_EOF) {
        ss->in_eof = 1;
        csock_stream_shutdown(ss->peer, NULL);
    } else if (status < 0) {
        cli_warn("stdin: %s", csock_strerror(status));
        ss->in_eof = 1;
        csock_stream_shutdown(ss->peer, NULL);
    } else if (csock_stream_write_queue_size(ss->peer) > HIGH_WATER) {
        csock_stream_read_stop(in); /* the peer is slow: stop reading input */
    }
    return len;
}

static void on_connected(csock_stream *peer, int status)
{
    session *ss = csock_stream_data(peer);
    if (status < 0) {
        ss->peer = NULL; /* closed by csock after this callback */
        char why[200];
        cli_warn("connect %s: %s", ss->target, cli_tls_reason(peer, status, why, sizeof why));
        return finish(ss, CLI_ERR);
    }
    if (ss->verbose) cli_warn("connected to %s", ss->target);
    if (ss->verbose && ss->tls)
        cli_warn("%s %s%s%s", csock_tls_version(peer), csock_tls_cipher(peer),
                 csock_tls_alpn(peer) ? " alpn " : "", csock_tls_alpn(peer) ? csock_tls_alpn(peer) : "");
    csock_stream_on_drain(peer, resume_stdin);
    csock_stream_read_start(peer, on_peer);
    csock_stream_read_start(ss->in, on_stdin);
}

/* ---- datagrams -------------------------------------------------------------------- */

static void on_quiet(csock_timer *t) { finish(csock_timer_data(t), CLI_OK); }

static void on_reply(csock_dgram *d, int status, const char *buf, size_t len, const csock_addr *from)
{
    session *ss = csock_dgram_data(d);
    if (status < 0) {
        cli_warn("%s: %s", ss->target, csock_strerror(status));
        return finish(ss, CLI_ERR);
    }
    csock_stream_write(ss->out, buf, len);
    if (ss->in_eof) csock_timer_start(ss->quiet, on_quiet, ss->quiet_ms, 0);
}

/* Each line (with its LF) is one datagram; a line longer than a datagram
 * can carry is sent in datagram-sized pieces. */
static size_t on_stdin_dgram(csock_stream *in, int status, const char *buf, size_t len)
{
    session *ss = csock_stream_data(in);
    size_t used = 0;
    while (used < len) {
        const char *nl = memchr(buf + used, '\n', len - used);
        size_t n = nl ? (size_t)(nl - (buf + used)) + 1 : len - used;
        if (!nl && status == 0 && n < MAX_DGRAM) break; /* wait for the rest of the line */
        if (n > MAX_DGRAM) n = MAX_DGRAM;
        int rc = csock_dgram_send(ss->dg, buf + used, n, NULL);
        if (rc < 0) cli_warn("send %s: %s", ss->target, csock_strerror(rc));
        used += n;
    }
    if (status != 0) {
        ss->in_eof = 1;
        csock_timer_start(ss->quiet, on_quiet, ss->quiet_ms, 0);
        return len;
    }
    return used;
}

static void restore_blocking(void)
{
    /* stdin/stdout may be a terminal shared with the shell: give it back as we found it. */
    for (int fd = 0; fd <= 1; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
}

static void build_target(int argc, char **argv, int optind_, int udp, int unixsock, char *out, size_t size)
{
    int left = argc - optind_;
    if (left < 1) cli_die(CLI_USAGE, "connect: missing ADDR (see csock connect --help)");
    if (left > 2) cli_die(CLI_USAGE, "connect: unexpected argument '%s'", argv[optind_ + 2]);
    const char *a = argv[optind_];
    if (unixsock) {
        if (left != 1) cli_die(CLI_USAGE, "connect: -U takes one PATH");
        snprintf(out, size, "%s:%s", udp ? "unixgram" : "unix", a);
    } else if (left == 2) {
        int v6 = strchr(a, ':') != NULL && a[0] != '[';
        snprintf(out, size, "%s://%s%s%s:%s", udp ? "udp" : "tcp", v6 ? "[" : "", a, v6 ? "]" : "",
                 argv[optind_ + 1]);
    } else if (udp && !strstr(a, "://") && strncmp(a, "unix", 4)) {
        snprintf(out, size, "udp://%s", a);
    } else {
        snprintf(out, size, "%s", a);
    }
}

int cli_connect(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},       {"udp", no_argument, NULL, 'u'},
        {"unixsock", no_argument, NULL, 'U'},   {"wait", required_argument, NULL, 'w'},
        {"quit-after", required_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},    CLI_TLS_LONGOPTS,
        {0, 0, 0, 0},
    };
    session ss = {.quiet_ms = 1000, .status = CLI_OK};
    int udp = 0, unixsock = 0, family = 0, c;
    uint64_t wait_ms = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:huU46w:q:v", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(connect_usage, stdout); fputs(cli_tls_usage, stdout); return CLI_OK;
        case 'u': udp = 1; break;
        case 'U': unixsock = 1; break;
        case '4': family = CSOCK_ADDR_IPV4; break;
        case '6': family = CSOCK_ADDR_IPV6; break;
        case 'w': wait_ms = cli_seconds("--wait", optarg); break;
        case 'q': ss.quiet_ms = cli_seconds("--quit-after", optarg); break;
        case 'v': ss.verbose = 1; break;
        default:
            if (cli_tls_option(&ss.tls_opts, c, optarg)) break;
            cli_bad_option("connect", c, optopt, argv[optind - 1]);
        }
    }
    char target[1100];
    build_target(argc, argv, optind, udp, unixsock, target, sizeof target);
    ss.target = target;
    csock_addr addr;
    cli_addr(target, family, &addr);
    if (addr.scheme == CSOCK_TLS) ss.tls = cli_tls_client_ctx(&ss.tls_opts);

    int rc = csock_loop_new(&ss.loop, NULL);
    if (rc < 0) cli_die(CLI_ERR, "event loop: %s", csock_strerror(rc));
    atexit(restore_blocking);
    if ((rc = csock_stream_open(ss.loop, 1, &ss.out)) < 0)
        cli_die(CLI_ERR, "stdout: %s", csock_strerror(rc));
    if ((rc = csock_stream_open(ss.loop, 0, &ss.in)) < 0)
        cli_die(CLI_ERR, "stdin: %s", csock_strerror(rc));
    csock_stream_set_data(ss.in, &ss);
    csock_stream_set_data(ss.out, &ss);
    csock_stream_on_drain(ss.out, resume_peer);

    if (csock_addr_is_stream(&addr)) {
        csock_connect_opts co = {.timeout_ms = wait_ms};
        rc = ss.tls ? csock_tls_connect(ss.loop, &addr, ss.tls, &co, on_connected, &ss, &ss.peer)
                    : csock_connect(ss.loop, &addr, &co, on_connected, &ss, &ss.peer);
        if (rc < 0) cli_die(CLI_ERR, "connect %s: %s", target, csock_strerror(rc));
    } else {
        rc = csock_dgram_new(ss.loop, NULL, &addr, &ss.dg);
        if (rc < 0) cli_die(CLI_ERR, "connect %s: %s", target, csock_strerror(rc));
        csock_dgram_set_data(ss.dg, &ss);
        csock_dgram_recv_start(ss.dg, on_reply);
        csock_timer_new(ss.loop, &ss.quiet);
        csock_timer_set_data(ss.quiet, &ss);
        csock_stream_read_start(ss.in, on_stdin_dgram);
    }
    rc = csock_loop_run(ss.loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) cli_die(CLI_ERR, "event loop: %s", csock_strerror(rc));
    fflush(stdout);
    csock_tls_ctx_free(ss.tls);
    return ss.status;
}
