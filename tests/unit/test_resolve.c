/* csock_resolve_start() and csock_dial_start(): names resolve on a thread and answer on
 * the loop; a bad name gives its error; a cancel frees everything and no
 * callback follows; Happy Eyeballs: a refused ::1 loses to a listening
 * 127.0.0.1 on the same port, and the winner is the IPv4 connection.
 * Every wait also ends on an error callback, so a failed allocation fails
 * an assertion instead of stalling. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"
#include "helpers.h"

#include <pthread.h>
#include <string.h>

typedef struct {
    int calls;
    int status;
    size_t n;
    csock_addr first;
    pthread_t thread;
} res_result;

static void on_resolved(csock_resolve *r, int status, const csock_addr *addrs, size_t n)
{
    res_result *st = csock_resolve_data(r);
    st->calls++;
    st->status = status;
    st->n = n;
    st->thread = pthread_self();
    if (n) st->first = addrs[0];
}

/* Run until nothing is left (the resolver's answer included). */
static void run_dry(csock_loop *loop)
{
    uint64_t deadline = h_now_ms() + 20000;
    while (csock_loop_run(loop, CSOCK_RUN_ONCE) > 0 && h_now_ms() < deadline) {}
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_NOWAIT), 0);
}

static void localhost_resolves(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    res_result st = {0};
    CHECK_OK(csock_resolve_start(loop, "tcp://localhost:8080", NULL, on_resolved, &st, NULL));
    assert_int_equal(st.calls, 0); /* never inside the call */
    RUN_UNTIL(loop, st.calls, 20000);
    assert_true(pthread_equal(st.thread, pthread_self()));
    CHECK_OK(st.status);
    assert_true(st.n >= 1);
    assert_int_equal(csock_addr_port(&st.first), 8080);
    assert_string_equal(st.first.host, "localhost");
    run_dry(loop);
    h_loop_free(loop);
}

static void numeric_answers_from_the_loop(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    res_result st = {0}, bad = {0};
    CHECK_OK(csock_resolve_start(loop, "udp://[::1]:53", NULL, on_resolved, &st, NULL));
    CHECK_OK(csock_resolve_start(loop, "tcp://127.0.0.1:99999", NULL, on_resolved, &bad, NULL));
    assert_int_equal(st.calls + bad.calls, 0);
    RUN_UNTIL(loop, st.calls && bad.calls, 5000);
    assert_int_equal(st.status, 1);
    assert_int_equal(st.first.scheme, CSOCK_UDP);
    assert_int_equal(bad.status, CSOCK_EBADPORT);
    assert_int_equal(bad.n, 0);
    run_dry(loop);
    h_loop_free(loop);
}

static void unknown_name_fails(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    res_result st = {0};
    /* .invalid never resolves (RFC 6761). */
    CHECK_OK(csock_resolve_start(loop, "tcp://no-such-host.invalid:80", NULL, on_resolved, &st, NULL));
    RUN_UNTIL(loop, st.calls, 30000);
    assert_true(st.status == CSOCK_ENONAME || st.status == CSOCK_EAGAINRESOLVE);
    assert_int_equal(st.n, 0);
    run_dry(loop);
    h_loop_free(loop);
}

static void cancel_means_no_callback(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    res_result a = {0}, b = {0};
    csock_resolve *ra = NULL, *rb = NULL;
    CHECK_OK(csock_resolve_start(loop, "tcp://localhost:1", NULL, on_resolved, &a, &ra));
    CHECK_OK(csock_resolve_start(loop, "tcp://127.0.0.1:1", NULL, on_resolved, &b, &rb));
    csock_resolve_cancel(ra);
    csock_resolve_cancel(rb);
    run_dry(loop); /* the thread's late answer is dropped and freed */
    assert_int_equal(a.calls + b.calls, 0);
    h_loop_free(loop);
}

/* ---- dialing ---- */

typedef struct {
    int calls, status;
    csock_stream *s;
    int accepted, accept_err;
} dial_result;

static void on_dialed(csock_dial *d, int status, csock_stream *s)
{
    dial_result *st = csock_dial_data(d);
    st->calls++;
    st->status = status;
    st->s = s;
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    dial_result *st = csock_listener_data(l);
    if (status == 0) {
        st->accepted++;
        csock_stream_close(s, NULL);
    } else {
        st->accept_err = status; /* ends the wait: the assertion then fails */
    }
}

static csock_listener *listen_v4(csock_loop *loop, dial_result *st, int *port)
{
    csock_addr a;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", 0, &a));
    csock_listener *l;
    CHECK_OK(csock_listen(loop, &a, NULL, on_accept, st, &l));
    csock_addr bound;
    CHECK_OK(csock_listener_addr(l, &bound));
    *port = csock_addr_port(&bound);
    return l;
}

