/* A client and its backend, relayed both ways with half-close.
 *
 * Between two plain sockets (TCP or Unix) splice_relay.c moves the bytes:
 * with splice(2) through pipes from the proxy's pool while a direction
 * streams, by a plain copy while it carries messages. Otherwise (TLS on
 * either side) the streams relay, each pausing its source while the
 * other's write queue is above PROXY_HIGH_WATER.
 *
 * An EOF from one side is passed on as a shutdown of the other's write
 * side; the relay ends when both directions have ended that way, or at the
 * first error (reset), or at --idle. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/proxy.h"
#include "cli/proxy_wsback.h"

typedef struct half { /* a direction of the stream relay */
    unsigned char eof;  /* the source finished */
    unsigned char shut; /* the sink's write side is shut down */
    uint64_t bytes;  /* relayed */
} half;

struct relay {
    proxy *px;
    relay *next, *prev;
    backend *be;
    csock_dial *dial;
    csock_stream *s[2]; /* the client's and the backend's streams (stream mode) */
    csock_io *io[2];    /* io[1]: a raw connect's socket (until sp takes it) */
    int fd[2];
    unsigned char attempt;
    unsigned char connecting; /* io[1] is a raw connect in progress */
    int last_err;       /* the last failed connect's */
    uint64_t deadline;  /* of that connect (loop ms; 0: none) */
    half h[2];          /* h[0]: client -> backend, h[1]: backend -> client */
    splice_relay sp;    /* splice mode: both sockets (side 0 the client's) */
    uint32_t hash;      /* of the client's address (--balance source) */
    uint64_t last_io;
    char *peer;         /* the client's address (-v only) */
};

/* ---- the list and the end ---- */

static void link_relay(proxy *px, relay *r)
{
    r->next = px->relays;
    if (px->relays) px->relays->prev = r;
    px->relays = r;
    px->nrelays++;
}

static void unlink_relay(proxy *px, relay *r)
{
    if (r->prev) r->prev->next = r->next;
    else px->relays = r->next;
    if (r->next) r->next->prev = r->prev;
    px->nrelays--;
}

/* Bytes relayed in direction d, by whichever mode relayed them. */
static unsigned long long moved(const relay *r, int d)
{
    return (unsigned long long)(r->h[d].bytes + r->sp.h[d].bytes);
}

static void log_end(const relay *r, int why)
{
    const char *be = r->be ? r->be->name : "(no backend)";
    if (why == 0 || why == CSOCK_EOF)
        cli_warn("closed %s -> %s: %llu bytes up, %llu down", r->peer, be, moved(r, 0), moved(r, 1));
    else
        cli_warn("dropped %s -> %s: %s (%llu bytes up, %llu down)", r->peer, be,
                 csock_strerror(why), moved(r, 0), moved(r, 1));
}

/* why: 0 (both directions finished) or the error that ended the relay. */
static void relay_end(relay *r, int why)
{
    proxy *px = r->px;
    if (px->verbose) log_end(r, why);
    if (r->dial) csock_dial_cancel(r->dial);
    for (int i = 0; i < 2; i++) {
        if (r->s[i]) { /* (a backend's TLS handshake callback must not find r) */
            csock_stream_set_data(r->s[i], NULL);
            csock_stream_close(r->s[i], NULL);
        }
        if (r->io[i]) {
            csock_io_close(r->io[i], NULL);
            close(r->fd[i]);
        }
    }
    splice_relay_close(&r->sp);
    if (r->be) r->be->conns--;
    unlink_relay(px, r);
    free(r->peer);
    free(r);
    proxy_relay_gone(px);
}

/* ---- splice ---- */

void relay_pool_free(proxy *px)
{
    splice_pool_free(&px->pool);
}

static void on_splice_end(splice_relay *sr, int why)
{
    relay_end(sr->data, why);
}

static void raw_connected(relay *r);

/* The raw connect's socket: its connect, then the splice relay's. */
static void on_socket(csock_io *io, int events)
{
    relay *r = csock_io_data(io);
    if (r->connecting) return raw_connected(r);
    splice_relay_events(&r->sp, 1, events);
}

/* The splice relay takes both sockets: a stream's by csock_stream_detach
 * (on io_uring a recv in flight is waited for, so no byte is lost), a raw
 * connect's with its watcher. */
