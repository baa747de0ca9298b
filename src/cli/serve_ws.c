/* csock serve echo|upper|discard on ws:// and wss:// addresses.
 *
 * A ws:// endpoint is an HTTP server path: a GET on it with Upgrade becomes
 * a WebSocket (csock_ws_accept), a request without Upgrade is answered 426,
 * another path 404. Each loop of the csock_server has its own HTTP server
 * per endpoint, made on the main thread before anything listens (as serve
 * http does), and its own list of open WebSockets: the drain sends each a
 * close 1001, and -i is one sweep timer per loop over that list (a timer
 * per connection would cost a heap operation per message).
 *
 * A message is a message: echo sends it back with its type, upper answers
 * it in upper case (ASCII letters only, so a text stays UTF-8), discard
 * drops it. Sends queue in the stream, whose watermarks pause reading from
 * a client that does not read its replies. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/serve_ws.h"

/* -i: idle connections are looked for this often at most (and at least,
 * for short timeouts, every quarter of the timeout). */
#define SWEEP_MAX_MS 1000
#define SWEEP_MIN_MS 20
/* upper copies a message this small on the stack */
#define STACK_COPY 4096
/* What the drain and -i say in their close frames. */
#define GOING_AWAY "going away"
#define IDLE "idle timeout"

typedef struct ws_loop ws_loop;
typedef struct wsconn wsconn;

/* One ws:// endpoint. Its acceptor comes first: a connection's conn->acc
 * leads back here. */
typedef struct ws_ep {
    cli_acceptor acc;
    serve_ws *w;
    char path[CLI_WS_PATH];
    size_t path_len;
    unsigned no; /* in ws_loop.routes */
    int tls;
} ws_ep;

/* A loop's HTTP server for one endpoint; its handler's data. */
typedef struct route {
    ws_ep *ep;
    ws_loop *pl;
    csock_http_server *hs;
} route;

struct ws_loop {
    serve_ws *w;
    csock_loop *loop;
    route routes[CLI_MAX_ENDPOINTS];
    wsconn *head;       /* the open WebSockets, for the drain and -i */
    csock_timer *sweep; /* -i */
    int draining;
};

struct serve_ws {
    server *srv;
    ws_ep eps[CLI_MAX_ENDPOINTS];
    unsigned neps;
    ws_loop **loops;
    unsigned nloops;
    csock_ws_opts wopts;
};

struct wsconn {
    csock_ws *ws;
    ws_loop *pl;
    wsconn *prev, *next;
    uint64_t last; /* -i: loop time the sweep last saw bytes move */
    uint64_t seen; /* -i: bytes in and out then */
    uint64_t msgs_in, msgs_out;
    char peer[]; /* -v only (CLI_ADDR_TEXT bytes): an idle connection stays small */
};

/* ---- the connection list ------------------------------------------------------ */

static void link_conn(ws_loop *pl, wsconn *c)
{
    c->pl = pl;
    c->next = pl->head;
    if (pl->head) pl->head->prev = c;
    pl->head = c;
}

static void unlink_conn(wsconn *c)
{
    ws_loop *pl = c->pl;
    if (c->prev)
        c->prev->next = c->next;
    else
        pl->head = c->next;
    if (c->next) c->next->prev = c->prev;
}

/* Bytes in and out so far: idle means that no byte moved either way (as
 * for tcp://), so a large message arriving slowly is not idle. */
static uint64_t moved(const wsconn *c)
{
    uint64_t in = 0, out = 0;
    csock_stream_counts(csock_ws_stream(c->ws), &in, &out);
    return in + out;
}

/* ---- messages ------------------------------------------------------------------ */

static void on_message(wsconn *c, const csock_ws_event *ev)
{
    const service *svc = c->pl->w->srv->svc;
    c->msgs_in++;
    char small[STACK_COPY], *msg = (char *)ev->buf; /* written only by a `changes` service */
    if (svc->changes) {
        msg = ev->len <= sizeof small ? small : malloc(ev->len);
        if (!msg) {
            csock_ws_close(c->ws, CSOCK_WS_INTERNAL, NULL, 0);
            return;
        }
        memcpy(msg, ev->buf, ev->len);
    }
    long n = svc->reply(msg, ev->len);
    int rc = n < 0 ? 0 : csock_ws_send(c->ws, ev->type, msg, (size_t)n);
    if (msg != small && msg != ev->buf) free(msg);
    if (n >= 0 && rc == 0) c->msgs_out++;
    /* -EPIPE: closing already; anything else (-ENOMEM) ends it politely. */
    if (rc < 0 && rc != -EPIPE) csock_ws_close(c->ws, CSOCK_WS_INTERNAL, NULL, 0);
}

