/* Paths that must not need memory (issue 10, items 7, 8 and 11): with every
 * allocation failing, an error is still delivered (deferred calls are
 * intrusive), csock_stream_end() still ends the stream (a linger timer that
 * cannot be made closes it at once), and csock_server_stop() still stops
 * the server (the stop message is a node in the server, not a malloc).
 *
 * This program replaces malloc, calloc and realloc (through glibc's
 * __libc_* entry points) so a test can make them fail. A sanitizer's
 * allocator cannot be replaced that way: under one the tests say skipped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"
#include "helpers.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define SANITIZED 1
#endif
#endif

static atomic_int no_memory; /* 1: every allocation fails */

#ifndef SANITIZED
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n) { return atomic_load(&no_memory) ? NULL : __libc_malloc(n); }
void *calloc(size_t n, size_t size) { return atomic_load(&no_memory) ? NULL : __libc_calloc(n, size); }
void *realloc(void *p, size_t n) { return atomic_load(&no_memory) ? NULL : __libc_realloc(p, n); }
#endif

static void need_allocator(void)
{
#ifdef SANITIZED
    print_message("skipped: a sanitizer's allocator cannot be made to fail here\n");
    skip();
#endif
}

typedef struct one {
    csock_stream *s;
    int peer;          /* the raw other end */
    int err, closed;
} one;

static size_t one_read(csock_stream *s, int status, const char *buf, size_t len)
{
    one *o = csock_stream_data(s);
    if (status < 0 && status != CSOCK_EOF) o->err = status;
    return len;
}

static void one_closed(csock_stream *s) { ((one *)csock_stream_data(s))->closed = 1; }

static void one_open(csock_loop *loop, one *o)
{
    int sv[2];
    memset(o, 0, sizeof *o);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    CHECK_OK(csock_stream_open(loop, sv[0], &o->s));
    csock_stream_set_data(o->s, o);
    o->peer = sv[1];
}

/* Run up to n iterations (no timers: a ticker would need memory) until *flag. */
static void spin_until(csock_loop *loop, const int *flag, int n)
{
    for (int i = 0; i < n && !*flag; i++) {
        assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
        if (!*flag) usleep(1000); /* io_uring: give the kernel a moment */
    }
}

/* A write fails (the peer is gone) while nothing can be allocated: the read
 * callback still hears of it. The deferral of that delivery used to
 * malloc, and its failure lost the error for good. */
static void error_delivered_without_memory(void **state)
{
    need_allocator();
    csock_loop *loop = h_loop_new();
    one o;
    one_open(loop, &o);
    CHECK_OK(csock_stream_read_start(o.s, one_read));
    /* One write first, so the pools hold a buffer for the next (io_uring). */
    CHECK_OK(csock_stream_write(o.s, "a", 1));
    char c;
    for (int i = 0; i < 1000 && recv(o.peer, &c, 1, MSG_DONTWAIT) != 1; i++) h_spin(loop, 1);
    h_spin(loop, 5);
    close(o.peer);
    atomic_store(&no_memory, 1);
    int rc = csock_stream_write(o.s, "x", 1);
    spin_until(loop, &o.err, 2000);
    atomic_store(&no_memory, 0);
    assert_true(rc == 0 || rc == -EPIPE);
    assert_int_equal(o.err, -EPIPE);
    csock_stream_close(o.s, NULL);
    h_loop_free(loop);
}

/* csock_stream_end() cannot make its linger timer: the stream closes at
 * once instead of waiting, unbounded, for a peer that never finishes. */
static void end_without_memory_closes(void **state)
{
    need_allocator();
    csock_loop *loop = h_loop_new();
    one o;
    one_open(loop, &o);
    atomic_store(&no_memory, 1);
    csock_stream_end(o.s, one_closed);
    spin_until(loop, &o.closed, 200);
    atomic_store(&no_memory, 0);
    int closed = o.closed;
    if (!closed) csock_stream_close(o.s, NULL);
    h_loop_free(loop);
    close(o.peer);
    assert_true(closed);
}

/* ---- timers ---------------------------------------------------------------- */

static void count_fire(csock_timer *t) { (*(int *)csock_timer_data(t))++; }

/* Starting a timer cannot fail: its place in the heap is reserved when the
 * timer is made. 100 timers (more than the heap's first 16 slots) are all
 * started while nothing can be allocated, and all fire. Starting used to
 * grow the heap, so the 17th start got -ENOMEM. */
static void timers_start_without_memory(void **state)
{
    need_allocator();
    csock_loop *loop = h_loop_new();
    enum { N = 100 };
    csock_timer *t[N];
    int fired = 0;
    for (int i = 0; i < N; i++) {
        CHECK_OK(csock_timer_new(loop, &t[i]));
        csock_timer_set_data(t[i], &fired);
    }
    atomic_store(&no_memory, 1);
    int failed = 0;
    for (int i = 0; i < N; i++)
        if (csock_timer_start(t[i], count_fire, 0, 0) < 0) failed++;
    spin_until(loop, &(int){0}, 5); /* timers due now fire in the first passes */
    atomic_store(&no_memory, 0);
    for (int i = 0; i < N; i++) csock_timer_close(t[i], NULL);
    h_loop_free(loop);
    assert_int_equal(failed, 0);
    assert_int_equal(fired, N);
}

/* ---- the server ---------------------------------------------------------------- */

static void srv_accept(csock_listener *l, csock_stream *s, int status)
{
    if (s) csock_stream_close(s, NULL);
}

static void *run_server(void *arg)
{
    csock_server *srv = arg;
    csock_server_run(srv);
    return NULL;
}

static int join_within(pthread_t th, int seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    return pthread_timedjoin_np(th, NULL, &ts);
}

/* csock_server_stop() while every allocation fails (as after SIGTERM on a
 * server out of memory): the server still drains and run returns. It used
 * to drop the stop when csock_loop_post() got -ENOMEM, and never stop. */
static void server_stops_without_memory(void **state)
{
    need_allocator();
    csock_server_opts o = {.threads = 1};
    csock_server *srv;
    CHECK_OK(csock_server_new(&o, &srv));
    csock_addr a;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", CSOCK_ADDR_NUMERIC, &a));
    CHECK_OK(csock_server_listen(srv, &a, srv_accept, NULL));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_server, srv), 0);
    atomic_store(&no_memory, 1);
    csock_server_stop(srv);
    int rc = join_within(th, 10);
    atomic_store(&no_memory, 0);
    if (rc != 0) { /* stop it for real, then fail */
        csock_server_stop(srv);
        csock_server_stop(srv);
        pthread_join(th, NULL);
    }
    csock_server_free(srv);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(error_delivered_without_memory),
        cmocka_unit_test(end_without_memory_closes),
        cmocka_unit_test(server_stops_without_memory),
        cmocka_unit_test(timers_start_without_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