static int start_splice(relay *r)
{
    for (int i = 0; i < 2; i++) {
        int rc;
        if (r->s[i]) {
            rc = splice_relay_take(&r->sp, i, &r->s[i]);
        } else {
            rc = splice_relay_attach(&r->sp, i, r->fd[i], r->io[i]);
            r->fd[i] = -1;
            r->io[i] = NULL;
        }
        if (rc < 0) return rc;
    }
    return splice_relay_start(&r->sp);
}

/* ---- streams ---- */

static void stream_check_done(relay *r)
{
    if (r->h[0].shut && r->h[1].shut) relay_end(r, 0);
}

static void on_shutdown(csock_stream *s, int status)
{
    relay *r = csock_stream_data(s);
    int d = s == r->s[0]; /* shutting down the client ends direction 1 */
    if (status < 0) return relay_end(r, status);
    r->h[d].shut = 1;
    stream_check_done(r);
}

static size_t on_stream_read(csock_stream *s, int status, const char *buf, size_t len)
{
    relay *r = csock_stream_data(s);
    int d = s == r->s[1];
    csock_stream *to = r->s[!d];
    if (status == CSOCK_EOF) {
        r->h[d].eof = 1;
        csock_stream_read_stop(s);
        int rc = csock_stream_shutdown(to, on_shutdown);
        if (rc < 0) relay_end(r, rc);
        return len;
    }
    if (status < 0) {
        relay_end(r, status);
        return len;
    }
    int rc = csock_stream_write(to, buf, len);
    if (rc < 0) {
        relay_end(r, rc);
        return len;
    }
    r->h[d].bytes += len;
    r->last_io = csock_loop_now(r->px->loop);
    if (csock_stream_write_queue_size(to) > PROXY_HIGH_WATER) csock_stream_read_stop(s);
    return len;
}

/* A sink drained: its source may read again. */
static void on_stream_drain(csock_stream *s, int status)
{
    relay *r = csock_stream_data(s);
    int d = s == r->s[0]; /* the direction that writes into s */
    if (status < 0) return relay_end(r, status);
    if (!r->h[d].eof) csock_stream_read_start(r->s[d], on_stream_read);
}

static int start_streams(relay *r)
{
    for (int i = 0; i < 2; i++) {
        csock_stream_set_data(r->s[i], r);
        csock_stream_set_watermarks(r->s[i], 0, 0); /* we throttle the sources ourselves */
        csock_stream_on_drain(r->s[i], on_stream_drain);
    }
    for (int i = 0; i < 2; i++) {
        int rc = csock_stream_read_start(r->s[i], on_stream_read);
        if (rc < 0) return rc;
    }
    return 0;
}

/* ---- connecting to a backend ---- */

static void on_dialed(csock_dial *d, int status, csock_stream *s);
static int raw_eligible(const relay *r, const backend *b);
static int raw_connect(relay *r, const backend *b);
static void connect_failed(relay *r, int status);

static void dial_next(relay *r, const backend *failed)
{
    proxy *px = r->px;
    backend *b = backend_pick(px, r->hash, r->attempt, failed);
    if (!b) return relay_end(r, r->last_err ? r->last_err : -EHOSTUNREACH);
    r->be = b;
    b->conns++; /* counted from the connect on, for leastconn */
    if (raw_eligible(r, b) && !backend_is_ws(b)) { /* (a WebSocket needs a stream) */
        int rc = raw_connect(r, b);
        if (rc < 0) connect_failed(r, rc); /* refused at once (a Unix socket): the next */
        return;
    }
    int rc = backend_dial(b, px->connect_ms, on_dialed, r, &r->dial);
    if (rc < 0) {
        r->dial = NULL;
        relay_end(r, rc);
    }
}

static int is_plain(const csock_stream *s) { return !csock_tls_is_tls(s); }

/* The connect to r->be failed: the next backend gets its chance. */
static void connect_failed(relay *r, int status)
{
    proxy *px = r->px;
    backend *tried = r->be;
    r->be = NULL;
    tried->conns--;
    if (px->verbose) cli_warn("connect %s for %s: %s", tried->name, r->peer, csock_strerror(status));
    backend_failed(tried, status);
    r->last_err = status;
    r->attempt++;
    dial_next(r, tried);
}

/* ---- --send-proxy ---- */

/* The wildcard address of `family` with a's port: the destination named
 * when the address the client reached is of another family than the
 * client (a v6 client behind a balancer that reached us over v4). */
