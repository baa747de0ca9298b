/* TLS over csock streams, csock client against csock server on loopback:
 * handshake, 1 MiB echoed byte-exact, framing, close_notify versus
 * truncation, writes before the handshake, ALPN, client certificates, and
 * verification failures with their reasons. Certificates are made at test
 * time by tests/integration/tlscerts.py (the openssl command). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_OK(expr)                                                                   \
    do {                                                                                 \
        int rc_ = (expr);                                                                \
        if (rc_ < 0) fail_msg("%s: %s", #expr, csock_strerror(rc_));                     \
    } while (0)

static char certdir[512];

static const char *cert(const char *name)
{
    static char bufs[8][600];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", certdir, name);
    return b;
}

static int make_certs(void **state)
{
    char src[512];
    snprintf(src, sizeof src, "%s", __FILE__);
    char *dir = dirname(src);
    snprintf(certdir, sizeof certdir, "/tmp/csock-tls-unit-XXXXXX");
    if (!mkdtemp(certdir)) return -1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "python3 %s/../integration/tlscerts.py %s", dir, certdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_certs(void **state)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", certdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- a tiny TLS server: echo (bytes), or framed echo ----------------------------- */

typedef struct server {
    csock_loop *loop;
    csock_listener *l;
    csock_tls_ctx *ctx;
    csock_addr addr;
    csock_framing framing;
    int framed;
    int close_abruptly;   /* after the first read: close without close_notify */
    int hs_ok, hs_failed;
    char reason[200];     /* last handshake failure on the server side */
} server;

static void srv_closed(csock_stream *s) {}

static size_t srv_echo(csock_stream *s, int status, const char *buf, size_t len)
{
    server *srv = csock_stream_data(s);
    if (status == 0 && srv->close_abruptly) {
        csock_stream_close(s, srv_closed);
        return len;
    }
    if (len) csock_stream_write(s, buf, len);
    if (status == CSOCK_EOF) csock_stream_end(s, srv_closed);
    else if (status < 0) csock_stream_close(s, srv_closed);
    return len;
}

static void srv_msg(csock_stream *s, int status, const char *msg, size_t len)
{
    server *srv = csock_stream_data(s);
    if (status == 0) csock_stream_write_msg(s, &srv->framing, msg, len);
    else if (status == CSOCK_EOF) csock_stream_end(s, srv_closed);
    else csock_stream_close(s, srv_closed);
}

static void srv_handshake(csock_stream *s, int status)
{
    server *srv = csock_stream_data(s);
    if (status < 0) {
        srv->hs_failed++;
        csock_tls_last_error(s, srv->reason, sizeof srv->reason);
        return;
    }
    srv->hs_ok++;
    if (srv->framed)
        csock_stream_read_framed(s, &srv->framing, srv_msg);
    else
        csock_stream_read_start(s, srv_echo);
}

static void srv_accept(csock_listener *l, csock_stream *s, int status)
{
    server *srv = csock_listener_data(l);
    if (status < 0) return;
    csock_stream_set_data(s, srv);
    CHECK_OK(csock_tls_accept(s, srv->ctx, srv_handshake));
}

static void server_start(server *srv, csock_loop *loop, const char *crt, const char *key,
                         const csock_tls_opts *extra)
{
    csock_tls_opts o = extra ? *extra : (csock_tls_opts){0};
    o.server = 1;
    o.cert_file = cert(crt);
    o.key_file = cert(key);
    char err[256];
    int rc = csock_tls_ctx_new(&srv->ctx, &o, err, sizeof err);
    if (rc < 0) fail_msg("server ctx: %s", err);
    srv->loop = loop;
    csock_addr a;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", 0, &a));
    CHECK_OK(csock_listen(loop, &a, NULL, srv_accept, srv, &srv->l));
    CHECK_OK(csock_listener_addr(srv->l, &srv->addr));
    snprintf(srv->addr.host, sizeof srv->addr.host, "localhost");
    srv->addr.scheme = CSOCK_TLS;
}

static void server_stop(server *srv)
{
    csock_listener_close(srv->l, NULL);
    csock_tls_ctx_free(srv->ctx);
}

/* ---- the client side -------------------------------------------------------------- */

typedef struct client {
    csock_loop *loop;
    csock_stream *s;
    const char *out;     /* what to send */
    size_t out_len;
    char *in;            /* what came back */
    size_t in_len, in_cap;
    int hs_status;       /* 1: not yet */
    int end_status;      /* 1: not yet; CSOCK_EOF or an error */
    int nmsgs;
    csock_framing framing;
    char reason[200];
    char alpn[32];       /* ALPN chosen, version */
    char version[16];
    int closed;
} client;

