/* The option structs are ABI (see "Option structs are ABI" in the headers):
 * their sizes and member offsets are pinned here, so an accidental change
 * (a member added anywhere but out of `reserved`, a type widened) fails this
 * test instead of breaking programs built against an older header. The
 * numbers are for LP64 Linux (x86_64, aarch64); a deliberate change within
 * a major version takes a member out of `reserved` and keeps every number.
 * Also: a zero-initialized struct means the defaults, as NULL does. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"
#include "csock/ws.h"
#include "helpers.h"

#include <limits.h>
#include <string.h>
#include <unistd.h>

#if UINTPTR_MAX != UINT64_MAX || ULONG_MAX != UINT64_MAX
#error "the pinned layouts are for LP64"
#endif

static void layout_loop_opts(void **state)
{
    assert_int_equal(sizeof(csock_loop_opts), 40);
    assert_int_equal(offsetof(csock_loop_opts, backend), 0);
    assert_int_equal(offsetof(csock_loop_opts, reserved), 8);
}

static void layout_connect_opts(void **state)
{
    assert_int_equal(sizeof(csock_connect_opts), 40);
    assert_int_equal(offsetof(csock_connect_opts, timeout_ms), 0);
    assert_int_equal(offsetof(csock_connect_opts, reserved), 8);
}

static void layout_listen_opts(void **state)
{
    assert_int_equal(sizeof(csock_listen_opts), 48);
    assert_int_equal(offsetof(csock_listen_opts, backlog), 0);
    assert_int_equal(offsetof(csock_listen_opts, reuseport), 4);
    assert_int_equal(offsetof(csock_listen_opts, v6only), 8);
    assert_int_equal(offsetof(csock_listen_opts, max_conns), 12);
    assert_int_equal(offsetof(csock_listen_opts, reserved), 16);
}

static void layout_server_opts(void **state)
{
    assert_int_equal(sizeof(csock_server_opts), 128);
    assert_int_equal(offsetof(csock_server_opts, threads), 0);
    assert_int_equal(offsetof(csock_server_opts, max_conns), 4);
    assert_int_equal(offsetof(csock_server_opts, drain_timeout_ms), 8);
    assert_int_equal(offsetof(csock_server_opts, handle_signals), 16);
    assert_int_equal(offsetof(csock_server_opts, reuseport), 20);
    assert_int_equal(offsetof(csock_server_opts, verbose), 24);
    assert_int_equal(offsetof(csock_server_opts, loop_start), 32);
    assert_int_equal(offsetof(csock_server_opts, loop_stop), 40);
    assert_int_equal(offsetof(csock_server_opts, loop_drain), 48);
    assert_int_equal(offsetof(csock_server_opts, data), 56);
    assert_int_equal(offsetof(csock_server_opts, reserved), 64);
}

static void layout_framing(void **state)
{
    assert_int_equal(sizeof(csock_framing), 40);
    assert_int_equal(offsetof(csock_framing, kind), 0);
    assert_int_equal(offsetof(csock_framing, max), 8);
    assert_int_equal(offsetof(csock_framing, keep_delimiter), 16);
    assert_int_equal(offsetof(csock_framing, reserved), 24);
}

static void layout_tls_opts(void **state)
{
    assert_int_equal(sizeof(csock_tls_opts), 120);
    assert_int_equal(offsetof(csock_tls_opts, server), 0);
    assert_int_equal(offsetof(csock_tls_opts, cert_file), 8);
    assert_int_equal(offsetof(csock_tls_opts, key_file), 16);
    assert_int_equal(offsetof(csock_tls_opts, ca_file), 24);
    assert_int_equal(offsetof(csock_tls_opts, alpn), 32);
    assert_int_equal(offsetof(csock_tls_opts, insecure), 40);
    assert_int_equal(offsetof(csock_tls_opts, verify_client), 44);
    assert_int_equal(offsetof(csock_tls_opts, handshake_timeout_ms), 48);
    assert_int_equal(offsetof(csock_tls_opts, reserved), 56);
}

static void layout_http_route(void **state)
{
    assert_int_equal(sizeof(csock_http_route), 48);
    assert_int_equal(offsetof(csock_http_route, method), 0);
    assert_int_equal(offsetof(csock_http_route, prefix), 8);
    assert_int_equal(offsetof(csock_http_route, handler), 16);
    assert_int_equal(offsetof(csock_http_route, data), 24);
    assert_int_equal(offsetof(csock_http_route, reserved), 32);
}

static void layout_http_opts(void **state)
{
    assert_int_equal(sizeof(csock_http_opts), 176);
    assert_int_equal(offsetof(csock_http_opts, routes), 0);
    assert_int_equal(offsetof(csock_http_opts, nroutes), 8);
    assert_int_equal(offsetof(csock_http_opts, handler), 16);
    assert_int_equal(offsetof(csock_http_opts, data), 24);
    assert_int_equal(offsetof(csock_http_opts, max_request_line), 32);
    assert_int_equal(offsetof(csock_http_opts, max_head), 40);
    assert_int_equal(offsetof(csock_http_opts, max_body), 48);
    assert_int_equal(offsetof(csock_http_opts, header_timeout_ms), 56);
    assert_int_equal(offsetof(csock_http_opts, body_timeout_ms), 64);
    assert_int_equal(offsetof(csock_http_opts, keepalive_timeout_ms), 72);
    assert_int_equal(offsetof(csock_http_opts, send_timeout_ms), 80);
    assert_int_equal(offsetof(csock_http_opts, server_name), 88);
    assert_int_equal(offsetof(csock_http_opts, log), 96);
    assert_int_equal(offsetof(csock_http_opts, log_data), 104);
    assert_int_equal(offsetof(csock_http_opts, reserved), 112);
}

static void layout_ws_opts(void **state)
{
    assert_int_equal(sizeof(csock_ws_opts), 160);
    assert_int_equal(offsetof(csock_ws_opts, max_message), 0);
    assert_int_equal(offsetof(csock_ws_opts, close_timeout_ms), 8);
    assert_int_equal(offsetof(csock_ws_opts, handshake_timeout_ms), 16);
    assert_int_equal(offsetof(csock_ws_opts, ping_interval_ms), 24);
    assert_int_equal(offsetof(csock_ws_opts, ping_timeout_ms), 32);
    assert_int_equal(offsetof(csock_ws_opts, subprotocols), 40);
    assert_int_equal(offsetof(csock_ws_opts, nsubprotocols), 48);
    assert_int_equal(offsetof(csock_ws_opts, origins), 56);
    assert_int_equal(offsetof(csock_ws_opts, norigins), 64);
    assert_int_equal(offsetof(csock_ws_opts, headers), 72);
    assert_int_equal(offsetof(csock_ws_opts, nheaders), 80);
    assert_int_equal(offsetof(csock_ws_opts, tls), 88);
    /* permessage-deflate's members, taken from the front of reserved[8] */
    assert_int_equal(offsetof(csock_ws_opts, deflate), 96);
    assert_int_equal(offsetof(csock_ws_opts, deflate_level), 100);
    assert_int_equal(offsetof(csock_ws_opts, server_max_window_bits), 104);
    assert_int_equal(offsetof(csock_ws_opts, client_max_window_bits), 105);
    assert_int_equal(offsetof(csock_ws_opts, server_no_context_takeover), 106);
    assert_int_equal(offsetof(csock_ws_opts, client_no_context_takeover), 107);
    assert_int_equal(offsetof(csock_ws_opts, deflate_threshold), 108);
    assert_int_equal(offsetof(csock_ws_opts, deflate_memory), 112);
    assert_int_equal(offsetof(csock_ws_opts, reserved), 120);
    assert_int_equal(sizeof(((csock_ws_opts *)0)->reserved), 40);
}