static csock_addr any_of(int family, const csock_addr *a)
{
    csock_addr w = {.scheme = CSOCK_TCP};
    uint16_t port = a->sa.ss_family == AF_INET ? ((const struct sockaddr_in *)&a->sa)->sin_port
                                               : ((const struct sockaddr_in6 *)&a->sa)->sin6_port;
    if (family == AF_INET) {
        struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = port};
        memcpy(&w.sa, &s4, sizeof s4);
        w.len = sizeof s4;
    } else {
        struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = port};
        memcpy(&w.sa, &s6, sizeof s6);
        w.len = sizeof s6;
    }
    return w;
}

ssize_t proxy_header(const proxy *px, const csock_stream *client, unsigned char *buf)
{
    csock_addr src, dst;
    ssize_t n = -EAFNOSUPPORT;
    if (client && csock_stream_peer(client, &src) == 0 && csock_stream_local(client, &dst) == 0) {
        cli_addr_unmap(&src);
        cli_addr_unmap(&dst);
        int inet = src.sa.ss_family == AF_INET || src.sa.ss_family == AF_INET6;
        int dinet = dst.sa.ss_family == AF_INET || dst.sa.ss_family == AF_INET6;
        if (inet && dinet && src.sa.ss_family != dst.sa.ss_family) dst = any_of(src.sa.ss_family, &dst);
        n = csock_proxy_format(px->send_proxy, &src, &dst, buf, CSOCK_PROXY_HEADER_MAX);
    }
    /* A client with no address the version can carry (a Unix client and
     * v1, an unnamed socket): UNKNOWN / LOCAL, as the spec says. */
    if (n == -EAFNOSUPPORT) n = csock_proxy_format(px->send_proxy, NULL, NULL, buf, CSOCK_PROXY_HEADER_MAX);
    return n;
}

int proxy_send_header(const proxy *px, const csock_stream *client, csock_stream *s, int fd)
{
    unsigned char hdr[CSOCK_PROXY_HEADER_MAX];
    ssize_t n = proxy_header(px, client, hdr);
    if (n < 0) return (int)n;
    if (fd < 0) return csock_stream_write(s, hdr, (size_t)n);
    ssize_t w;
    do w = send(fd, hdr, (size_t)n, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0) return -errno;
    return w == n ? 0 : -EAGAIN;
}

/* A ws:// backend: the WebSocket relay (proxy_wsback.c) takes both
 * streams and counts itself; this relay goes without a log line. */
static void hand_to_ws(relay *r)
{
    proxy *px = r->px;
    int rc = proxy_wsback_start(px, r->be, r->s[0], r->s[1], r->peer);
    if (rc < 0) return relay_end(r, rc);
    r->s[0] = r->s[1] = NULL;
    r->be->conns--;
    r->be = NULL;
    unlink_relay(px, r);
    free(r->peer);
    free(r);
}

static void connected(relay *r)
{
    proxy *px = r->px;
    backend_worked(r->be);
    if (px->verbose) cli_warn("relay %s -> %s", r->peer, r->be->name);
    r->last_io = csock_loop_now(px->loop);
    int plain = !px->no_splice && is_plain(r->s[0]) && (!r->s[1] || is_plain(r->s[1]));
    int rc = 0;
    /* The header goes first: nothing is relayed before start_*() returns
     * to the loop. A splice relay's backend may be a raw socket. */
    if (px->send_proxy && !r->be->tls) /* (a tls:// backend had it before its TLS) */
        rc = proxy_send_header(px, r->s[0], r->s[1], !plain ? -1 : r->s[1] ? csock_stream_fd(r->s[1]) : r->fd[1]);
    if (rc == 0 && backend_is_ws(r->be)) return hand_to_ws(r);
    if (rc == 0) rc = plain ? start_splice(r) : start_streams(r);
    if (rc < 0) relay_end(r, rc);
}

/* tls:// under --send-proxy: the backend's TLS is up, after the header. */
static void on_backend_tls(csock_stream *s, int status)
{
    relay *r = csock_stream_data(s);
    if (!r) return; /* the relay ended meanwhile */
    if (status == 0) return connected(r);
    r->s[1] = NULL; /* csock closes it */
    connect_failed(r, status);
}

