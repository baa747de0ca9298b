/* Cross-thread posts and stop. Run under TSan (ctest label tsan).
 *
 * 4 threads x 10,000 posts: every post runs exactly once, on the loop's
 * thread, in each poster's order. A post from the loop thread runs on a
 * later pass. csock_loop_stop() from another thread wakes a loop that is
 * blocked in its wait. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define NTHREADS 4
#define NPOSTS 10000

typedef struct {
    pthread_t loop_thread;
    int next[NTHREADS];      /* next expected sequence number per poster */
    int wrong_thread, out_of_order, total;
} post_state;

typedef struct {
    post_state *st;
    int thread, seq;
} post_item;

static post_item items[NTHREADS][NPOSTS];

static void post_fn(void *data)
{
    post_item *it = data;
    post_state *st = it->st;
    if (!pthread_equal(pthread_self(), st->loop_thread)) st->wrong_thread++;
    if (st->next[it->thread] != it->seq) st->out_of_order++;
    st->next[it->thread] = it->seq + 1;
    st->total++;
}

typedef struct {
    csock_loop *loop;
    int thread;
    int failed;
} poster_arg;

static void *poster(void *arg)
{
    poster_arg *a = arg;
    for (int i = 0; i < NPOSTS; i++)
        if (csock_loop_post(a->loop, post_fn, &items[a->thread][i]) != 0) a->failed++;
    return NULL;
}

static void posts_from_four_threads(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    post_state st;
    memset(&st, 0, sizeof st);
    st.loop_thread = pthread_self();
    for (int t = 0; t < NTHREADS; t++)
        for (int i = 0; i < NPOSTS; i++) items[t][i] = (post_item){&st, t, i};
    pthread_t th[NTHREADS];
    poster_arg args[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        args[t] = (poster_arg){loop, t, 0};
        assert_int_equal(pthread_create(&th[t], NULL, poster, &args[t]), 0);
    }
    /* Posts arrive while the loop runs; each returns when nothing is pending,
     * which can happen before all posters are done, so loop until all ran. */
    RUN_UNTIL(loop, st.total == NTHREADS * NPOSTS, 60000);
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].failed, 0);
    }
    h_spin(loop, 3);
    assert_int_equal(st.total, NTHREADS * NPOSTS); /* none ran twice */
    assert_int_equal(st.wrong_thread, 0);
    assert_int_equal(st.out_of_order, 0);
    for (int t = 0; t < NTHREADS; t++) assert_int_equal(st.next[t], NPOSTS);
    h_loop_free(loop);
}

typedef struct {
    csock_loop *loop;
    int order[4];
    int n;
} self_state;

static void self_second(void *data)
{
    self_state *s = data;
    s->order[s->n++] = 2;
}

static void self_first(void *data)
{
    self_state *s = data;
    s->order[s->n++] = 1;
    /* From inside a post: queued, runs after this one (not recursively). */
    CHECK_OK(csock_loop_post(s->loop, self_second, s));
    assert_int_equal(s->n, 1);
}

static void post_from_loop_thread(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    self_state s = {.loop = loop};
    CHECK_OK(csock_loop_post(loop, self_first, &s));
    assert_int_equal(s.n, 0); /* never runs inside csock_loop_post() */
    /* A pending post alone keeps run() going until it (and its follow-up) ran. */
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.order[0], 1);
    assert_int_equal(s.order[1], 2);
    h_loop_free(loop);
}

typedef struct {
    csock_loop *loop;
    atomic_int loop_entered; /* set by a post the loop runs before it blocks */
} stop_arg;

static void mark_entered(void *data)
{
    stop_arg *a = data;
    atomic_store(&a->loop_entered, 1);
}

static void *stopper(void *arg)
{
    stop_arg *a = arg;
    /* Wait until the loop is running (it ran our post); it then blocks in its
     * wait with a 60 s timer as the only thing due. */
    while (!atomic_load(&a->loop_entered)) sched_yield();
    csock_loop_stop(a->loop);
    return NULL;
}

static void stop_from_another_thread(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    csock_timer *t;
    CHECK_OK(csock_timer_new(loop, &t));
    CHECK_OK(csock_timer_start(t, h_tick, 60000, 0)); /* keeps the loop blocked */
    stop_arg a = {.loop = loop};
    atomic_init(&a.loop_entered, 0);
    CHECK_OK(csock_loop_post(loop, mark_entered, &a));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stopper, &a), 0);
    uint64_t t0 = h_now_ms();
    /* Returns 1: stopped with the timer still active. A missed wake-up would
     * block for 60 s and trip the ctest timeout. */
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 1);
    assert_true(h_now_ms() - t0 < 30000);
    pthread_join(th, NULL);
    assert_true(csock_timer_active(t));
    /* The stop flag is consumed: the loop runs normally afterwards. */
    CHECK_OK(csock_timer_start(t, h_tick, 1, 0));
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    csock_timer_close(t, NULL);
    h_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(posts_from_four_threads),
        cmocka_unit_test(post_from_loop_thread),
        cmocka_unit_test(stop_from_another_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
