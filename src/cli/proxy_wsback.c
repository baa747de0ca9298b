/* ws:// and wss:// backends of csock proxy: the reverse of the ws://
 * listener (proxy_ws.c). A byte-stream client (tcp, tls, unix) on one
 * side, a WebSocket server on the other: each read of the client's bytes
 * goes as one binary message, each message from the backend (text or
 * binary) comes back as its bytes.
 *
 * The handshake runs on the stream the relay dialled (csock_ws_connect_stream:
 * names, Happy Eyeballs, --send-proxy and TLS were the relay's), and the
 * client is read only once the WebSocket is open.
 *
 * Backpressure both ways: while the WebSocket holds more than
 * PROXY_HIGH_WATER unsent, the client is not read (until CSOCK_WS_DRAIN);
 * while the client's write queue holds more than that, the WebSocket is not
 * read (csock_ws_read_stop, until the client's stream drains).
 *
 * Ends: the client's EOF becomes a close 1000 sent with csock_ws_shutdown
 * (what the backend sends until its close answer still reaches the
 * client: the nearest a WebSocket has to a half close), and the client's
 * stream ends (its queue flushed, then FIN) when the
 * WebSocket's CLOSED comes, whatever ended it. A client error aborts the
 * WebSocket. The state goes once both have closed. */
#include <stdlib.h>
#include <string.h>

#include "cli/proxy_wsback.h"

#define WSBACK_MAX_MESSAGE (1u << 20) /* as the ws:// listener: a message is a chunk of a stream */
#define WSBACK_CLOSE_MS 60000 /* without --idle: how long a backend may finish after the client's EOF */

struct wsback {
    proxy *px;
    wsback *next, *prev;   /* px->wsbacks */
    backend *be;
    csock_stream *c;       /* the client; NULL once it has closed */
    csock_ws *ws;          /* NULL once CLOSED has come */
    unsigned char opened;  /* the handshake succeeded */
    unsigned char c_eof;   /* the client finished sending */
    unsigned char c_stopped, ws_stopped; /* paused for the other side */
    unsigned char ending;  /* the client's stream is ending (flush, FIN) */
    unsigned char ws_closing; /* our close went to the backend: its answer ends the WebSocket */
    uint64_t up, down;     /* bytes to the backend, to the client */
    char why[CLI_REASON_TEXT];
    char peer[CLI_ADDR_TEXT];
};

int backend_is_ws(const backend *b) { return cli_ws_scheme(b->text) != 0; }

static void link_wsback(proxy *px, wsback *w)
{
    w->next = px->wsbacks;
    if (px->wsbacks) px->wsbacks->prev = w;
    px->wsbacks = w;
    px->nrelays++;
}

static void unlink_wsback(proxy *px, wsback *w)
{
    if (w->prev) w->prev->next = w->next;
    else px->wsbacks = w->next;
    if (w->next) w->next->prev = w->prev;
    px->nrelays--;
}

static void maybe_free(wsback *w)
{
    if (w->c || w->ws) return;
    proxy *px = w->px;
    if (px->verbose)
        cli_warn("%s %s -> %s: %llu bytes up, %llu down%s%s", w->why[0] ? "dropped" : "closed", w->peer,
                 w->be->name, (unsigned long long)w->up, (unsigned long long)w->down, w->why[0] ? ": " : "",
                 w->why);
    w->be->conns--;
    unlink_wsback(px, w);
    free(w);
    proxy_relay_gone(px);
}

static void set_why(wsback *w, const char *why)
{
    if (!w->why[0] && why) snprintf(w->why, sizeof w->why, "%s", why);
}

/* The client's stream: flushed, then FIN, then closed (its on_close frees). */
static void end_client(wsback *w)
{
    if (!w->c || w->ending) return;
    w->ending = 1;
    csock_stream_read_stop(w->c);
    csock_stream_on_drain(w->c, NULL);
    csock_stream_end(w->c, NULL);
}

static void fail(wsback *w, int status)
{
    set_why(w, csock_strerror(status));
    if (w->ws) csock_ws_abort(w->ws); /* CLOSED ends the client */
    else end_client(w);
}

static size_t on_client_read(csock_stream *s, int status, const char *buf, size_t len)
{
    wsback *w = csock_stream_data(s);
    if (status == CSOCK_EOF) {
        w->c_eof = 1;
        csock_stream_read_stop(s);
        if (w->ws && csock_ws_shutdown(w->ws, CSOCK_WS_NORMAL, NULL, 0) < 0) csock_ws_abort(w->ws);
        else if (w->ws) w->ws_closing = 1;
        return len;
    }
    if (status == -ETIMEDOUT && w->ws) { /* --idle: the backend is told, 1001 */
        set_why(w, csock_strerror(status));
        if (csock_ws_close(w->ws, CSOCK_WS_GOING_AWAY, "idle", 4) == 0) w->ws_closing = 1;
        else csock_ws_abort(w->ws);
        return len;
    }
    if (status < 0) {
        fail(w, status);
        return len;
    }
    if (!w->ws) return len;
    int rc = csock_ws_send(w->ws, CSOCK_WS_BINARY, buf, len);
    if (rc < 0) {
        fail(w, rc);
        return len;
    }
    w->up += len;
    if (csock_ws_buffered(w->ws) > PROXY_HIGH_WATER) {
        csock_stream_read_stop(s);
        w->c_stopped = 1;
    }
    return len;
}

