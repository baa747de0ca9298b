/* A ws:// or wss:// endpoint of `csock listen` and `csock serve chat`: an
 * HTTP server on the accepted connections that upgrades a WebSocket request
 * on the endpoint's path into a peer of the relay. A GET without Upgrade
 * gets the chat page in chat mode, else 426 Upgrade Required (the path
 * speaks WebSocket only); another path 404. */
#include <string.h>

#include "cli/chat_page.h"
#include "cli/netcat.h"

static int is(csock_http_str s, const char *text)
{
    return s.len == strlen(text) && !memcmp(s.ptr, text, s.len);
}

static void serve_page(csock_http_req *r)
{
    csock_http_str m = csock_http_method(r);
    if (!is(m, "GET") && !is(m, "HEAD")) return cli_http_answer(r, 405, "Allow", "GET, HEAD");
    csock_http_add_header(r, "Content-Type", "text/html; charset=utf-8");
    csock_http_add_header(r, "Cache-Control", "no-store");
    csock_http_send(r, 200, cli_chat_page, cli_chat_page_len);
}

/* The upgrade, after the checks a stream peer gets at accept (--allow,
 * --deny, -m) and, without -k, only while no peer came yet. */
static void upgrade(nc_ctx *c, csock_http_req *r)
{
    csock_stream *s = csock_http_stream(r);
    csock_addr a;
    int has = s && csock_stream_peer(s, &a) == 0;
    char name[CLI_ADDR_TEXT] = "peer";
    if (has) csock_addr_format(&a, name, sizeof name);
    if (!c->o->keep_open && c->served) {
        csock_http_close_after(r);
        return cli_http_answer(r, 503, NULL, NULL); /* a single-peer listener has its peer */
    }
    if (!admit(c, has ? &a : NULL, name)) {
        csock_http_close_after(r);
        return cli_http_answer(r, 403, NULL, NULL);
    }
    csock_ws_opts wo = nc_ws_opts(c);
    csock_ws *ws;
    int rc = csock_ws_accept(r, &wo, nc_ws_on_event, NULL, &ws);
    if (rc < 0) {
        if (c->o->verbose) cli_warn("refused %s: WebSocket handshake: %s", name, csock_strerror(rc));
        return;
    }
    nc_ws_accepted(c, ws);
}

static void on_request(csock_http_req *r, void *data)
{
    nc_endpoint *ep = data;
    if (!is(csock_http_path(r), ep->path)) return cli_http_answer(r, 404, NULL, NULL);
    if (csock_ws_is_upgrade(r)) return upgrade(ep->c, r);
    if (ep->c->o->chat) return serve_page(r);
    cli_http_answer(r, 426, "Upgrade", "websocket");
}

/* -v: the HTTP errors (a refused upgrade, a wrong path, out of memory),
 * since they cost a client without a peer to log it. */
static void on_answer(const csock_http_req *r, int status, int64_t body_len, void *data)
{
    (void)body_len, (void)data;
    if (status < 400) return;
    char peer[CLI_ADDR_TEXT] = "?";
    csock_stream *s = csock_http_stream(r);
    if (s) cli_peer_text(s, peer, sizeof peer);
    /* Our handler never answers 500: the HTTP server does, out of memory. */
    cli_warn("answered %d %s to %s%s%s", status, csock_http_reason(status), peer,
             status == 500 ? ": " : "", status == 500 ? csock_strerror(-ENOMEM) : "");
}

int nc_ws_endpoint(nc_endpoint *ep)
{
    csock_http_opts ho = {.handler = on_request, .data = ep,
                          .log = ep->c->o->verbose ? on_answer : NULL};
    return csock_http_server_new(ep->c->loop, &ho, &ep->http);
}
