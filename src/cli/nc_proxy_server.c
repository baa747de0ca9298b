/* csock listen --proxy-type http|socks5: a proxy server. Each client asks
 * for a target (HTTP CONNECT, or SOCKS5 CONNECT with an IPv4, IPv6 or
 * domain address), with --proxy-auth's credentials when they were given;
 * --allow / --deny decide who may be a client. Names are resolved on a
 * thread of their own that posts the answer back to the loop, so a slow
 * DNS never stalls the other clients. Then the tunnel relays both ways,
 * half-closes passed on, each side read only while the other keeps up:
 * by the splice relay between the two sockets when both are plain, on
 * every backend (splice_relay.c: splice(2) while a direction streams, a
 * copy while it carries messages), else (TLS) by the two streams.
 *
 * A pair's memory: one `pxc` for both streams, freed once the lookup (if
 * any) has come back and both streams' close callbacks have run (or the
 * splice relay that took their sockets has ended). */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/nc_pxs.h"

static void px_unref(pxc *p)
{
    if (--p->refs) return;
    p->srv->npairs--;
    pxf_free(p->fwd);
    free(p);
}

static void on_px_closed(csock_stream *s)
{
    pxc *p = csock_stream_data(s);
    if (s == p->cs) p->cs = NULL, p->dead = 1;
    if (s == p->ts) p->ts = NULL;
    /* One side gone: the pair ends, unless both were ended gracefully (each
     * finishes sending what it has queued: a close would cut that short). */
    if (!(p->eof_c && p->eof_t) && p->cs) csock_stream_close(p->cs, NULL);
    if (!(p->eof_c && p->eof_t) && p->ts) csock_stream_close(p->ts, NULL);
    px_unref(p);
}

/* ---- answers ------------------------------------------------------------------ */

/* Every answer or request of the proxy's own goes out through here. One
 * that cannot be queued (-ENOMEM) ends the pair at once: going on without
 * it left the client waiting for bytes that never came (a SOCKS5 method
 * choice, "200 Connection established" lost while the tunnel opened) until
 * it gave up itself. Returns the write's result. */
int px_write(pxc *p, csock_stream *s, const void *buf, size_t len)
{
    int rc = csock_stream_write(s, buf, len);
    if (rc < 0 && p->cs) csock_stream_close(p->cs, NULL);
    if (rc < 0 && p->ts) csock_stream_close(p->ts, NULL);
    return rc;
}

static int socks5_answer(pxc *p, int rep, const csock_addr *bound)
{
    unsigned char r[22] = {5, (unsigned char)rep, 0, 1};
    size_t n = 10;
    if (bound && bound->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&bound->sa;
        r[3] = 4;
        memcpy(r + 4, &a->sin6_addr, 16);
        memcpy(r + 20, &a->sin6_port, 2);
        n = 22;
    } else if (bound) {
        const struct sockaddr_in *a = (const void *)&bound->sa;
        memcpy(r + 4, &a->sin_addr, 4);
        memcpy(r + 8, &a->sin_port, 2);
    }
    return px_write(p, p->cs, r, n);
}

