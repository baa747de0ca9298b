/* tlsload: TLS load generator for bench/tls/run.sh (OpenSSL, one thread, poll).
 *
 *   tlsload -p PORT -m hs|echo|sink [-c CONNS] [-t SECS] [-w WARMUP] [-P SRVPID]
 *           [-b BUF] [-S SUITE] [-g GROUP] [-H HOST]
 *
 * hs:   CONNS connections in flight; each does a full TLS 1.3 handshake (no
 *       session cache, no tickets offered back: never resumed), sends "x\n",
 *       waits for the 2 bytes to come back (which also proves the server
 *       finished the handshake), sends close_notify, closes, and is replaced
 *       by a new one. Counts handshakes/s.
 * echo: CONNS long-lived connections; each keeps up to 256 KiB in flight,
 *       writes BUF-byte chunks, checks every byte that comes back. MB/s is
 *       bytes echoed back.
 * sink: CONNS long-lived connections writing BUF-byte chunks as fast as the
 *       server takes them. MB/s is bytes handed to TLS.
 *
 * The window starts after WARMUP seconds (for echo/sink: also after every
 * connection has finished its handshake). Server CPU over the window is
 * utime+stime of SRVPID, of its live children (socat forks one per
 * connection) and of the children it has reaped (cutime+cstime), from /proc.
 * Prints one line of key=value.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MODE_HS, MODE_ECHO, MODE_SINK };
enum { ST_IDLE, ST_HS, ST_SEND, ST_RECV, ST_BULK };
#define WINDOW (256 * 1024)
#define PAT 251

typedef struct conn {
    int fd, st;
    SSL *ssl;
    uint64_t sent, recvd;
    int want; /* POLLIN / POLLOUT wanted by OpenSSL */
} conn;

static int mode, nconn = 16, port, bufsz = 65536;
static double dur = 5, warm = 1;
static const char *host = "127.0.0.1";
static SSL_CTX *ctx;
static struct sockaddr_in sa;
static unsigned char *pat;
static uint64_t n_hs, n_err, n_resumed, bytes;
static char first_info[256];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *m)
{
    fprintf(stderr, "tlsload: %s\n", m);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* utime+stime+cutime+cstime (ticks) of pid, or -1. *ppid gets field 4. */
static long long stat_ticks(int pid, int *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    /* after ") ": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) */
    long long v[18] = {0};
    int field = 3;
    for (char *tok = strtok(p + 2, " "); tok && field <= 17; tok = strtok(NULL, " "), field++)
        v[field] = atoll(tok);
    if (ppid) *ppid = (int)v[4];
    return v[14] + v[15] + v[16] + v[17];
}

/* The server's CPU in ticks: itself, reaped children, and live children. */
static long long tree_ticks(int pid)
{
    long long t = stat_ticks(pid, NULL);
    if (t < 0) return -1;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int c = atoi(e->d_name), pp = 0;
        if (c <= 0 || c == pid) continue;
        long long ct = stat_ticks(c, &pp);
        if (ct >= 0 && pp == pid) t += ct;
    }
    if (d) closedir(d);
    return t;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void conn_close(conn *c, int ok)
{
    if (c->ssl) {
        if (ok) SSL_shutdown(c->ssl); /* send close_notify; do not wait for the reply */
        SSL_free(c->ssl);
    }
    if (c->fd >= 0) close(c->fd);
    c->ssl = NULL, c->fd = -1, c->st = ST_IDLE;
}

static void conn_open(conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) die("connect");
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    c->st = ST_HS, c->sent = c->recvd = 0, c->want = POLLOUT;
}

/* Map an OpenSSL result to the poll events to wait for; 0 = failed. */
static int ssl_want(conn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ: return POLLIN;
    case SSL_ERROR_WANT_WRITE: return POLLOUT;
    default: return 0;
    }
}

static void fail(conn *c)
{
    n_err++;
    ERR_clear_error();
    conn_close(c, 0);
    if (mode == MODE_HS) conn_open(c);
}

/* Advance c as far as it goes without blocking. */
static void step(conn *c)
{
    for (;;) {
        int r;
        switch (c->st) {
        case ST_HS:
            r = SSL_do_handshake(c->ssl);
            if (r != 1) {
                if (!(c->want = ssl_want(c, r))) return fail(c);
                return;
            }
            if (SSL_session_reused(c->ssl)) n_resumed++;
            if (!first_info[0])
                snprintf(first_info, sizeof first_info, "proto=%s suite=%s group=%s",
                         SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
                         OBJ_nid2sn(SSL_get_negotiated_group(c->ssl) & 0xffff));
            c->st = mode == MODE_HS ? ST_SEND : ST_BULK;
            break;
        case ST_SEND:
            r = SSL_write(c->ssl, "x\n", 2);
            if (r <= 0) {
                if (!(c->want = ssl_want(c, r))) return fail(c);
                return;
            }
            c->st = ST_RECV;
            break;
        case ST_RECV: {
            char b[64];
            r = SSL_read(c->ssl, b, sizeof b);
            if (r <= 0) {
                if (!(c->want = ssl_want(c, r))) return fail(c);
                return;
            }
            c->recvd += r;
            if (c->recvd < 2) break;
            n_hs++;
            conn_close(c, 1);
            conn_open(c);
            break;
        }
        case ST_BULK: {
            int progress = 0;
            c->want = 0;
            if (mode == MODE_ECHO) {
                unsigned char b[65536];
                r = SSL_read(c->ssl, b, sizeof b);
                if (r > 0) {
                    if (memcmp(b, pat + c->recvd % PAT, r) != 0) die("echo: corrupt data");
                    c->recvd += r, bytes += r, progress = 1;
                } else {
                    int w = ssl_want(c, r);
                    if (!w) return fail(c);
                    c->want |= w;
                }
            }
            if (mode == MODE_SINK || c->sent - c->recvd < WINDOW) {
                int n = bufsz;
                if (mode == MODE_ECHO && c->sent - c->recvd + n > WINDOW) n = WINDOW - (c->sent - c->recvd);
                r = SSL_write(c->ssl, pat + c->sent % PAT, n);
                if (r > 0) {
                    c->sent += r, progress = 1;
                    if (mode == MODE_SINK) bytes += r;
                } else {
                    int w = ssl_want(c, r);
                    if (!w) return fail(c);
                    c->want |= w;
                }
            }
            if (!progress) return;
            break;
        }
        default: return;
        }
    }
}

