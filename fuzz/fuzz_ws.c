/* libFuzzer target for a WebSocket connection (src/proto/ws_conn.c,
 * ws_frame.c, ws_utf8.c, ws_deflate.c): a csock_ws on one end of a
 * socketpair, server or client side, with or without permessage-deflate
 * negotiated (window and context settings from the input), and a peer on
 * the other end whose input is a script of: raw bytes, whole messages built
 * from the input (masked as the role needs, compressed or not, in 1-4
 * fragments), pings, the application's close, loop runs. The connection
 * echoes every message it gets (so the compressing send path runs too).
 *
 * Checks beyond "no crash, no sanitizer report, no leak":
 *  - a delivered message is within max_message, and a text one is UTF-8;
 *  - while the peer has sent only well-formed messages, they are delivered
 *    exactly, in order, all of them;
 *  - everything the connection sends parses as frames for its role (masked
 *    by a client, not by a server; RSV1 only on a compressed first frame),
 *    and the echoes, inflated by the peer with the agreed context rule,
 *    are the messages delivered, in order;
 *  - zlib's memory stays within the connection's cap;
 *  - CLOSED comes exactly once, nothing after it, and the loop is empty. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "csock/csock.h"
#include "fuzz_common.h"
#include "proto/ws_int.h"

#define MAXMSG 64      /* messages remembered (expected, delivered) */
#define RX_CAP (4u << 20)

typedef struct msg {
    int type;
    size_t len;
    uint8_t *b;
} msg;

typedef struct fz {
    csock_loop *loop;
    csock_ws *ws;
    int peer, client, deflate, closed, pure;
    uint64_t max;
    msg expect[MAXMSG], got[MAXMSG];
    size_t nexpect, nmatched, ngot;
    z_stream pz;          /* the peer's compressor */
    int pz_reset;         /* the peer compresses without context takeover */
    int our_reset, our_bits; /* how the connection compresses: the peer's inflater follows */
    uint8_t rx[RX_CAP];   /* what the connection sent */
    size_t rx_len;
} fz;

static fz F;

static void keep(msg *m, int type, const void *p, size_t n)
{
    m->type = type;
    m->len = n;
    m->b = malloc(n ? n : 1);
    memcpy(m->b, p, n);
}

static void on_event(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    CHECK(!F.closed);
    if (ev->kind == CSOCK_WS_CLOSED) {
        F.closed = 1;
        F.ws = NULL;
        return;
    }
    if (ws->z) CHECK(ws->z->mem <= ws->z->mem_max);
    if (ev->kind != CSOCK_WS_MESSAGE) return;
    CHECK(ev->len <= F.max);
    if (ev->type == CSOCK_WS_TEXT)
        CHECK(csock__utf8_step(WS_UTF8_OK, (const unsigned char *)ev->buf, ev->len) == WS_UTF8_OK);
    if (F.pure) {
        CHECK(F.nmatched < F.nexpect);
        msg *e = &F.expect[F.nmatched++];
        CHECK(e->type == ev->type && e->len == ev->len && !memcmp(e->b, ev->buf, ev->len));
    }
    if (F.ngot < MAXMSG && csock_ws_send(ws, ev->type, ev->buf, ev->len) == 0)
        keep(&F.got[F.ngot++], ev->type, ev->buf, ev->len);
}

static void drain_peer(void)
{
    for (;;) {
        uint8_t tmp[65536];
        ssize_t k = read(F.peer, tmp, sizeof tmp);
        if (k <= 0) return;
        size_t room = RX_CAP - F.rx_len, n = (size_t)k < room ? (size_t)k : room;
        memcpy(F.rx + F.rx_len, tmp, n);
        F.rx_len += n;
    }
}

static void spin(int n)
{
    for (int i = 0; i < n; i++) {
        csock_loop_run(F.loop, CSOCK_RUN_NOWAIT);
        drain_peer();
    }
}

static void peer_write(const uint8_t *p, size_t n)
{
    int stalls = 0;
    while (n) {
        ssize_t k = write(F.peer, p, n);
        if (k < 0 && errno == EAGAIN) {
            /* A connection that failed reads no more: give up the rest. */
            if (F.closed || ++stalls > 64) {
                F.pure = 0;
                return;
            }
            spin(1);
            continue;
        }
        if (k <= 0) return;
        p += k;
        n -= (size_t)k;
    }
}

/* One frame from the peer: masked toward a server. */
static void peer_frame(int b0, const uint8_t *p, size_t n)
{
    uint8_t *f = malloc(WS_HEAD_MAX + n + 1);
    static const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    unsigned h = csock__ws_build_head(f, b0 & (WS_RSV1 | 0x0f), b0 & 0x80, n, F.client ? NULL : key);
    memcpy(f + h, p, n);
    if (!F.client) csock__ws_mask(f + h, n, key, 0);
    peer_write(f, h + n);
    free(f);
}

