/* The netcat relay shared by `csock connect` and `csock listen`.
 *
 * Data has three kinds of sources and sinks: standard input/output, the
 * peers (streams, or addresses on one datagram socket) and, with -e/-c, one
 * child process per peer. Who feeds whom:
 *
 *   normal   stdin -> every peer;  every peer -> stdout
 *   broker   stdin -> every peer;  a peer -> every other peer (not stdout, as ncat)
 *   chat     broker, each chunk tagged "<userN> " and control bytes escaped
 *   exec     peer -> its child's stdin;  its child's stdout -> that peer
 *
 * Flow control: a sink whose write queue passes HIGH_WATER is "congested";
 * while any peer is congested stdin is not read (and in broker mode no peer
 * is read), and while stdout is congested no peer is read. Sources resume
 * when the sinks drain. Exec pairs are throttled pairwise. Memory stays
 * bounded and no byte is dropped on streams.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/netcat.h"

int exec_mode(const nc_ctx *c)
{
    return c->o->exec_argv != NULL;
}

/* The peer's stream closed after a lost write: now, at a safe point, it
 * leaves the session (unless it was already on its way out). */
static void on_lost_stream_closed(csock_stream *s)
{
    nc_peer *p = csock_stream_data(s);
    if (p->gone) return on_peer_stream_closed(s);
    p->s = NULL; /* freed after this callback */
    peer_failed(p, p->lost);
}

/* A write the stream could not queue (out of memory): those bytes are gone,
 * so the peer must go too, as after a reset. Closing the stream is safe
 * anywhere, even in a walk over the peers; taking the peer out of the
 * session waits for the close callback. */
static void peer_lost_bytes(nc_peer *p, int rc)
{
    if (p->lost || !p->s) return;
    p->lost = rc;
    csock_stream_close(p->s, on_lost_stream_closed);
}

/* Queue bytes on a stream the peer depends on (its socket or its child's
 * stdin). -EPIPE and a failed stream's error reach the read callback; only
 * bytes dropped for want of memory need handling here. */
int peer_write(nc_peer *p, csock_stream *s, const char *buf, size_t len)
{
    int rc = csock_stream_write(s, buf, len);
    if (rc == -ENOMEM) peer_lost_bytes(p, rc);
    return rc;
}

void peer_send(nc_peer *p, const char *buf, size_t len)
{
    nc_ctx *c = p->c;
    hexdump(c, 1, p, buf, len);
    if (p->ws) return nc_ws_send(p, buf, len);
    if (!p->s) {
        for (size_t off = 0; off < len || (len == 0 && off == 0); off += MAX_DGRAM) {
            size_t n = len - off < MAX_DGRAM ? len - off : MAX_DGRAM;
            int rc = csock_dgram_send(c->dg, buf + off, n, p->has_addr ? &p->addr : NULL);
            if (rc < 0 && c->o->verbose) cli_warn("send to %s: %s", p->name, csock_strerror(rc));
            if (!len) break;
        }
        p->last_io = csock_loop_now(c->loop);
        return;
    }
    if (peer_write(p, p->s, buf, len) < 0) return;
    if (!exec_mode(c) && !p->congested && csock_stream_write_queue_size(p->s) > HIGH_WATER) {
        p->congested = 1;
        if (c->peers_congested++ == 0) sync_sources(c);
    }
}

static void send_others(nc_ctx *c, const nc_peer *from, const char *buf, size_t len)
{
    for (nc_peer *p = c->head, *next; p; p = next) {
        next = p->next; /* a send never closes a peer synchronously, but be safe */
        if (p != from) peer_send(p, buf, len);
    }
}

/* No memory to transform a whole chunk at once. Stream peers then get it
 * in pieces (the same bytes); datagram peers lose it, as UDP may. Returns
 * 1 when the caller is to send the pieces. */
static int in_pieces(const nc_ctx *c)
{
    if (!c->dg) return 1;
    if (c->o->verbose) cli_warn("a datagram dropped: %s", csock_strerror(-ENOMEM));
    return 0;
}

/* Data that came from stdin (from == NULL) or from a peer, for every peer
 * but the one it came from; chat tags it first. */
