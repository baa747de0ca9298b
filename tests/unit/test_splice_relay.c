/* The relay between two plain sockets (src/cli/splice_relay.c, compiled in
 * here: the CLI is not a library). A direction copies while it carries
 * messages and splices while it streams: a read that fills the 64 KiB
 * chunk switches it to splice, a short one back to copying. Both ways must
 * keep every byte in order through backpressure: a copy whose send the
 * sink takes only in part keeps the rest and sends it first; a splice
 * holds its bytes in the pipe. Bytes carry their position (a pattern no
 * shift repeats), so a loss, a duplicate or a reordering fails.
 *
 * Two loopback TCP pairs: a0 -> a1 =relay= b1 -> b0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/splice_relay.c"

#include "helpers.h" /* CHECK_OK, RUN_UNTIL */

static unsigned char pat(size_t i) { return (unsigned char)((i * 2654435761u) >> 24 ^ i >> 16); }

/* A connected loopback TCP pair, both ends non-blocking; bufsz (0: the
 * kernel's) sets SO_SNDBUF on *a and SO_RCVBUF on *b before the connect. */
static void tcp_pair(int *a, int *b, int bufsz)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (bufsz) assert_int_equal(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz), 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    *a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*a >= 0);
    if (bufsz) assert_int_equal(setsockopt(*a, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz), 0);
    assert_int_equal(connect(*a, (struct sockaddr *)&sa, sizeof sa), 0);
    *b = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    assert_true(*b >= 0);
    close(l);
    assert_int_equal(fcntl(*a, F_SETFL, O_NONBLOCK), 0);
}

typedef struct t {
    csock_loop *loop;
    splice_pool pool;
    splice_relay sr;
    int a0, b0;   /* the outer ends: a0 writes, b0 reads */
    int ended, why;
    size_t sent;  /* bytes written into a0 */
    size_t got;   /* bytes read from b0, checked */
    int bad;      /* a byte out of place */
    int eof;      /* b0 read the end */
} t;

static void on_end(splice_relay *sr, int why)
{
    t *x = sr->data;
    x->ended = 1;
    x->why = why;
}

/* abuf: the buffers into the relay (a0 -> a1), bbuf: out of it (b1 -> b0). */
static void setup(t *x, int abuf, int bbuf)
{
    *x = (t){.loop = h_loop_new()};
    int a1, b1;
    tcp_pair(&x->a0, &a1, abuf);
    tcp_pair(&b1, &x->b0, bbuf);
    splice_relay_init(&x->sr, x->loop, &x->pool, on_end, x);
    CHECK_OK(splice_relay_attach(&x->sr, 0, a1, NULL));
    CHECK_OK(splice_relay_attach(&x->sr, 1, b1, NULL));
    CHECK_OK(splice_relay_start(&x->sr));
}

static void teardown(t *x)
{
    splice_relay_close(&x->sr);
    splice_pool_free(&x->pool);
    close(x->a0);
    close(x->b0);
    h_loop_free(x->loop);
}

/* Write up to n more pattern bytes into a0 (what the socket takes). */
static void put(t *x, size_t n)
{
    unsigned char buf[16384];
    while (n) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        for (size_t i = 0; i < k; i++) buf[i] = pat(x->sent + i);
        ssize_t w = send(x->a0, buf, k, MSG_NOSIGNAL);
        if (w < 0) {
            assert_true(errno == EAGAIN);
            return;
        }
        x->sent += (size_t)w;
        n -= (size_t)w;
    }
}

/* Read what b0 has, checking each byte's place. */
static void take(t *x)
{
    unsigned char buf[16384];
    for (;;) {
        ssize_t r = recv(x->b0, buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0) {
            assert_true(errno == EAGAIN);
            return;
        }
        if (r == 0) {
            x->eof = 1;
            return;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(x->got + (size_t)i)) x->bad = 1;
        x->got += (size_t)r;
    }
}

/* A small message is copied; a backlog of 512 KiB is read in full chunks
 * and spliced, and with b0 not reading the relay stops with the bytes in
 * its pipe; once b0 reads, everything arrives; the next small message is
 * copied again. */
static void messages_copy_streams_splice(void **state)
{
    (void)state;
    t x;
    setup(&x, 1 << 20, 16384);

    put(&x, 100);
    RUN_UNTIL(x.loop, (take(&x), x.got == 100 || x.ended), 5000);
    assert_false(x.ended);
    assert_int_equal(x.sr.h[0].splicing, 0);
    assert_int_equal(x.sr.h[0].pipe[0], -1); /* a copy holds no pipe */

    put(&x, 512 * 1024);
    assert_true(x.sent > 100 + 64 * 1024); /* enough for a full chunk */
    /* b0 does not read: the relay fills b1 and b0's buffers, then waits
     * with the rest in the pipe (splicing) or, had it read short, in the
     * copy's buffer. */
    uint64_t before = x.sr.h[0].bytes;
    int spliced = 0; /* seen streaming at some turn (the first read fills its chunk) */
    RUN_UNTIL(x.loop,
              (spliced |= x.sr.h[0].splicing,
               x.ended || (x.sr.h[0].bytes > before && (x.sr.h[0].inpipe || x.sr.h[0].early))),
              5000);
    assert_false(x.ended);
    RUN_UNTIL(x.loop, (spliced |= x.sr.h[0].splicing, take(&x), x.got == x.sent || x.ended), 10000);
    assert_false(x.ended);
    assert_false(x.bad);
    assert_true(spliced);

    /* Small messages, one at a time: three small reads in a row and the
     * direction copies again. */
    for (int i = 0; i < 3; i++) {
        put(&x, 10);
        RUN_UNTIL(x.loop, (take(&x), x.got == x.sent || x.ended), 5000);
        assert_false(x.bad);
    }
    assert_int_equal(x.sr.h[0].splicing, 0);
    assert_int_equal(x.sr.h[0].bytes, x.sent);

    /* The end passes on: a0's shutdown reaches b0 as EOF. */
    assert_int_equal(shutdown(x.a0, SHUT_WR), 0);
    RUN_UNTIL(x.loop, (take(&x), x.eof || x.ended), 5000);
    assert_true(x.eof);
    assert_int_equal(x.got, x.sent);
    teardown(&x);
}

/* Messages of 20,000 bytes, one per loop turn, into a sink that does not
 * read, through small buffers: a copy's send comes up short (the sink
 * takes part of a message) and the rest waits in h->early (the direction
 * stays in copy mode: every read is short); when b0 reads, every byte
 * arrives once and in order, so a rest kept from the wrong offset fails. */
static void copy_keeps_what_the_sink_refused(void **state)
{
    (void)state;
    t x;
    setup(&x, 0, 4096);
    int held = 0;
    for (int i = 0; i < 200 && !held && !x.ended; i++) {
        put(&x, 20000);
        assert_true(csock_loop_run(x.loop, CSOCK_RUN_NOWAIT) >= 0);
        held = x.sr.h[0].early != NULL;
    }
    assert_false(x.ended);
    assert_true(held);
    assert_int_equal(x.sr.h[0].splicing, 0);
    assert_int_equal(x.sr.h[0].pipe[0], -1);
    RUN_UNTIL(x.loop, (take(&x), x.got == x.sent || x.ended), 10000);
    assert_false(x.ended);
    assert_false(x.bad);
    assert_null(x.sr.h[0].early);
    teardown(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(messages_copy_streams_splice),
        cmocka_unit_test(copy_keeps_what_the_sink_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
