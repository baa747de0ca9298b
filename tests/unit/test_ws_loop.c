/* WebSocket over loopback, on every backend: a csock_ws server (an upgrade
 * from the HTTP server) and a csock_ws client exchanging text, binary,
 * fragmented and 1 MiB messages, pings and the closing handshake; and a raw
 * TCP peer that breaks the rules (the server's close code), sends frames in
 * the same packet as its handshake (handed over by csock_http_upgrade), or
 * never answers a close or a ping (the timeouts). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "csock/csock.h"
#include "csock/dial.h"
#include "csock/ws.h"
#include "helpers.h"

#define BIG (1u << 20)

typedef struct side {
    csock_ws *ws;
    int msgs, pongs, closed, opened, drains;
    int last_type;
    char last[64];
    size_t last_len;
    char *big_seen;       /* the 1 MiB message, compared */
    int big_ok;
    csock_ws_event closing; /* CLOSED's fields */
    char reason[128];
    int echo;             /* send every message back */
    int accepted;         /* server: csock_ws_accept made a connection */
    int pause_at;         /* csock_ws_read_stop at this many messages */
    int answer_101;       /* client: OPEN carried the server's 101 answer, whole */
} side;

typedef struct fixture {
    csock_loop *loop;
    csock_http_server *hs;
    csock_listener *l;
    char url[128];
    int port;
    csock_ws_opts sopts;
    side srv, cl, c2; /* here, not on a test's stack: a failed assertion
                         leaves no callback pointing into a dead frame */
    int refused;
} fixture;

/* Wait for cond, or for a side's end (an allocation refused under the
 * fault sweep ends a connection, or refuses it): then fail at once, not at
 * the timeout. */
#define WAIT(f, cond, ms)                                                                  \
    do {                                                                                   \
        RUN_UNTIL((f)->loop, (cond) || (f)->cl.closed || (f)->c2.closed || (f)->srv.closed || \
                                 (f)->refused, (ms));                                      \
        assert_true(cond);                                                                 \
    } while (0)

static char *big_pattern(void)
{
    char *b = malloc(BIG);
    for (size_t i = 0; i < BIG; i++) b[i] = (char)(i * 31 + (i >> 10));
    return b;
}

static void on_event(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    side *sd = data;
    switch (ev->kind) {
    case CSOCK_WS_OPEN:
        sd->opened = 1;
        sd->answer_101 = ev->len > 16 && !memcmp(ev->buf, "HTTP/1.1 101 ", 13) &&
                         !memcmp(ev->buf + ev->len - 4, "\r\n\r\n", 4);
        return;
    case CSOCK_WS_PONG: sd->pongs++; return;
    case CSOCK_WS_DRAIN: sd->drains++; return;
    case CSOCK_WS_MESSAGE:
        sd->msgs++;
        sd->last_type = ev->type;
        sd->last_len = ev->len;
        memcpy(sd->last, ev->buf, ev->len < sizeof sd->last ? ev->len : sizeof sd->last);
        if (ev->len == BIG) {
            char *b = big_pattern();
            sd->big_ok = !memcmp(b, ev->buf, BIG);
            free(b);
        }
        /* An echo that cannot go (-ENOMEM under the fault sweep) ends the
         * connection: the other side must not wait for it. */
        if (sd->echo && csock_ws_send(ws, ev->type, ev->buf, ev->len) < 0) csock_ws_abort(ws);
        else if (sd->pause_at && sd->msgs == sd->pause_at) assert_int_equal(csock_ws_read_stop(ws), 0);
        return;
    case CSOCK_WS_CLOSED:
        sd->closed = 1;
        sd->closing = *ev;
        memcpy(sd->reason, ev->buf, ev->len < sizeof sd->reason ? ev->len : sizeof sd->reason - 1);
        sd->closing.buf = sd->reason;
        sd->ws = NULL;
        return;
    default: return;
    }
}

static void handler(csock_http_req *r, void *data)
{
    fixture *f = data;
    if (!csock_ws_is_upgrade(r)) {
        csock_http_send(r, 200, "page\n", 5);
        return;
    }
    if (csock_ws_accept(r, &f->sopts, on_event, &f->srv, &f->srv.ws) < 0) f->refused++;
    else f->srv.accepted++;
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    fixture *f = csock_listener_data(l);
    if (status == 0) csock_http_server_accept(f->hs, s);
}