static void on_dialed(csock_dial *d, int status, csock_stream *s)
{
    relay *r = csock_dial_data(d);
    r->dial = NULL;
    if (status < 0) return connect_failed(r, status);
    r->s[1] = s;
    csock_stream_set_data(s, r);
    int rc = backend_start_tls(r->be, r->s[0], s, on_backend_tls);
    if (rc == 1) return connected(r);
    if (rc < 0) relay_end(r, rc);
}

/* ---- a backend of one address, for a plain client: a socket of our own ----
 * A splice relay needs the backend's socket, not a stream: connecting it
 * directly saves the stream, the dial and a dup per connection. Names,
 * several addresses and TLS go through csock_dial (Happy Eyeballs). */

static int raw_eligible(const relay *r, const backend *b)
{
    return !r->px->no_splice && b->naddrs == 1 && is_plain(r->s[0]) &&
           (b->addrs[0].scheme == CSOCK_TCP || b->addrs[0].scheme == CSOCK_UNIX);
}

static void drop_raw(relay *r)
{
    if (r->io[1]) csock_io_close(r->io[1], NULL);
    if (r->fd[1] >= 0) close(r->fd[1]);
    r->io[1] = NULL;
    r->fd[1] = -1;
    r->connecting = 0;
}

static void raw_connected(relay *r)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(r->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == EINPROGRESS) return; /* not yet: spurious wakeup */
    if (err) {
        drop_raw(r);
        return connect_failed(r, -err);
    }
    r->connecting = 0;
    connected(r);
}

static int raw_connect(relay *r, const backend *b)
{
    const csock_addr *a = &b->addrs[0];
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (a->scheme == CSOCK_TCP) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (connect(fd, (const struct sockaddr *)&a->sa, a->len) < 0 && errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    r->fd[1] = fd;
    int rc = csock_io_new(r->px->loop, fd, on_socket, r, &r->io[1]);
    if (rc == 0) rc = csock_io_start(r->io[1], CSOCK_WRITABLE);
    if (rc < 0) {
        drop_raw(r);
        return rc;
    }
    r->connecting = 1;
    r->deadline = r->px->connect_ms ? csock_loop_now(r->px->loop) + r->px->connect_ms : 0;
    return 0;
}

uint32_t proxy_addr_hash(const csock_addr *a)
{
    /* FNV-1a over the IP address (not the port: a client keeps its backend). */
    const unsigned char *p = NULL;
    size_t n = 0;
    if (a && a->sa.ss_family == AF_INET) {
        p = (const unsigned char *)&((const struct sockaddr_in *)&a->sa)->sin_addr;
        n = 4;
    } else if (a && a->sa.ss_family == AF_INET6) {
        p = (const unsigned char *)&((const struct sockaddr_in6 *)&a->sa)->sin6_addr;
        n = 16;
    }
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

void relay_start(proxy *px, csock_stream *client, const char *peer, const csock_addr *peer_addr)
{
    relay *r = calloc(1, sizeof *r);
    if (r && px->verbose && !(r->peer = strdup(peer))) {
        free(r);
        r = NULL;
    }
    if (!r) {
        if (px->verbose) cli_warn("refused %s: %s", peer, csock_strerror(-ENOMEM));
        csock_stream_close(client, NULL);
        return;
    }
    r->px = px;
    r->s[0] = client;
    csock_stream_set_data(client, r);
    r->fd[0] = r->fd[1] = -1;
    splice_relay_init(&r->sp, px->loop, &px->pool, on_splice_end, r);
    r->hash = proxy_addr_hash(peer_addr);
    r->last_io = csock_loop_now(px->loop);
    link_relay(px, r);
    dial_next(r, NULL);
}

void relay_sweep(proxy *px)
{
    uint64_t now = csock_loop_now(px->loop);
    relay *next;
    for (relay *r = px->relays; r; r = next) {
        next = r->next;
        if (r->connecting && r->deadline && now >= r->deadline) {
            drop_raw(r);
            connect_failed(r, -ETIMEDOUT);
            continue;
        }
        uint64_t last = r->sp.last_io > r->last_io ? r->sp.last_io : r->last_io;
        if (!r->dial && !r->connecting && px->idle_ms && now - last >= px->idle_ms) relay_end(r, -ETIMEDOUT);
    }
}

void relay_close_all(proxy *px)
{
    while (px->relays) relay_end(px->relays, -ECANCELED);
}
