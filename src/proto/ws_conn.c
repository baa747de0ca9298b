/* A WebSocket connection on a csock stream (see csock/ws.h): frames are
 * read in the stream's buffer in place, messages delivered, control frames
 * answered, sends framed (and masked by a client), the closing handshake
 * and its timeout, the keep-alive.
 *
 * Reading. A frame whose bytes are all in the buffer is unmasked there, and
 * an unfragmented message is delivered as a slice of the buffer: no copy.
 * A frame up to WAIT_MAX waits in the buffer until it is whole. A larger
 * one is streamed: its header is consumed, and its payload is unmasked and
 * appended to the message buffer as it arrives, so the read buffer stays
 * small whatever the message size, and a bad text byte fails at once.
 * Fragments are appended to the message buffer likewise; it is sized from
 * the length fields (checked against max_message first, so a huge length
 * allocates nothing) and freed after delivery, so an idle connection holds
 * none.
 *
 * Compression (permessage-deflate, ws_deflate.c). A compressed message's
 * payload, in place or streamed, is inflated into the message buffer a
 * bounded chunk at a time, its output checked against max_message as it
 * grows; its compressed length is checked from the length fields against
 * max_message plus a margin. A compressed send is deflated into a buffer
 * with room for the header in front (masked there by a client) and sent by
 * reference.
 *
 * Ending. Every way out goes through the stream's close, whose callback
 * sends CLOSED and frees the connection: a failure or a finished closing
 * handshake ends the stream gracefully (csock_stream_end: our close frame
 * leaves before the FIN), an abort or a timeout closes it at once.
 *
 * One job in one file (about 730 lines): reading, sending, the closing
 * handshake and the keep-alive all act on the same per-connection state
 * (the read position, the message buffer, the close state and its timer),
 * and each path ends in the others (a bad frame closes, a close stops the
 * keep-alive). The frame format, UTF-8, deflate and the handshake, which
 * need none of that state, are in ws_frame.c, ws_utf8.c, ws_deflate.c and
 * ws_handshake.c. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>

#include "proto/ws_int.h"
#include "loop/loop_int.h" /* csock__timer_new_internal: a connection's timer is not a user handle */

/* The defaults csock/ws.h promises for a 0 in csock_ws_opts. */
#define DEFAULT_MAX_MESSAGE (1u << 20)
#define DEFAULT_CLOSE_MS 5000
/* A frame this small (header included) waits in the read buffer until it
 * is whole and is then used in place; a larger one is streamed into the
 * message buffer (one pooled read buffer holds 16 KiB). */
#define WAIT_MAX 16384
/* The stream's read limit: frames of up to WAIT_MAX and whatever follows
 * them in one read. */
#define READ_MAX (64u * 1024)
/* A client masks a frame up to this size on the stack; a larger one in a
 * buffer the stream sends by reference. */
#define SMALL_SEND 4096
/* ws->status before anything decided it. */
#define STATUS_UNSET 1

static void on_timer(csock_timer *t);

static void set_status(csock_ws *ws, int status)
{
    if (ws->status == STATUS_UNSET) ws->status = status;
}

/* The callback may call anything on ws, abort included: the memory goes
 * only with the stream's close callback, never under a callback of ours. */
void csock__ws_emit(csock_ws *ws, csock_ws_event *ev) { ws->cb(ws, ev, ws->data); }

/* Milliseconds in 32 bits (an idle WebSocket's bytes count): longer than
 * 24 days is as good as never. */
static uint32_t clamp_ms(uint64_t ms) { return ms > INT32_MAX ? INT32_MAX : (uint32_t)ms; }

