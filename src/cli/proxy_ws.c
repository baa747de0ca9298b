/* ws:// and wss:// listeners of csock proxy, the websockify job: a browser's WebSocket
 * on one side, a plain byte stream (tcp, unix, tls) on the other. Each
 * message's bytes (text or binary) go to the backend as they are; what
 * the backend sends comes back as binary messages, one per read. A close
 * from either side ends both: the WebSocket's close becomes the backend's
 * EOF (after the bytes queued for it), the backend's EOF a close 1000.
 *
 * Backpressure both ways, so a fast side never fills the proxy's memory
 * for a slow one: while the backend's write queue holds more than
 * PROXY_HIGH_WATER (or, before it is connected, the messages waiting for
 * it do), the WebSocket is not read (csock_ws_read_stop: the client's
 * sends back up into TCP), and it is read again once that queue has
 * drained; while the WebSocket has more than PROXY_HIGH_WATER queued the
 * backend is not read, until CSOCK_WS_DRAIN. */
#include <stdlib.h>
#include <string.h>

#include "cli/proxy_wsback.h"

typedef struct ws_listener {
    proxy *px;
    csock_http_server *http;
    csock_listener *l;
    int tls;            /* wss://: the TLS handshake before the HTTP server */
    char path[CLI_WS_PATH];
} ws_listener;

typedef struct ws_relay {
    proxy *px;
    csock_ws *ws;       /* NULL once CLOSED came */
    csock_stream *s;    /* the backend, once connected */
    csock_stream *hs;   /* the backend during its TLS handshake (--send-proxy) */
    csock_dial *dial;
    backend *be;
    unsigned attempt;
    int last_err;
    uint32_t hash;
    char *pending;      /* messages' bytes before the backend is connected */
    size_t npending;
    int ws_stopped;     /* the WebSocket is not read: the backend is behind */
    uint64_t up, down;  /* bytes to the backend, to the WebSocket */
    char peer[CLI_ADDR_TEXT];
} ws_relay;

#define WS_MAX_MESSAGE (1u << 20)

/* The end of both sides; freed once the WebSocket's CLOSED has come. */
static void ws_relay_end(ws_relay *w, int why)
{
    proxy *px = w->px;
    if (w->dial) csock_dial_cancel(w->dial);
    w->dial = NULL;
    if (w->hs) { /* its handshake's callback must not find w */
        csock_stream_set_data(w->hs, NULL);
        csock_stream_close(w->hs, NULL);
        w->hs = NULL;
    }
    if (w->s) { /* what the client sent still goes; w may be gone by its drain */
        csock_stream_on_drain(w->s, NULL);
        csock_stream_end(w->s, NULL);
    }
    w->s = NULL;
    if (w->be) w->be->conns--;
    w->be = NULL;
    if (w->ws) { /* say goodbye; CLOSED (and the free) follows */
        csock_ws_close(w->ws, why == 0 || why == CSOCK_EOF ? CSOCK_WS_NORMAL : CSOCK_WS_INTERNAL,
                       NULL, 0);
        return;
    }
    if (px->verbose)
        cli_warn("closed %s -> ws relay: %llu bytes up, %llu down%s%s", w->peer,
                 (unsigned long long)w->up, (unsigned long long)w->down,
                 why && why != CSOCK_EOF ? ": " : "", why && why != CSOCK_EOF ? csock_strerror(why) : "");
    free(w->pending);
    free(w);
    px->nrelays--;
    proxy_relay_gone(px);
}

static size_t on_backend_read(csock_stream *s, int status, const char *buf, size_t len)
{
    ws_relay *w = csock_stream_data(s);
    if (status < 0) {
        if (status != CSOCK_EOF) w->s = NULL, csock_stream_close(s, NULL);
        ws_relay_end(w, status);
        return len;
    }
    if (!w->ws) return len;
    if (csock_ws_send(w->ws, CSOCK_WS_BINARY, buf, len) < 0) {
        ws_relay_end(w, -EPIPE);
        return len;
    }
    w->down += len;
    if (csock_ws_buffered(w->ws) > PROXY_HIGH_WATER) csock_stream_read_stop(s);
    return len;
}

/* Stop reading the WebSocket while `queued` bytes wait for the backend
 * past the high-water mark. */
static void throttle_ws(ws_relay *w, size_t queued)
{
    if (w->ws_stopped || !w->ws || queued <= PROXY_HIGH_WATER) return;
    if (csock_ws_read_stop(w->ws) == 0) w->ws_stopped = 1;
}

/* The backend's write queue emptied: the WebSocket may be read again. */
static void on_backend_drain(csock_stream *s, int status)
{
    ws_relay *w = csock_stream_data(s);
    if (status < 0 || !w->ws_stopped || !w->ws) return; /* an error comes to the read callback */
    w->ws_stopped = 0;
    csock_ws_read_start(w->ws);
}

