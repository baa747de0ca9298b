/* Framed streams (csock_stream_read_framed) as net.h's csock_msg_cb
 * contract promises: every message in order, then exactly one final status
 * (issue 10): a reset or a timeout (idle, read, receive) reaches msg_cb, a
 * valid message before an oversized one is answered, reading stopped
 * inside msg_cb holds the rest, and an LP32 body too long for its header
 * is refused, and a buffer fuller than the limit with whole lines is
 * served. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* The csock side: a transcript of what msg_cb received. */
typedef struct fend {
    csock_stream *s;
    char log[1024];   /* "msg;" per message, "E<name>;" for the final status */
    size_t loglen;
    int finals;       /* final statuses delivered: must end up exactly 1 */
    int final;
    int closed;
    int reply;        /* answer each message with "ok:<msg>\n" */
    int stop_first;   /* read_stop inside the first message's callback */
    int close_on_end; /* close (not end) on the final status */
    csock_framing f;
} fend;

static void logf_(fend *e, const char *fmt, const char *s, size_t n)
{
    int w = snprintf(e->log + e->loglen, sizeof e->log - e->loglen, fmt, (int)n, s);
    assert_true(w > 0 && (size_t)w < sizeof e->log - e->loglen);
    e->loglen += (size_t)w;
}

static void on_fclosed(csock_stream *s) { ((fend *)csock_stream_data(s))->closed = 1; }

static void on_msg(csock_stream *s, int status, const char *msg, size_t len)
{
    fend *e = csock_stream_data(s);
    assert_int_equal(e->finals, 0); /* nothing after the final status */
    if (status != 0) {
        e->finals++;
        e->final = status;
        const char *name = csock_err_name(status);
        logf_(e, "E%.*s;", name, strlen(name));
        if (e->close_on_end)
            csock_stream_close(s, NULL);
        else
            csock_stream_end(s, NULL); /* keeps the replies already written */
        return;
    }
    logf_(e, "%.*s;", msg, len);
    if (e->reply) {
        char out[128];
        int n = snprintf(out, sizeof out, "ok:%.*s\n", (int)len, msg);
        CHECK_OK(csock_stream_write(s, out, (size_t)n));
    }
    if (e->stop_first) {
        e->stop_first = 0;
        CHECK_OK(csock_stream_read_stop(s));
    }
}

typedef struct fpair {
    csock_loop *loop;
    fend e;
    int peer; /* the raw client end */
} fpair;

static void fpair_open(fpair *p, csock_frame_kind kind, size_t max)
{
    memset(p, 0, sizeof *p);
    p->loop = h_loop_new();
    int fd = h_tcp_pair(&p->peer);
    CHECK_OK(csock_stream_open(p->loop, fd, &p->e.s));
    csock_stream_set_data(p->e.s, &p->e);
    csock_stream_on_close(p->e.s, on_fclosed);
    p->e.f = (csock_framing){.kind = kind, .max = max};
    CHECK_OK(csock_stream_read_framed(p->e.s, &p->e.f, on_msg));
}

static void fpair_close(fpair *p)
{
    if (!p->e.closed) csock_stream_close(p->e.s, NULL);
    h_loop_free(p->loop);
    if (p->peer >= 0) close(p->peer);
}