/* An answer of the proxy's own; `body` (may be NULL) says why in words. */
void px_http_answer(pxc *p, const char *status, const char *extra, const char *body)
{
    char buf[600];
    const char *type = body ? "Content-Type: text/plain\r\n" : "";
    int n = snprintf(buf, sizeof buf, "HTTP/1.1 %s\r\n%s%sConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     status, extra ? extra : "", type, body ? strlen(body) : 0, body ? body : "");
    if (n > 0 && (size_t)n < sizeof buf) px_write(p, p->cs, buf, (size_t)n);
}

/* Refuse and end the client (the answer goes first). */
void px_refuse(pxc *p, int rep, const char *status)
{
    if (p->srv->o->verbose && p->srv->http)
        cli_warn("proxy: %s:%d refused: %s", p->host, p->port, status);
    else if (p->srv->o->verbose)
        cli_warn("proxy: %s:%d refused: SOCKS5 reply %d", p->host, p->port, rep);
    if (p->srv->http) px_http_answer(p, status, NULL, NULL);
    else if (rep >= 0) socks5_answer(p, rep, NULL);
    if (p->ts) csock_stream_close(p->ts, NULL);
    csock_stream_end(p->cs, NULL);
}

static int socks5_code(int err)
{
    switch (err) {
    case -ECONNREFUSED: return 5;
    case -ENETUNREACH: return 3;
    case -EHOSTUNREACH: case -ETIMEDOUT: return 4;
    case CSOCK_ENONAME: return 4;
    default: return 1;
    }
}

/* ---- the relay ----------------------------------------------------------------- */

static csock_stream *other(const pxc *p, const csock_stream *s)
{
    return s == p->cs ? p->ts : p->cs;
}

static size_t on_relay(csock_stream *s, int status, const char *buf, size_t len)
{
    pxc *p = csock_stream_data(s);
    csock_stream *o = other(p, s);
    if (status < 0 && status != CSOCK_EOF) {
        csock_stream_close(s, NULL); /* on_px_closed closes the other */
        return len;
    }
    if (len && csock_stream_write(o, buf, len) < 0) {
        csock_stream_close(s, NULL);
        return len;
    }
    if (status == CSOCK_EOF) {
        int *mine = s == p->cs ? &p->eof_c : &p->eof_t;
        *mine = 1;
        if (p->eof_c && p->eof_t) { /* both done: end each once its queue is out */
            csock_stream_end(o, NULL);
            csock_stream_end(s, NULL);
        } else {
            csock_stream_shutdown(o, NULL);
        }
    } else if (csock_stream_write_queue_size(o) > PX_HIGH) {
        csock_stream_read_stop(s); /* px_relay_drain resumes it */
    }
    return len;
}

/* A sink drained: its source reads again (forwarding has its own readers). */
void px_relay_drain(csock_stream *s, int status)
{
    pxc *p = csock_stream_data(s);
    csock_stream *o = other(p, s);
    if (status < 0 || !o) return;
    csock_read_cb cb = p->fwd ? pxf_read_cb(p, o) : on_relay;
    if (cb && !(o == p->cs ? p->eof_c : p->eof_t)) csock_stream_read_start(o, cb);
}

static void relay_start(pxc *p)
{
    p->state = PX_RELAY;
    csock_stream *both[2] = {p->cs, p->ts};
    for (int i = 0; i < 2; i++) {
        csock_stream_set_watermarks(both[i], 0, 0); /* our own flow control */
        csock_stream_on_drain(both[i], px_relay_drain);
        csock_stream_read_start(both[i], on_relay);
    }
}

/* ---- the splice relay ---------------------------------------------------------------- */

static void on_splice_end(splice_relay *sr, int why)
{
    pxc *p = sr->data;
    if (p->srv->o->verbose && why == 0)
        cli_warn("proxy: tunnel to %s:%d closed: %llu bytes up, %llu down", p->host, p->port,
                 (unsigned long long)sr->h[0].bytes, (unsigned long long)sr->h[1].bytes);
    else if (p->srv->o->verbose)
        cli_warn("proxy: tunnel to %s:%d dropped: %s (%llu bytes up, %llu down)", p->host, p->port,
                 csock_strerror(why), (unsigned long long)sr->h[0].bytes,
                 (unsigned long long)sr->h[1].bytes);
    splice_relay_close(sr);
    if (p->prev) p->prev->next = p->next;
    else p->srv->spliced = p->next;
    if (p->next) p->next->prev = p->prev;
    px_unref(p);
}

/* A tunnel between plain sockets: the splice relay takes both sockets
 * from the streams (csock_stream_detach: once the answer is out and, on
 * io_uring, the client's recv has completed), and the client's bytes that
 * came after its request and wait in its stream go to the target first.
 * Returns 0 (it did; an error there ended the pair) or 1 (TLS: the streams
 * relay, nothing was changed). */
static int splice_tunnel(pxc *p)
{
    if (csock_tls_is_tls(p->cs) || csock_tls_is_tls(p->ts)) return 1;
    pxs *srv = p->srv;
    csock_stream *both[2] = {p->cs, p->ts};
    p->cs = p->ts = NULL;
    p->refs--; /* the two streams' references become the relay's one */
    splice_relay_init(&p->sp, srv->loop, &srv->pool, on_splice_end, p);
    p->next = srv->spliced;
    if (p->next) p->next->prev = p;
    srv->spliced = p;
    int rc = splice_relay_take(&p->sp, 0, &both[0]);
    int rc1 = splice_relay_take(&p->sp, 1, &both[1]); /* (it takes both[1] even if the first failed) */
    if (rc == 0) rc = rc1;
    if (rc == 0) rc = splice_relay_start(&p->sp);
    if (p->srv->o->verbose) cli_warn("proxy: tunnel to %s:%d open (splice)", p->host, p->port);
    if (rc < 0) on_splice_end(&p->sp, rc);
    return 0;
}

/* ---- connecting to the target ------------------------------------------------------ */

static void on_target(csock_stream *s, int status)
{
    pxc *p = csock_stream_data(s);
    if (status < 0) {
        p->ts = NULL; /* csock closes it after this callback (on_px_closed too) */
        csock_stream_on_close(s, NULL);
        px_unref(p);
        return px_refuse(p, socks5_code(status), status == -ETIMEDOUT ? "504 Gateway Timeout"
                                                                   : "502 Bad Gateway");
    }
    if (p->fwd) return pxf_start(p);
    if (p->srv->http) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        if (px_write(p, p->cs, ok, sizeof ok - 1) < 0) return;
    } else {
        csock_addr bound;
        int rc = csock_stream_local(s, &bound);
        if (socks5_answer(p, 0, rc == 0 ? &bound : NULL) < 0) return;
    }
    if (splice_tunnel(p) == 0) return;
    if (p->srv->o->verbose) cli_warn("proxy: tunnel to %s:%d open", p->host, p->port);
    relay_start(p);
}