/* The peer's compressed form of p[0..n): the flush tail removed. */
static uint8_t *peer_deflate(const uint8_t *p, size_t n, size_t *out)
{
    if (F.pz_reset) deflateReset(&F.pz);
    size_t cap = deflateBound(&F.pz, n) + 64;
    uint8_t *b = malloc(cap);
    F.pz.next_in = (Bytef *)p;
    F.pz.avail_in = (uInt)n;
    F.pz.next_out = b;
    F.pz.avail_out = (uInt)cap;
    int rc = deflate(&F.pz, Z_SYNC_FLUSH);
    CHECK((rc == Z_OK || rc == Z_BUF_ERROR) && F.pz.avail_in == 0 && F.pz.avail_out > 0);
    if (cap - F.pz.avail_out < 4) { /* nothing to flush: the empty message's one byte */
        b[0] = 0;
        *out = 1;
        return b;
    }
    *out = cap - F.pz.avail_out - 4;
    return b;
}

/* A whole message from the input: type, compression and fragments from
 * the control byte. */
static void build_message(fz_in *in)
{
    uint8_t c = fz_byte(in);
    int type = c & 1 ? CSOCK_WS_BINARY : CSOCK_WS_TEXT, z = F.deflate && (c & 2), nfrag = 1 + (c >> 2 & 3);
    size_t n, wire;
    const uint8_t *p = fz_take(in, fz_u16(in) % 4096, &n);
    uint8_t *data = z ? peer_deflate(p, n, &wire) : (uint8_t *)p;
    if (!z) wire = n;
    int valid = type == CSOCK_WS_BINARY || csock__utf8_step(WS_UTF8_OK, p, n) == WS_UTF8_OK;
    uint64_t zmax = F.max + F.max / 8 + 1024;
    if (!valid || n > F.max || (z && wire > zmax) || F.nexpect == MAXMSG) F.pure = 0;
    else if (F.pure) keep(&F.expect[F.nexpect++], type, p, n);
    size_t step = wire / (size_t)nfrag + 1, off = 0;
    for (int i = 0; i < nfrag && !F.closed; i++) {
        size_t k = i == nfrag - 1 ? wire - off : (step < wire - off ? step : wire - off);
        int b0 = (i == 0 ? type | (z ? WS_RSV1 : 0) : WS_OP_CONT) | (i == nfrag - 1 ? 0x80 : 0);
        peer_frame(b0, data + off, k);
        off += k;
        spin(1);
    }
    if (z) free(data);
}

static void step(fz_in *in)
{
    uint8_t op = fz_byte(in);
    size_t n;
    const uint8_t *p;
    switch (op % 5) {
    case 0: /* raw bytes: anything at all */
        p = fz_take(in, fz_byte(in), &n);
        if (n) F.pure = 0;
        peer_write(p, n);
        break;
    case 1: build_message(in); break;
    case 2: /* a frame of the input's header byte and payload */
        p = fz_take(in, fz_byte(in), &n);
        F.pure = 0;
        peer_frame(op, p, n);
        break;
    case 3:
        p = fz_take(in, fz_byte(in) % 126, &n);
        peer_frame(0x80 | WS_OP_PING, p, n);
        break;
    default:
        if (F.ws && op % 3 == 0) {
            F.pure = 0; /* messages after our close are dropped */
            csock_ws_close(F.ws, 1000, "fz", 2);
        } else if (F.ws && op % 3 == 1) {
            csock_ws_ping(F.ws, "p", 1);
        }
        break;
    }
    spin(2);
}

/* The connection's output: frames for its role; echoes inflate to what
 * was delivered. */