static void log_closed(const wsconn *c, const csock_ws_event *ev)
{
    char counts[64], sent[24] = "";
    cli_counts_text(csock_ws_stream(c->ws), counts, sizeof counts);
    if (ev->sent) snprintf(sent, sizeof sent, ", sent %d", ev->sent);
    if (ev->status == 0)
        cli_warn("closed %s: code %d%s (%s; %llu messages in, %llu out)", c->peer, ev->code, sent,
                 counts, (unsigned long long)c->msgs_in, (unsigned long long)c->msgs_out);
    else
        cli_warn("dropped %s: %s, code %d%s (%s; %llu messages in, %llu out)", c->peer,
                 csock_strerror(ev->status), ev->code, sent, counts, (unsigned long long)c->msgs_in,
                 (unsigned long long)c->msgs_out);
}

static void on_ws(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    wsconn *c = data;
    if (ev->kind == CSOCK_WS_MESSAGE) return on_message(c, ev);
    if (ev->kind != CSOCK_WS_CLOSED) return;
    if (c->pl->w->srv->verbose) log_closed(c, ev);
    unlink_conn(c);
    free(c);
}

/* ---- the HTTP side ------------------------------------------------------------- */

static int is_method(csock_http_str m, const char *name)
{
    return m.len == strlen(name) && !memcmp(m.ptr, name, m.len);
}

/* Not a WebSocket request: 404 for another path, 426 (405 for a method
 * other than GET and HEAD) for this one. */
static void answer_plain(csock_http_req *r, const ws_ep *ep)
{
    csock_http_str p = csock_http_path(r), m = csock_http_method(r);
    static const char nf[] = "not found\n", up[] = "this is a WebSocket endpoint: upgrade\n",
                      na[] = "method not allowed\n";
    if (p.len != ep->path_len || memcmp(p.ptr, ep->path, p.len)) {
        csock_http_send(r, 404, nf, sizeof nf - 1);
        return;
    }
    if (!is_method(m, "GET") && !is_method(m, "HEAD")) {
        csock_http_add_header(r, "Allow", "GET");
        csock_http_send(r, 405, na, sizeof na - 1);
        return;
    }
    csock_http_add_header(r, "Upgrade", "websocket");
    csock_http_send(r, 426, up, sizeof up - 1);
}

/* The WebSocket's own timeouts: -i is the sweep's, the rest the stream's. */
static void set_timeouts(const server *srv, csock_ws *ws)
{
    csock_stream *s = csock_ws_stream(ws);
    if (srv->read_ms) csock_stream_set_read_timeout(s, srv->read_ms);
    if (srv->write_ms) csock_stream_set_write_timeout(s, srv->write_ms);
}

static void on_request(csock_http_req *r, void *data)
{
    route *rt = data;
    server *srv = rt->ep->w->srv;
    csock_http_str p = csock_http_path(r);
    if (!csock_ws_is_upgrade(r) || p.len != rt->ep->path_len || memcmp(p.ptr, rt->ep->path, p.len))
        return answer_plain(r, rt->ep);
    if (rt->pl->draining) { /* the close 1001s have gone: no new WebSocket */
        csock_http_close_after(r);
        csock_http_send(r, 503, "shutting down\n", 14);
        return;
    }
    wsconn *c = calloc(1, sizeof *c + (srv->verbose ? CLI_ADDR_TEXT : 0));
    if (!c) {
        csock_http_close_after(r);
        csock_http_send(r, 503, "out of memory\n", 14);
        return;
    }
    if (srv->verbose) cli_peer_text(csock_http_stream(r), c->peer, CLI_ADDR_TEXT);
    int rc = csock_ws_accept(r, &rt->ep->w->wopts, on_ws, c, &c->ws);
    if (rc < 0) { /* answered (400, 403, 426...) by csock_ws_accept */
        if (srv->verbose) cli_warn("refused WebSocket from %s: %s", c->peer, csock_strerror(rc));
        free(c);
        return;
    }
    link_conn(rt->pl, c);
    c->last = csock_loop_now(rt->pl->loop);
    c->seen = moved(c);
    set_timeouts(srv, c->ws);
    if (srv->verbose) {
        const char *sub = csock_ws_subprotocol(c->ws);
        cli_warn("WebSocket from %s: path %s, subprotocol %s", c->peer, rt->ep->path,
                 sub ? sub : "none");
    }
}

