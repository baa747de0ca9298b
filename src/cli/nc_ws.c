/* WebSocket peers of the relay (connect ws://, listen ws://, chat's ws
 * endpoints). The relay speaks bytes; a WebSocket speaks messages, so this
 * file translates at the edge, as websocat does:
 *   - in text mode (the default) a message received is a line: its bytes
 *     then "\n"; bytes sent are cut into lines, each line (without its line
 *     ending) one text message (binary when it is not UTF-8, which a text
 *     message must be); an unfinished line waits for its end;
 *   - with --binary a message received is written as it is, and each chunk
 *     sent is one binary message.
 * A peer's end is its CLOSED event (exactly one per csock_ws): the peer is
 * freed there, whoever began the end. */
#include <stdlib.h>
#include <string.h>

#include "cli/netcat.h"

#define WS_STACK 4096 /* a received message and its "\n" fit here, else malloc */

csock_ws_opts nc_ws_opts(const nc_ctx *c)
{
    const nc_opts *o = c->o;
    return (csock_ws_opts){
        .ping_interval_ms = o->ping_ms,
        .subprotocols = o->subprotocols,
        .nsubprotocols = o->nsubprotocols,
        .origins = o->listen && o->norigins ? o->origins : NULL,
        .norigins = o->listen ? o->norigins : 0,
        .headers = o->headers,
        .nheaders = o->nheaders,
    };
}

/* Text messages must be UTF-8 (the peer would fail the connection with
 * 1007). */
static int utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = cli_utf8_char(s + i, n - i))) return 0;
    return 1;
}

/* One message to the peer. A message that cannot be queued (no memory) is
 * lost, so the peer goes, as a stream peer does after a lost write. */
static void message_out(nc_peer *p, int type, const char *buf, size_t len)
{
    nc_ctx *c = p->c;
    if (!p->ws || !p->ws_open) return;
    if (type == CSOCK_WS_TEXT && !utf8_ok((const unsigned char *)buf, len)) type = CSOCK_WS_BINARY;
    int rc = csock_ws_send(p->ws, type, buf, len);
    if (rc == -ENOMEM) {
        p->lost = rc;
        return csock_ws_abort(p->ws);
    }
    if (rc == 0 && !p->congested && csock_ws_buffered(p->ws) > HIGH_WATER) {
        p->congested = 1;
        if (c->peers_congested++ == 0) sync_sources(c);
    }
}

static void line_out(nc_peer *p, const char *buf, size_t len)
{
    if (len && buf[len - 1] == '\r') len--; /* CRLF endings too */
    message_out(p, CSOCK_WS_TEXT, buf, len);
}

/* Keep the start of a line until its end comes; a line that grows past
 * HIGH_WATER goes out as it is (memory stays bounded). */
static void line_keep(nc_peer *p, const char *buf, size_t len)
{
    char *v = grow(p->wline, &p->capwline, p->nwline + len, 1);
    if (!v) {
        p->lost = -ENOMEM;
        return csock_ws_abort(p->ws);
    }
    p->wline = v;
    memcpy(v + p->nwline, buf, len);
    p->nwline += len;
    if (p->nwline > HIGH_WATER) {
        message_out(p, CSOCK_WS_TEXT, p->wline, p->nwline);
        p->nwline = 0;
    }
}

void nc_ws_send(nc_peer *p, const char *buf, size_t len)
{
    if (p->c->o->binary) return message_out(p, CSOCK_WS_BINARY, buf, len);
    const char *nl;
    while (len && (nl = memchr(buf, '\n', len))) {
        size_t n = (size_t)(nl - buf);
        if (p->nwline) {
            line_keep(p, buf, n);
            line_out(p, p->wline, p->nwline);
            p->nwline = 0;
        } else {
            line_out(p, buf, n);
        }
        buf += n + 1, len -= n + 1;
    }
    if (len) line_keep(p, buf, len);
}

void nc_ws_finish(nc_peer *p, int graceful)
{
    if (!graceful) return csock_ws_abort(p->ws);
    if (p->nwline) line_out(p, p->wline, p->nwline); /* the last line had no end */
    p->nwline = 0;
    /* A half close, as a stream peer gets: what the peer sends until it
     * answers (the echo of our last line) still comes. -EALREADY: closing. */
    csock_ws_shutdown(p->ws, CSOCK_WS_NORMAL, NULL, 0);
}

/* A message in: text mode makes it a line, so the relay (and chat's tags,
 * a line at a time) sees what a line-based peer would have sent. */