static void cli_closed(csock_stream *s)
{
    client *c = csock_stream_data(s);
    c->closed = 1;
}

static size_t cli_read(csock_stream *s, int status, const char *buf, size_t len)
{
    client *c = csock_stream_data(s);
    if (c->in_len + len > c->in_cap) {
        c->in_cap = (c->in_len + len) * 2;
        c->in = realloc(c->in, c->in_cap);
    }
    if (len) memcpy(c->in + c->in_len, buf, len);
    c->in_len += len;
    if (status != 0) {
        c->end_status = status;
        if (status != CSOCK_EOF) csock_tls_last_error(s, c->reason, sizeof c->reason);
        csock_stream_close(s, cli_closed);
    }
    return len;
}

static void cli_msg(csock_stream *s, int status, const char *msg, size_t len)
{
    client *c = csock_stream_data(s);
    if (status == 0) {
        c->nmsgs++;
        cli_read(s, 0, msg, len);
        return;
    }
    cli_read(s, status, NULL, 0);
}

static void cli_handshake(csock_stream *s, int status)
{
    client *c = csock_stream_data(s);
    c->hs_status = status;
    if (status < 0) {
        csock_tls_last_error(s, c->reason, sizeof c->reason);
        csock_stream_close(s, cli_closed);
        return;
    }
    const char *p = csock_tls_alpn(s);
    snprintf(c->alpn, sizeof c->alpn, "%s", p ? p : "");
    snprintf(c->version, sizeof c->version, "%s", csock_tls_version(s));
    if (c->framing.kind)
        CHECK_OK(csock_stream_read_framed(s, &c->framing, cli_msg));
    else
        CHECK_OK(csock_stream_read_start(s, cli_read));
    if (c->out_len) CHECK_OK(csock_stream_write(s, c->out, c->out_len));
    if (!c->framing.kind) CHECK_OK(csock_stream_shutdown(s, NULL));
}

static csock_tls_ctx *client_ctx(const char *ca, const char *alpn, const char *crt, const char *key)
{
    csock_tls_opts o = {.ca_file = ca ? cert(ca) : NULL, .alpn = alpn,
                        .cert_file = crt ? cert(crt) : NULL, .key_file = key ? cert(key) : NULL};
    csock_tls_ctx *ctx;
    char err[256];
    int rc = csock_tls_ctx_new(&ctx, &o, err, sizeof err);
    if (rc < 0) fail_msg("client ctx: %s", err);
    return ctx;
}

static void client_start(client *c, csock_loop *loop, csock_tls_ctx *ctx, const csock_addr *a)
{
    c->loop = loop;
    c->hs_status = 1;
    c->end_status = 1;
    CHECK_OK(csock_tls_connect(loop, a, ctx, NULL, cli_handshake, c, &c->s));
}

static void run_until(csock_loop *loop, int *flag)
{
    for (int i = 0; i < 200000 && !*flag; i++) csock_loop_run(loop, CSOCK_RUN_ONCE);
    assert_true(*flag);
}

static void finish(csock_loop *loop)
{
    for (int i = 0; i < 100 && csock_loop_run(loop, CSOCK_RUN_NOWAIT) > 0; i++)
        if (csock_loop_handles(loop) == 0) break;
    assert_int_equal(csock_loop_free(loop), 0);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_echo_1mib(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(&loop, NULL));
    server srv = {0};
    server_start(&srv, loop, "server.pem", "server.key", NULL);
    size_t n = 1u << 20;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (char)(i * 7 + (i >> 11));
    client c = {.out = data, .out_len = n};
    csock_tls_ctx *ctx = client_ctx("ca.pem", NULL, NULL, NULL);
    client_start(&c, loop, ctx, &srv.addr);
    run_until(loop, &c.closed);
    assert_int_equal(c.hs_status, 0);
    assert_int_equal(c.end_status, CSOCK_EOF); /* close_notify, not truncation */
    assert_int_equal(c.in_len, n);
    assert_memory_equal(c.in, data, n);
    assert_int_equal(srv.hs_ok, 1);
    free(c.in);
    free(data);
    csock_tls_ctx_free(ctx);
    server_stop(&srv);
    finish(loop);
}