/* -v: every answer but the 101 (a WebSocket has lines of its own). */
static void log_request(const csock_http_req *r, int status, int64_t body_len, void *data)
{
    if (status == 101) return;
    char peer[CLI_ADDR_TEXT] = "?";
    csock_stream *s = csock_http_stream(r);
    if (s) cli_peer_text(s, peer, sizeof peer);
    csock_http_str m = csock_http_method(r), t = csock_http_target(r);
    int tl = t.len > 200 ? 200 : (int)t.len, ml = m.len > 16 ? 16 : (int)m.len;
    if (m.ptr && t.ptr)
        cli_warn("http %s: \"%.*s %.*s\" %d", peer, ml, m.ptr, tl, t.ptr, status);
    else
        cli_warn("http %s: %d", peer, status);
}

/* The connection is ready (wss: after its TLS handshake): HTTP takes it
 * over, data, close callback and all, so serve.c's conn goes now. */
static void ws_ready(csock_stream *s, int status)
{
    if (!serve_handshake_ok(s, status)) return;
    conn *cn = csock_stream_data(s);
    const ws_ep *ep = (const ws_ep *)cn->acc;
    csock_stream_set_data(s, NULL);
    csock_stream_on_close(s, NULL);
    free(cn);
    ws_loop *pl = NULL;
    csock_loop *loop = csock_stream_loop(s);
    for (unsigned i = 0; i < ep->w->nloops && !pl; i++)
        if (ep->w->loops[i]->loop == loop) pl = ep->w->loops[i];
    if (!pl || !pl->routes[ep->no].hs) {
        csock_stream_close(s, NULL);
        return;
    }
    csock_http_server_accept(pl->routes[ep->no].hs, s); /* on failure it closed s */
}

/* ---- the loops ----------------------------------------------------------------- */

static void sweep(csock_timer *t)
{
    ws_loop *pl = csock_timer_data(t);
    uint64_t now = csock_loop_now(pl->loop), idle = pl->w->srv->idle_ms;
    for (wsconn *c = pl->head; c; c = c->next) { /* CLOSED comes later: the list holds */
        uint64_t n = moved(c);
        if (n != c->seen) {
            c->seen = n;
            c->last = now;
        } else if (now - c->last >= idle) {
            csock_ws_close(c->ws, CSOCK_WS_GOING_AWAY, IDLE, sizeof IDLE - 1);
        }
    }
}

void serve_ws_loop_start(server *srv, csock_loop *loop, unsigned index)
{
    serve_ws *w = srv->ws;
    if (!w || !srv->idle_ms || index >= w->nloops) return;
    ws_loop *pl = w->loops[index];
    uint64_t every = srv->idle_ms / 4;
    if (every > SWEEP_MAX_MS) every = SWEEP_MAX_MS;
    if (every < SWEEP_MIN_MS) every = SWEEP_MIN_MS;
    /* Without it -i does not apply to WebSockets: say so, serve anyway. */
    if (csock_timer_new(loop, &pl->sweep) < 0) {
        cli_warn("serve: -i: %s", csock_strerror(-ENOMEM));
        return;
    }
    csock_timer_set_data(pl->sweep, pl);
    csock_timer_unref(pl->sweep); /* housekeeping: it never holds the loop */
    csock_timer_start(pl->sweep, sweep, every, every);
}

static void stop_sweep(ws_loop *pl)
{
    if (pl->sweep) csock_timer_close(pl->sweep, NULL);
    pl->sweep = NULL;
}

/* SIGTERM: every WebSocket gets a close 1001 and the drain time to finish
 * its closing handshake (the close timeout is the drain timeout). */
void serve_ws_loop_drain(server *srv, unsigned index)
{
    serve_ws *w = srv->ws;
    if (!w || index >= w->nloops) return;
    ws_loop *pl = w->loops[index];
    pl->draining = 1;
    stop_sweep(pl);
    for (wsconn *c = pl->head; c; c = c->next)
        csock_ws_close(c->ws, CSOCK_WS_GOING_AWAY, GOING_AWAY, sizeof GOING_AWAY - 1);
}