static int setup(void **state)
{
    /* One fixture at a time, in static storage: a setup that fails half
     * way (an allocation refused by the fault sweep) leaves nothing leaked. */
    static fixture fx;
    fixture *f = &fx;
    memset(f, 0, sizeof *f);
    *state = f;
    f->loop = h_loop_new();
    csock_http_route route = {.prefix = "/ws", .handler = handler, .data = f};
    csock_http_opts ho = {.routes = &route, .nroutes = 1};
    CHECK_OK(csock_http_server_new(f->loop, &ho, &f->hs));
    csock_addr a;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", 0, &a));
    CHECK_OK(csock_listen(f->loop, &a, NULL, on_accept, f, &f->l));
    CHECK_OK(csock_listener_addr(f->l, &a));
    f->port = csock_addr_port(&a);
    snprintf(f->url, sizeof f->url, "ws://127.0.0.1:%d/ws", f->port);
    f->sopts.max_message = 2 * BIG;
    f->srv.echo = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->srv.ws) csock_ws_abort(f->srv.ws);
    if (f->cl.ws) csock_ws_abort(f->cl.ws);
    if (f->c2.ws) csock_ws_abort(f->c2.ws);
    csock_listener_close(f->l, NULL);
    csock_http_server_close(f->hs);
    h_loop_free(f->loop);
    return 0;
}

/* ---- csock_ws both sides -------------------------------------------------------- */

static void echo_everything(void **state)
{
    fixture *f = *state;
    side *cl = &f->cl;
    csock_ws_opts o = {.max_message = 2 * BIG};
    CHECK_OK(csock_ws_connect(f->loop, f->url, &o, on_event, cl, &cl->ws));
    assert_int_equal(csock_ws_send(cl->ws, CSOCK_WS_TEXT, "x", 1), -ENOTCONN);
    WAIT(f, cl->opened, 5000);
    assert_true(cl->answer_101);
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_TEXT, "hello", 5));
    WAIT(f, cl->msgs == 1, 5000);
    assert_int_equal(cl->last_type, CSOCK_WS_TEXT);
    assert_memory_equal(cl->last, "hello", 5);
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_BINARY, "\0\1\2", 3));
    WAIT(f, cl->msgs == 2, 5000);
    assert_int_equal(cl->last_type, CSOCK_WS_BINARY);
    assert_int_equal(cl->last_len, 3);
    /* Fragmented, with a ping between the fragments. */
    CHECK_OK(csock_ws_send_part(cl->ws, CSOCK_WS_TEXT, "fr", 2, 0));
    assert_int_equal(csock_ws_send(cl->ws, CSOCK_WS_TEXT, "x", 1), -EBUSY);
    CHECK_OK(csock_ws_ping(cl->ws, "p", 1));
    CHECK_OK(csock_ws_send_part(cl->ws, 0, "ag", 2, 1));
    WAIT(f, cl->msgs == 3 && cl->pongs == 1, 5000);
    assert_int_equal(cl->last_len, 4);
    assert_memory_equal(cl->last, "frag", 4);
    assert_int_equal(csock_ws_ping(cl->ws, NULL, 126), -EMSGSIZE);
    /* 1 MiB each way (streamed through the message buffer). */
    char *b = big_pattern();
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_BINARY, b, BIG));
    free(b);
    WAIT(f, cl->msgs == 4, 10000);
    assert_true(f->srv.big_ok);
    assert_true(cl->big_ok);
    /* The server pings too. */
    CHECK_OK(csock_ws_ping(f->srv.ws, "s", 1));
    WAIT(f, f->srv.pongs == 1, 5000);
    /* The closing handshake, begun by the client. */
    assert_int_equal(csock_ws_close(cl->ws, 999, NULL, 0), -EINVAL);
    assert_int_equal(csock_ws_close(cl->ws, 1000, "\xff", 1), -EINVAL);
    CHECK_OK(csock_ws_close(cl->ws, 4000, "done", 4));
    assert_int_equal(csock_ws_send(cl->ws, CSOCK_WS_TEXT, "x", 1), -EPIPE);
    assert_int_equal(csock_ws_close(cl->ws, 1000, NULL, 0), -EALREADY);
    RUN_UNTIL(f->loop, cl->closed && f->srv.closed, 5000);
    assert_int_equal(cl->closing.status, 0);
    assert_int_equal(cl->closing.code, 4000); /* the server answered with our code */
    assert_int_equal(cl->closing.sent, 4000);
    assert_int_equal(f->srv.closing.status, 0);
    assert_int_equal(f->srv.closing.code, 4000);
    assert_string_equal(f->srv.reason, "done");
}

static void server_closes_with_reason(void **state)
{
    fixture *f = *state;
    side *cl = &f->cl;
    CHECK_OK(csock_ws_connect(f->loop, f->url, NULL, on_event, cl, &cl->ws));
    WAIT(f, cl->opened && f->srv.ws, 5000);
    CHECK_OK(csock_ws_close(f->srv.ws, CSOCK_WS_GOING_AWAY, "bye", 3));
    RUN_UNTIL(f->loop, cl->closed && f->srv.closed, 5000);
    assert_int_equal(cl->closing.status, 0);
    assert_int_equal(cl->closing.code, 1001);
    assert_string_equal(cl->reason, "bye");
    assert_int_equal(f->srv.closing.sent, 1001);
    assert_int_equal(f->srv.closing.status, 0);
}