static void test_framing(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(&loop, NULL));
    server srv = {.framed = 1, .framing = {.kind = CSOCK_FRAME_LP32, .max = 100000}};
    server_start(&srv, loop, "server.pem", "server.key", NULL);
    /* 200 LP32 messages of growing size in one write. */
    size_t cap = 0;
    for (int i = 0; i < 200; i++) cap += 4 + (size_t)i * 300;
    char *out = malloc(cap), *p = out;
    for (int i = 0; i < 200; i++) {
        uint32_t l = (uint32_t)i * 300;
        *p++ = (char)(l >> 24); *p++ = (char)(l >> 16); *p++ = (char)(l >> 8); *p++ = (char)l;
        memset(p, 'a' + i % 26, l);
        p += l;
    }
    client c = {.out = out, .out_len = cap, .framing = srv.framing};
    csock_tls_ctx *ctx = client_ctx("ca.pem", NULL, NULL, NULL);
    client_start(&c, loop, ctx, &srv.addr);
    for (int i = 0; i < 200000 && c.nmsgs < 200; i++) csock_loop_run(loop, CSOCK_RUN_ONCE);
    assert_int_equal(c.nmsgs, 200);
    assert_int_equal(c.in_len, cap - 200 * 4);
    csock_stream_end(c.s, cli_closed);
    run_until(loop, &c.closed);
    free(c.in);
    free(out);
    csock_tls_ctx_free(ctx);
    server_stop(&srv);
    finish(loop);
}

static void test_truncation(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(&loop, NULL));
    server srv = {.close_abruptly = 1};
    server_start(&srv, loop, "server.pem", "server.key", NULL);
    client c = {.out = "hello", .out_len = 5};
    csock_tls_ctx *ctx = client_ctx("ca.pem", NULL, NULL, NULL);
    client_start(&c, loop, ctx, &srv.addr);
    run_until(loop, &c.closed);
    assert_int_equal(c.hs_status, 0);
    assert_int_equal(c.end_status, CSOCK_ETLS);
    assert_non_null(strstr(c.reason, "close_notify"));
    csock_tls_ctx_free(ctx);
    free(c.in);
    server_stop(&srv);
    finish(loop);
}

/* A write made before the handshake is held and sent after it. */
static void test_write_before_handshake(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(&loop, NULL));
    server srv = {0};
    server_start(&srv, loop, "server.pem", "server.key", NULL);
    client c = {0};
    csock_tls_ctx *ctx = client_ctx("ca.pem", NULL, NULL, NULL);
    client_start(&c, loop, ctx, &srv.addr);
    CHECK_OK(csock_stream_write(c.s, "early bytes", 11));
    run_until(loop, &c.closed);
    assert_int_equal(c.end_status, CSOCK_EOF);
    assert_int_equal(c.in_len, 11);
    assert_memory_equal(c.in, "early bytes", 11);
    free(c.in);
    csock_tls_ctx_free(ctx);
    server_stop(&srv);
    finish(loop);
}

static void test_alpn_and_info(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(&loop, NULL));
    server srv = {0};
    csock_tls_opts so = {.alpn = "http/1.1,csock"};
    server_start(&srv, loop, "server.pem", "server.key", &so);
    client c = {.out = "x", .out_len = 1};
    csock_tls_ctx *ctx = client_ctx("ca.pem", "csock", NULL, NULL);
    client_start(&c, loop, ctx, &srv.addr);
    run_until(loop, &c.closed);
    assert_int_equal(c.hs_status, 0);
    assert_int_equal(c.end_status, CSOCK_EOF);
    assert_string_equal(c.alpn, "csock");
    assert_string_equal(c.version, "TLSv1.3");
    csock_tls_ctx_free(ctx);
    free(c.in);
    server_stop(&srv);
    finish(loop);
}

/* The client fails verification with a reason; `expect` is part of it. */
static void expect_verify_failure(const char *crt, const char *key, const char *host,
                                  const char *ca, const char *expect)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(&loop, NULL));
    server srv = {0};
    server_start(&srv, loop, crt, key, NULL);
    if (host) snprintf(srv.addr.host, sizeof srv.addr.host, "%s", host);
    client c = {.out = "x", .out_len = 1};
    csock_tls_ctx *ctx = client_ctx(ca, NULL, NULL, NULL);
    client_start(&c, loop, ctx, &srv.addr);
    run_until(loop, &c.closed);
    assert_int_equal(c.hs_status, CSOCK_ETLS);
    if (!strstr(c.reason, expect)) fail_msg("reason '%s' lacks '%s'", c.reason, expect);
    /* The server sees the client's alert as a failed handshake. */
    for (int i = 0; i < 1000 && !srv.hs_failed; i++) csock_loop_run(loop, CSOCK_RUN_ONCE);
    assert_int_equal(srv.hs_failed, 1);
    csock_tls_ctx_free(ctx);
    server_stop(&srv);
    finish(loop);
}