static void layout_http_static_opts(void **state)
{
    assert_int_equal(sizeof(csock_http_static_opts), 48);
    assert_int_equal(offsetof(csock_http_static_opts, list), 0);
    assert_int_equal(offsetof(csock_http_static_opts, index), 8);
    /* snapshot_dir, taken from the front of reserved[4] */
    assert_int_equal(offsetof(csock_http_static_opts, snapshot_dir), 16);
    assert_int_equal(offsetof(csock_http_static_opts, reserved), 24);
}

/* The reserved space is there and zero in a zero-initialized struct. */
static void reserved_is_at_the_end(void **state)
{
    csock_server_opts so = {0};
    assert_int_equal(offsetof(csock_server_opts, reserved) + sizeof so.reserved, sizeof so);
    csock_http_opts ho = {0};
    assert_int_equal(offsetof(csock_http_opts, reserved) + sizeof ho.reserved, sizeof ho);
    csock_tls_opts to = {0};
    assert_int_equal(offsetof(csock_tls_opts, reserved) + sizeof to.reserved, sizeof to);
    csock_ws_opts wo = {0};
    assert_int_equal(offsetof(csock_ws_opts, reserved) + sizeof wo.reserved, sizeof wo);
}

/* Zero-initialized options are the defaults: the same as passing NULL. */
static void zero_loop_opts_are_defaults(void **state)
{
    csock_loop_opts zero;
    memset(&zero, 0, sizeof zero);
    csock_loop *a, *b;
    CHECK_OK(csock_loop_new(NULL, &a));
    CHECK_OK(csock_loop_new(&zero, &b));
    assert_string_equal(csock_loop_backend(a), csock_loop_backend(b));
    assert_int_equal(csock_loop_free(a), 0);
    assert_int_equal(csock_loop_free(b), 0);
}