static void connect_target(pxc *p, const csock_addr *a)
{
    csock_connect_opts co = {.timeout_ms = PX_CONNECT_MS};
    int rc = csock_connect(p->srv->loop, a, &co, on_target, p, &p->ts);
    if (rc < 0) {
        p->ts = NULL;
        return px_refuse(p, socks5_code(rc), "502 Bad Gateway");
    }
    p->refs++;
    csock_stream_on_close(p->ts, on_px_closed);
}

/* A name's answer (csock_resolve_start: getaddrinfo on a thread of its own,
 * posted back through a node embedded in the request, so the answer cannot
 * be lost to an allocation failure, and the loop keeps running until it
 * came). A hand-made thread that posted with csock_loop_post leaked the
 * pair, its client waiting forever, when that post failed (ENOMEM), and
 * could post into a loop already freed at SIGTERM. */
static void on_resolved(csock_resolve *r, int status, const csock_addr *addrs, size_t n)
{
    pxc *p = csock_resolve_data(r);
    (void)n;
    if (!p->dead && p->cs) {
        if (status < 0) px_refuse(p, 4, "502 Bad Gateway");
        else connect_target(p, &addrs[0]);
    }
    px_unref(p);
}

void px_resolve(pxc *p)
{
    char text[NC_TARGET_TEXT];
    int v6 = strchr(p->host, ':') != NULL;
    snprintf(text, sizeof text, "tcp://%s%s%s:%d", v6 ? "[" : "", p->host, v6 ? "]" : "", p->port);
    p->state = PX_WAIT;
    csock_stream_read_stop(p->cs); /* nothing more until the tunnel is up */
    csock_addr a;
    if (csock_addr_parse(text, CSOCK_ADDR_NUMERIC, &a) == 0) return connect_target(p, &a);
    csock_resolve_opts ro = {.flags = p->srv->o->family, .max = 1};
    if (csock_resolve_start(p->srv->loop, text, &ro, on_resolved, p, NULL) < 0)
        return px_refuse(p, 1, "500 Internal Server Error");
    p->refs++;
}