/* A send the kernel cannot take at once waits in the stream's queue:
 * csock_ws_buffered() says how much, and DRAIN comes once it has gone. */
static void backpressure_and_drain(void **state)
{
    fixture *f = *state;
    f->srv.echo = 0;
    side *cl = &f->cl;
    csock_ws_opts o = {.max_message = 8 * BIG};
    CHECK_OK(csock_ws_connect(f->loop, f->url, &o, on_event, cl, &cl->ws));
    WAIT(f, cl->opened && f->srv.ws, 5000);
    char *b = calloc(1, 8 * BIG);
    CHECK_OK(csock_ws_send(f->srv.ws, CSOCK_WS_BINARY, b, 8 * BIG));
    free(b);
    assert_true(csock_ws_buffered(f->srv.ws) > 0);
    assert_int_equal(f->srv.drains, 0);
    WAIT(f, cl->msgs == 1 && f->srv.drains == 1, 10000);
    assert_int_equal(cl->last_len, 8 * BIG);
    assert_int_equal(csock_ws_buffered(f->srv.ws), 0);
    csock_ws_abort(cl->ws);
    RUN_UNTIL(f->loop, cl->closed && f->srv.closed, 5000);
    assert_int_equal(cl->closing.status, -ECANCELED);
    assert_int_equal(f->srv.closing.code, 1006);
}

static void message_too_big(void **state)
{
    fixture *f = *state;
    f->sopts.max_message = 1000;
    side *cl = &f->cl;
    CHECK_OK(csock_ws_connect(f->loop, f->url, NULL, on_event, cl, &cl->ws));
    WAIT(f, cl->opened, 5000);
    char buf[1001] = {0};
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_BINARY, buf, 1000)); /* the limit: fine */
    WAIT(f, f->srv.msgs == 1, 5000);
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_BINARY, buf, 1001));
    RUN_UNTIL(f->loop, cl->closed && f->srv.closed, 5000);
    assert_int_equal(f->srv.closing.sent, 1009);
    assert_int_equal(f->srv.closing.status, CSOCK_ETOOBIG);
    assert_int_equal(cl->closing.code, 1009);
}

static void client_refused(void **state)
{
    fixture *f = *state;
    side *cl = &f->cl;
    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/elsewhere", f->port); /* 404 */
    CHECK_OK(csock_ws_connect(f->loop, url, NULL, on_event, cl, &cl->ws));
    RUN_UNTIL(f->loop, cl->closed, 5000);
    assert_false(cl->opened);
    assert_int_equal(cl->closing.status, -EPROTO);
    assert_int_equal(cl->closing.code, 1006);
    assert_int_equal(cl->closing.http_status, 404); /* why, for the user */
    assert_memory_equal(cl->reason, "HTTP/1.1 404 ", 13);
    /* A port nobody listens on. */
    side *c2 = &f->c2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", ntohs(sa.sin_port));
    CHECK_OK(csock_ws_connect(f->loop, url, NULL, on_event, c2, &c2->ws));
    RUN_UNTIL(f->loop, c2->closed, 5000);
    assert_int_equal(c2->closing.status, -ECONNREFUSED);
    assert_int_equal(c2->closing.http_status, 0);
    close(fd);
    assert_int_equal(csock_ws_connect(f->loop, "http://127.0.0.1:1/", NULL, on_event, c2, &c2->ws),
                     CSOCK_ESCHEME);
    assert_int_equal(csock_ws_connect(f->loop, "ws://", NULL, on_event, c2, &c2->ws), -EINVAL);
    assert_int_equal(csock_ws_connect(f->loop, "ws://127.0.0.1:1/a\r\nX: y", NULL, on_event, c2, &c2->ws),
                     -EINVAL);
    assert_int_equal(csock_ws_connect(f->loop, "ws://127.0.0.1:1/a b", NULL, on_event, c2, &c2->ws), -EINVAL);
}

/* ---- a raw peer -------------------------------------------------------------------- */

static int raw_connect_ext(fixture *f, const char *ext, const char *extra, size_t elen);

static int raw_connect(fixture *f, const char *extra, size_t elen) { return raw_connect_ext(f, NULL, extra, elen); }

/* Connect and send the handshake (offering the extension `ext`), then
 * `extra` (frames in the same write as the head). */