static void check_output(void)
{
    /* Only the agreed window, and a fresh state per message without context
     * takeover: a compressor breaking either makes zlib fail here. */
    z_stream inf = {0};
    CHECK(inflateInit2(&inf, -(F.our_bits ? F.our_bits : 15)) == Z_OK);
    size_t pos = 0, next = 0, mlen = 0;
    uint8_t *m = NULL;
    int mz = 0, in_msg = 0, mop = 0;
    while (pos < F.rx_len) {
        csock__ws_frame f;
        int h = csock__ws_parse_head(F.rx + pos, F.rx_len - pos, &f);
        if (h <= 0 || f.len > F.rx_len - pos - (size_t)h) break; /* cut short by a close */
        CHECK(f.masked == F.client);
        CHECK(f.rsv == 0 || (f.rsv == 4 && F.deflate && !in_msg && (f.op == 1 || f.op == 2)));
        uint8_t *p = F.rx + pos + h;
        if (f.masked) csock__ws_mask(p, (size_t)f.len, f.key, 0);
        pos += (size_t)h + (size_t)f.len;
        if (f.op >= WS_OP_CLOSE) {
            if (f.op == WS_OP_CLOSE) break;
            continue;
        }
        if (!in_msg) {
            mz = f.rsv == 4;
            mop = f.op;
            mlen = 0;
        }
        in_msg = !f.fin;
        m = realloc(m, mlen + (size_t)f.len + 1);
        memcpy(m + mlen, p, (size_t)f.len);
        mlen += (size_t)f.len;
        if (!f.fin) continue;
        CHECK(next < F.ngot);
        msg *g = &F.got[next++];
        CHECK(mop == g->type);
        if (mz) {
            if (F.our_reset) inflateReset(&inf);
            static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
            uint8_t *out = malloc(g->len + 1);
            inf.next_out = out;
            inf.avail_out = (uInt)g->len + 1;
            for (int part = 0; part < 2; part++) {
                inf.next_in = part ? (Bytef *)tail : m;
                inf.avail_in = part ? 4 : (uInt)mlen;
                int rc = inflate(&inf, Z_SYNC_FLUSH);
                CHECK(rc == Z_OK || rc == Z_BUF_ERROR);
            }
            CHECK((size_t)(inf.next_out - out) == g->len && !memcmp(out, g->b, g->len));
            free(out);
        } else {
            CHECK(mlen == g->len && !memcmp(m, g->b, g->len));
        }
    }
    free(m);
    inflateEnd(&inf);
    if (getenv("FUZZ_WS_VERBOSE")) /* what a seed reaches, for whoever writes one */
        fprintf(stderr, "fuzz_ws: expected %zu, matched %zu, echoed %zu, checked %zu, pure %d\n", F.nexpect,
                F.nmatched, F.ngot, next, F.pure);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static const uint64_t MAXES[4] = {64, 1000, 70000, 1u << 20};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t how = fz_byte(&in);
    memset(&F, 0, offsetof(fz, rx));
    F.rx_len = 0;
    F.client = how & 1;
    F.deflate = (how & 2) != 0;
    F.max = MAXES[how >> 6];
    F.pure = 1;
    int sv[2];
    CHECK(csock_loop_new(NULL, &F.loop) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    F.peer = sv[1];
    fcntl(F.peer, F_SETFL, O_NONBLOCK);

    csock_ws_opts o = {.max_message = F.max, .deflate = 1, .close_timeout_ms = 50};
    CHECK(csock__ws_new(F.loop, &o, F.client, on_event, NULL, &F.ws) == 0);
    int peer_bits = how & 16 ? 9 : 15;
    if (F.deflate) {
        /* The agreed parameters: the peer's context rule and window, ours. */
        char offer[128], ans[192];
        snprintf(offer, sizeof offer, "permessage-deflate%s%s; client_max_window_bits=%d",
                 how & 4 ? "; client_no_context_takeover" : "", how & 8 ? "; server_no_context_takeover" : "",
                 peer_bits);
        const char *vals[1] = {offer};
        size_t lens[1] = {strlen(offer)};
        CHECK(csock__ws_pmd_accept(&o, vals, lens, 1, ans, sizeof ans, &F.ws->z) == 1);
        F.pz_reset = F.ws->z->inf_reset;
        F.our_reset = F.ws->z->def_reset;
        F.our_bits = F.ws->z->def_bits;
        CHECK(deflateInit2(&F.pz, 6, Z_DEFLATED, -peer_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    }
    csock_stream *s;
    CHECK(csock_stream_open(F.loop, sv[0], &s) == 0);
    csock__ws_attach(F.ws, s);
    CHECK(csock_stream_read_start(s, csock__ws_on_read) == 0);
    if (F.client) csock__ws_opened(F.ws, NULL, 0);

    for (int n = 0; in.len > 0 && n < 128 && !F.closed; n++) step(&in);
    spin(4);
    if (F.pure && !F.closed) CHECK(F.nmatched == F.nexpect);

    /* A failed connection ends its stream gracefully and waits for the
     * peer's end: the peer finishes, then anything left is aborted. */
    shutdown(F.peer, SHUT_WR);
    for (int i = 0; i < 16 && csock_loop_handles(F.loop); i++) spin(1);
    if (F.ws) csock_ws_abort(F.ws);
    /* Then until no close or deferred work is left either (a stream's
     * deferred task may free it after its handle stopped counting), as
     * csock_loop_free() asks. */
    for (int i = 0; i < 64; i++) {
        if (!csock_loop_handles(F.loop) && csock_loop_run(F.loop, CSOCK_RUN_NOWAIT) <= 0) break;
        spin(1);
    }
    CHECK(F.closed == 1);
    CHECK(csock_loop_handles(F.loop) == 0);
    CHECK(csock_loop_free(F.loop) == 0);
    drain_peer();
    close(F.peer);
    check_output();
    if (F.deflate) deflateEnd(&F.pz);
    for (size_t i = 0; i < F.nexpect; i++) free(F.expect[i].b);
    for (size_t i = 0; i < F.ngot; i++) free(F.got[i].b);
    return 0;
}