static void ipv4_wins_over_refused_ipv6(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    dial_result st = {0};
    int port;
    csock_listener *l = listen_v4(loop, &st, &port);
    csock_addr addrs[2];
    char text[64];
    snprintf(text, sizeof text, "tcp://127.0.0.1:%d", port);
    CHECK_OK(csock_addr_parse(text, 0, &addrs[0]));
    snprintf(text, sizeof text, "tcp://[::1]:%d", port); /* nothing listens there */
    CHECK_OK(csock_addr_parse(text, 0, &addrs[1]));
    /* A long attempt delay: v4 may only start because v6 failed, not by time. */
    csock_dial_opts o = {.attempt_delay_ms = 60000, .timeout_ms = 20000};
    uint64_t t0 = h_now_ms();
    CHECK_OK(csock_dial_addrs(loop, addrs, 2, &o, on_dialed, &st, NULL));
    assert_int_equal(st.calls, 0);
    RUN_UNTIL(loop, st.calls, 20000);
    CHECK_OK(st.status);
    assert_non_null(st.s);
    assert_true(h_now_ms() - t0 < 20000);
    csock_addr peer;
    CHECK_OK(csock_stream_peer(st.s, &peer));
    assert_int_equal(peer.sa.ss_family, AF_INET); /* IPv6 was tried first and refused */
    RUN_UNTIL(loop, st.accepted == 1 || st.accept_err, 10000);
    assert_int_equal(st.accepted, 1);
    csock_stream_close(st.s, NULL);
    csock_listener_close(l, NULL);
    h_loop_free(loop);
}

static void staggered_start_without_failure(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    dial_result st = {0};
    int port;
    csock_listener *l = listen_v4(loop, &st, &port);
    char text[64];
    snprintf(text, sizeof text, "tcp://localhost:%d", port);
    csock_dial_opts o = {.attempt_delay_ms = 50, .timeout_ms = 20000};
    CHECK_OK(csock_dial_start(loop, text, &o, on_dialed, &st, NULL));
    RUN_UNTIL(loop, st.calls, 20000);
    CHECK_OK(st.status);
    csock_stream_close(st.s, NULL);
    csock_listener_close(l, NULL);
    h_loop_free(loop);
}

static void all_refused_reports_the_error(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    dial_result st = {0};
    int port;
    csock_listener *l = listen_v4(loop, &st, &port);
    csock_listener_close(l, NULL); /* the port is now closed */
    h_spin(loop, 3);
    char text[64];
    snprintf(text, sizeof text, "tcp://127.0.0.1:%d", port);
    CHECK_OK(csock_dial_start(loop, text, NULL, on_dialed, &st, NULL));
    RUN_UNTIL(loop, st.calls, 20000);
    assert_int_equal(st.status, -ECONNREFUSED);
    assert_null(st.s);
    run_dry(loop);
    h_loop_free(loop);
}

static void bad_arguments_are_refused(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    dial_result st = {0};
    assert_int_equal(csock_dial_start(loop, "tls://localhost:443", NULL, on_dialed, &st, NULL), -EINVAL);
    assert_int_equal(csock_dial_start(loop, "udp://127.0.0.1:53", NULL, on_dialed, &st, NULL),
                     CSOCK_ESCHEME);
    assert_int_equal(csock_dial_start(loop, "tcp://localhost", NULL, on_dialed, &st, NULL), CSOCK_ENOPORT);
    assert_int_equal(csock_resolve_start(loop, NULL, NULL, on_resolved, NULL, NULL), -EINVAL);
    assert_int_equal(st.calls, 0);
    h_loop_free(loop);
}

static void dial_cancel_closes_everything(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    dial_result st = {0}, named = {0};
    int port;
    csock_listener *l = listen_v4(loop, &st, &port);
    char text[64];
    snprintf(text, sizeof text, "tcp://127.0.0.1:%d", port);
    csock_dial *d, *dn;
    CHECK_OK(csock_dial_start(loop, text, NULL, on_dialed, &st, &d));
    snprintf(text, sizeof text, "tcp://localhost:%d", port);
    CHECK_OK(csock_dial_start(loop, text, NULL, on_dialed, &named, &dn));
    csock_dial_cancel(d);
    csock_dial_cancel(dn); /* its resolution is still on the thread */
    csock_listener_close(l, NULL);
    run_dry(loop);
    assert_int_equal(st.calls + named.calls, 0);
    h_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(localhost_resolves),
        cmocka_unit_test(numeric_answers_from_the_loop),
        cmocka_unit_test(unknown_name_fails),
        cmocka_unit_test(cancel_means_no_callback),
        cmocka_unit_test(ipv4_wins_over_refused_ipv6),
        cmocka_unit_test(staggered_start_without_failure),
        cmocka_unit_test(all_refused_reports_the_error),
        cmocka_unit_test(bad_arguments_are_refused),
        cmocka_unit_test(dial_cancel_closes_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