/* The client took what waited: the WebSocket may be read again. */
static void on_client_drain(csock_stream *s, int status)
{
    wsback *w = csock_stream_data(s);
    if (status < 0 || !w->ws_stopped || !w->ws) return; /* an error comes to the read callback */
    w->ws_stopped = 0;
    csock_ws_read_start(w->ws);
}

static void on_client_closed(csock_stream *s)
{
    wsback *w = csock_stream_data(s);
    w->c = NULL;
    if (w->ws && !w->ws_closing) { /* closed under us (an error, the teardown) */
        set_why(w, "client closed");
        csock_ws_abort(w->ws);
        return;
    }
    maybe_free(w);
}

static void on_open(wsback *w)
{
    w->opened = 1;
    backend_worked(w->be);
    if (w->px->verbose) cli_warn("relay %s -> %s (WebSocket)", w->peer, w->be->name);
    int rc = csock_stream_read_start(w->c, on_client_read);
    if (rc < 0) fail(w, rc);
}

static void on_message(wsback *w, const csock_ws_event *ev)
{
    if (!w->c || w->ending) return;
    int rc = csock_stream_write(w->c, ev->buf, ev->len);
    if (rc < 0) return fail(w, rc);
    w->down += ev->len;
    if (csock_stream_write_queue_size(w->c) > PROXY_HIGH_WATER && csock_ws_read_stop(w->ws) == 0)
        w->ws_stopped = 1;
}

static void on_closed(wsback *w, const csock_ws_event *ev)
{
    w->ws = NULL;
    if (!w->opened) { /* the handshake failed: a refusal (403...) or an error */
        char buf[CLI_REASON_TEXT - 8];
        if (!w->why[0]) snprintf(w->why, sizeof w->why, "ws: %s", cli_ws_failure(ev, buf, sizeof buf));
        backend_failed(w->be, ev->status);
    } else if (ev->status < 0 && ev->status != -ECANCELED) {
        set_why(w, csock_strerror(ev->status));
    }
    end_client(w);
    maybe_free(w);
}

static void on_ws(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    wsback *w = data;
    (void)ws;
    switch (ev->kind) {
    case CSOCK_WS_OPEN: return on_open(w);
    case CSOCK_WS_MESSAGE: return on_message(w, ev);
    case CSOCK_WS_DRAIN:
        if (w->c_stopped && w->c && !w->c_eof && !w->ending && !w->ws_closing) {
            w->c_stopped = 0;
            if (csock_stream_read_start(w->c, on_client_read) < 0) fail(w, -EPIPE);
        }
        return;
    case CSOCK_WS_CLOSED: return on_closed(w, ev);
    default: return;
    }
}

int proxy_wsback_start(proxy *px, backend *be, csock_stream *client, csock_stream *s, const char *peer)
{
    wsback *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->px = px;
    w->be = be;
    w->c = client;
    snprintf(w->peer, sizeof w->peer, "%s", peer ? peer : "?");
    /* After the client's EOF the backend may take its time to finish
     * (close_timeout): as long as --idle lets a relay be quiet. */
    csock_ws_opts wo = {.max_message = WSBACK_MAX_MESSAGE, .handshake_timeout_ms = px->connect_ms,
                        .close_timeout_ms = px->idle_ms ? px->idle_ms : WSBACK_CLOSE_MS};
    /* --idle: every byte of the relay passes the client's stream, either
     * way, so its idle timeout is the relay's (the sweep sees only the
     * relays of proxy_relay.c). */
    int rc = px->idle_ms ? csock_stream_set_idle_timeout(client, px->idle_ms) : 0;
    if (rc == 0) rc = csock_ws_connect_stream(s, be->text, &wo, on_ws, w, &w->ws);
    if (rc < 0) {
        free(w);
        return rc;
    }
    csock_stream_set_data(client, w);
    csock_stream_set_watermarks(client, 0, 0); /* we throttle the WebSocket ourselves */
    csock_stream_on_drain(client, on_client_drain);
    csock_stream_on_close(client, on_client_closed);
    link_wsback(px, w);
    be->conns++;
    return 0;
}

/* Aborts and closes deliver CLOSED from the loop, never from inside the
 * call: the walk cannot lose its place. */
unsigned proxy_wsback_close_all(proxy *px)
{
    static const char reason[] = "going away";
    unsigned n = 0;
    for (wsback *w = px->wsbacks; w; w = w->next, n++) {
        set_why(w, "the drain ended");
        if (w->c && !w->ending) csock_stream_read_stop(w->c); /* nothing more to relay */
        if (!w->ws) continue; /* CLOSED came: the client's stream is flushing */
        if (!w->opened) {
            csock_ws_abort(w->ws); /* no WebSocket yet to say goodbye on */
            continue;
        }
        int rc = csock_ws_close(w->ws, CSOCK_WS_GOING_AWAY, reason, sizeof reason - 1);
        if (rc == 0) w->ws_closing = 1;
        else if (rc != -EALREADY) csock_ws_abort(w->ws); /* -EALREADY: our close is out already */
    }
    return n;
}
