/* The backends of csock proxy: which one a client gets (--balance), which
 * are up (health checks, or without them the clients' own connects), and
 * their addresses (names resolved on the loop, again as they age). */
#include <stdlib.h>
#include <string.h>

#include "cli/proxy.h"
#include "cli/proxy_wsback.h"

#define CHECK_REPLY_MAX 4096 /* an HTTP check reads no more of the reply */

/* The address a backend is dialled at: its text, or for a ws:// URL
 * tcp://HOST:PORT (wss://: tls://) in buf. */
static const char *addr_text(const backend *b, char *buf, size_t size)
{
    if (!backend_is_ws(b)) return b->text;
    return cli_ws_dial_text(b->text, buf, size) == 0 ? buf : b->text;
}

/* tls://HOST:PORT (and wss://): HOST (brackets off an IPv6 address) is
 * the name a TLS started here verifies. */
static void set_tls_host(backend *b, const char *text)
{
    if (strncasecmp(text, "tls://", 6)) return;
    b->tls = 1;
    const char *h = text + 6, *colon = strrchr(h, ':');
    size_t len = colon ? (size_t)(colon - h) : strlen(h);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') h++, len -= 2;
    snprintf(b->host, sizeof b->host, "%.*s", (int)len, h);
}

void backend_add(proxy *px, const char *text)
{
    if (px->nbackends == PROXY_MAX_BACKENDS)
        cli_die(CLI_USAGE, "proxy: at most %d backends (--to)", PROXY_MAX_BACKENDS);
    backend *b = &px->backends[px->nbackends++];
    memset(b, 0, sizeof *b);
    b->px = px;
    b->text = text;
    b->up = 1;
    char buf[CLI_ADDR_TEXT + 16];
    const char *addr = addr_text(b, buf, sizeof buf);
    if (backend_is_ws(b) && (addr == text || strpbrk(text, " \t\r\n#")))
        cli_die(CLI_USAGE, "proxy: bad backend '%s': expected ws://HOST[:PORT][/PATH] or wss://...", text);
    set_tls_host(b, addr);
    int n = csock_addr_resolve(addr, CSOCK_ADDR_NUMERIC, b->addrs, CSOCK_RESOLVE_MAX);
    if (n == CSOCK_ENONAME) {
        /* A name: checked for syntax now, resolved once the loop runs. */
        b->is_name = 1;
        snprintf(b->name, sizeof b->name, "%s", text);
        return;
    }
    if (n < 0) cli_addr(addr, 0, &b->addrs[0]); /* dies with the reason */
    b->naddrs = (size_t)n;
    if (backend_is_ws(b)) snprintf(b->name, sizeof b->name, "%s", text); /* the path says which service */
    else csock_addr_format(&b->addrs[0], b->name, sizeof b->name);
}

/* ---- names ---- */

static void on_resolved(csock_resolve *r, int status, const csock_addr *addrs, size_t n)
{
    backend *b = csock_resolve_data(r);
    b->res = NULL;
    b->resolved_at = csock_loop_now(b->px->loop);
    if (status < 0) {
        /* Keep the old addresses, if any: DNS failing is no reason to drop a
         * backend that answers. */
        if (b->px->verbose) cli_warn("resolve %s: %s", b->text, csock_strerror(status));
        return;
    }
    memcpy(b->addrs, addrs, n * sizeof *addrs);
    b->naddrs = n;
}

static void start_resolving(backend *b)
{
    if (b->res) return;
    char buf[CLI_ADDR_TEXT + 16];
    int rc = csock_resolve_start(b->px->loop, addr_text(b, buf, sizeof buf), NULL, on_resolved, b, &b->res);
    if (rc < 0) {
        b->res = NULL;
        if (b->px->verbose) cli_warn("resolve %s: %s", b->text, csock_strerror(rc));
    }
}

/* ---- connecting ---- */

/* A tls:// backend's addresses as tcp:// ones, for a dial without TLS. */
static int dial_plain(backend *b, csock_dial_opts *o, csock_dial_cb cb, void *data, csock_dial **out)
{
    o->tls = NULL;
    if (!b->naddrs) {
        char text[CLI_ADDR_TEXT + 24], buf[CLI_ADDR_TEXT + 16];
        snprintf(text, sizeof text, "tcp://%s", addr_text(b, buf, sizeof buf) + 6);
        return csock_dial_start(b->px->loop, text, o, cb, data, out);
    }
    csock_addr tcp[CSOCK_RESOLVE_MAX];
    for (size_t i = 0; i < b->naddrs; i++) {
        tcp[i] = b->addrs[i];
        tcp[i].scheme = CSOCK_TCP;
    }
    return csock_dial_addrs(b->px->loop, tcp, b->naddrs, o, cb, data, out);
}

