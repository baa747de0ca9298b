/* The io_uring backend when the kernel will not take its submission queue:
 * a full queue whose io_uring_submit() fails (out of memory in the kernel).
 * Nothing may silently stop: a watcher whose re-arm found no submission
 * slot is armed at the next wait, and a cancel that found none is asked at
 * the next wait, so the stream it belongs to still finishes closing.
 *
 * The seam: this program defines io_uring_submit(), which the backend calls
 * (through liburing's shared library) when its queue is full; while
 * `submit_fails` is set it refuses, as the kernel would. The wait itself
 * submits through io_uring_submit_and_wait_timeout(), untouched. Only the
 * uring backend has a submission queue: on the others the tests skip. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"
#include "helpers.h"
#include "loop/loop_int.h" /* csock__uring_files_ok */

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct io_uring;
static int submit_fails;

int io_uring_submit(struct io_uring *ring)
{
    static int (*real)(struct io_uring *);
    if (submit_fails) return -ENOMEM;
    if (!real) real = (int (*)(struct io_uring *))dlsym(RTLD_NEXT, "io_uring_submit");
    return real(ring);
}

static void need_uring(void)
{
    const char *b = getenv("CSOCK_BACKEND");
    if (!b || strcmp(b, "uring")) {
        printf("skipped: io_uring backend only (CSOCK_BACKEND=%s)\n", b ? b : "");
        skip();
    }
}

/* More watchers than the submission queue holds (1024 entries). */
#define NW 1500

typedef struct {
    csock_io *io[NW];
    int fires[NW];
} watchers;

static void on_ready(csock_io *io, int events)
{
    int *fires = csock_io_data(io);
    (*fires)++;
}

/* NW watchers on one always-readable eventfd. */
static int start_watchers(csock_loop *loop, watchers *w)
{
    int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(efd >= 0);
    for (int i = 0; i < NW; i++) {
        CHECK_OK(csock_io_new(loop, efd, on_ready, &w->fires[i], &w->io[i]));
        csock_io_start(w->io[i], CSOCK_READABLE); /* the old code fails some when the queue is full */
    }
    return efd;
}

static int min_fires(const watchers *w)
{
    int m = w->fires[0];
    for (int i = 1; i < NW; i++)
        if (w->fires[i] < m) m = w->fires[i];
    return m;
}

static void close_watchers(csock_loop *loop, watchers *w, int efd)
{
    for (int i = 0; i < NW; i++) csock_io_close(w->io[i], NULL);
    h_spin(loop, 3);
    close(efd);
}

/* Level-triggered watchers are re-armed after each poll completion; the
 * re-arms of one wait outnumber the queue, and with submits refused the
 * old backend dropped the rest: those watchers never fired again. */
static void rearm_without_submission_slot(void **state)
{
    need_uring();
    csock_loop *loop = h_loop_new();
    static watchers w;
    memset(&w, 0, sizeof w);
    int efd = start_watchers(loop, &w);
    RUN_UNTIL(loop, min_fires(&w) >= 1, 10000);
    /* Every watcher has fired at least once; all are re-armed (the last
     * polls may still be queued). Now fill the queue with re-arms that the
     * kernel refuses to take, in one wait. */
    int before[NW];
    memcpy(before, w.fires, sizeof before);
    submit_fails = 1;
    assert_true(csock_loop_run(loop, CSOCK_RUN_ONCE) >= 0);
    submit_fails = 0;
    /* Each watcher fires again: the ones whose re-arm found no slot too. */
    int stuck = 0;
    uint64_t deadline = h_now_ms() + 10000;
    do {
        assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
        stuck = 0;
        for (int i = 0; i < NW; i++) stuck += w.fires[i] <= before[i] + 1;
    } while (stuck && h_now_ms() < deadline);
    if (stuck) print_error("%d of %d watchers stopped firing\n", stuck, NW);
    assert_int_equal(stuck, 0);
    close_watchers(loop, &w, efd);
    h_loop_free(loop);
}

static int closed;
static void on_closed(csock_stream *s) { closed++; }
static size_t on_read(csock_stream *s, int status, const char *buf, size_t len) { return len; }

/* Closing a stream cancels its recv in flight; the stream finishes once the
 * recv completes. With no submission slot for the cancel, the old backend
 * gave up ("it will complete by itself"): on an idle connection it never
 * does, and the stream never finished. */
