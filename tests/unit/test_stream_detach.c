/* csock_stream_detach(): the socket leaves the stream with the input read
 * but not consumed, and the bytes a sender wrote arrive exactly once:
 * through the stream's read callback, the hand-over's buffer, or the fd.
 * Every byte is checked against its position (a pattern that no shift
 * repeats), so a loss or a duplicate fails. On io_uring the detach from a
 * timer cancels a recv in flight while the sender keeps writing, which is
 * the race the call exists for. All in one loop, no threads: a failed
 * allocation (the fault sweep) ends every wait through an error or a close. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h" /* CHECK_OK, RUN_UNTIL */

#define TOTAL (2u * 1024 * 1024) /* the sender's bytes */

static unsigned char pat(size_t i) { return (unsigned char)((i * 2654435761u) >> 24 ^ i >> 16); }

typedef struct t {
    csock_loop *loop;
    csock_stream *s;
    int peer;              /* the sender's (or, for output, the reader's) end */
    csock_io *wio, *rio;   /* the peer's writer; the detached fd's reader */
    csock_timer *timer;
    size_t sent, total;
    size_t at;             /* detach once this many bytes are consumed */
    size_t pos;            /* the next byte position expected */
    int bad;               /* a byte out of place */
    int det_rc;            /* csock_stream_detach's return */
    int det_done, det_status, det_fd;
    size_t det_buffered;   /* bytes the hand-over carried */
    int fd_eof;
    int failed;            /* an error ended the run (a failed allocation) */
    int armed;             /* the detaching timer is started */
} t;

static void check_bytes(t *x, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] != pat(x->pos + i) && !x->bad) {
            print_error("byte %zu differs\n", x->pos + i);
            x->bad = 1;
        }
    x->pos += len;
}

/* ---- the sender: the pattern, then a half-close ---- */