int backend_dial(backend *b, uint64_t timeout_ms, csock_dial_cb cb, void *data, csock_dial **out)
{
    proxy *px = b->px;
    csock_dial_opts o = {.timeout_ms = timeout_ms, .tls = px->tls_client};
    if (b->is_name && !b->res &&
        csock_loop_now(px->loop) - b->resolved_at >= PROXY_RESOLVE_MS)
        start_resolving(b); /* the current addresses serve meanwhile */
    if (b->tls && px->send_proxy) /* TCP first: backend_start_tls does the rest */
        return dial_plain(b, &o, cb, data, out);
    if (b->naddrs) return csock_dial_addrs(px->loop, b->addrs, b->naddrs, &o, cb, data, out);
    char buf[CLI_ADDR_TEXT + 16];
    return csock_dial_start(px->loop, addr_text(b, buf, sizeof buf), &o, cb, data, out);
}

int backend_start_tls(backend *b, const csock_stream *client, csock_stream *s, csock_stream_cb ready)
{
    proxy *px = b->px;
    if (!b->tls || !px->send_proxy) return 1;
    int rc = proxy_send_header(px, client, s, csock_stream_fd(s));
    return rc < 0 ? rc : csock_tls_wrap(s, px->tls_client, b->host, ready);
}

static void set_up(backend *b, int up, const char *why)
{
    if (b->up == up) return;
    b->up = up;
    if (b->px->verbose) cli_warn("backend %s %s%s%s", b->name, up ? "up" : "down",
                                 why ? ": " : "", why ? why : "");
}

void backend_failed(backend *b, int status)
{
    if (b->px->check != CHECK_NONE) return; /* the checks decide */
    b->ok_run = 0;
    if (++b->fail_run < b->px->fall) return;
    b->retry_at = csock_loop_now(b->px->loop) + b->px->check_ms;
    set_up(b, 0, csock_strerror(status));
}

void backend_worked(backend *b)
{
    if (b->px->check != CHECK_NONE) return;
    b->fail_run = 0;
    set_up(b, 1, NULL);
}

/* ---- choosing ---- */

static int usable(const backend *b, uint64_t now)
{
    if (b->up) return 1;
    /* Without checks a down backend gets another chance after a while. */
    return b->px->check == CHECK_NONE && now >= b->retry_at;
}

backend *backend_pick(proxy *px, uint32_t client_hash, unsigned attempt, const backend *failed)
{
    unsigned n = px->nbackends;
    if (attempt >= n) return NULL; /* each backend had its chance */
    uint64_t now = csock_loop_now(px->loop);
    if (px->balance == BALANCE_LEASTCONN) {
        backend *best = NULL;
        for (unsigned i = 0; i < n; i++) {
            backend *b = &px->backends[i];
            if (b == failed || !usable(b, now)) continue;
            if (!best || b->conns < best->conns) best = b;
        }
        return best;
    }
    unsigned start;
    if (failed) start = (unsigned)(failed - px->backends) + 1;
    else if (px->balance == BALANCE_SOURCE) start = client_hash % n;
    else start = px->rr++;
    for (unsigned k = 0; k < n; k++) {
        backend *b = &px->backends[(start + k) % n];
        if (b != failed && usable(b, now)) return b;
    }
    return NULL;
}

/* ---- health checks ---- */

static void check_result(backend *b, int ok, const char *why)
{
    proxy *px = b->px;
    if (ok) {
        b->fail_run = 0;
        if (++b->ok_run >= px->rise) set_up(b, 1, NULL);
    } else {
        b->ok_run = 0;
        if (++b->fail_run >= px->fall) set_up(b, 0, why);
    }
}

static void check_close(backend *b)
{
    if (b->check_s) { /* (a TLS handshake's callback must not count it) */
        csock_stream_set_data(b->check_s, NULL);
        csock_stream_close(b->check_s, NULL);
    }
    b->check_s = NULL;
}