/* ---- what the client asks for ------------------------------------------------------ */

static int auth_ok(const pxc *p, const unsigned char *b, size_t ulen, size_t plen)
{
    const char *a = p->srv->o->proxy_auth, *colon = strchr(a, ':');
    return (size_t)(colon - a) == ulen && strlen(colon + 1) == plen &&
           !memcmp(a, b + 2, ulen) && !memcmp(colon + 1, b + 3 + ulen, plen);
}

/* Each step judges a wrong version from its first byte, so a client of
 * another protocol (SOCKS4, HTTP) is answered at once instead of waiting
 * out the request timeout for bytes that will never come. */
static size_t socks5_greeting(pxc *p, const unsigned char *b, size_t len)
{
    if (len >= 1 && b[0] != 5) {
        static const unsigned char no[2] = {5, 0xFF};
        if (px_write(p, p->cs, no, 2) == 0) csock_stream_end(p->cs, NULL);
        return len;
    }
    if (len < 2 || len < 2u + b[1]) return 0;
    int want = p->srv->o->proxy_auth ? 2 : 0;
    unsigned char r[2] = {5, 0xFF};
    if (b[0] == 5 && memchr(b + 2, want, b[1])) r[1] = (unsigned char)want;
    if (px_write(p, p->cs, r, 2) < 0) return len;
    if (r[1] == 0xFF) return csock_stream_end(p->cs, NULL), len;
    p->state = want ? PX_AUTH : PX_REQUEST;
    return 2u + b[1];
}

static size_t socks5_auth(pxc *p, const unsigned char *b, size_t len)
{
    if (len == 0) return 0;
    size_t ulen = 0, plen = 0;
    if (b[0] == 1) { /* else a wrong version: refused now */
        if (len < 2 || len < 3u + b[1] || len < 3u + b[1] + b[2 + b[1]]) return 0;
        ulen = b[1], plen = b[2 + ulen];
    }
    int ok = b[0] == 1 && auth_ok(p, b, ulen, plen);
    unsigned char r[2] = {1, ok ? 0 : 1};
    if (px_write(p, p->cs, r, 2) < 0) return len;
    if (!ok) {
        if (p->srv->o->verbose) cli_warn("proxy: a client's username/password refused");
        return csock_stream_end(p->cs, NULL), len;
    }
    p->state = PX_REQUEST;
    return 3 + ulen + plen;
}

static size_t socks5_request(pxc *p, const unsigned char *b, size_t len)
{
    if ((len >= 1 && b[0] != 5) || (len >= 2 && b[1] != 1))
        return px_refuse(p, 7, "command not supported"), len;
    if (len < 5) return 0;
    size_t need = b[3] == 1 ? 10 : b[3] == 4 ? 22 : b[3] == 3 ? 7u + b[4] : 5;
    if (len < need) return 0;
    if (b[0] != 5 || b[1] != 1) return px_refuse(p, 7, "command not supported"), len;
    if (b[3] == 1) inet_ntop(AF_INET, b + 4, p->host, sizeof p->host);
    else if (b[3] == 4) inet_ntop(AF_INET6, b + 4, p->host, sizeof p->host);
    else if (b[3] == 3 && b[4]) memcpy(p->host, b + 5, b[4]), p->host[b[4]] = '\0';
    else return px_refuse(p, 8, "address type not supported"), len;
    p->port = b[need - 2] << 8 | b[need - 1];
    px_resolve(p);
    return need;
}