static void zero_server_opts_are_defaults(void **state)
{
    csock_server_opts zero;
    memset(&zero, 0, sizeof zero);
    csock_server *a, *b;
    CHECK_OK(csock_server_new(NULL, &a));
    CHECK_OK(csock_server_new(&zero, &b));
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(csock_server_threads(b), cpus > 0 ? (unsigned)cpus : 1u);
    assert_int_equal(csock_server_threads(a), csock_server_threads(b));
    csock_server_free(a);
    csock_server_free(b);
}

static void zero_tls_and_http_opts_are_defaults(void **state)
{
    csock_tls_opts tzero;
    memset(&tzero, 0, sizeof tzero);
    csock_tls_ctx *ctx;
    CHECK_OK(csock_tls_ctx_new(&tzero, &ctx, NULL, 0)); /* a verifying client */
    csock_tls_ctx_free(ctx);

    csock_loop *loop = h_loop_new();
    csock_http_opts hzero;
    memset(&hzero, 0, sizeof hzero);
    csock_http_server *hs;
    CHECK_OK(csock_http_server_new(loop, &hzero, &hs));
    csock_http_server_close(hs);
    csock_http_static_opts szero;
    memset(&szero, 0, sizeof szero);
    csock_http_static *st;
    CHECK_OK(csock_http_static_new(".", &szero, &st));
    csock_http_static_free(st);
    h_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(layout_loop_opts),
        cmocka_unit_test(layout_connect_opts),
        cmocka_unit_test(layout_listen_opts),
        cmocka_unit_test(layout_server_opts),
        cmocka_unit_test(layout_framing),
        cmocka_unit_test(layout_tls_opts),
        cmocka_unit_test(layout_http_route),
        cmocka_unit_test(layout_http_opts),
        cmocka_unit_test(layout_http_static_opts),
        cmocka_unit_test(layout_ws_opts),
        cmocka_unit_test(reserved_is_at_the_end),
        cmocka_unit_test(zero_loop_opts_are_defaults),
        cmocka_unit_test(zero_server_opts_are_defaults),
        cmocka_unit_test(zero_tls_and_http_opts_are_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