int csock__ws_new(csock_loop *loop, const csock_ws_opts *opts, int client, csock_ws_cb cb, void *data,
                  csock_ws **out)
{
    csock_ws_opts none = {0};
    if (!opts) opts = &none;
    csock_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return -ENOMEM;
    ws->loop = loop;
    ws->cb = cb;
    ws->data = data;
    ws->client = client != 0;
    ws->max_message = opts->max_message ? opts->max_message : DEFAULT_MAX_MESSAGE;
    ws->close_ms = clamp_ms(opts->close_timeout_ms ? opts->close_timeout_ms : DEFAULT_CLOSE_MS);
    ws->ping_ms = clamp_ms(opts->ping_interval_ms);
    ws->ping_timeout_ms = clamp_ms(opts->ping_timeout_ms ? opts->ping_timeout_ms : opts->ping_interval_ms);
    ws->status = STATUS_UNSET;
    ws->state = client ? WS_CONNECTING : WS_OPEN;
    *out = ws;
    return 0;
}

void csock__ws_free(csock_ws *ws)
{
    if (ws->timer) csock_timer_close(ws->timer, NULL);
    csock__ws_client_free(ws);
    csock__ws_z_free(ws->z);
    free(ws->msg);
    free(ws->peer_reason);
    free(ws->subprotocol);
    free(ws->keys);
    free(ws);
}

int csock__ws_timer(csock_ws *ws, uint64_t ms)
{
    if (!ws->timer) {
        int rc = csock__timer_new_internal(ws->loop, &ws->timer);
        if (rc < 0) return rc;
        csock_timer_set_data(ws->timer, ws);
    }
    return csock_timer_start(ws->timer, on_timer, ms, 0);
}

static void on_drain(csock_stream *s, int status)
{
    csock_ws *ws = csock_stream_data(s);
    if (status < 0 || ws->state != WS_OPEN || !ws->want_drain) return;
    ws->want_drain = 0;
    csock_ws_event ev = {.kind = CSOCK_WS_DRAIN};
    csock__ws_emit(ws, &ev);
}

void csock__ws_attach(csock_ws *ws, csock_stream *s)
{
    ws->s = s;
    csock_stream_set_data(s, ws);
    csock_stream_on_close(s, csock__ws_on_closed);
    csock_stream_on_drain(s, on_drain);
    csock_stream_set_max_read(s, READ_MAX);
    ws->last_in = (uint32_t)csock_loop_now(ws->loop);
    /* Without its timer the keep-alive would silently never run. */
    if (ws->state == WS_OPEN && ws->ping_ms && csock__ws_timer(ws, ws->ping_ms) < 0)
        csock__ws_fail(ws, CSOCK_WS_INTERNAL, -ENOMEM);
}

void csock__ws_opened(csock_ws *ws, const char *answer, size_t len)
{
    ws->state = WS_OPEN;
    ws->last_in = (uint32_t)csock_loop_now(ws->loop);
    if (ws->ping_ms) {
        if (csock__ws_timer(ws, ws->ping_ms) < 0) return csock__ws_fail(ws, CSOCK_WS_INTERNAL, -ENOMEM);
    } else if (ws->timer) {
        csock_timer_stop(ws->timer); /* the handshake's */
    }
    csock_ws_event ev = {.kind = CSOCK_WS_OPEN, .buf = answer, .len = len};
    csock__ws_emit(ws, &ev);
}

/* The CLOSED event, then the memory. */
static void closed(csock_ws *ws)
{
    csock_ws_event ev = {.kind = CSOCK_WS_CLOSED};
    ev.code = ws->got_close ? ws->peer_code : CSOCK_WS_ABNORMAL;
    ev.buf = ws->peer_reason ? ws->peer_reason : "";
    ev.len = ws->peer_reason_len;
    ev.sent = ws->sent_code;
    /* Closed under us without a reason of our own: a server's drain, a
     * stream timeout the read callback did not see. */
    ev.status = ws->status != STATUS_UNSET ? ws->status : ws->got_close ? 0 : -ECONNABORTED;
    ev.http_status = csock__ws_http_status(ws);
    ws->state = WS_ENDED;
    csock__ws_emit(ws, &ev);
    csock__ws_free(ws);
}

void csock__ws_on_closed(csock_stream *s) { closed(csock_stream_data(s)); }

void csock__ws_end_unattached(csock_ws *ws, int status)
{
    set_status(ws, status);
    ws->state = WS_ENDED;
    csock__ws_client_cancel(ws);
    closed(ws);
}