static void send_all(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void expect_log(const fend *e, const char *want)
{
    if (strcmp(e->log, want) != 0) {
        print_error("msg_cb transcript: got \"%s\", want \"%s\"\n", e->log, want);
        fail();
    }
}

/* ---- errors and timeouts reach msg_cb, once -------------------------------------- */

static void reset_case(csock_frame_kind kind)
{
    fpair p;
    fpair_open(&p, kind, 64);
    send_all(p.peer, "\0\0", 2); /* an unfinished line or header waits */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(p.peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(p.peer); /* RST */
    p.peer = -1;
    RUN_UNTIL(p.loop, p.e.finals > 0, 10000);
    h_spin(p.loop, 10);
    assert_int_equal(p.e.finals, 1);
    assert_int_equal(p.e.final, -ECONNRESET);
    RUN_UNTIL(p.loop, p.e.closed, 10000); /* and the stream is gone: no fd leak */
    fpair_close(&p);
}

static void reset_reaches_line_reader(void **state) { reset_case(CSOCK_FRAME_LINE); }
static void reset_reaches_lp32_reader(void **state) { reset_case(CSOCK_FRAME_LP32); }

enum { T_IDLE, T_READ, T_RECV };

static void timeout_case(int which)
{
    fpair p;
    fpair_open(&p, CSOCK_FRAME_LINE, 64);
    if (which == T_READ) {
        send_all(p.peer, "unfinished", 10);
        CHECK_OK(csock_stream_set_read_timeout(p.e.s, 50));
    } else if (which == T_RECV) {
        CHECK_OK(csock_stream_write(p.e.s, "hello\n", 6)); /* ours: not counted */
        CHECK_OK(csock_stream_set_recv_timeout(p.e.s, 50));
    } else {
        CHECK_OK(csock_stream_set_idle_timeout(p.e.s, 50));
    }
    RUN_UNTIL(p.loop, p.e.closed, 10000);
    assert_int_equal(p.e.finals, 1);
    assert_int_equal(p.e.final, -ETIMEDOUT);
    expect_log(&p.e, "EETIMEDOUT;");
    fpair_close(&p);
}

static void idle_timeout_reaches_msg_cb(void **state) { timeout_case(T_IDLE); }
static void read_timeout_reaches_msg_cb(void **state) { timeout_case(T_READ); }
static void recv_timeout_reaches_msg_cb(void **state) { timeout_case(T_RECV); }

/* ---- a valid message and an oversized one in the same read ------------------------- */

/* Read the raw end until EOF (non-blocking, so the loop runs meanwhile). */
static int read_to_eof(int fd, char *buf, size_t cap, size_t *len)
{
    for (;;) {
        ssize_t n = recv(fd, buf + *len, cap - *len, MSG_DONTWAIT);
        if (n == 0) return 1;
        if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK; /* a reset ends it too */
        *len += (size_t)n;
        assert_true(*len < cap);
    }
}

static void valid_then_oversized(csock_frame_kind kind, int close_on_end)
{
    fpair p;
    fpair_open(&p, kind, 16);
    p.e.reply = 1;
    p.e.close_on_end = close_on_end;
    char in[256];
    size_t n = 0;
    if (kind == CSOCK_FRAME_LINE) {
        n = (size_t)snprintf(in, sizeof in, "hi\n%0100d\n", 7);
    } else {
        memcpy(in, "\0\0\0\2hi\0\0\1\0", 10); /* "hi", then a 256-byte body */
        n = 10;
    }
    send_all(p.peer, in, n); /* one segment: one read */
    char out[512];
    size_t got = 0;
    RUN_UNTIL(p.loop, read_to_eof(p.peer, out, sizeof out, &got), 10000);
    out[got] = '\0';
    expect_log(&p.e, "hi;EETOOBIG;");
    assert_string_equal(out, "ok:hi\n"); /* the reply was not lost */
    fpair_close(&p);
}

static void valid_line_before_oversized_line(void **state) { valid_then_oversized(CSOCK_FRAME_LINE, 0); }
static void valid_frame_before_oversized_frame(void **state) { valid_then_oversized(CSOCK_FRAME_LP32, 0); }

/* The replies leave before the error is delivered: even a reader that
 * closes at once on it (as csock serve upper does) has sent them. */
static void oversized_line_then_close_keeps_reply(void **state)
{
    valid_then_oversized(CSOCK_FRAME_LINE, 1);
}

/* ---- read_stop inside msg_cb at EOF holds the rest ------------------------------------ */

static void read_stop_at_eof_holds_rest(void **state)
{
    fpair p;
    fpair_open(&p, CSOCK_FRAME_LINE, 64);
    p.e.stop_first = 1;
    send_all(p.peer, "a\nb\nc", 5);
    shutdown(p.peer, SHUT_WR);
    RUN_UNTIL(p.loop, p.e.loglen > 0, 10000);
    h_spin(p.loop, 20);
    expect_log(&p.e, "a;"); /* reading stopped: nothing more, not even the EOF */
    CHECK_OK(csock_stream_read_framed(p.e.s, &p.e.f, on_msg));
    RUN_UNTIL(p.loop, p.e.finals > 0, 10000);
    expect_log(&p.e, "a;b;c;EEOF;");
    fpair_close(&p);
}

/* ---- a full buffer of whole lines is not an oversized line ---------------------------- */

/* Counts messages and bytes (the lines are too long for the transcript)
 * and answers each with "ok\n" from inside the callback. */
typedef struct bigend {
    size_t msgs, bytes;
    int final;
} bigend;

static void on_big(csock_stream *s, int status, const char *msg, size_t len)
{
    bigend *b = csock_stream_data(s);
    assert_int_equal(b->final, 0);
    if (status != 0) {
        b->final = status;
        csock_stream_end(s, NULL);
        return;
    }
    b->msgs++;
    b->bytes += len;
    CHECK_OK(csock_stream_write(s, "ok\n", 3));
}

/* A 65,000-byte line (the maximum is 65,536) arrives as 63,000 bytes, then
 * 4,000 that end it and hold a second line: the buffer then holds more
 * than the read limit, all of it whole lines. A reply written inside the
 * callback once asked for the next recv (io_uring) while those bytes still
 * counted as unconsumed, and the stream failed with ETOOBIG. */
static void full_buffer_of_whole_lines(void **state)
{
    csock_loop *loop = h_loop_new();
    int peer, fd = h_tcp_pair(&peer);
    csock_stream *s;
    bigend b = {0};
    CHECK_OK(csock_stream_open(loop, fd, &s));
    csock_stream_set_data(s, &b);
    csock_framing f = {.kind = CSOCK_FRAME_LINE, .max = 65536};
    CHECK_OK(csock_stream_read_framed(s, &f, on_big));
    static char head[63000], tail[4000];
    memset(head, 'a', sizeof head);
    memset(tail, 'a', 2000);
    tail[2000] = '\n';
    memset(tail + 2001, 'b', sizeof tail - 2002);
    tail[sizeof tail - 1] = '\n';
    send_all(peer, head, sizeof head);
    int left = 1;
    /* All in its buffer (or the stream failed: out of memory in the
     * allocation sweep, which the assertions below then report). */
    RUN_UNTIL(loop, (ioctl(fd, FIONREAD, &left) == 0 && left == 0) || b.final, 10000);
    send_all(peer, tail, sizeof tail);
    shutdown(peer, SHUT_WR);
    char out[16];
    size_t got = 0;
    RUN_UNTIL(loop, read_to_eof(peer, out, sizeof out, &got), 10000);
    assert_int_equal(b.final, CSOCK_EOF);
    assert_int_equal(b.msgs, 2);
    assert_int_equal(b.bytes, 65000 + 1998);
    assert_int_equal(got, 6);
    assert_memory_equal(out, "ok\nok\n", 6);
    h_loop_free(loop);
    close(peer);
}

/* ---- LP32 writes ---------------------------------------------------------------------- */

static void lp32_write_refuses_over_32_bits(void **state)
{
    fpair p;
    fpair_open(&p, CSOCK_FRAME_LP32, 64);
    csock_framing big = {.kind = CSOCK_FRAME_LP32, .max = SIZE_MAX};
    CHECK_OK(csock_stream_write_msg(p.e.s, &big, "ok", 2));
    char out[6];
    RUN_UNTIL(p.loop, recv(p.peer, out, sizeof out, MSG_DONTWAIT | MSG_PEEK) == 6, 10000);
    assert_int_equal(recv(p.peer, out, sizeof out, 0), 6);
    assert_memory_equal(out, "\0\0\0\2ok", 6);
    /* Refused before a byte is looked at (so `tiny` is never read), and
     * before the stream's own state is: shut down, it would say -EPIPE. */
    CHECK_OK(csock_stream_shutdown(p.e.s, NULL));
    char tiny[8] = {0};
    assert_int_equal(csock_stream_write_msg(p.e.s, &big, tiny, (size_t)UINT32_MAX + 1), -EMSGSIZE);
    assert_int_equal(csock_stream_write_msg(p.e.s, &big, tiny, SIZE_MAX), -EMSGSIZE);
    assert_int_equal(csock_stream_write_msg(p.e.s, &big, tiny, UINT32_MAX), -EPIPE);
    /* A line has no header to overflow: only f->max applies. */
    csock_framing line = {.kind = CSOCK_FRAME_LINE, .max = 4};
    assert_int_equal(csock_stream_write_msg(p.e.s, &line, tiny, 5), CSOCK_ETOOBIG);
    fpair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reset_reaches_line_reader),
        cmocka_unit_test(reset_reaches_lp32_reader),
        cmocka_unit_test(idle_timeout_reaches_msg_cb),
        cmocka_unit_test(read_timeout_reaches_msg_cb),
        cmocka_unit_test(recv_timeout_reaches_msg_cb),
        cmocka_unit_test(valid_line_before_oversized_line),
        cmocka_unit_test(valid_frame_before_oversized_frame),
        cmocka_unit_test(oversized_line_then_close_keeps_reply),
        cmocka_unit_test(read_stop_at_eof_holds_rest),
        cmocka_unit_test(full_buffer_of_whole_lines),
        cmocka_unit_test(lp32_write_refuses_over_32_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
