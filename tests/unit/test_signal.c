/* Signals as loop events: delivery with the right signum, two watchers on
 * one signal, stop, close. SIGUSR1/SIGUSR2 stay blocked in this process for
 * the whole run so a stopped watcher never lets the default action kill us. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"
#include "helpers.h"

#include <signal.h>
#include <string.h>

typedef struct {
    int count;
    int signum;
} sig_seen;

static void sig_cb(csock_signal *s, int signum)
{
    sig_seen *seen = csock_signal_data(s);
    seen->count++;
    seen->signum = signum;
}

static int block_all_usr(void **state)
{
    (void)state;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    return pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Re-block after each test: a stop/close may unblock the signal. */
static int reblock(void **state) { return block_all_usr(state); }

static void drain_pending(int signum)
{
    sigset_t pend, one;
    sigpending(&pend);
    if (sigismember(&pend, signum)) {
        sigemptyset(&one);
        sigaddset(&one, signum);
        int got;
        sigwait(&one, &got);
    }
}

static void raise_delivered_with_signum(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_signal *s;
    sig_seen seen = {0};
    CHECK_OK(csock_signal_new(loop, &s));
    csock_signal_set_data(s, &seen);
    CHECK_OK(csock_signal_start(s, sig_cb, SIGUSR1));
    assert_int_equal(raise(SIGUSR1), 0);
    RUN_UNTIL(loop, seen.count == 1, 10000);
    assert_int_equal(seen.signum, SIGUSR1);
    /* A second occurrence is a second event. */
    assert_int_equal(raise(SIGUSR1), 0);
    RUN_UNTIL(loop, seen.count == 2, 10000);
    csock_signal_close(s, NULL);
    h_loop_free(loop);
}

static void two_watchers_both_fire(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_signal *a, *b, *other;
    sig_seen sa = {0}, sb = {0}, so = {0};
    CHECK_OK(csock_signal_new(loop, &a));
    CHECK_OK(csock_signal_new(loop, &b));
    CHECK_OK(csock_signal_new(loop, &other));
    csock_signal_set_data(a, &sa);
    csock_signal_set_data(b, &sb);
    csock_signal_set_data(other, &so);
    CHECK_OK(csock_signal_start(a, sig_cb, SIGUSR1));
    CHECK_OK(csock_signal_start(b, sig_cb, SIGUSR1));
    CHECK_OK(csock_signal_start(other, sig_cb, SIGUSR2));
    assert_int_equal(raise(SIGUSR1), 0);
    RUN_UNTIL(loop, sa.count == 1 && sb.count == 1, 10000);
    h_spin(loop, 2);
    assert_int_equal(sa.signum, SIGUSR1);
    assert_int_equal(sb.signum, SIGUSR1);
    assert_int_equal(so.count, 0); /* a watcher of another signal is not called */
    csock_signal_close(a, NULL);
    csock_signal_close(b, NULL);
    csock_signal_close(other, NULL);
    h_loop_free(loop);
}

static void stopped_watcher_not_called(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_signal *stopped, *live;
    sig_seen ss = {0}, sl = {0};
    CHECK_OK(csock_signal_new(loop, &stopped));
    CHECK_OK(csock_signal_new(loop, &live));
    csock_signal_set_data(stopped, &ss);
    csock_signal_set_data(live, &sl);
    CHECK_OK(csock_signal_start(stopped, sig_cb, SIGUSR1));
    CHECK_OK(csock_signal_start(live, sig_cb, SIGUSR2));
    CHECK_OK(csock_signal_stop(stopped));
    /* Stopping may unblock SIGUSR1 (nobody on the loop wants it): block it
     * again so raise() leaves it pending instead of killing the test. */
    block_all_usr(NULL);
    assert_int_equal(raise(SIGUSR1), 0);
    /* A later signal the loop does watch: once it is delivered, anything
     * the loop would do with SIGUSR1 has had its chance. */
    assert_int_equal(raise(SIGUSR2), 0);
    RUN_UNTIL(loop, sl.count == 1, 10000);
    h_spin(loop, 3);
    assert_int_equal(ss.count, 0);
    drain_pending(SIGUSR1);
    csock_signal_close(stopped, NULL);
    csock_signal_close(live, NULL);
    h_loop_free(loop);
}

static int sig_closed;
static void sig_close_cb(csock_signal *s)
{
    sig_seen *seen = csock_signal_data(s);
    assert_non_null(seen);
    sig_closed++;
}

static void close_runs_callback(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_signal *s, *u;
    sig_seen seen = {0};
    CHECK_OK(csock_signal_new(loop, &s));
    CHECK_OK(csock_signal_new(loop, &u));
    csock_signal_set_data(s, &seen);
    csock_signal_set_data(u, &seen);
    CHECK_OK(csock_signal_start(s, sig_cb, SIGUSR1));
    /* An unreferenced watcher does not keep the loop alive. */
    CHECK_OK(csock_signal_start(u, sig_cb, SIGUSR2));
    csock_signal_unref(u);
    sig_closed = 0;
    csock_signal_close(s, sig_close_cb);
    assert_int_equal(sig_closed, 0);
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(sig_closed, 1);
    assert_int_equal(seen.count, 0);
    csock_signal_close(u, sig_close_cb);
    h_loop_free(loop);
    assert_int_equal(sig_closed, 2);
}

static int blocked_now(int signum)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, signum);
}

/* Stopping a watcher gives back only what csock itself blocked: a signal
 * the application blocked stays blocked; one csock blocked is unblocked. */
static void stop_keeps_the_applications_mask(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_signal *s;
    CHECK_OK(csock_signal_new(loop, &s));
    block_all_usr(NULL); /* the application blocks SIGUSR1 itself */
    CHECK_OK(csock_signal_start(s, sig_cb, SIGUSR1));
    CHECK_OK(csock_signal_stop(s));
    assert_true(blocked_now(SIGUSR1));

    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL); /* not blocked by anyone */
    CHECK_OK(csock_signal_start(s, sig_cb, SIGUSR2));
    assert_true(blocked_now(SIGUSR2));        /* csock blocked it */
    CHECK_OK(csock_signal_stop(s));
    assert_false(blocked_now(SIGUSR2));       /* and gave it back */
    csock_signal_close(s, NULL);
    h_loop_free(loop);
}

int main(void)
{
    block_all_usr(NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(raise_delivered_with_signum, reblock),
        cmocka_unit_test_teardown(two_watchers_both_fire, reblock),
        cmocka_unit_test_teardown(stopped_watcher_not_called, reblock),
        cmocka_unit_test_teardown(close_runs_callback, reblock),
        cmocka_unit_test_teardown(stop_keeps_the_applications_mask, reblock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