/* ---- sending -------------------------------------------------------------------- */

enum { KEY_BYTES = 32 };

/* Mask keys on the heap: only clients mask, and a server's WebSockets
 * (most of them) stay smaller without them. */
static int next_key(csock_ws *ws, unsigned char key[4])
{
    if (!ws->keys && !(ws->keys = malloc(KEY_BYTES))) return -ENOMEM;
    if (!ws->nkeys) {
        /* Mask keys must be unpredictable (RFC 6455 section 5.3): from the
         * kernel, eight at a time. */
        if (getrandom(ws->keys, KEY_BYTES, 0) != KEY_BYTES)
            for (size_t i = 0; i < KEY_BYTES; i++) ws->keys[i] ^= (unsigned char)(rand() >> 7);
        ws->nkeys = KEY_BYTES / 4;
    }
    ws->nkeys--;
    memcpy(key, ws->keys + 4 * ws->nkeys, 4);
    return 0;
}

static int queue_frame(csock_ws *ws, int op, const void *buf, size_t len, int fin);

/* Send a frame; a frame the kernel did not take whole asks for DRAIN. */
static int send_frame(csock_ws *ws, int op, const void *buf, size_t len, int fin)
{
    int rc = queue_frame(ws, op, buf, len, fin);
    if (rc == 0 && csock_stream_write_queue_size(ws->s)) ws->want_drain = 1;
    return rc;
}

static int queue_frame(csock_ws *ws, int op, const void *buf, size_t len, int fin)
{
    unsigned char h[WS_HEAD_MAX];
    if (!ws->client) {
        unsigned n = csock__ws_build_head(h, op, fin, len, NULL);
        struct iovec iov[2] = {{h, n}, {(void *)buf, len}};
        return csock_stream_writev(ws->s, iov, len ? 2 : 1);
    }
    unsigned char key[4];
    if (next_key(ws, key) < 0) return -ENOMEM;
    unsigned n = csock__ws_build_head(h, op, fin, len, key);
    if (len <= SMALL_SEND) {
        unsigned char b[WS_HEAD_MAX + SMALL_SEND];
        memcpy(b, h, n);
        if (len) memcpy(b + n, buf, len);
        csock__ws_mask(b + n, len, key, 0);
        return csock_stream_write(ws->s, b, n + len);
    }
    unsigned char *b = malloc(n + len);
    if (!b) return -ENOMEM;
    memcpy(b, h, n);
    memcpy(b + n, buf, len);
    csock__ws_mask(b + n, len, key, 0);
    return csock_stream_write_ref(ws->s, b, n + len, free, b);
}

/* A compressed frame: deflated into a buffer of its own, the header (and
 * a client's mask) put in front of the data, sent by reference. */
static int send_compressed(csock_ws *ws, int op, const void *buf, size_t len, int fin)
{
    unsigned char *b, h[WS_HEAD_MAX], key[4];
    size_t n;
    int rc = csock__ws_deflate(ws->z, buf, len, fin, WS_HEAD_MAX, &b, &n);
    if (rc < 0) return rc;
    if (ws->client && next_key(ws, key) < 0) {
        free(b);
        csock__ws_deflate_drop(ws->z); /* the peer never sees what it compressed */
        return -ENOMEM;
    }
    unsigned hn = csock__ws_build_head(h, op, fin, n, ws->client ? key : NULL);
    if (ws->client) csock__ws_mask(b + WS_HEAD_MAX, n, key, 0);
    memcpy(b + WS_HEAD_MAX - hn, h, hn);
    rc = csock_stream_write_ref(ws->s, b + WS_HEAD_MAX - hn, hn + n, free, b);
    if (rc < 0) csock__ws_deflate_drop(ws->z);
    else if (csock_stream_write_queue_size(ws->s)) ws->want_drain = 1;
    return rc;
}