static void on_peer_writable(csock_io *io, int events)
{
    t *x = csock_io_data(io);
    (void)events;
    while (x->sent < x->total) {
        unsigned char chunk[16384];
        size_t n = x->total - x->sent < sizeof chunk ? x->total - x->sent : sizeof chunk;
        for (size_t i = 0; i < n; i++) chunk[i] = pat(x->sent + i);
        ssize_t w = send(x->peer, chunk, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (w < 0) {
            x->failed = 1;
            break;
        }
        x->sent += (size_t)w;
    }
    shutdown(x->peer, SHUT_WR);
    csock_io_stop(io);
}

/* ---- the detached fd: read to the end ---- */

static void on_fd_readable(csock_io *io, int events)
{
    t *x = csock_io_data(io);
    (void)events;
    for (;;) {
        char buf[65536];
        ssize_t n = read(x->det_fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {
            if (n < 0) x->failed = 1;
            x->fd_eof = 1;
            csock_io_stop(io);
            return;
        }
        check_bytes(x, buf, (size_t)n);
    }
}

static void on_detached(csock_stream *s, int status, int fd, const char *buf, size_t len, void *data)
{
    t *x = data;
    assert_non_null(s);
    x->det_done = 1;
    x->det_status = status;
    x->det_fd = fd;
    x->det_buffered = len;
    x->s = NULL; /* closed when this returns */
    check_bytes(x, buf, len);
    if (status < 0) {
        assert_int_equal(fd, -1);
        x->failed = 1;
        return;
    }
    assert_true(fd >= 0);
    int rc = csock_io_new(x->loop, fd, on_fd_readable, x, &x->rio);
    if (rc == 0) rc = csock_io_start(x->rio, CSOCK_READABLE);
    if (rc < 0) x->failed = 1;
}

static void do_detach(t *x)
{
    x->det_rc = csock_stream_detach(x->s, on_detached, x);
    if (x->det_rc < 0) x->failed = 1; /* -ENOMEM under the sweep */
}

/* An error (not the EOF) ends the case: the stream is closed. */
static int read_failed(t *x, csock_stream *s, int status)
{
    if (status >= 0 || status == CSOCK_EOF) return 0;
    x->failed = 1;
    csock_stream_close(s, NULL);
    x->s = NULL;
    return 1;
}

/* Consumes everything up to `at`, then (from inside the callback) detaches
 * and leaves the rest of what it was offered in the stream. */
static size_t on_read(csock_stream *s, int status, const char *buf, size_t len)
{
    t *x = csock_stream_data(s);
    if (read_failed(x, s, status)) return len;
    size_t take = len;
    if (x->at != (size_t)-1 && x->pos + len >= x->at) take = x->at - x->pos;
    check_bytes(x, buf, take);
    if (take < len || (x->at != (size_t)-1 && x->pos == x->at) || status == CSOCK_EOF) {
        x->at = (size_t)-1;
        do_detach(x);
    }
    return take;
}

static void on_timer(csock_timer *tm)
{
    t *x = csock_timer_data(tm);
    if (x->s && !x->det_done) do_detach(x);
}

/* Consumes all; the timer detaches (on io_uring with a recv in flight). */
static size_t on_read_all(csock_stream *s, int status, const char *buf, size_t len)
{
    t *x = csock_stream_data(s);
    if (read_failed(x, s, status)) return len;
    check_bytes(x, buf, len);
    if (x->pos >= x->at && !x->armed) {
        x->armed = 1;
        if (csock_timer_start(x->timer, on_timer, 0, 0) < 0) x->failed = 1;
    }
    return len;
}

static void setup_pair(t *x, size_t total, size_t at)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    *x = (t){.loop = h_loop_new(), .peer = sv[1], .total = total, .at = at, .det_fd = -1};
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    CHECK_OK(csock_stream_open(x->loop, sv[0], &x->s));
    csock_stream_set_data(x->s, x);
    CHECK_OK(csock_io_new(x->loop, sv[1], on_peer_writable, x, &x->wio));
}

static void teardown_pair(t *x)
{
    if (x->s) csock_stream_close(x->s, NULL);
    if (x->timer) csock_timer_close(x->timer, NULL);
    csock_io_close(x->wio, NULL);
    if (x->rio) csock_io_close(x->rio, NULL);
    if (x->det_fd >= 0) close(x->det_fd);
    if (x->peer >= 0) close(x->peer);
    h_loop_free(x->loop);
}

/* Every byte the sender wrote came once, in order. */
static void assert_exact(const t *x)
{
    assert_false(x->bad);
    assert_int_equal(x->det_status, 0);
    assert_int_equal(x->pos, x->total);
    assert_int_equal(x->sent, x->total);
}

static void run_to_end(t *x)
{
    RUN_UNTIL(x->loop, x->fd_eof || x->failed, 20000);
}

/* Detached inside the read callback, mid-flow: the part of the offered
 * bytes it did not take comes in the hand-over, the rest through the fd. */
static void detach_inside_the_read_callback(void **state)
{
    (void)state;
    t x;
    setup_pair(&x, TOTAL, 300001);
    CHECK_OK(csock_io_start(x.wio, CSOCK_WRITABLE));
    CHECK_OK(csock_stream_read_start(x.s, on_read));
    run_to_end(&x);
    if (!x.failed) assert_exact(&x);
    teardown_pair(&x);
}

/* Detached from a timer while the stream reads and the sender keeps
 * writing: on io_uring a recv is in flight then, and a cancel does not
 * stop it from taking bytes. Repeated, since it is a race. */
static void detach_while_a_recv_is_in_flight(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        t x;
        setup_pair(&x, TOTAL / 2, 100000 + (size_t)round * 37001);
        CHECK_OK(csock_timer_new(x.loop, &x.timer));
        csock_timer_set_data(x.timer, &x); /* started by the reader at `at` */
        CHECK_OK(csock_io_start(x.wio, CSOCK_WRITABLE));
        CHECK_OK(csock_stream_read_start(x.s, on_read_all));
        run_to_end(&x);
        if (!x.failed) assert_exact(&x);
        teardown_pair(&x);
        if (x.failed) return;
    }
}

/* A stream that never read: everything comes through the fd. */
static void detach_a_stream_that_never_read(void **state)
{
    (void)state;
    t x;
    setup_pair(&x, TOTAL / 4, 0);
    CHECK_OK(csock_io_start(x.wio, CSOCK_WRITABLE));
    do_detach(&x);
    run_to_end(&x);
    if (!x.failed) {
        assert_exact(&x);
        assert_int_equal(x.det_buffered, 0);
    }
    teardown_pair(&x);
}