static int raw_connect_ext(fixture *f, const char *ext, const char *extra, size_t elen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char *req = malloc(512 + elen);
    int n = snprintf(req, 512, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "%s%s%sSec-WebSocket-Version: 13\r\n\r\n",
                     ext ? "Sec-WebSocket-Extensions: " : "", ext ? ext : "", ext ? "\r\n" : "");
    if (elen) memcpy(req + n, extra, elen); /* frames in the same packet as the head */
    assert_int_equal(write(fd, req, (size_t)n + elen), n + (ssize_t)elen);
    free(req);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

typedef struct rawbuf {
    char b[4096];
    size_t n;
    int eof; /* the server closed, or the buffer is full: nothing more comes */
} rawbuf;

static int raw_found(const rawbuf *r, const char *what, size_t wl)
{
    for (size_t i = 0; i + wl <= r->n; i++)
        if (!memcmp(r->b + i, what, wl)) return 1;
    return 0;
}

/* Read what has come; 1 when `what` is in it, or nothing more can come. */
static int raw_has(int fd, rawbuf *r, const char *what, size_t wl)
{
    ssize_t k = r->n < sizeof r->b ? recv(fd, r->b + r->n, sizeof r->b - r->n, 0) : 0;
    if (k > 0) r->n += (size_t)k;
    else if (k == 0 || errno != EAGAIN) r->eof = 1;
    return raw_found(r, what, wl) || r->eof;
}

/* Has the server let go of the raw connection (EOF, a reset, or an HTTP
 * error instead of the upgrade)? */
static int raw_gone(int fd)
{
    char c[12];
    ssize_t k = recv(fd, c, sizeof c, MSG_PEEK | MSG_DONTWAIT);
    if (k == (ssize_t)sizeof c && !memcmp(c, "HTTP/1.1 ", 9)) return memcmp(c + 9, "101", 3) != 0;
    return k == 0 || (k < 0 && errno != EAGAIN);
}

/* Wait for bytes from the server; fail at once if it closed without them. */
#define RAW_WAIT(f, fd, r, what, wl, ms)                                   \
    do {                                                                   \
        RUN_UNTIL((f)->loop, raw_has((fd), (r), (what), (wl)), (ms));      \
        assert_true(raw_found((r), (what), (wl)));                         \
    } while (0)

/* Wait for the server's side; fail at once if it never took the
 * connection (refused under the fault sweep) and the peer is gone. */
#define RAW_UNTIL(f, fd, cond, ms)                                                              \
    do {                                                                                        \
        RUN_UNTIL((f)->loop, (cond) || (f)->srv.closed || (f)->refused ||                      \
                                 (!(f)->srv.accepted && raw_gone(fd)), (ms));                   \
        assert_true(cond);                                                                      \
    } while (0)

static void bytes_after_the_head(void **state)
{
    fixture *f = *state;
    /* A masked "Hi" right behind the handshake: csock_http_upgrade hands it over. */
    static const char frame[] = {(char)0x81, (char)0x82, 1, 2, 3, 4, 'H' ^ 1, 'i' ^ 2};
    int fd = raw_connect(f, frame, sizeof frame);
    rawbuf r = {0};
    RAW_UNTIL(f, fd, f->srv.msgs == 1, 5000);
    assert_memory_equal(f->srv.last, "Hi", 2);
    RAW_WAIT(f, fd, &r, "\x81\x02Hi", 4, 5000); /* the echo, unmasked */
    assert_non_null(strstr(r.b, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_non_null(strstr(r.b, "Connection: Upgrade"));
    assert_int_equal(csock_http_server_conns(f->hs), 0); /* the HTTP server let go */
    close(fd);
    RAW_UNTIL(f, fd, f->srv.closed, 5000);
    assert_int_equal(f->srv.closing.status, CSOCK_EOF);
    assert_int_equal(f->srv.closing.code, 1006);
}

static void protocol_errors_close_1002(void **state)
{
    fixture *f = *state;
    /* An unmasked frame from a client. */
    static const char unmasked[] = {(char)0x81, 0x01, 'x'};
    int fd = raw_connect(f, unmasked, sizeof unmasked);
    rawbuf r = {0};
    RAW_WAIT(f, fd, &r, "\x88\x02\x03\xea", 4, 5000); /* close 1002 */
    RAW_UNTIL(f, fd, f->srv.closed, 5000);
    assert_int_equal(f->srv.closing.status, -EPROTO);
    assert_int_equal(f->srv.msgs, 0);
    close(fd);
}

static void huge_length_never_allocated(void **state)
{
    fixture *f = *state;
    /* 2^62 bytes announced: 1009 at once; nothing is allocated for it. */
    static const char frame[] = {(char)0x82, (char)0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    int fd = raw_connect(f, frame, sizeof frame);
    rawbuf r = {0};
    RAW_WAIT(f, fd, &r, "\x88\x02\x03\xf1", 4, 5000); /* close 1009 */
    RAW_UNTIL(f, fd, f->srv.closed, 5000);
    assert_int_equal(f->srv.closing.status, CSOCK_ETOOBIG);
    close(fd);
}

static void close_timeout(void **state)
{
    fixture *f = *state;
    f->sopts.close_timeout_ms = 200;
    int fd = raw_connect(f, NULL, 0);
    RAW_UNTIL(f, fd, f->srv.ws, 5000);
    uint64_t t0 = h_now_ms();
    CHECK_OK(csock_ws_close(f->srv.ws, 1000, NULL, 0));
    RAW_UNTIL(f, fd, f->srv.closed, 5000); /* the peer never answers */
    uint64_t took = h_now_ms() - t0;
    assert_true(took >= 190);
    assert_int_equal(f->srv.closing.status, -ETIMEDOUT);
    assert_int_equal(f->srv.closing.sent, 1000);
    assert_int_equal(f->srv.closing.code, 1006);
    close(fd);
}

static void keepalive_finds_a_dead_peer(void **state)
{
    fixture *f = *state;
    f->sopts.ping_interval_ms = 100;
    f->sopts.ping_timeout_ms = 150;
    int fd = raw_connect(f, NULL, 0);
    rawbuf r = {0};
    RAW_WAIT(f, fd, &r, "\x89\x00", 2, 5000); /* an empty ping */
    RAW_UNTIL(f, fd, f->srv.closed, 5000);                 /* never answered */
    assert_int_equal(f->srv.closing.status, -ETIMEDOUT);
    close(fd);
}

/* ---- flow control ------------------------------------------------------------------ */

/* Three masked one-byte text frames "a", "b", "c", behind the handshake. */
static const char abc[] = {(char)0x81, (char)0x81, 1, 2, 3, 4, 'a' ^ 1,
                           (char)0x81, (char)0x81, 1, 2, 3, 4, 'b' ^ 1,
                           (char)0x81, (char)0x81, 1, 2, 3, 4, 'c' ^ 1};

/* Run the loop `ms` (or until the server's side changes): what a stopped
 * connection must not do shows up here. */
static void quiet_for(fixture *f, uint64_t ms, int msgs)
{
    uint64_t end = h_now_ms() + ms;
    RUN_UNTIL(f->loop, h_now_ms() >= end || f->srv.msgs != msgs || f->srv.closed, ms + 5000);
    assert_int_equal(f->srv.msgs, msgs);
    assert_false(f->srv.closed);
}

static void read_stop_holds_messages(void **state)
{
    fixture *f = *state;
    f->sopts.ping_interval_ms = 50; /* a keep-alive that would call a silent peer dead */
    f->sopts.ping_timeout_ms = 50;
    f->srv.pause_at = 1;
    int fd = raw_connect(f, abc, sizeof abc); /* all three arrive in one read */
    rawbuf r = {0};
    RAW_UNTIL(f, fd, f->srv.msgs == 1, 5000);
    quiet_for(f, 300, 1); /* "b" and "c" wait; the keep-alive does not fire */
    CHECK_OK(csock_ws_read_start(f->srv.ws));
    CHECK_OK(csock_ws_read_start(f->srv.ws)); /* twice: harmless */
    RAW_UNTIL(f, fd, f->srv.msgs == 3, 5000);
    assert_memory_equal(f->srv.last, "c", 1);
    RAW_WAIT(f, fd, &r, "\x81\x01" "a" "\x81\x01" "b" "\x81\x01" "c", 9, 5000); /* echoed in order */
    close(fd);
    RAW_UNTIL(f, fd, f->srv.closed, 5000);
}

static void close_while_stopped_reads_the_answer(void **state)
{
    fixture *f = *state;
    f->srv.pause_at = 1;
    int fd = raw_connect(f, abc, sizeof abc);
    rawbuf r = {0};
    RAW_UNTIL(f, fd, f->srv.msgs == 1, 5000);
    assert_non_null(f->srv.ws); /* not ended by a refused allocation (the fault sweep) */
    CHECK_OK(csock_ws_close(f->srv.ws, 1000, NULL, 0));
    assert_int_equal(csock_ws_read_stop(f->srv.ws), -EPIPE); /* closing: it must read */
    RAW_WAIT(f, fd, &r, "\x88\x02\x03\xe8", 4, 5000); /* our close 1000 */
    static const char answer[] = {(char)0x88, (char)0x82, 0, 0, 0, 0, 0x03, (char)0xe8};
    assert_int_equal(send(fd, answer, sizeof answer, 0), (ssize_t)sizeof answer);
    RAW_UNTIL(f, fd, f->srv.closed, 5000);
    assert_int_equal(f->srv.closing.status, 0); /* the handshake finished */
    assert_int_equal(f->srv.closing.code, 1000);
    assert_int_equal(f->srv.msgs, 1);           /* "b" and "c" came after our close */
    close(fd);
}

/* A half close: the peer's messages sent before it saw our close still
 * arrive, and flow control still holds them (csock_ws_close drops them). */
static void shutdown_delivers_until_the_peer_closes(void **state)
{
    fixture *f = *state;
    f->srv.pause_at = 1;
    f->srv.echo = 0; /* (a send after our close is -EPIPE) */
    int fd = raw_connect(f, abc, sizeof abc);
    rawbuf r = {0};
    RAW_UNTIL(f, fd, f->srv.msgs == 1, 5000);
    assert_non_null(f->srv.ws); /* not ended by a refused allocation (the fault sweep) */
    CHECK_OK(csock_ws_shutdown(f->srv.ws, 1000, NULL, 0));
    assert_int_equal(csock_ws_send(f->srv.ws, CSOCK_WS_TEXT, "x", 1), -EPIPE);
    RAW_WAIT(f, fd, &r, "\x88\x02\x03\xe8", 4, 5000); /* our close 1000 */
    assert_int_equal(f->srv.msgs, 1); /* still stopped */
    CHECK_OK(csock_ws_read_stop(f->srv.ws));
    CHECK_OK(csock_ws_read_start(f->srv.ws));
    RAW_UNTIL(f, fd, f->srv.msgs == 3, 5000);
    assert_memory_equal(f->srv.last, "c", 1);
    static const char answer[] = {(char)0x88, (char)0x82, 0, 0, 0, 0, 0x03, (char)0xe8};
    assert_int_equal(send(fd, answer, sizeof answer, 0), (ssize_t)sizeof answer);
    RAW_UNTIL(f, fd, f->srv.closed, 5000);
    assert_int_equal(f->srv.closing.status, 0);
    assert_int_equal(f->srv.closing.code, 1000);
    assert_int_equal(f->srv.msgs, 3);
    close(fd);
}

static void bad_handshakes_refused(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *req, *status;
    } cases[] = {
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", " 426 "},
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n", " 400 "},
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", " 400 "},
        {"POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", " 405 "},
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: http://evil\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", " 403 "},
    };
    static const char *origins[] = {"http://good"};
    f->sopts.origins = origins;
    f->sopts.norigins = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_true(write(fd, cases[i].req, strlen(cases[i].req)) > 0);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        rawbuf r = {0};
        RAW_WAIT(f, fd, &r, cases[i].status, 5, 5000);
        close(fd);
    }
    assert_int_equal(f->refused, 5);
    assert_null(f->srv.ws);
}

/* ---- permessage-deflate ------------------------------------------------------------ */

/* Both sides compress (with `o` for the client): messages under the
 * threshold and over it, fragmented with a ping between, 1 MiB, then the
 * closing handshake. */
static void deflate_echo(fixture *f, csock_ws_opts *o)
{
    side *cl = &f->cl;
    o->max_message = 2 * BIG;
    o->deflate = 1;
    f->sopts.deflate = 1;
    CHECK_OK(csock_ws_connect(f->loop, f->url, o, on_event, cl, &cl->ws));
    RUN_UNTIL(f->loop, cl->opened || cl->closed, 5000);
    assert_true(cl->opened);
    assert_int_equal(csock_ws_compressed(cl->ws), 1);
    assert_int_equal(csock_ws_compressed(f->srv.ws), 1);
    static const char longer[] = "a message long enough to be compressed, long enough to be compressed";
    for (int i = 0; i < 3; i++) { /* again and again: the context carries over, or not */
        CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_TEXT, "hello", 5)); /* under the threshold */
        WAIT(f, cl->msgs == 2 * i + 1, 5000);
        assert_memory_equal(cl->last, "hello", 5);
        CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_TEXT, longer, sizeof longer - 1));
        WAIT(f, cl->msgs == 2 * i + 2, 5000);
        assert_int_equal(cl->last_len, sizeof longer - 1);
        assert_memory_equal(cl->last, longer, sizeof cl->last);
    }
    CHECK_OK(csock_ws_send_part(cl->ws, CSOCK_WS_BINARY, "fr", 2, 0));
    CHECK_OK(csock_ws_ping(cl->ws, "p", 1));
    CHECK_OK(csock_ws_send_part(cl->ws, 0, "ag", 2, 0));
    CHECK_OK(csock_ws_send_part(cl->ws, 0, "", 0, 1));
    WAIT(f, cl->msgs == 7 && cl->pongs == 1, 5000);
    assert_int_equal(cl->last_type, CSOCK_WS_BINARY);
    assert_int_equal(cl->last_len, 4);
    assert_memory_equal(cl->last, "frag", 4);
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_BINARY, "", 0));
    WAIT(f, cl->msgs == 8, 5000);
    assert_int_equal(cl->last_len, 0);
    char *b = big_pattern();
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_BINARY, b, BIG));
    free(b);
    WAIT(f, cl->msgs == 9, 10000);
    assert_true(f->srv.big_ok);
    assert_true(cl->big_ok);
    CHECK_OK(csock_ws_close(cl->ws, 1000, NULL, 0));
    RUN_UNTIL(f->loop, cl->closed && f->srv.closed, 5000);
    assert_int_equal(cl->closing.status, 0);
    assert_int_equal(f->srv.closing.status, 0);
}