static void test_verify_selfsigned(void **state)
{
    expect_verify_failure("selfsigned.pem", "selfsigned.key", NULL, "ca.pem", "self-signed");
}

static void test_verify_expired(void **state)
{
    expect_verify_failure("expired.pem", "expired.key", NULL, "ca.pem",
                          "certificate verify failed: certificate has expired");
}

static void test_verify_wronghost(void **state)
{
    expect_verify_failure("wronghost.pem", "wronghost.key", NULL, "ca.pem", "hostname mismatch");
}

static void test_verify_wrong_ip(void **state)
{
    /* server.pem names 127.0.0.1 and ::1, not 127.0.0.2. */
    expect_verify_failure("server.pem", "server.key", "127.0.0.2", "ca.pem", "IP address mismatch");
}

static void test_verify_unknown_ca(void **state)
{
    expect_verify_failure("server.pem", "server.key", NULL, "otherca.pem",
                          "unable to get local issuer certificate");
}

static void test_ip_address_ok(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(&loop, NULL));
    server srv = {0};
    server_start(&srv, loop, "server.pem", "server.key", NULL);
    snprintf(srv.addr.host, sizeof srv.addr.host, "127.0.0.1");
    client c = {.out = "ip", .out_len = 2};
    csock_tls_ctx *ctx = client_ctx("ca.pem", NULL, NULL, NULL);
    client_start(&c, loop, ctx, &srv.addr);
    run_until(loop, &c.closed);
    assert_int_equal(c.hs_status, 0);
    assert_int_equal(c.in_len, 2);
    free(c.in);
    csock_tls_ctx_free(ctx);
    server_stop(&srv);
    finish(loop);
}

static void test_client_cert(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(&loop, NULL));
    server srv = {0};
    csock_tls_opts so = {.verify_client = 1, .ca_file = cert("ca.pem")};
    server_start(&srv, loop, "server.pem", "server.key", &so);
    /* With the certificate: served. */
    client c = {.out = "cc", .out_len = 2};
    csock_tls_ctx *ctx = client_ctx("ca.pem", NULL, "client.pem", "client.key");
    client_start(&c, loop, ctx, &srv.addr);
    run_until(loop, &c.closed);
    assert_int_equal(c.end_status, CSOCK_EOF);
    assert_int_equal(c.in_len, 2);
    free(c.in);
    csock_tls_ctx_free(ctx);
    /* Without: refused (TLS 1.3 reports it after the client's handshake). */
    client d = {.out = "cc", .out_len = 2};
    ctx = client_ctx("ca.pem", NULL, NULL, NULL);
    client_start(&d, loop, ctx, &srv.addr);
    run_until(loop, &d.closed);
    assert_true(d.hs_status == CSOCK_ETLS || d.end_status == CSOCK_ETLS);
    assert_non_null(strstr(d.reason, "certificate required"));
    free(d.in);
    csock_tls_ctx_free(ctx);
    server_stop(&srv);
    finish(loop);
}

static void test_ctx_errors(void **state)
{
    csock_tls_ctx *ctx;
    char err[256];
    csock_tls_opts o = {.server = 1};
    assert_int_equal(csock_tls_ctx_new(&ctx, &o, err, sizeof err), -EINVAL);
    o.cert_file = "/nonexistent/c.pem";
    assert_int_equal(csock_tls_ctx_new(&ctx, &o, err, sizeof err), CSOCK_ETLS);
    assert_non_null(strstr(err, "No such file"));
    o.cert_file = cert("server.pem");
    o.key_file = cert("client.key");
    assert_int_equal(csock_tls_ctx_new(&ctx, &o, err, sizeof err), CSOCK_ETLS);
    assert_non_null(strstr(err, "does not match"));
    csock_tls_opts a = {.alpn = "h2,,x"};
    assert_int_equal(csock_tls_ctx_new(&ctx, &a, err, sizeof err), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_1mib),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_write_before_handshake),
        cmocka_unit_test(test_alpn_and_info),
        cmocka_unit_test(test_verify_selfsigned),
        cmocka_unit_test(test_verify_expired),
        cmocka_unit_test(test_verify_wronghost),
        cmocka_unit_test(test_verify_wrong_ip),
        cmocka_unit_test(test_verify_unknown_ca),
        cmocka_unit_test(test_ip_address_ok),
        cmocka_unit_test(test_client_cert),
        cmocka_unit_test(test_ctx_errors),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