static void close_servers(ws_loop *pl)
{
    for (unsigned i = 0; i < CLI_MAX_ENDPOINTS; i++) {
        if (pl->routes[i].hs) csock_http_server_close(pl->routes[i].hs); /* not the WebSockets */
        pl->routes[i].hs = NULL;
    }
    stop_sweep(pl);
}

void serve_ws_loop_stop(server *srv, unsigned index)
{
    serve_ws *w = srv->ws;
    if (w && index < w->nloops) close_servers(w->loops[index]);
}

void serve_ws_prepare(server *srv)
{
    serve_ws *w = calloc(1, sizeof *w);
    if (!w) cli_die(CLI_ERR, "serve: %s", csock_strerror(-ENOMEM));
    w->srv = srv;
    /* --max-line is the longest message; else the library's 1 MiB. */
    w->wopts.max_message = srv->max_line_given ? srv->framing.max : 0;
    w->wopts.close_timeout_ms = srv->drain_ms;
    w->wopts.subprotocols = srv->nsubprotocols ? srv->subprotocols : NULL;
    w->wopts.nsubprotocols = srv->nsubprotocols;
    srv->ws = w;
}

/* Each loop's state, once, before anything listens. */
static void make_loops(serve_ws *w)
{
    if (w->loops) return;
    unsigned n = csock_server_threads(w->srv->srv);
    w->loops = calloc(n, sizeof *w->loops);
    if (!w->loops) cli_die(CLI_ERR, "serve: %s", csock_strerror(-ENOMEM));
    for (unsigned i = 0; i < n; i++) {
        w->loops[i] = calloc(1, sizeof *w->loops[i]);
        if (!w->loops[i]) cli_die(CLI_ERR, "serve: %s", csock_strerror(-ENOMEM));
        w->loops[i]->w = w;
        w->loops[i]->loop = csock_server_loop(w->srv->srv, i);
        w->nloops = i + 1;
    }
}

void serve_ws_listen(server *srv, const char *text, unsigned index)
{
    serve_ws *w = srv->ws;
    csock_addr a, bound;
    ws_ep *ep = &w->eps[w->neps];
    *ep = (ws_ep){.w = w, .no = w->neps};
    cli_ws_listen_addr(text, CSOCK_ADDR_PASSIVE, &a, ep->path);
    ep->path_len = strlen(ep->path);
    ep->tls = a.scheme == CSOCK_TLS;
    make_loops(w);
    if (ep->tls && !srv->tls) srv->tls = cli_tls_server_ctx(&srv->tls_opts);
    ep->acc = (cli_acceptor){.tls = ep->tls ? srv->tls : NULL,
                             .verbose = srv->verbose,
                             .accepted = serve_accepted,
                             .ready = ws_ready,
                             .data = srv};
    /* The HTTP phase under the same options: -i between requests,
     * --read-timeout for a request's head, --write-timeout for answers. */
    csock_http_opts ho = {.handler = on_request,
                          .keepalive_timeout_ms = srv->idle_ms,
                          .header_timeout_ms = srv->read_ms,
                          .send_timeout_ms = srv->write_ms,
                          .log = srv->verbose ? log_request : NULL};
    for (unsigned i = 0; i < w->nloops; i++) {
        route *rt = &w->loops[i]->routes[ep->no];
        rt->ep = ep;
        rt->pl = w->loops[i];
        ho.data = rt;
        int rc = csock_http_server_new(w->loops[i]->loop, &ho, &rt->hs);
        if (rc < 0) cli_die(CLI_ERR, "serve: %s", csock_strerror(rc));
    }
    w->neps++;
    int rc = csock_server_listen_opts(srv->srv, &a, &srv->lo, cli_on_accept, &ep->acc);
    if (rc < 0) cli_die(CLI_ERR, "listen %s: %s", text, csock_strerror(rc));
    csock_server_addr(srv->srv, index, &bound);
    cli_print_ws_listening(stdout, &bound, ep->tls, ep->path);
}

void serve_ws_stop(server *srv)
{
    if (!srv->ws) return;
    for (unsigned i = 0; i < srv->ws->nloops; i++)
        close_servers(srv->ws->loops[i]);
}

void serve_ws_free(server *srv)
{
    serve_ws *w = srv->ws;
    if (!w) return;
    for (unsigned i = 0; i < w->nloops; i++)
        free(w->loops[i]);
    free(w->loops);
    free(w);
    srv->ws = NULL;
}