/* "HTTP/1.x 2xx" or 3xx is healthy. */
static size_t on_check_reply(csock_stream *s, int status, const char *buf, size_t len)
{
    backend *b = csock_stream_data(s);
    const char *eol = len ? memchr(buf, '\n', len) : NULL;
    if (!eol && status == 0 && len < CHECK_REPLY_MAX) return 0; /* the status line is not whole yet */
    int ok = eol && len >= 12 && !memcmp(buf, "HTTP/1.", 7) && (buf[9] == '2' || buf[9] == '3');
    char why[64];
    if (!eol) snprintf(why, sizeof why, "%s", status < 0 ? csock_strerror(status) : "no HTTP reply");
    else snprintf(why, sizeof why, "HTTP %.3s", len >= 12 ? buf + 9 : "?");
    check_result(b, ok, ok ? NULL : why);
    check_close(b);
    return len;
}

static void on_check_tls(csock_stream *s, int status);
static void send_check(backend *b);

static void on_check_connected(csock_dial *d, int status, csock_stream *s)
{
    backend *b = csock_dial_data(d);
    proxy *px = b->px;
    b->check_dial = NULL;
    if (status < 0) return check_result(b, 0, csock_strerror(status));
    if (px->check == CHECK_TCP) {
        csock_stream_close(s, NULL);
        return check_result(b, 1, NULL);
    }
    b->check_s = s;
    csock_stream_set_data(s, b);
    int rc = backend_start_tls(b, NULL, s, on_check_tls);
    if (rc == 1) return send_check(b);
    if (rc < 0) {
        check_close(b);
        check_result(b, 0, csock_strerror(rc));
    }
}

/* tls:// under --send-proxy: the check's TLS is up (or failed: csock
 * closes s). */
static void on_check_tls(csock_stream *s, int status)
{
    backend *b = csock_stream_data(s);
    if (!b) return; /* closed by check_close meanwhile */
    if (status == 0) return send_check(b);
    b->check_s = NULL;
    char why[CLI_REASON_TEXT];
    check_result(b, 0, cli_tls_reason(s, status, why, sizeof why));
}

/* The HTTP check's request, on b->check_s. */
static void send_check(backend *b)
{
    proxy *px = b->px;
    csock_stream *s = b->check_s;
    const char *host = b->addrs[0].host[0] ? b->addrs[0].host : "localhost";
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: csock-proxy-check\r\n\r\n",
                     px->check_path, host);
    /* A backend that wants a PROXY header wants it on checks too: LOCAL
     * (v1: UNKNOWN), the proxy's own connection, as HAProxy's
     * check-send-proxy sends it. */
    int rc = px->send_proxy && !b->tls ? proxy_send_header(px, NULL, s, -1) : 0;
    if (rc == 0) rc = n > 0 && (size_t)n < sizeof req ? csock_stream_write(s, req, (size_t)n) : -ENOSPC;
    if (rc == 0) rc = csock_stream_read_start(s, on_check_reply);
    if (rc < 0) {
        check_close(b);
        check_result(b, 0, csock_strerror(rc));
    }
}

static void on_check_timer(csock_timer *t)
{
    backend *b = csock_timer_data(t);
    if (b->check_s) { /* the last one never answered */
        check_close(b);
        check_result(b, 0, "no reply in time");
    }
    if (b->check_dial) return; /* still connecting (its timeout reports) */
    int rc = backend_dial(b, b->px->check_ms, on_check_connected, b, &b->check_dial);
    if (rc < 0) {
        b->check_dial = NULL;
        check_result(b, 0, csock_strerror(rc));
    }
}

int backends_start(proxy *px)
{
    for (unsigned i = 0; i < px->nbackends; i++) {
        backend *b = &px->backends[i];
        if (b->tls && !px->tls_client) { /* wss://: the options' client context */
            cli_tls client = px->tls_opts;
            client.cert = client.key = NULL; /* those are the listener's */
            px->tls_client = cli_tls_client_ctx(&client);
        }
        if (b->is_name) start_resolving(b);
        if (px->check == CHECK_NONE) continue;
        int rc = csock_timer_new(px->loop, &b->check_timer);
        if (rc < 0) return rc;
        csock_timer_set_data(b->check_timer, b);
        csock_timer_start(b->check_timer, on_check_timer, 0, px->check_ms);
    }
    return 0;
}

void backends_stop(proxy *px)
{
    for (unsigned i = 0; i < px->nbackends; i++) {
        backend *b = &px->backends[i];
        if (b->res) csock_resolve_cancel(b->res);
        b->res = NULL;
        if (b->check_dial) csock_dial_cancel(b->check_dial);
        b->check_dial = NULL;
        check_close(b);
        if (b->check_timer) csock_timer_close(b->check_timer, NULL);
        b->check_timer = NULL;
    }
}