static int to_backend(ws_relay *w, const char *buf, size_t len)
{
    if (!w->s) {
        /* Held at most a high-water mark and the message that passed it. */
        if (w->npending + len > WS_MAX_MESSAGE + PROXY_HIGH_WATER) return -ENOBUFS;
        char *p = realloc(w->pending, w->npending + len + 1);
        if (!p) return -ENOMEM;
        memcpy(p + w->npending, buf, len);
        w->pending = p;
        w->npending += len;
        throttle_ws(w, w->npending);
        return 0;
    }
    int rc = csock_stream_write(w->s, buf, len);
    if (rc < 0) return rc;
    w->up += len;
    throttle_ws(w, csock_stream_write_queue_size(w->s));
    return 0;
}

static void on_ws(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    ws_relay *w = data;
    switch (ev->kind) {
    case CSOCK_WS_MESSAGE: {
        int rc = to_backend(w, ev->buf, ev->len);
        if (rc < 0) ws_relay_end(w, rc);
        break;
    }
    case CSOCK_WS_DRAIN:
        if (w->s) csock_stream_read_start(w->s, on_backend_read);
        break;
    case CSOCK_WS_CLOSED:
        w->ws = NULL;
        ws_relay_end(w, ev->status);
        break;
    default: break;
    }
    (void)ws;
}

static void ws_dial_next(ws_relay *w, const backend *failed);

static void ws_backend_failed(ws_relay *w, int status)
{
    proxy *px = w->px;
    backend *tried = w->be;
    w->hs = NULL;
    w->be = NULL;
    tried->conns--;
    if (px->verbose) cli_warn("connect %s for %s: %s", tried->name, w->peer, csock_strerror(status));
    backend_failed(tried, status);
    w->last_err = status;
    w->attempt++;
    ws_dial_next(w, tried);
}

static void ws_backend_ready(ws_relay *w, csock_stream *s);

/* tls:// under --send-proxy: the backend's TLS is up, after the header. */
static void on_ws_backend_tls(csock_stream *s, int status)
{
    ws_relay *w = csock_stream_data(s);
    if (!w) return; /* the relay ended meanwhile */
    w->hs = NULL;
    if (status == 0) return ws_backend_ready(w, s);
    ws_backend_failed(w, status); /* csock closes s */
}

static void on_ws_dialed(csock_dial *d, int status, csock_stream *s)
{
    ws_relay *w = csock_dial_data(d);
    w->dial = NULL;
    if (status < 0) return ws_backend_failed(w, status);
    csock_stream_set_data(s, w);
    int rc = backend_start_tls(w->be, w->ws ? csock_ws_stream(w->ws) : NULL, s, on_ws_backend_tls);
    if (rc == 0) w->hs = s;
    if (rc == 1) return ws_backend_ready(w, s);
    if (rc < 0) {
        csock_stream_close(s, NULL);
        ws_relay_end(w, rc);
    }
}

/* The backend is connected (its TLS too): what waited goes, reading starts. */
static void ws_backend_ready(ws_relay *w, csock_stream *s)
{
    proxy *px = w->px;
    backend_worked(w->be);
    if (px->verbose) cli_warn("relay %s -> %s (WebSocket)", w->peer, w->be->name);
    w->s = s;
    csock_stream_set_data(s, w);
    csock_stream_set_watermarks(s, 0, 0);
    csock_stream_on_drain(s, on_backend_drain);
    int rc = px->send_proxy && !w->be->tls ? proxy_send_header(px, w->ws ? csock_ws_stream(w->ws) : NULL, s, -1) : 0;
    if (rc == 0 && w->npending) rc = csock_stream_write(s, w->pending, w->npending);
    w->up += w->npending;
    free(w->pending);
    w->pending = NULL;
    w->npending = 0;
    if (rc == 0) rc = csock_stream_read_start(s, on_backend_read);
    if (rc < 0) return ws_relay_end(w, rc);
    /* Stopped while connecting: on once what waited is in the kernel. */
    if (w->ws_stopped && csock_stream_write_queue_size(s) <= PROXY_HIGH_WATER) on_backend_drain(s, 0);
}

static void ws_dial_next(ws_relay *w, const backend *failed)
{
    backend *b = backend_pick(w->px, w->hash, w->attempt, failed);
    if (!b) return ws_relay_end(w, w->last_err ? w->last_err : -EHOSTUNREACH);
    w->be = b;
    b->conns++;
    int rc = backend_dial(b, w->px->connect_ms, on_ws_dialed, w, &w->dial);
    if (rc < 0) {
        w->dial = NULL;
        ws_relay_end(w, rc);
    }
}