static int send_close(csock_ws *ws, int code, const char *reason, size_t len)
{
    unsigned char p[WS_CONTROL_MAX];
    size_t n = 0;
    if (code) {
        p[0] = (unsigned char)(code >> 8);
        p[1] = (unsigned char)code;
        if (len) memcpy(p + 2, reason, len);
        n = 2 + len;
    }
    ws->sent_code = code ? code : CSOCK_WS_NO_STATUS;
    return send_frame(ws, WS_OP_CLOSE, p, n, 1);
}

static int can_send(const csock_ws *ws)
{
    if (ws->state == WS_CONNECTING) return -ENOTCONN;
    return ws->state == WS_OPEN ? 0 : -EPIPE;
}

int csock_ws_send_part(csock_ws *ws, int type, const void *buf, size_t len, int fin)
{
    int rc = can_send(ws);
    if (rc < 0) return rc;
    int op = WS_OP_CONT;
    if (!ws->sending_part) {
        if (type != CSOCK_WS_TEXT && type != CSOCK_WS_BINARY) return -EINVAL;
        op = type;
        /* A short whole message is not worth a zlib call on each side. */
        ws->send_z = ws->z && (!fin || len >= ws->z->threshold);
        if (ws->send_z) op |= WS_RSV1;
    }
    rc = ws->send_z ? send_compressed(ws, op, buf, len, fin) : send_frame(ws, op, buf, len, fin);
    if (rc == 0) ws->sending_part = !fin;
    return rc;
}

int csock_ws_send(csock_ws *ws, int type, const void *buf, size_t len)
{
    if (ws->sending_part && ws->state == WS_OPEN) return -EBUSY;
    return csock_ws_send_part(ws, type, buf, len, 1);
}

int csock_ws_ping(csock_ws *ws, const void *buf, size_t len)
{
    if (len > WS_CONTROL_MAX) return -EMSGSIZE;
    int rc = can_send(ws);
    return rc < 0 ? rc : send_frame(ws, WS_OP_PING, buf, len, 1);
}

/* ---- ending ---------------------------------------------------------------------- */

/* The closing handshake is over, or the connection failed: our close frame
 * (if any) leaves, then the FIN, and the stream closes once the peer has
 * finished too (bounded by the stream). */
static void end_stream(csock_ws *ws)
{
    ws->state = WS_ENDED;
    if (ws->timer) csock_timer_stop(ws->timer);
    csock_stream_end(ws->s, NULL);
}

/* Close now: nothing more is worth sending. */
static void close_now(csock_ws *ws, int status)
{
    set_status(ws, status);
    ws->state = WS_ENDED;
    if (!ws->s) { /* a client still dialling: CLOSED from the loop, by its timer */
        csock__ws_client_cancel(ws);
        csock__ws_timer(ws, 0); /* the handshake's timer: made already, it starts */
        return;
    }
    if (ws->timer) csock_timer_stop(ws->timer);
    csock_stream_close(ws->s, NULL);
}

void csock__ws_fail(csock_ws *ws, int code, int status)
{
    if (ws->state == WS_ENDED) return;
    set_status(ws, status);
    if (code && ws->state == WS_OPEN) send_close(ws, code, NULL, 0);
    end_stream(ws);
}

/* The closing handshake goes on through a server's stop (see csock_ws_close). */
static void on_stop_closing(csock_stream *s, int status) {}

/* Messages still go to the application: open, or closing after
 * csock_ws_shutdown until the peer's close frame. */
static int delivering(const csock_ws *ws)
{
    return ws->state == WS_OPEN || (ws->state == WS_CLOSING && ws->finishing);
}

static int begin_close(csock_ws *ws, int code, const char *reason, size_t len, int finishing);

int csock_ws_close(csock_ws *ws, int code, const char *reason, size_t len)
{
    return begin_close(ws, code, reason, len, 0);
}

int csock_ws_shutdown(csock_ws *ws, int code, const char *reason, size_t len)
{
    return begin_close(ws, code, reason, len, 1);
}