static void on_detached_close(csock_stream *s, int status, int fd, const char *buf, size_t len,
                              void *data)
{
    (void)s, (void)buf, (void)len;
    t *x = data;
    x->det_done = 1;
    x->det_status = status;
    x->s = NULL;
    if (fd >= 0) close(fd);
}

/* The new owner closes a detached socket at once: the peer reads the end.
 * On io_uring the stream had sent 20 times, one request each, so its
 * socket was in the ring's file table, whose reference alone would keep
 * the connection open after this close. */
static void detached_socket_closed_by_its_owner(void **state)
{
    (void)state;
    t x;
    setup_pair(&x, 0, (size_t)-1);
    CHECK_OK(csock_stream_read_start(x.s, on_read_all));
    int sent = 0;
    for (; sent < 20; sent++) {
        if (csock_stream_write(x.s, "y", 1) < 0) break; /* -ENOMEM under the sweep */
        RUN_UNTIL(x.loop, csock_stream_write_queue_size(x.s) == 0 || x.failed, 10000);
    }
    x.det_rc = csock_stream_detach(x.s, on_detached_close, &x);
    if (x.det_rc == 0) RUN_UNTIL(x.loop, x.det_done, 10000);
    if (x.det_rc == 0 && x.det_status == 0) { /* (-ENOMEM under the allocation sweep) */
        char buf[64];
        ssize_t n;
        int got = 0;
        for (;;) { /* the bytes, then the end */
            struct pollfd pf = {.fd = x.peer, .events = POLLIN};
            assert_int_equal(poll(&pf, 1, 10000), 1);
            n = recv(x.peer, buf, sizeof buf, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (n <= 0) break;
            got += (int)n;
        }
        assert_int_equal(n, 0);
        assert_int_equal(got, sent);
    }
    teardown_pair(&x);
}

/* The sender finished before the detach: the EOF callback leaves bytes in
 * the stream, they come in the hand-over, and the fd reads the end. */
static void detach_after_the_sender_finished(void **state)
{
    (void)state;
    t x;
    setup_pair(&x, 5000, (size_t)-1);
    CHECK_OK(csock_io_start(x.wio, CSOCK_WRITABLE));
    RUN_UNTIL(x.loop, x.sent == x.total || x.failed, 10000);
    x.at = 1234; /* took 1234 bytes, the rest stays */
    CHECK_OK(csock_stream_read_start(x.s, on_read));
    run_to_end(&x);
    if (!x.failed) {
        assert_exact(&x);
        assert_true(x.det_buffered > 0);
    }
    teardown_pair(&x);
}

/* ---- output queued before the detach goes first ---- */

typedef struct out {
    t x;
    size_t got;            /* the reader's bytes */
    int eof, bad;
} out;

static void on_peer_readable(csock_io *io, int events)
{
    out *o = csock_io_data(io);
    (void)events;
    for (;;) {
        char buf[65536];
        ssize_t n = read(o->x.peer, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {
            o->eof = 1;
            csock_io_stop(io);
            return;
        }
        for (ssize_t i = 0; i < n; i++)
            if ((unsigned char)buf[i] != pat(o->got + (size_t)i)) o->bad = 1;
        o->got += (size_t)n;
    }
}

static void on_detached_out(csock_stream *s, int status, int fd, const char *buf, size_t len, void *data)
{
    out *o = data;
    (void)s, (void)buf, (void)len;
    o->x.det_done = 1;
    o->x.det_status = status;
    o->x.s = NULL;
    if (fd < 0) return;
    /* The tail goes after the stream's output, then the end. */
    unsigned char tail[100];
    for (size_t i = 0; i < sizeof tail; i++) tail[i] = pat(TOTAL + i);
    size_t off = 0;
    for (int tries = 0; off < sizeof tail && tries < 1000; tries++) { /* (faultio: short, EAGAIN) */
        ssize_t n = write(fd, tail + off, sizeof tail - off);
        if (n > 0) off += (size_t)n;
    }
    assert_int_equal(off, sizeof tail);
    close(fd);
}

static void queue_output(out *o)
{
    static unsigned char big[TOTAL];
    for (size_t i = 0; i < TOTAL; i++) big[i] = pat(i);
    CHECK_OK(csock_stream_write(o->x.s, big, sizeof big)); /* more than the socket holds */
    assert_true(csock_stream_write_queue_size(o->x.s) > 0);
}

/* A pair whose stream has more output queued than the socket holds, being
 * detached. 0, or -ENOMEM (the sweep) with the pair gone. */
static int start_out(out *o)
{
    setup_pair(&o->x, 0, 0);
    queue_output(o);
    int rc = csock_stream_detach(o->x.s, on_detached_out, o);
    if (rc == -ENOMEM) {
        teardown_pair(&o->x);
        return rc;
    }
    CHECK_OK(rc);
    return 0;
}

static void detach_waits_for_queued_output(void **state)
{
    (void)state;
    out o = {0};
    if (start_out(&o) < 0) return;
    h_spin(o.x.loop, 3);
    assert_false(o.x.det_done); /* the output waits for its reader */
    /* The peer's watcher becomes the reader. */
    csock_io_close(o.x.wio, NULL);
    CHECK_OK(csock_io_new(o.x.loop, o.x.peer, on_peer_readable, &o, &o.x.wio));
    CHECK_OK(csock_io_start(o.x.wio, CSOCK_READABLE));
    RUN_UNTIL(o.x.loop, o.eof, 20000);
    if (o.x.det_status == 0) {
        assert_false(o.bad);
        assert_int_equal(o.got, TOTAL + 100);
    }
    teardown_pair(&o.x);
}

/* A peer that goes away while output waits: the hand-over reports the
 * error, with no fd. */
static void detach_reports_the_error_of_a_failed_stream(void **state)
{
    (void)state;
    out o = {0};
    if (start_out(&o) < 0) return;
    close(o.x.peer); /* its unread bytes go: the stream's send fails */
    o.x.peer = -1;
    RUN_UNTIL(o.x.loop, o.x.det_done, 10000);
    assert_true(o.x.det_status < 0);
    teardown_pair(&o.x);
}

/* Closed by someone else meanwhile (a walk at exit): -ECANCELED. */
static void detach_cancelled_by_a_close(void **state)
{
    (void)state;
    out o = {0};
    if (start_out(&o) < 0) return;
    assert_int_equal(csock_stream_detach(o.x.s, on_detached_out, &o), -EINVAL); /* once */
    csock_stream_close(o.x.s, NULL);
    RUN_UNTIL(o.x.loop, o.x.det_done, 10000);
    assert_int_equal(o.x.det_status, -ECANCELED);
    o.x.s = NULL;
    teardown_pair(&o.x);
}

static void on_hs(csock_stream *s, int status) { (void)s, (void)status; }

/* TLS records on the socket are not the stream's bytes: refused. */
static void detach_refuses_tls(void **state)
{
    (void)state;
    t x;
    setup_pair(&x, 0, 0);
    csock_tls_ctx *ctx = NULL;
    csock_tls_opts to = {.insecure = 1};
    int rc = csock_tls_ctx_new(&to, &ctx, NULL, 0);
    if (rc == 0) rc = csock_tls_wrap(x.s, ctx, NULL, on_hs);
    if (rc == 0) assert_int_equal(csock_stream_detach(x.s, on_detached, &x), -ENOTSUP);
    teardown_pair(&x);
    if (ctx) csock_tls_ctx_free(ctx);
    if (rc != -ENOMEM) CHECK_OK(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detach_inside_the_read_callback),
        cmocka_unit_test(detach_while_a_recv_is_in_flight),
        cmocka_unit_test(detach_a_stream_that_never_read),
        cmocka_unit_test(detached_socket_closed_by_its_owner),
        cmocka_unit_test(detach_after_the_sender_finished),
        cmocka_unit_test(detach_waits_for_queued_output),
        cmocka_unit_test(detach_reports_the_error_of_a_failed_stream),
        cmocka_unit_test(detach_cancelled_by_a_close),
        cmocka_unit_test(detach_refuses_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
