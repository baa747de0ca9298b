/* Shared helpers for the loop and net unit tests.
 *
 * Include after <cmocka.h> and "csock/csock.h".
 *
 *   CHECK_OK(expr)        expr must return >= 0; otherwise print the call and
 *                         csock_strerror() of the result, and fail the test.
 *   h_loop_new()          a loop on the backend named by $CSOCK_BACKEND.
 *   h_loop_free(loop)     run the loop until pending closes finish, then
 *                         assert csock_loop_free() == 0: a leaked handle
 *                         fails the test (libuv's MAKE_VALGRIND_HAPPY).
 *   RUN_UNTIL(loop, cond, ms)
 *                         run the loop one iteration at a time until `cond`
 *                         holds, failing if it does not within `ms`. A 5 ms
 *                         ticker keeps each iteration short, so a missed
 *                         event shows up as a clean failure, never a hang.
 *   h_tcp_pair(&client)   a loopback TCP connection: returns the accepted
 *                         end, *client the connecting one (blocking fds).
 */
#ifndef CSOCK_TEST_HELPERS_H
#define CSOCK_TEST_HELPERS_H

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHECK_OK(expr)                                                                    \
    do {                                                                                  \
        long check_rc_ = (long)(expr);                                                    \
        if (check_rc_ < 0) {                                                              \
            print_error("%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #expr,         \
                        csock_strerror((int)check_rc_), csock_err_name((int)check_rc_));  \
            fail();                                                                       \
        }                                                                                 \
    } while (0)

/* Wall-clock independent milliseconds, for deadlines and duration checks. */
static inline uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline csock_loop *h_loop_new(void)
{
    csock_loop *loop = NULL;
    CHECK_OK(csock_loop_new(NULL, &loop));
    assert_non_null(loop);
    return loop;
}

static inline void h_loop_free(csock_loop *loop)
{
    /* Close callbacks and deferred work need an iteration or two. */
    for (int i = 0; i < 20 && csock_loop_handles(loop); i++)
        assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    if (csock_loop_handles(loop))
        print_error("%u handle(s) still open\n", csock_loop_handles(loop));
    assert_int_equal(csock_loop_handles(loop), 0);
    assert_int_equal(csock_loop_free(loop), 0);
}

static inline void h_tick(csock_timer *t) { (void)t; }

#define RUN_UNTIL(loop, cond, ms)                                                         \
    do {                                                                                  \
        csock_timer *tick_;                                                               \
        CHECK_OK(csock_timer_new((loop), &tick_));                                        \
        CHECK_OK(csock_timer_start(tick_, h_tick, 5, 5));                                 \
        uint64_t deadline_ = h_now_ms() + (ms);                                           \
        while (!(cond) && h_now_ms() < deadline_)                                         \
            assert_true(csock_loop_run((loop), CSOCK_RUN_ONCE) >= 0);                     \
        csock_timer_close(tick_, NULL);                                                   \
        if (!(cond)) print_error("%s:%d: timed out waiting for %s\n", __FILE__, __LINE__, \
                                 #cond);                                                  \
        assert_true(cond);                                                                \
    } while (0)

/* Run `n` iterations without waiting (lets queued work and ready fds run). */
static inline void h_spin(csock_loop *loop, int n)
{
    for (int i = 0; i < n; i++) assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
}

static inline int h_tcp_pair(int *client)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    int srv = accept(l, NULL, NULL);
    assert_true(srv >= 0);
    close(l);
    *client = c;
    return srv;
}

#endif