int main(int argc, char **argv)
{
    const char *suite = "TLS_AES_128_GCM_SHA256", *group = "X25519";
    int opt, srvpid = 0;
    while ((opt = getopt(argc, argv, "p:m:c:t:w:P:b:S:g:H:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'm':
            mode = !strcmp(optarg, "hs") ? MODE_HS : !strcmp(optarg, "echo") ? MODE_ECHO
                 : !strcmp(optarg, "sink") ? MODE_SINK : -1;
            if (mode < 0) die("mode: hs, echo or sink");
            break;
        case 'c': nconn = atoi(optarg); break;
        case 't': dur = atof(optarg); break;
        case 'w': warm = atof(optarg); break;
        case 'P': srvpid = atoi(optarg); break;
        case 'b': bufsz = atoi(optarg); break;
        case 'S': suite = optarg; break;
        case 'g': group = optarg; break;
        case 'H': host = optarg; break;
        default: die("usage: tlsload -p PORT -m hs|echo|sink [-c N] [-t S] [-w S] [-P PID] [-b BUF]");
        }
    }
    if (!port || nconn < 1 || bufsz < 1) die("need -p PORT, -c >= 1, -b >= 1");
    signal(SIGPIPE, SIG_IGN);
    sa.sin_family = AF_INET, sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("host: an IPv4 address");
    pat = malloc(bufsz + 2 * PAT);
    for (int i = 0; i < bufsz + 2 * PAT; i++) pat[i] = (unsigned char)(i % PAT);

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    if (!SSL_CTX_set_ciphersuites(ctx, suite)) die("suite");
    if (!SSL_CTX_set1_groups_list(ctx, group)) die("group");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    conn *cs = calloc(nconn, sizeof *cs);
    struct pollfd *pf = calloc(nconn, sizeof *pf);
    for (int i = 0; i < nconn; i++) cs[i].fd = -1, conn_open(&cs[i]);

    double t0 = now(), start = 0, end = 0, cpu0 = 0;
    long long srv0 = 0;
    uint64_t hs0 = 0, bytes0 = 0, err0 = 0;
    for (;;) {
        double t = now();
        if (!start && t - t0 >= warm) {
            int ready = 1;
            if (mode != MODE_HS)
                for (int i = 0; i < nconn; i++) ready &= cs[i].st == ST_BULK;
            if (ready || t - t0 > warm + 10) {
                if (!ready) die("not every connection finished its handshake within 10 s");
                start = t, end = t + dur, hs0 = n_hs, bytes0 = bytes, err0 = n_err, cpu0 = self_cpu();
                srv0 = srvpid ? tree_ticks(srvpid) : 0;
            }
        }
        if (start && t >= end) break;
        for (int i = 0; i < nconn; i++) pf[i].fd = cs[i].fd, pf[i].events = cs[i].want, pf[i].revents = 0;
        int r = poll(pf, nconn, 100);
        if (r < 0 && errno != EINTR) die("poll");
        for (int i = 0; i < nconn && r > 0; i++)
            if (pf[i].revents) step(&cs[i]);
    }
    double t1 = now(), cpu1 = self_cpu();
    long long srv1 = srvpid ? tree_ticks(srvpid) : 0;
    double win = t1 - start, hz = (double)sysconf(_SC_CLK_TCK);
    double srv_s = srvpid && srv0 >= 0 && srv1 >= 0 ? (srv1 - srv0) / hz : -1;
    uint64_t nh = n_hs - hs0, nb = bytes - bytes0;
    printf("%s window_s=%.2f errors=%llu resumed=%llu", first_info, win,
           (unsigned long long)(n_err - err0), (unsigned long long)n_resumed);
    if (mode == MODE_HS) {
        printf(" hs_s=%.1f", nh / win);
        if (srv_s >= 0 && nh) printf(" srv_cpu_ms_per_hs=%.4f", srv_s * 1e3 / nh);
    } else {
        printf(" mb_s=%.1f", nb / win / 1e6);
        if (srv_s >= 0 && nb) printf(" srv_cpu_ms_per_mb=%.4f", srv_s * 1e3 / (nb / 1e6));
    }
    printf(" srv_cpu_pct=%.0f lg_cpu_pct=%.0f\n", srv_s >= 0 ? srv_s / win * 100 : -1,
           (cpu1 - cpu0) / win * 100);
    return 0;
}