void broadcast(nc_ctx *c, const nc_peer *from, const char *buf, size_t len)
{
    char stackbuf[NC_STACK_CHUNK];
    const char *tag = from ? from->tag : "user0"; /* stdin is <user0>, as in ncat */
    if (!c->o->chat) return send_others(c, from, buf, len);
    size_t need = CHAT_TAG_MAX + 4 * len; /* chat_tag's bound */
    char *tagged = need <= sizeof stackbuf ? stackbuf : malloc(need);
    if (tagged) {
        size_t n = chat_tag(tag, buf, len, tagged);
        send_others(c, from, tagged, n);
        if (tagged != stackbuf) free(tagged);
    } else if (in_pieces(c)) {
        size_t m = (size_t)sprintf(stackbuf, "<%s> ", tag);
        send_others(c, from, stackbuf, m);
        for (size_t off = 0, n; off < len; off += n) {
            n = len - off < sizeof stackbuf / 4 ? len - off : sizeof stackbuf / 4;
            m = chat_escape(buf + off, n, stackbuf);
            send_others(c, from, stackbuf, m);
        }
    }
}

void out_write(nc_ctx *c, const char *buf, size_t len)
{
    if (!c->out || c->o->send_only || !len) return;
    int rc = csock_stream_write(c->out, buf, len);
    if (rc < 0) {
        /* Bytes stdout cannot take would be lost without a word (one: the
         * chunks that follow in the same turn fail the same way). */
        if (!c->stopped) cli_warn("stdout: %s", csock_strerror(rc));
        return nc_finish(c, CLI_ERR);
    }
    if (!c->out_congested && csock_stream_write_queue_size(c->out) > HIGH_WATER) {
        c->out_congested = 1;
        sync_sources(c);
    }
}

static size_t on_stdin(csock_stream *in, int status, const char *buf, size_t len);

int peers_may_read(const nc_ctx *c)
{
    return !c->out_congested && !(c->o->broker && c->peers_congested) && !c->delaying;
}

static void on_delay_over(csock_timer *t)
{
    nc_ctx *c = csock_timer_data(t);
    c->delaying = 0;
    sync_sources(c);
}

void delay_after_read(nc_ctx *c)
{
    if (!c->o->delay_ms || exec_mode(c) || c->delaying || c->stopped) return;
    if (!c->delay) {
        if (csock_timer_new(c->loop, &c->delay) < 0) return; /* no pause: still correct */
        csock_timer_set_data(c->delay, c);
    }
    if (csock_timer_start(c->delay, on_delay_over, c->o->delay_ms, 0) < 0) return;
    c->delaying = 1;
    sync_sources(c);
}

/* Start or stop each source after a sink changed state. O(peers), but only
 * on transitions, never per byte. Exec mode throttles pairwise instead. */
void sync_sources(nc_ctx *c)
{
    if (exec_mode(c) || c->stopped) return;
    int want_in = c->in && c->in_reading && !c->in_eof && !c->peers_congested && !c->delaying;
    if (c->in) {
        if (want_in)
            csock_stream_read_start(c->in, on_stdin);
        else
            csock_stream_read_stop(c->in);
    }
    int may = peers_may_read(c);
    if (c->dg) {
        if (may)
            csock_dgram_recv_start(c->dg, on_dgram);
        else
            csock_dgram_recv_stop(c->dg);
    }
    for (nc_peer *p = c->head; p; p = p->next) {
        if (!p->s || p->eof) continue;
        if (may)
            csock_stream_read_start(p->s, on_peer_read);
        else
            csock_stream_read_stop(p->s);
    }
}

/* ======================================================================
 * stdin and stdout
 * ====================================================================== */

void crlf_send(const nc_ctx *c, const char *buf, size_t len, int *cr, crlf_sink sink, void *arg)
{
    char stackbuf[NC_STACK_CHUNK];
    char *conv = 2 * len <= sizeof stackbuf ? stackbuf : malloc(2 * len);
    if (conv) {
        sink(arg, conv, to_crlf(buf, len, conv, cr));
        if (conv != stackbuf) free(conv);
        return;
    }
    if (!in_pieces(c)) return; /* no memory to convert the whole read at once */
    for (size_t off = 0, n; off < len; off += n) {
        n = len - off < sizeof stackbuf / 2 ? len - off : sizeof stackbuf / 2;
        sink(arg, stackbuf, to_crlf(buf + off, n, stackbuf, cr));
    }
}