static void message_in(nc_peer *p, const csock_ws_event *ev)
{
    nc_ctx *c = p->c;
    if (c->o->binary) return peer_input(p, ev->buf, ev->len);
    char stackbuf[WS_STACK];
    char *b = ev->len < sizeof stackbuf ? stackbuf : malloc(ev->len + 1);
    if (!b) { /* the message cannot be passed on: it must not vanish unseen */
        p->lost = -ENOMEM;
        return csock_ws_abort(p->ws);
    }
    memcpy(b, ev->buf, ev->len);
    b[ev->len] = '\n';
    if (!c->o->broker) {
        peer_input(p, b, ev->len + 1);
    } else {
        for (size_t off = 0, n; off <= ev->len && !p->gone; off += n) {
            n = (size_t)((char *)memchr(b + off, '\n', ev->len + 1 - off) - (b + off)) + 1;
            peer_input(p, b + off, n);
        }
    }
    if (b != stackbuf) free(b);
}

static void drained(nc_peer *p)
{
    if (!p->congested) return;
    p->congested = 0;
    if (--p->c->peers_congested == 0) sync_sources(p->c);
}

/* Why the connection ended, in words, into buf. */
static const char *end_reason(const nc_peer *p, csock_ws *ws, const csock_ws_event *ev, char *buf,
                              size_t size)
{
    if (p->lost) return csock_strerror(p->lost);
    if (ev->status == 0) {
        char reason[124]; /* a close reason is 123 bytes at most */
        size_t n = ev->len < sizeof reason ? ev->len : sizeof reason - 1;
        for (size_t i = 0; i < n; i++) /* one line on stderr, whatever the peer wrote */
            reason[i] = (unsigned char)ev->buf[i] < ' ' || ev->buf[i] == 0x7f ? '?' : ev->buf[i];
        snprintf(buf, size, "closed with code %d%s%.*s", ev->code, n ? ": " : "", (int)n, reason);
    }
    else if (!p->ws_open && ev->http_status) { /* the server's status line says why */
        char r[CLI_REASON_TEXT - 8];
        snprintf(buf, size, "ws: %s", cli_ws_failure(ev, r, sizeof r));
    } else if (!p->ws_open && ev->status == -EPROTO)
        snprintf(buf, size, "WebSocket handshake failed (a 101 without the right "
                            "Sec-WebSocket-Accept, or an answer that is not HTTP)");
    else if (!p->ws_open && ev->status == CSOCK_EOF)
        snprintf(buf, size, "WebSocket handshake: the server closed the connection");
    else if (ev->status == -EPROTO || ev->status == CSOCK_ETOOBIG)
        snprintf(buf, size, "%s (we sent close %d)", csock_strerror(ev->status), ev->sent);
    else if (ev->status == CSOCK_EOF)
        snprintf(buf, size, "connection closed without a close frame");
    else if (ev->status == -ETIMEDOUT && !p->ws_open)
        snprintf(buf, size, "WebSocket handshake timed out");
    else if (ev->status == -ETIMEDOUT && !ev->sent && p->c->o->ping_ms)
        snprintf(buf, size, "no answer to a ping (--ping): the peer is gone");
    else if (ev->status == -ETIMEDOUT && ev->sent)
        snprintf(buf, size, "no answer to our close (%d) in time", ev->sent);
    else
        cli_tls_reason(csock_ws_stream(ws), ev->status, buf, size);
    return buf;
}

/* The peer's end: 1000 (normal) and 1001 (going away) are a normal end;
 * another code, an error or a failed handshake fail a single-peer session. */
static void closed(nc_peer *p, csock_ws *ws, const csock_ws_event *ev)
{
    nc_ctx *c = p->c;
    p->ws = NULL; /* freed when this callback returns */
    if (p->gone) { /* out of the session already: it only had to finish */
        if (c->o->verbose) cli_warn("closed %s", p->name);
        ending_remove(p);
        peer_free(p);
        return check_done(c);
    }
    char why[CLI_REASON_TEXT];
    int normal = ev->status == 0 && (ev->code == CSOCK_WS_NORMAL || ev->code == CSOCK_WS_GOING_AWAY);
    const char *text = end_reason(p, ws, ev, why, sizeof why);
    if (!normal && !c->o->keep_open && !c->quitting) {
        cli_warn("%s%s: %s", p->ws_open ? "" : "connect ", p->name, text);
        c->status = CLI_ERR;
    } else if (c->o->verbose) {
        cli_warn("%s: %s", p->name, text);
    }
    peer_close(p, 0); /* no ws, no stream: freed now */
}