static void cancel_without_submission_slot(void **state)
{
    need_uring();
    csock_loop *loop = h_loop_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    csock_stream *s;
    CHECK_OK(csock_stream_open(loop, sv[0], &s));
    CHECK_OK(csock_stream_read_start(s, on_read));
    h_spin(loop, 2); /* the recv is in the kernel, and stays: the peer is idle */
    closed = 0;
    static watchers w;
    memset(&w, 0, sizeof w);
    submit_fails = 1;
    int efd = start_watchers(loop, &w); /* their polls fill the queue */
    csock_stream_close(s, on_closed);
    submit_fails = 0;
    RUN_UNTIL(loop, closed == 1, 10000);
    close_watchers(loop, &w, efd);
    close(sv[1]);
    h_loop_free(loop);
}

typedef struct {
    char buf[4096];
    size_t len;
    int err;
} sink;

static size_t to_sink(csock_stream *s, int status, const char *buf, size_t len)
{
    sink *k = csock_stream_data(s);
    if (status < 0) {
        if (status != CSOCK_EOF) k->err = status;
        return 0;
    }
    if (k->len + len > sizeof k->buf) len = sizeof k->buf - k->len;
    memcpy(k->buf + k->len, buf, len);
    k->len += len;
    return len;
}

/* A kernel without the multishot recv's cap (before 6.15) refuses the
 * request (-EINVAL); the backend then makes single recvs for good, and the
 * stream never hears of it. CSOCK_TEST_MSHOT_REFUSED=1 has the backend ask
 * in a way this kernel refuses too. Without the fallback the stream fails
 * with EINVAL at its first recv. */
static void multishot_refused_falls_back(void **state)
{
    need_uring();
    setenv("CSOCK_URING_MSHOT", "1", 1);
    setenv("CSOCK_TEST_MSHOT_REFUSED", "1", 1);
    csock_loop *loop = h_loop_new();
    unsetenv("CSOCK_TEST_MSHOT_REFUSED");
    unsetenv("CSOCK_URING_MSHOT");
    int sv[2];
    sv[0] = h_tcp_pair(&sv[1]); /* multishot recvs are for TCP streams */
    static sink k;
    memset(&k, 0, sizeof k);
    csock_stream *s;
    CHECK_OK(csock_stream_open(loop, sv[0], &s));
    csock_stream_set_data(s, &k);
    CHECK_OK(csock_stream_read_start(s, to_sink));
    char want[4096];
    size_t wlen = 0;
    for (int i = 0; i < 100; i++) { /* one message per wait: recv after recv */
        char msg[16];
        int n = snprintf(msg, sizeof msg, "msg%03d\n", i);
        assert_int_equal(write(sv[1], msg, (size_t)n), n);
        memcpy(want + wlen, msg, (size_t)n);
        wlen += (size_t)n;
        RUN_UNTIL(loop, k.len == wlen || k.err, 10000);
    }
    assert_int_equal(k.err, 0);
    assert_memory_equal(k.buf, want, wlen);
    csock_stream_close(s, NULL);
    close(sv[1]);
    h_spin(loop, 3);
    h_loop_free(loop);
}

/* Sockets go in the ring's file table only on kernels that let each one go
 * when its own requests are done (6.13 on): before, a closed socket stayed
 * open until every older request completed (backend_uring.c). The rule
 * reads uname's release; what it cannot read counts as old. */
static void file_table_from_6_13(void **state)
{
    static const struct {
        const char *release;
        int ok;
    } cases[] = {
        {"6.1.0-57-amd64", 0},    /* Debian 12 */
        {"5.15.0-91-generic", 0}, /* Ubuntu 22.04 */
        {"6.8.0-45-generic", 0},  /* Ubuntu 24.04 */
        {"6.12.48+deb13-amd64", 0},
        {"6.13.0", 1},
        {"6.18.44-fc-v782", 1},
        {"7.0.1", 1},
        {"10.2", 1},
        {"6", 0},
        {"", 0},
        {"linux", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (csock__uring_files_ok(cases[i].release) != cases[i].ok)
            fail_msg("release \"%s\": want %d", cases[i].release, cases[i].ok);
    }
    assert_int_equal(csock__uring_files_ok(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rearm_without_submission_slot),
        cmocka_unit_test(cancel_without_submission_slot),
        cmocka_unit_test(multishot_refused_falls_back),
        cmocka_unit_test(file_table_from_6_13),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