static void deflate_with_context_takeover(void **state)
{
    csock_ws_opts o = {0};
    deflate_echo(*state, &o);
}

static void deflate_without_context_takeover(void **state)
{
    fixture *f = *state;
    f->sopts.server_max_window_bits = 10;
    csock_ws_opts o = {.server_no_context_takeover = 1, .client_no_context_takeover = 1,
                       .client_max_window_bits = 9, .deflate_level = 1, .deflate_threshold = 1};
    deflate_echo(f, &o);
}

/* Only one side wants it: no compression, everything works. */
static void deflate_declined(void **state)
{
    fixture *f = *state;
    side *cl = &f->cl;
    csock_ws_opts o = {.deflate = 1};
    CHECK_OK(csock_ws_connect(f->loop, f->url, &o, on_event, cl, &cl->ws));
    RUN_UNTIL(f->loop, cl->opened || cl->closed, 5000);
    assert_true(cl->opened);
    assert_int_equal(csock_ws_compressed(cl->ws), 0);
    assert_int_equal(csock_ws_compressed(f->srv.ws), 0);
    static const char longer[] = "a message long enough to be compressed, long enough to be compressed";
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_TEXT, longer, sizeof longer - 1));
    WAIT(f, cl->msgs == 1, 5000);
    csock_ws_abort(cl->ws);
    RUN_UNTIL(f->loop, cl->closed && f->srv.closed, 5000);
    f->sopts.deflate = 1; /* the server would, the client does not offer */
    side *c2 = &f->c2;
    CHECK_OK(csock_ws_connect(f->loop, f->url, NULL, on_event, c2, &c2->ws));
    RUN_UNTIL(f->loop, c2->opened || c2->closed, 5000);
    assert_true(c2->opened);
    assert_int_equal(csock_ws_compressed(c2->ws), 0);
    assert_int_equal(csock_ws_compressed(f->srv.ws), 0);
    csock_ws_abort(c2->ws);
    RUN_UNTIL(f->loop, c2->closed, 5000);
}

