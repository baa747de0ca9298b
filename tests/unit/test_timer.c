/* Timers: due-time order, ties in start order, stop, repeat, restart,
 * closing from another timer's callback, no starvation of I/O by a 0 ms
 * timer, unref, close callbacks and handle accounting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"
#include "helpers.h"

#include <string.h>
#include <unistd.h>

/* Each timer's data points at its slot; callbacks append the slot's id. */
typedef struct {
    int order[16];
    int n;
} record;

typedef struct {
    record *rec;
    int id;
} slot;

static void note_cb(csock_timer *t)
{
    slot *s = csock_timer_data(t);
    assert_true(s->rec->n < 16);
    s->rec->order[s->rec->n++] = s->id;
}

static csock_timer *new_timer(csock_loop *loop, slot *s)
{
    csock_timer *t;
    CHECK_OK(csock_timer_new(loop, &t));
    csock_timer_set_data(t, s);
    return t;
}

static void fires_in_due_order(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    record rec = {0};
    slot s[3] = {{&rec, 30}, {&rec, 10}, {&rec, 20}};
    csock_timer *t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = new_timer(loop, &s[i]);
        CHECK_OK(csock_timer_start(t[i], note_cb, (uint64_t)s[i].id, 0));
    }
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.order[0], 10);
    assert_int_equal(rec.order[1], 20);
    assert_int_equal(rec.order[2], 30);
    for (int i = 0; i < 3; i++) csock_timer_close(t[i], NULL);
    h_loop_free(loop);
}

static void ties_fire_in_start_order(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    record rec = {0};
    slot s[8];
    csock_timer *t[8];
    /* Start in an order that a heap without a tie-breaker would scramble. */
    int ids[8] = {5, 1, 7, 0, 3, 6, 2, 4};
    for (int i = 0; i < 8; i++) {
        s[i] = (slot){&rec, ids[i]};
        t[i] = new_timer(loop, &s[i]);
        CHECK_OK(csock_timer_start(t[i], note_cb, 5, 0));
    }
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(rec.n, 8);
    for (int i = 0; i < 8; i++) assert_int_equal(rec.order[i], ids[i]);
    for (int i = 0; i < 8; i++) csock_timer_close(t[i], NULL);
    h_loop_free(loop);
}

static void stop_before_firing(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    record rec = {0};
    slot a = {&rec, 1}, b = {&rec, 2};
    csock_timer *ta = new_timer(loop, &a), *tb = new_timer(loop, &b);
    CHECK_OK(csock_timer_start(ta, note_cb, 5, 0));
    CHECK_OK(csock_timer_start(tb, note_cb, 20, 0));
    assert_true(csock_timer_active(ta));
    CHECK_OK(csock_timer_stop(ta));
    assert_false(csock_timer_active(ta));
    CHECK_OK(csock_timer_stop(ta)); /* twice is harmless */
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.order[0], 2);
    csock_timer_close(ta, NULL);
    csock_timer_close(tb, NULL);
    h_loop_free(loop);
}

static int repeat_count;
static void repeat_cb(csock_timer *t)
{
    if (++repeat_count == 5) CHECK_OK(csock_timer_stop(t));
}

static void repeat_fires_n_times(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_timer *t;
    CHECK_OK(csock_timer_new(loop, &t));
    repeat_count = 0;
    CHECK_OK(csock_timer_start(t, repeat_cb, 1, 2));
    /* Returns only once the repeating timer is stopped: nothing else is active. */
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(repeat_count, 5);
    assert_false(csock_timer_active(t));
    csock_timer_close(t, NULL);
    h_loop_free(loop);
}

static csock_timer *restart_target;
static uint64_t restart_fired_at;
static void restarted_cb(csock_timer *t) { restart_fired_at = h_now_ms(); }
static void restarter_cb(csock_timer *t)
{
    CHECK_OK(csock_timer_start(restart_target, restarted_cb, 10, 0));
}

static void restart_reschedules(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_timer *far, *near;
    CHECK_OK(csock_timer_new(loop, &far));
    CHECK_OK(csock_timer_new(loop, &near));
    restart_target = far;
    restart_fired_at = 0;
    /* Timers are due from the loop's cached time, taken when the loop was
     * made: on a slow machine (io_uring's setup, an emulated CPU) that is
     * several ms before t0, which would bring the ~20 ms below 15. */
    csock_loop_update_time(loop);
    uint64_t t0 = h_now_ms();
    CHECK_OK(csock_timer_start(far, restarted_cb, 30000, 0));
    CHECK_OK(csock_timer_start(near, restarter_cb, 10, 0));
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_true(restart_fired_at != 0);
    /* Due at ~20 ms; 30 s would mean the restart did not replace the old due time. */
    assert_true(restart_fired_at - t0 >= 15);
    assert_true(restart_fired_at - t0 < 10000);
    assert_false(csock_timer_active(far));
    csock_timer_close(far, NULL);
    csock_timer_close(near, NULL);
    h_loop_free(loop);
}