static int begin_close(csock_ws *ws, int code, const char *reason, size_t len, int finishing)
{
    if (ws->state == WS_CONNECTING) {
        csock_ws_abort(ws);
        return 0;
    }
    if (ws->state != WS_OPEN) return -EALREADY;
    if ((code && !csock__ws_code_ok((unsigned)code)) || (!code && len) || len > WS_CONTROL_MAX - 2)
        return -EINVAL;
    if (len && csock__utf8_step(WS_UTF8_OK, (const unsigned char *)reason, len) != WS_UTF8_OK)
        return -EINVAL;
    send_close(ws, code, reason, len);
    ws->state = WS_CLOSING;
    ws->finishing = finishing != 0;
    /* The peer's answer must be read: a paused connection reads again (the
     * messages still coming are dropped, see deliver), unless they are
     * still wanted (shutdown): then the application resumes. */
    if (ws->paused && !finishing) {
        ws->paused = 0;
        if (csock_stream_read_start(ws->s, csock__ws_on_read) < 0) {
            close_now(ws, -EPIPE);
            return 0;
        }
    }
    if (csock__ws_timer(ws, ws->close_ms) < 0) {
        close_now(ws, -ENOMEM);
        return 0;
    }
    /* A server's graceful stop (the application sends 1001 from its
     * loop_drain) would end a quiet stream after 250 ms: the peer's answer
     * may take longer, and close_ms bounds it already. Only now, not for
     * every connection: an open WebSocket stays without the stream's
     * extension this costs. Without memory the drain may cut it short. */
    if (!ws->client) (void)csock_stream_on_stop(ws->s, on_stop_closing);
    return 0;
}

void csock_ws_abort(csock_ws *ws)
{
    if (ws->state == WS_ENDED) return;
    close_now(ws, -ECANCELED);
}

/* The keep-alive: a ping after ping_ms without input, and the peer is dead
 * when nothing at all comes within ping_timeout of it. Any input counts as
 * a sign of life (a busy peer's pong may wait behind its data). */
static void keepalive(csock_ws *ws)
{
    uint32_t idle = (uint32_t)csock_loop_now(ws->loop) - ws->last_in;
    if (ws->paused) { /* we are not reading: silence proves nothing */
        csock__ws_timer(ws, ws->ping_ms);
        return;
    }
    if (ws->ping_out) {
        if (idle >= ws->ping_timeout_ms) return close_now(ws, -ETIMEDOUT);
        csock__ws_timer(ws, ws->ping_timeout_ms - idle);
        return;
    }
    if (idle < ws->ping_ms) {
        csock__ws_timer(ws, ws->ping_ms - idle);
        return;
    }
    ws->ping_out = 1;
    send_frame(ws, WS_OP_PING, NULL, 0, 1);
    csock__ws_timer(ws, ws->ping_timeout_ms);
}

static void on_timer(csock_timer *t)
{
    csock_ws *ws = csock_timer_data(t);
    switch (ws->state) {
    case WS_CONNECTING: return csock__ws_client_timeout(ws);
    case WS_CLOSING: return close_now(ws, -ETIMEDOUT); /* the peer never answered our close */
    case WS_OPEN: return keepalive(ws);
    case WS_ENDED:
        if (!ws->s) csock__ws_end_unattached(ws, -ECANCELED); /* ended while dialling */
        return;
    default: return;
    }
}

/* ---- reading --------------------------------------------------------------------- */

static void drop_message(csock_ws *ws)
{
    free(ws->msg);
    ws->msg = NULL;
    ws->mlen = ws->mcap = 0;
    ws->in_msg = 0;
    ws->msg_z = 0;
    if (ws->z) ws->z->zin = 0;
}

static void deliver(csock_ws *ws, const char *p, size_t n)
{
    ws->in_msg = 0;
    if (!delivering(ws)) return; /* after our close: dropped (but after a shutdown) */
    /* An empty message made of empty fragments has no buffer: still a
     * valid pointer for the application. */
    csock_ws_event ev = {.kind = CSOCK_WS_MESSAGE, .type = ws->msg_text ? CSOCK_WS_TEXT : CSOCK_WS_BINARY,
                         .buf = p ? p : "", .len = n};
    csock__ws_emit(ws, &ev);
}