/* A compressed frame of 32 KiB that inflates to 32 MiB, against a 2 MiB
 * max_message: close 1009 once the output passes 2 MiB, no message. */
static void deflate_bomb_closes_1009(void **state)
{
    fixture *f = *state;
    f->sopts.deflate = 1;
    size_t zn = 32u << 20, cap = 1u << 20;
    unsigned char *zeros = calloc(1, zn), *frame = malloc(cap + 14);
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = zeros;
    zs.avail_in = (uInt)zn;
    zs.next_out = frame + 14;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
    size_t len = cap - zs.avail_out - 4;
    deflateEnd(&zs);
    free(zeros);
    assert_true(len >= 126 && len < 40000); /* a 16-bit length field */
    /* A masked binary frame, RSV1, a 16-bit length (key 0: the bytes as they are). */
    unsigned char h[8] = {0xc2, 0xfe, (unsigned char)(len >> 8), (unsigned char)len, 0, 0, 0, 0};
    memcpy(frame + 14 - 8, h, 8);
    int fd = raw_connect_ext(f, "permessage-deflate", (const char *)frame + 6, len + 8);
    free(frame);
    rawbuf r = {0};
    RAW_WAIT(f, fd, &r, "\x88\x02\x03\xf1", 4, 10000); /* close 1009 */
    RAW_UNTIL(f, fd, f->srv.closed, 5000);
    assert_non_null(strstr(r.b, "Sec-WebSocket-Extensions: permessage-deflate"));
    assert_int_equal(f->srv.closing.status, CSOCK_ETOOBIG);
    assert_int_equal(f->srv.closing.sent, 1009);
    assert_int_equal(f->srv.msgs, 0);
    close(fd);
}