static int victim_fired, victim_closed;
static csock_timer *victim;
static void victim_cb(csock_timer *t) { victim_fired++; }
static void victim_close_cb(csock_timer *t) { victim_closed++; }
static void killer_cb(csock_timer *t) { csock_timer_close(victim, victim_close_cb); }

static void callback_closes_another_timer(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_timer *killer;
    CHECK_OK(csock_timer_new(loop, &killer));
    CHECK_OK(csock_timer_new(loop, &victim));
    victim_fired = victim_closed = 0;
    /* Same due time, killer started first: it runs first and the victim,
     * already due in the same pass, must not run after being closed. */
    CHECK_OK(csock_timer_start(killer, killer_cb, 5, 0));
    CHECK_OK(csock_timer_start(victim, victim_cb, 5, 0));
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(victim_fired, 0);
    assert_int_equal(victim_closed, 1);
    csock_timer_close(killer, NULL);
    h_loop_free(loop);
}

static int spin_count, io_fired;
static void spin_cb(csock_timer *t)
{
    spin_count++;
    CHECK_OK(csock_timer_start(t, spin_cb, 0, 0));
}
static void pipe_io_cb(csock_io *io, int events)
{
    if (events & CSOCK_READABLE) io_fired++;
}

static void zero_timer_does_not_starve_io(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    csock_timer *t;
    csock_io *io;
    CHECK_OK(csock_timer_new(loop, &t));
    CHECK_OK(csock_io_new(loop, fds[0], pipe_io_cb, NULL, &io));
    CHECK_OK(csock_io_start(io, CSOCK_READABLE));
    spin_count = io_fired = 0;
    CHECK_OK(csock_timer_start(t, spin_cb, 0, 0));
    /* A few iterations, not thousands: each one must reach the poll phase. */
    for (int i = 0; i < 3 && !io_fired; i++)
        assert_true(csock_loop_run(loop, CSOCK_RUN_ONCE) >= 0);
    assert_true(io_fired > 0);
    assert_true(spin_count > 0);
    assert_true(spin_count <= 4); /* one run per iteration (ONCE may run due timers twice) */
    csock_timer_close(t, NULL);
    csock_io_close(io, NULL);
    h_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

static int unref_fired;
static void unref_cb(csock_timer *t) { unref_fired++; }

static void unref_timer_does_not_keep_loop_alive(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_timer *t;
    CHECK_OK(csock_timer_new(loop, &t));
    unref_fired = 0;
    csock_timer_unref(t);
    CHECK_OK(csock_timer_start(t, unref_cb, 20000, 0));
    uint64_t t0 = h_now_ms();
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_true(h_now_ms() - t0 < 5000);
    assert_int_equal(unref_fired, 0);
    assert_true(csock_timer_active(t));
    /* ...but it does fire when something else keeps the loop running. */
    csock_timer *ref;
    CHECK_OK(csock_timer_new(loop, &ref));
    CHECK_OK(csock_timer_start(t, unref_cb, 1, 0));
    CHECK_OK(csock_timer_start(ref, h_tick, 50, 0));
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(unref_fired, 1);
    csock_timer_close(t, NULL);
    csock_timer_close(ref, NULL);
    h_loop_free(loop);
}

static int closed_count;
static void count_close_cb(csock_timer *t)
{
    int *tag = csock_timer_data(t);
    assert_int_equal(*tag, 42); /* data still valid in the close callback */
    closed_count++;
}

static void close_callback_and_handle_count(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    int tag = 42;
    csock_timer *a, *b;
    assert_int_equal(csock_loop_handles(loop), 0);
    CHECK_OK(csock_timer_new(loop, &a));
    CHECK_OK(csock_timer_new(loop, &b));
    csock_timer_set_data(a, &tag);
    csock_timer_set_data(b, &tag);
    assert_int_equal(csock_loop_handles(loop), 2);
    CHECK_OK(csock_timer_start(a, h_tick, 100000, 0));
    closed_count = 0;
    csock_timer_close(a, count_close_cb); /* closes a running timer */
    csock_timer_close(b, count_close_cb);
    csock_timer_close(b, count_close_cb); /* a second close is a no-op */
    assert_int_equal(closed_count, 0);    /* asynchronous */
    assert_int_equal(csock_loop_free(loop), -EBUSY);
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(closed_count, 2);
    assert_int_equal(csock_loop_handles(loop), 0);
    h_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fires_in_due_order),
        cmocka_unit_test(ties_fire_in_start_order),
        cmocka_unit_test(stop_before_firing),
        cmocka_unit_test(repeat_fires_n_times),
        cmocka_unit_test(restart_reschedules),
        cmocka_unit_test(callback_closes_another_timer),
        cmocka_unit_test(zero_timer_does_not_starve_io),
        cmocka_unit_test(unref_timer_does_not_keep_loop_alive),
        cmocka_unit_test(close_callback_and_handle_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