/* Room for `more` bytes after the message so far (the total is within
 * max_message: checked from the length fields before). */
static int reserve(csock_ws *ws, uint64_t more)
{
    size_t need = ws->mlen + (size_t)more;
    if (need <= ws->mcap) return 0;
    size_t cap = ws->mcap ? ws->mcap * 2 : 4096;
    if (cap < need) cap = need;
    if (cap > ws->max_message && need <= ws->max_message) cap = (size_t)ws->max_message;
    char *m = realloc(ws->msg, cap);
    if (!m) return -ENOMEM;
    ws->msg = m;
    ws->mcap = cap;
    return 0;
}

/* Check a piece of a text message as it comes; 0 or -1 (failed). */
static int text_ok(csock_ws *ws, const unsigned char *p, size_t n, int last)
{
    if (!ws->msg_text) return 0;
    ws->utf8 = csock__utf8_step(ws->utf8, p, n);
    if (ws->utf8 == WS_UTF8_BAD || (last && ws->utf8 != WS_UTF8_OK)) {
        csock__ws_fail(ws, CSOCK_WS_INVALID_DATA, -EPROTO);
        return -1;
    }
    return 0;
}

static void begin_message(csock_ws *ws, const csock__ws_frame *f)
{
    if (f->op == WS_OP_CONT) return;
    ws->msg_text = f->op == WS_OP_TEXT;
    ws->msg_z = (f->rsv & 4) != 0;
    ws->utf8 = WS_UTF8_OK;
}

/* Where a compressed message's inflated bytes go: checked against
 * max_message before they are kept, UTF-8 checked, appended. Non-zero when
 * the connection failed. */
static int inflated(void *ctx, const unsigned char *p, size_t n)
{
    csock_ws *ws = ctx;
    if (n > ws->max_message - ws->mlen) {
        csock__ws_fail(ws, CSOCK_WS_TOO_BIG, CSOCK_ETOOBIG);
        return 1;
    }
    if (text_ok(ws, p, n, 0) < 0) return 1;
    if (reserve(ws, n) < 0) {
        csock__ws_fail(ws, CSOCK_WS_INTERNAL, -ENOMEM);
        return 1;
    }
    memcpy(ws->msg + ws->mlen, p, n);
    ws->mlen += n;
    return 0;
}

/* A piece of a compressed message's payload (unmasked), the message's
 * last when `last`. */
static void compressed_piece(csock_ws *ws, const unsigned char *p, size_t n, int last)
{
    ws->in_msg = 1;
    ws->z->zin += n;
    int rc = csock__ws_inflate(ws->z, p, n, last, inflated, ws);
    if (rc > 0) return; /* the sink failed the connection */
    if (rc < 0) return csock__ws_fail(ws, rc == -ENOMEM ? CSOCK_WS_INTERNAL : CSOCK_WS_INVALID_DATA, rc);
    if (!last || text_ok(ws, (const unsigned char *)"", 0, 1) < 0) return;
    deliver(ws, ws->msg, ws->mlen);
    drop_message(ws);
}

/* A whole data frame at p (unmasked). */
static void data_frame(csock_ws *ws, const csock__ws_frame *f, unsigned char *p, size_t n)
{
    begin_message(ws, f);
    if (ws->msg_z) return compressed_piece(ws, p, n, f->fin);
    if (text_ok(ws, p, n, f->fin) < 0) return;
    if (f->fin && !ws->in_msg) return deliver(ws, (const char *)p, n); /* in place */
    if (reserve(ws, n) < 0) return csock__ws_fail(ws, CSOCK_WS_INTERNAL, -ENOMEM);
    if (n) memcpy(ws->msg + ws->mlen, p, n);
    ws->mlen += n;
    ws->in_msg = 1;
    if (!f->fin) return;
    deliver(ws, ws->msg, ws->mlen);
    drop_message(ws);
}