/* RSV1 on a control frame of a compressing connection: 1002; and
 * compressed data zlib refuses: 1007. */
static void deflate_protocol_errors(void **state)
{
    fixture *f = *state;
    f->sopts.deflate = 1;
    static const char ping[] = {(char)0xc9, (char)0x80, 0, 0, 0, 0};
    int fd = raw_connect_ext(f, "permessage-deflate", ping, sizeof ping);
    rawbuf r = {0};
    RAW_WAIT(f, fd, &r, "\x88\x02\x03\xea", 4, 5000); /* close 1002 */
    RAW_UNTIL(f, fd, f->srv.closed, 5000);
    assert_int_equal(f->srv.closing.status, -EPROTO);
    close(fd);
    f->srv.closed = f->srv.accepted = 0;
    static const char junk[] = {(char)0xc1, (char)0x84, 0, 0, 0, 0, (char)0xff, (char)0xff, (char)0xff, (char)0xff};
    fd = raw_connect_ext(f, "permessage-deflate", junk, sizeof junk);
    rawbuf r2 = {0};
    RAW_WAIT(f, fd, &r2, "\x88\x02\x03\xef", 4, 5000); /* close 1007 */
    RAW_UNTIL(f, fd, f->srv.closed, 5000);
    assert_int_equal(f->srv.closing.status, -EPROTO);
    assert_int_equal(f->srv.msgs, 0);
    close(fd);
}