static void upgrade(ws_listener *wl, csock_http_req *r)
{
    proxy *px = wl->px;
    if (px->draining || (px->max_conns && px->nrelays >= px->max_conns)) {
        csock_http_close_after(r);
        return cli_http_answer(r, 503, NULL, NULL);
    }
    ws_relay *w = calloc(1, sizeof *w);
    if (!w) {
        csock_http_close_after(r);
        return cli_http_answer(r, 503, NULL, NULL);
    }
    w->px = px;
    csock_stream *s = csock_http_stream(r);
    csock_addr a;
    if (s && csock_stream_peer(s, &a) == 0) {
        cli_addr_unmap(&a);
        cli_addr_name(&a, w->peer, sizeof w->peer);
        w->hash = proxy_addr_hash(&a);
    } else {
        snprintf(w->peer, sizeof w->peer, "?");
    }
    csock_ws_opts wo = {.max_message = WS_MAX_MESSAGE};
    int rc = csock_ws_accept(r, &wo, on_ws, w, &w->ws);
    if (rc < 0) {
        if (px->verbose) cli_warn("refused %s: WebSocket handshake: %s", w->peer, csock_strerror(rc));
        free(w);
        return;
    }
    px->nrelays++;
    ws_dial_next(w, NULL);
}

static int is(csock_http_str s, const char *text)
{
    return s.len == strlen(text) && !memcmp(s.ptr, text, s.len);
}

static void on_request(csock_http_req *r, void *data)
{
    ws_listener *wl = data;
    if (!is(csock_http_path(r), wl->path)) return cli_http_answer(r, 404, NULL, NULL);
    if (!csock_ws_is_upgrade(r)) return cli_http_answer(r, 426, "Upgrade", "websocket");
    upgrade(wl, r);
}

/* wss://: the handshake is done (or failed: csock closes s). */
static void on_tls_ready(csock_stream *s, int status)
{
    ws_listener *wl = csock_stream_data(s);
    if (status < 0) {
        char peer[CLI_ADDR_TEXT];
        if (wl->px->verbose) cli_log_handshake(s, status, cli_peer_text(s, peer, sizeof peer));
        return;
    }
    csock_http_server_accept(wl->http, s); /* on failure it closed s */
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    ws_listener *wl = csock_listener_data(l);
    if (status < 0) {
        if (wl->px->verbose) cli_log_accept_error(status);
        return;
    }
    if (!wl->tls) {
        csock_http_server_accept(wl->http, s); /* on failure it closed s */
        return;
    }
    if (wl->px->draining) {
        csock_stream_close(s, NULL);
        return;
    }
    csock_stream_set_data(s, wl);
    int rc = csock_tls_accept(s, wl->px->tls_server, on_tls_ready);
    if (rc < 0) { /* out of memory: this connection only */
        if (wl->px->verbose) cli_warn("TLS: %s", csock_strerror(rc));
        csock_stream_close(s, NULL);
    }
}

void proxy_ws_listen(proxy *px, const char *text)
{
    /* Messages to messages would be a WebSocket proxy, not this bridge. */
    for (unsigned i = 0; i < px->nbackends; i++)
        if (backend_is_ws(&px->backends[i]))
            cli_die(CLI_USAGE, "proxy: a ws:// listener relays to byte streams (tcp://, tls://, unix:), not to '%s'",
                    px->backends[i].text);
    ws_listener *wl = calloc(1, sizeof *wl);
    if (!wl) cli_die(CLI_ERR, "listen %s: %s", text, csock_strerror(-ENOMEM));
    wl->px = px;
    csock_addr a;
    cli_ws_listen_addr(text, CSOCK_ADDR_PASSIVE, &a, wl->path);
    wl->tls = a.scheme == CSOCK_TLS;
    a.scheme = CSOCK_TCP; /* the listener is TCP: TLS is ours (on_accept) */
    csock_http_opts ho = {.handler = on_request, .data = wl};
    int rc = csock_http_server_new(px->loop, &ho, &wl->http);
    if (rc == 0) rc = csock_listen(px->loop, &a, &px->lo, on_accept, wl, &wl->l);
    if (rc < 0) cli_die(CLI_ERR, "listen %s: %s", text, csock_strerror(rc));
    csock_addr bound;
    csock_listener_addr(wl->l, &bound);
    cli_print_ws_listening(stdout, &bound, wl->tls, wl->path);
    px->ws_states[px->nws++] = wl;
}

/* Stop accepting. WebSockets already upgraded belong to their relays (the
 * HTTP server has let go of them), so the HTTP server can go now. */
void proxy_ws_stop(proxy *px)
{
    for (unsigned i = 0; i < px->nws; i++) {
        ws_listener *wl = px->ws_states[i];
        csock_listener_close(wl->l, NULL);
        csock_http_server_close(wl->http);
        free(wl);
    }
    px->nws = 0;
}