/* A large frame: its payload is streamed into the message buffer. */
static int begin_stream(csock_ws *ws, const csock__ws_frame *f)
{
    begin_message(ws, f);
    if (!ws->msg_z && reserve(ws, f->len) < 0) {
        csock__ws_fail(ws, CSOCK_WS_INTERNAL, -ENOMEM);
        return -1;
    }
    ws->in_msg = 1;
    ws->frame_left = f->len;
    ws->frame_fin = f->fin;
    ws->frame_phase = 0;
    if (f->masked) memcpy(ws->frame_key, f->key, 4);
    else memset(ws->frame_key, 0, 4);
    return 0;
}

static size_t stream_payload(csock_ws *ws, unsigned char *p, size_t n)
{
    size_t k = n < ws->frame_left ? n : (size_t)ws->frame_left;
    if (!ws->client) ws->frame_phase = (unsigned char)csock__ws_mask(p, k, ws->frame_key, ws->frame_phase);
    ws->frame_left -= k;
    int last = ws->frame_left == 0 && ws->frame_fin;
    if (ws->msg_z) {
        compressed_piece(ws, p, k, last);
        return k;
    }
    if (text_ok(ws, p, k, last) < 0) return k;
    memcpy(ws->msg + ws->mlen, p, k);
    ws->mlen += k;
    if (last) {
        deliver(ws, ws->msg, ws->mlen);
        drop_message(ws);
    }
    return k;
}

static void got_close(csock_ws *ws, const unsigned char *p, size_t n)
{
    int code = CSOCK_WS_NO_STATUS;
    if (n == 1) return csock__ws_fail(ws, CSOCK_WS_PROTOCOL_ERROR, -EPROTO);
    if (n >= 2) {
        code = p[0] << 8 | p[1];
        if (!csock__ws_code_ok((unsigned)code)) return csock__ws_fail(ws, CSOCK_WS_PROTOCOL_ERROR, -EPROTO);
        if (csock__utf8_step(WS_UTF8_OK, p + 2, n - 2) != WS_UTF8_OK)
            return csock__ws_fail(ws, CSOCK_WS_INVALID_DATA, -EPROTO);
        if (n > 2 && (ws->peer_reason = malloc(n - 2))) { /* without memory: no reason */
            memcpy(ws->peer_reason, p + 2, n - 2);
            ws->peer_reason_len = n - 2;
        }
    }
    ws->got_close = 1;
    ws->peer_code = code;
    if (ws->state == WS_OPEN) /* the peer began: answer with its code */
        send_close(ws, code == CSOCK_WS_NO_STATUS ? 0 : code, NULL, 0);
    set_status(ws, 0);
    end_stream(ws);
}

static void control(csock_ws *ws, const csock__ws_frame *f, unsigned char *p)
{
    size_t n = (size_t)f->len;
    if (f->op == WS_OP_CLOSE) return got_close(ws, p, n);
    if (!delivering(ws)) return;
    if (f->op == WS_OP_PING) { /* (after our close frame nothing more goes) */
        if (ws->state == WS_OPEN) send_frame(ws, WS_OP_PONG, p, n, 1);
        return;
    }
    csock_ws_event ev = {.kind = CSOCK_WS_PONG, .buf = (const char *)p, .len = n};
    csock__ws_emit(ws, &ev);
}

/* Is the data frame f past what the message may take? Its decompressed size
 * is checked as it inflates; its compressed size may pass max_message by a
 * margin (incompressible data grows a little), no more. */
static int too_big(const csock_ws *ws, const csock__ws_frame *f)
{
    int z = f->op == WS_OP_CONT ? ws->msg_z : (f->rsv & 4) != 0;
    uint64_t max = ws->max_message, so_far = ws->mlen;
    if (z) {
        uint64_t margin = max / 8 + 1024;
        max = max > UINT64_MAX - margin ? UINT64_MAX : max + margin;
        so_far = ws->z->zin;
    }
    return f->len > max || so_far + f->len > max;
}