static void stdin_sink(void *c, const char *buf, size_t len)
{
    broadcast(c, NULL, buf, len);
}

static void from_stdin(nc_ctx *c, const char *buf, size_t len)
{
    if (!len) return;
    if (c->eof_grace) { /* stdin speaks after the peer's EOF: sent to its end */
        c->eof_grace = 0;
        csock_timer_stop(c->quiet);
    }
    c->progress.sent += len;
    delay_after_read(c);
    if (c->o->crlf) return crlf_send(c, buf, len, &c->crlf_cr, stdin_sink, c);
    broadcast(c, NULL, buf, len);
}

static void on_quiet(csock_timer *t)
{
    nc_finish(csock_timer_data(t), CLI_OK);
}

/* Datagrams have no end: after stdin's, wait -q for the last answers. A
 * timer that cannot be armed would leave us waiting for ever: fail now. */
void quiet_start(nc_ctx *c)
{
    int rc = csock_timer_start(c->quiet, on_quiet, c->o->quiet_ms, 0);
    if (rc < 0) {
        cli_warn("--quit-after timer: %s", csock_strerror(rc));
        nc_finish(c, CLI_ERR);
    }
}

static void on_last_sent(csock_stream *s, int status)
{
    nc_peer *p = csock_stream_data(s);
    if (status < 0) return peer_failed(p, status);
    peer_close(p, 1);
}

/* Peers whose half ended before stdin's (peer_half_open): all is said once
 * what is queued for them has gone. They leave the session only then: the
 * session's end closes the streams still ending, which would cut it. */
void close_finished_peers(nc_ctx *c)
{
    for (nc_peer *p = c->head, *next; p; p = next) {
        next = p->next;
        if (!p->s || !p->eof) continue;
        if (csock_stream_shutdown(p->s, on_last_sent) < 0) peer_close(p, 1);
    }
}

static void stdin_ended(nc_ctx *c)
{
    c->in_eof = 1;
    csock_stream_read_stop(c->in);
    if (c->o->send_only) {
        /* ncat: --send-only quits at the end of input, once it is sent. */
        c->quitting = 1;
        for (nc_peer *p = c->head, *next; p; p = next) {
            next = p->next; /* streams leave once all is sent (on_last_sent) */
            if (!p->s || csock_stream_shutdown(p->s, on_last_sent) < 0) peer_close(p, 1);
        }
        return check_done(c);
    }
    close_finished_peers(c);
    if (c->o->keep_open) return; /* keep serving the clients */
    if (c->dg) return quiet_start(c);
    if (c->o->no_shutdown) return; /* ncat's --no-shutdown: the peer ends it */
    for (nc_peer *p = c->head; p; p = p->next)
        if (p->s)
            csock_stream_shutdown(p->s, NULL); /* half-close: the peer reads EOF */
        else if (p->ws)
            nc_ws_finish(p, 1); /* close 1000; its CLOSED ends the session */
}

static size_t on_stdin(csock_stream *in, int status, const char *buf, size_t len)
{
    nc_ctx *c = csock_stream_data(in);
    size_t used = 0;
    if (c->dg) {
        while (used < len) {
            size_t n = next_dgram(buf + used, len - used, status != 0);
            if (!n) break;
            from_stdin(c, buf + used, n);
            used += n;
        }
    } else {
        from_stdin(c, buf, len);
        used = len;
    }
    if (status != 0) {
        if (status != CSOCK_EOF) {
            /* Input was lost: the peer must not take what it got for all of it. */
            cli_warn("stdin: %s", csock_strerror(status));
            nc_finish(c, CLI_ERR);
            return len;
        }
        stdin_ended(c);
        return len;
    }
    return used;
}

void nc_stdin_start(nc_ctx *c)
{
    if (!c->in || c->in_reading) return;
    c->in_reading = 1;
    sync_sources(c);
}

void on_out_drain(csock_stream *out, int status)
{
    nc_ctx *c = csock_stream_data(out);
    if (status < 0) {
        if (c->stopped) return; /* said already (out_write), or stopping anyway */
        cli_warn("stdout: %s", csock_strerror(status));
        return nc_finish(c, CLI_ERR);
    }
    if (c->out_congested) {
        c->out_congested = 0;
        sync_sources(c);
    }
    check_done(c);
}