/* Proxy-Authorization: Basic <the expected base64>, anywhere in the header. */
int px_http_auth_ok(const pxc *p, const char *h, size_t len)
{
    static const char field[] = "\r\nproxy-authorization:";
    for (size_t i = 0; i + sizeof field < len; i++) {
        if (strncasecmp(h + i, field, sizeof field - 1)) continue;
        const char *v = h + i + sizeof field - 1, *end = h + len;
        while (v < end && *v == ' ') v++;
        size_t n = strlen(p->srv->auth_b64);
        if (end - v > 6 && !strncasecmp(v, "Basic ", 6) && (size_t)(end - v - 6) >= n + 2 &&
            !memcmp(v + 6, p->srv->auth_b64, n) && v[6 + n] == '\r')
            return 1;
    }
    return 0;
}

static size_t http_request_in(pxc *p, const char *b, size_t len)
{
    const char *end = NULL;
    for (size_t i = 0; i + 4 <= len && !end; i++)
        if (!memcmp(b + i, "\r\n\r\n", 4)) end = b + i + 4;
    size_t hlen = end ? (size_t)(end - b) : len; /* whole or not yet: the same bound */
    if (hlen > PX_HEAD_MAX) return px_refuse(p, -1, "431 Request Header Fields Too Large"), len;
    if (!end) return 0;
    char target[300];
    int port = 0;
    if (strncmp(b, "CONNECT ", 8)) return pxf_request(p, b, hlen);
    if (sscanf(b + 8, "%299s", target) != 1) return px_refuse(p, -1, "400 Bad Request"), len;
    char *colon = strrchr(target, ':');
    if (colon) port = atoi(colon + 1), *colon = '\0';
    size_t tl = strlen(target);
    if (tl > 1 && target[0] == '[' && target[tl - 1] == ']') memmove(target, target + 1, tl - 2), target[tl - 2] = '\0';
    if (!colon || port <= 0 || port > 65535 || !target[0]) return px_refuse(p, -1, "400 Bad Request"), len;
    snprintf(p->host, sizeof p->host, "%s", target);
    p->port = port;
    if (p->srv->o->proxy_auth && !px_http_auth_ok(p, b, hlen)) {
        px_http_answer(p, "407 Proxy Authentication Required",
                       "Proxy-Authenticate: Basic realm=\"csock\"\r\n", NULL);
        if (p->srv->o->verbose) cli_warn("proxy: a client without the right credentials");
        return csock_stream_end(p->cs, NULL), len;
    }
    px_resolve(p);
    return hlen;
}

static size_t on_client(csock_stream *s, int status, const char *buf, size_t len)
{
    pxc *p = csock_stream_data(s);
    if (status < 0 && status != CSOCK_EOF) return csock_stream_close(s, NULL), len;
    size_t used = 0;
    const unsigned char *b = (const unsigned char *)buf;
    size_t before;
    do { /* a client may send its greeting and request at once */
        before = used;
        int st = p->state;
        if (st == PX_GREETING) used += socks5_greeting(p, b + used, len - used);
        else if (st == PX_AUTH) used += socks5_auth(p, b + used, len - used);
        else if (st == PX_REQUEST) used += socks5_request(p, b + used, len - used);
        else if (st == PX_HTTP) used += http_request_in(p, buf + used, len - used);
    } while (used > before && used < len && p->state <= PX_HTTP);
    if (status == CSOCK_EOF && p->state <= PX_HTTP) csock_stream_close(s, NULL);
    return used;
}

/* ---- the server ---------------------------------------------------------------------- */