/* ---- connecting through csock_dial ---------------------------------------------- */

/* A name resolves on the resolver thread: csock_ws_connect returns before
 * any connect is made (the old client resolved with getaddrinfo and had
 * its stream at once), and the connection opens later from the loop. */
static void connect_resolves_without_blocking(void **state)
{
    fixture *f = *state;
    side *cl = &f->cl, *c2 = &f->c2;
    char url[128];
    snprintf(url, sizeof url, "ws://localhost:%d/ws", f->port);
    CHECK_OK(csock_ws_connect(f->loop, url, NULL, on_event, cl, &cl->ws));
    assert_null(csock_ws_stream(cl->ws)); /* the dial is in flight */
    assert_int_equal(csock_ws_send(cl->ws, CSOCK_WS_TEXT, "x", 1), -ENOTCONN);
    WAIT(f, cl->opened, 10000);
    assert_non_null(csock_ws_stream(cl->ws));
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_TEXT, "hi", 2));
    WAIT(f, cl->msgs == 1, 5000);
    assert_memory_equal(cl->last, "hi", 2);
    /* Given up while dialling: CLOSED comes from the loop, not inside the call. */
    unsigned before = csock_loop_handles(f->loop);
    CHECK_OK(csock_ws_connect(f->loop, url, NULL, on_event, c2, &c2->ws));
    csock_ws_abort(c2->ws);
    assert_false(c2->closed);
    RUN_UNTIL(f->loop, c2->closed, 5000);
    assert_int_equal(c2->closing.status, -ECANCELED);
    assert_int_equal(c2->closing.code, CSOCK_WS_ABNORMAL);
    assert_false(c2->opened);
    assert_int_equal(f->srv.accepted, 1); /* the cancelled one never reached the server */
    /* The cancelled lookup holds the loop until its thread has answered. */
    RUN_UNTIL(f->loop, csock_loop_handles(f->loop) <= before, 10000);
}

static void on_dialed_then_ws(csock_dial *d, int status, csock_stream *s)
{
    fixture *f = csock_dial_data(d);
    if (status < 0) { /* a refused allocation under the fault sweep */
        f->refused++;
        return;
    }
    /* Not a ws URL: nothing made, the stream is still ours. */
    assert_int_equal(csock_ws_connect_stream(s, "http://x/", NULL, on_event, &f->cl, &f->cl.ws),
                     CSOCK_ESCHEME);
    if (csock_ws_connect_stream(s, f->url, NULL, on_event, &f->cl, &f->cl.ws) < 0) {
        f->refused++;
        csock_stream_close(s, NULL);
    }
}

/* The handshake on a stream the caller dialled itself (as csock proxy does
 * for its ws:// backends). */
static void connect_stream_on_a_dialled_stream(void **state)
{
    fixture *f = *state;
    side *cl = &f->cl;
    char text[64];
    snprintf(text, sizeof text, "tcp://127.0.0.1:%d", f->port);
    CHECK_OK(csock_dial_start(f->loop, text, NULL, on_dialed_then_ws, f, NULL));
    WAIT(f, cl->opened, 10000);
    assert_true(cl->answer_101);
    assert_non_null(csock_ws_stream(cl->ws));
    CHECK_OK(csock_ws_send(cl->ws, CSOCK_WS_BINARY, "\0bytes", 6));
    WAIT(f, cl->msgs == 1, 5000);
    assert_int_equal(cl->last_type, CSOCK_WS_BINARY);
    assert_memory_equal(cl->last, "\0bytes", 6);
    CHECK_OK(csock_ws_close(cl->ws, 1000, NULL, 0));
    RUN_UNTIL(f->loop, cl->closed && f->srv.closed, 5000);
    assert_int_equal(cl->closing.status, 0);
    assert_int_equal(csock_ws_connect_stream(NULL, f->url, NULL, on_event, cl, &cl->ws), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(echo_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(server_closes_with_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(backpressure_and_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(message_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(client_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(bytes_after_the_head, setup, teardown),
        cmocka_unit_test_setup_teardown(protocol_errors_close_1002, setup, teardown),
        cmocka_unit_test_setup_teardown(huge_length_never_allocated, setup, teardown),
        cmocka_unit_test_setup_teardown(close_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(keepalive_finds_a_dead_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_handshakes_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(read_stop_holds_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(close_while_stopped_reads_the_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(deflate_with_context_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(deflate_without_context_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(deflate_declined, setup, teardown),
        cmocka_unit_test_setup_teardown(deflate_bomb_closes_1009, setup, teardown),
        cmocka_unit_test_setup_teardown(deflate_protocol_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(shutdown_delivers_until_the_peer_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(connect_resolves_without_blocking, setup, teardown),
        cmocka_unit_test_setup_teardown(connect_stream_on_a_dialled_stream, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