/* -v: the server's answer as it came, a line each (its control bytes
 * shown as '?': a terminal gets what the server wrote, not what it meant). */
static void show_answer(const char *h, size_t n)
{
    while (n) {
        const char *eol = memchr(h, '\n', n);
        size_t len = eol ? (size_t)(eol - h) : n, step = eol ? len + 1 : n;
        if (len && h[len - 1] == '\r') len--;
        if (len) {
            char line[CLI_REASON_TEXT];
            size_t k = len < sizeof line ? len : sizeof line - 1;
            for (size_t i = 0; i < k; i++)
                line[i] = (unsigned char)h[i] < ' ' || h[i] == 0x7f ? '?' : h[i];
            cli_warn("< %.*s", (int)k, line);
        }
        h += step, n -= step;
    }
}

/* connect ws://: the handshake succeeded; -v shows its answer. */
static void opened(nc_peer *p, csock_ws *ws, const csock_ws_event *ev)
{
    nc_ctx *c = p->c;
    csock_stream *s = csock_ws_stream(ws);
    p->ws_open = 1;
    if (c->o->verbose) {
        show_answer(ev->buf, ev->len);
        if (c->tls) cli_warn("%s %s", csock_tls_version(s), csock_tls_cipher(s));
    }
    peer_idle_timeout(c, s);
    peer_start(p);
}

void nc_ws_on_event(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    nc_peer *p = data;
    if (!p) return; /* accepted, then no memory for its peer: aborted */
    switch (ev->kind) {
    case CSOCK_WS_OPEN: return opened(p, ws, ev);
    case CSOCK_WS_MESSAGE:
        if (!p->gone) message_in(p, ev);
        return;
    case CSOCK_WS_DRAIN: return drained(p);
    case CSOCK_WS_CLOSED: return closed(p, ws, ev);
    default: return; /* pongs: the keep-alive is the library's */
    }
}

/* -v: the request as the library sends it (its Sec-WebSocket-Key is
 * random and not shown). */
static void show_request(const nc_ctx *c, const char *url)
{
    const char *host = strstr(url, "://") + 3;
    size_t hl = strcspn(host, "/?#");
    const char *target = host[hl] ? host + hl : "/";
    cli_warn("> GET %s%s HTTP/1.1", target[0] == '/' ? "" : "/", target);
    cli_warn("> Host: %.*s", (int)hl, host);
    cli_warn("> Upgrade: websocket");
    cli_warn("> Connection: Upgrade");
    cli_warn("> Sec-WebSocket-Version: 13");
    for (size_t i = 0; i < c->o->nsubprotocols; i++)
        cli_warn("> Sec-WebSocket-Protocol: %s", c->o->subprotocols[i]);
    for (size_t i = 0; i < c->o->nheaders; i++)
        cli_warn("> %s", c->o->headers[i]);
}

int nc_ws_connect(nc_ctx *c, const char *url)
{
    nc_peer *p = peer_new(c, NULL);
    if (!p) return -ENOMEM;
    snprintf(p->name, sizeof p->name, "%s", url);
    csock_ws_opts wo = nc_ws_opts(c);
    wo.tls = c->tls;
    wo.handshake_timeout_ms = c->o->wait_ms;
    if (c->o->verbose) show_request(c, url);
    int rc = csock_ws_connect(c->loop, url, &wo, nc_ws_on_event, p, &p->ws);
    if (rc < 0) {
        peer_unlink(p);
        peer_free(p);
    }
    return rc;
}

void nc_ws_accepted(nc_ctx *c, csock_ws *ws)
{
    csock_addr a;
    int has = csock_stream_peer(csock_ws_stream(ws), &a) == 0;
    nc_peer *p = peer_new(c, has ? &a : NULL);
    if (!p) {
        if (c->o->verbose) cli_warn("refused a WebSocket peer: %s", csock_strerror(-ENOMEM));
        return csock_ws_abort(ws);
    }
    p->ws = ws;
    p->ws_open = 1;
    csock_ws_set_data(ws, p);
    peer_idle_timeout(c, csock_ws_stream(ws));
    const char *sub = csock_ws_subprotocol(ws);
    if (c->o->verbose && sub) cli_warn("%s: subprotocol %s", p->name, sub);
    if (peer_start(p) < 0) return;
    if (!c->o->keep_open) nc_close_listeners(c);
}