static void on_px_accept(csock_listener *l, csock_stream *s, int status)
{
    pxs *srv = csock_listener_data(l);
    if (status < 0) return;
    csock_addr peer;
    char name[CLI_ADDR_TEXT] = "?";
    if (csock_stream_peer(s, &peer) == 0) {
        csock_addr shown = peer; /* a v4 client of the dual-stack [::] named as listen -v does */
        cli_addr_unmap(&shown);
        csock_addr_format(&shown, name, sizeof name);
    }
    if (!nc_acl_permits(srv->o, &peer)) {
        if (srv->o->verbose) cli_warn("proxy: %s denied (--allow/--deny)", name);
        return csock_stream_close(s, NULL);
    }
    /* -m counts pairs, not the listener's streams: a spliced tunnel has none. */
    if (srv->o->max_conns && srv->npairs >= srv->o->max_conns) {
        if (srv->o->verbose) cli_warn("proxy: %s refused: %u clients already (-m)", name, srv->npairs);
        return csock_stream_close(s, NULL);
    }
    pxc *p = calloc(1, sizeof *p);
    if (!p) return csock_stream_close(s, NULL);
    *p = (pxc){.srv = srv, .cs = s, .state = srv->http ? PX_HTTP : PX_GREETING, .refs = 1};
    srv->npairs++;
    if (srv->o->verbose) cli_warn("proxy: client %s", name);
    csock_stream_set_data(s, p);
    csock_stream_on_close(s, on_px_closed);
    csock_stream_set_read_timeout(s, PX_REQUEST_MS);
    csock_stream_read_start(s, on_client);
}

static void on_px_signal(csock_signal *sig, int signum)
{
    (void)signum;
    csock_loop_stop(csock_signal_data(sig));
}

static void close_all(csock_handle_kind kind, void *h, void *data)
{
    (void)data;
    if (kind == CSOCK_HANDLE_STREAM) csock_stream_close(h, NULL);
    else if (kind == CSOCK_HANDLE_LISTENER) csock_listener_close(h, NULL);
    else if (kind == CSOCK_HANDLE_SIGNAL) csock_signal_close(h, NULL);
    else if (kind == CSOCK_HANDLE_TIMER) csock_timer_close(h, NULL);
}

int nc_proxy_serve(const nc_opts *o, const char *target)
{
    pxs srv = {.o = o, .http = o->proxy_type == NC_PROXY_HTTP};
    if (o->proxy_auth) nc_base64((const unsigned char *)o->proxy_auth, strlen(o->proxy_auth),
                                 srv.auth_b64);
    csock_addr addr, bound;
    cli_addr(target, o->family | CSOCK_ADDR_PASSIVE, &addr);
    if (addr.scheme != CSOCK_TCP)
        cli_die(CLI_USAGE, "listen --proxy-type: %s: a proxy listens on tcp:// only", target);
    cli_raise_nofile();
    int rc = csock_loop_new(NULL, &srv.loop);
    if (rc < 0) cli_die_loop("event loop", rc);
    cli_hold_stop_signals();
    static const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        rc = csock_signal_new(srv.loop, &srv.sig[i]);
        if (rc == 0) rc = csock_signal_start(srv.sig[i], on_px_signal, sigs[i]);
        if (rc < 0) cli_die(CLI_ERR, "signal: %s", csock_strerror(rc));
        csock_signal_set_data(srv.sig[i], srv.loop);
    }
    csock_listen_opts lo = {0};
    rc = csock_listen(srv.loop, &addr, &lo, on_px_accept, &srv, &srv.listener);
    if (rc == 0) rc = csock_listener_addr(srv.listener, &bound);
    if (rc < 0) cli_die(CLI_ERR, "listen %s: %s", target, csock_strerror(rc));
    if (o->verbose || csock_addr_port(&addr) == 0) cli_print_listening(stderr, &bound);
    rc = csock_loop_run(srv.loop, CSOCK_RUN_DEFAULT);
    while (srv.spliced) on_splice_end(&srv.spliced->sp, -ECANCELED);
    csock_loop_walk(srv.loop, close_all, NULL);
    while (csock_loop_run(srv.loop, CSOCK_RUN_DEFAULT) > 0) {
    }
    csock_loop_free(srv.loop);
    splice_pool_free(&srv.pool);
    return rc < 0 ? CLI_ERR : CLI_OK;
}