/* Frames in buf[0..len): returns the bytes used (a partial frame stays). */
static size_t parse(csock_ws *ws, unsigned char *buf, size_t len)
{
    size_t pos = 0;
    while (pos < len && ws->state != WS_ENDED && !ws->paused) {
        if (ws->frame_left) {
            pos += stream_payload(ws, buf + pos, len - pos);
            continue;
        }
        csock__ws_frame f;
        int h = csock__ws_parse_head(buf + pos, len - pos, &f);
        if (h == 0) break;
        if (h < 0 || csock__ws_check(&f, !ws->client, ws->in_msg, ws->z != NULL)) {
            csock__ws_fail(ws, CSOCK_WS_PROTOCOL_ERROR, -EPROTO);
            break;
        }
        size_t avail = len - pos - (size_t)h;
        if (f.op >= WS_OP_CLOSE) { /* control: at most 125 bytes, always whole */
            if (avail < f.len) break;
            unsigned char *p = buf + pos + h;
            if (f.masked) csock__ws_mask(p, (size_t)f.len, f.key, 0);
            pos += (size_t)h + (size_t)f.len;
            control(ws, &f, p);
            continue;
        }
        if (too_big(ws, &f)) {
            csock__ws_fail(ws, CSOCK_WS_TOO_BIG, CSOCK_ETOOBIG);
            break;
        }
        if (f.len <= avail) {
            unsigned char *p = buf + pos + h;
            if (f.masked) csock__ws_mask(p, (size_t)f.len, f.key, 0);
            pos += (size_t)h + (size_t)f.len;
            data_frame(ws, &f, p, (size_t)f.len);
            continue;
        }
        if ((uint64_t)h + f.len <= WAIT_MAX) break; /* whole soon: wait for it */
        if (begin_stream(ws, &f) < 0) break;
        pos += (size_t)h;
    }
    return ws->state == WS_ENDED ? len : pos;
}

size_t csock__ws_on_read(csock_stream *s, int status, const char *buf, size_t len)
{
    csock_ws *ws = csock_stream_data(s);
    if (ws->state == WS_ENDED) return len;
    if (status < 0 && status != CSOCK_EOF) {
        close_now(ws, status);
        return len;
    }
    size_t used = 0;
    if (len) {
        ws->last_in = (uint32_t)csock_loop_now(ws->loop);
        ws->ping_out = 0;
        used = parse(ws, (unsigned char *)buf, len);
    }
    if (status == CSOCK_EOF && ws->state != WS_ENDED) {
        /* The peer finished without finishing the closing handshake. */
        set_status(ws, CSOCK_EOF);
        end_stream(ws);
    }
    return status == CSOCK_EOF ? len : used;
}

/* ---- flow control ----------------------------------------------------------------- */

int csock_ws_read_stop(csock_ws *ws)
{
    if (!delivering(ws) && ws->state != WS_CONNECTING) return -EPIPE;
    ws->paused = 1;
    /* A client still connecting stops once its handshake is done. */
    return ws->state != WS_CONNECTING ? csock_stream_read_stop(ws->s) : 0;
}

int csock_ws_read_start(csock_ws *ws)
{
    if (!delivering(ws) && ws->state != WS_CONNECTING) return -EPIPE;
    if (!ws->paused) return 0;
    ws->paused = 0;
    if (ws->state == WS_CONNECTING) return 0;
    /* The pause was ours, not the peer's: the keep-alive counts from now. */
    ws->last_in = (uint32_t)csock_loop_now(ws->loop);
    ws->ping_out = 0;
    return csock_stream_read_start(ws->s, csock__ws_on_read); /* re-offers what waits */
}

/* ---- accessors ------------------------------------------------------------------- */

size_t csock_ws_buffered(const csock_ws *ws) { return ws->s ? csock_stream_write_queue_size(ws->s) : 0; }
const char *csock_ws_subprotocol(const csock_ws *ws) { return ws->subprotocol; }
int csock_ws_compressed(const csock_ws *ws) { return ws->z != NULL; }
csock_stream *csock_ws_stream(const csock_ws *ws) { return ws->s; }
void *csock_ws_data(const csock_ws *ws) { return ws->data; }
void csock_ws_set_data(csock_ws *ws, void *data) { ws->data = data; }
