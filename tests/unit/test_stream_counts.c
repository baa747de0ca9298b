/* csock_stream_counts() on TLS streams: both counts are plaintext, so after
 * an echo of N bytes each side reports N read and N written, however many
 * bytes of handshake and records went over the socket. (Plain streams are
 * counted in test_stream.c.) The certificate is a self-signed one made with
 * the openssl command at test time; without the command the test prints
 * "skipped". */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h" /* CHECK_OK, RUN_UNTIL */

static char certdir[64];
static int have_cert;

static int make_cert(void **state)
{
    snprintf(certdir, sizeof certdir, "/tmp/csock-counts-XXXXXX");
    if (!mkdtemp(certdir)) return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-days 1 -subj /CN=localhost -keyout %s/key.pem -out %s/cert.pem "
             ">/dev/null 2>&1",
             certdir, certdir);
    have_cert = system(cmd) == 0;
    return 0;
}

static int remove_cert(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", certdir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct side {
    csock_stream *s;
    size_t got;        /* plaintext bytes received */
    int hs;            /* 1: handshake done */
    int closed;
    uint64_t rd, wr;   /* the counts, taken in the close callback */
} side;

static side srv, cli;

static void side_closed(csock_stream *s)
{
    side *d = csock_stream_data(s);
    CHECK_OK(csock_stream_counts(s, &d->rd, &d->wr)); /* still valid here */
    d->closed = 1;
}

static size_t srv_echo(csock_stream *s, int status, const char *buf, size_t len)
{
    srv.got += len;
    if (len) CHECK_OK(csock_stream_write(s, buf, len));
    if (status == CSOCK_EOF) csock_stream_end(s, side_closed);
    else if (status < 0) csock_stream_close(s, side_closed);
    return len;
}

static void srv_ready(csock_stream *s, int status)
{
    CHECK_OK(status);
    srv.hs = 1;
    CHECK_OK(csock_stream_read_start(s, srv_echo));
}

static csock_tls_ctx *srv_ctx;

static void srv_accept(csock_listener *l, csock_stream *s, int status)
{
    CHECK_OK(status);
    srv.s = s;
    csock_stream_set_data(s, &srv);
    CHECK_OK(csock_tls_accept(s, srv_ctx, srv_ready));
}

static size_t cli_read(csock_stream *s, int status, const char *buf, size_t len)
{
    cli.got += len;
    if (status != 0) csock_stream_close(s, side_closed);
    return len;
}

static void cli_ready(csock_stream *s, int status)
{
    CHECK_OK(status);
    cli.hs = 1;
    CHECK_OK(csock_stream_read_start(s, cli_read));
}

static void expect(const side *d, uint64_t rd, uint64_t wr, const char *who)
{
    if (d->rd != rd || d->wr != wr)
        print_error("%s: read %llu written %llu, expected %llu %llu\n", who,
                    (unsigned long long)d->rd, (unsigned long long)d->wr,
                    (unsigned long long)rd, (unsigned long long)wr);
    assert_true(d->rd == rd && d->wr == wr);
}

/* Written before the handshake (held by TLS), by writev, by reference and
 * from a file (read and encrypted a piece at a time): 200 KiB + 15 bytes of
 * plaintext each way. */
static void tls_counts_are_plaintext(void **state)
{
    if (!have_cert) {
        printf("skipped: no openssl command to make a certificate\n");
        skip();
    }
    memset(&srv, 0, sizeof srv);
    memset(&cli, 0, sizeof cli);
    char crt[128], key[128];
    snprintf(crt, sizeof crt, "%s/cert.pem", certdir);
    snprintf(key, sizeof key, "%s/key.pem", certdir);
    char err[256];
    csock_tls_opts so = {.server = 1, .cert_file = crt, .key_file = key};
    if (csock_tls_ctx_new(&so, &srv_ctx, err, sizeof err) < 0) fail_msg("server ctx: %s", err);
    csock_tls_opts co = {.insecure = 1};
    csock_tls_ctx *cli_ctx;
    if (csock_tls_ctx_new(&co, &cli_ctx, err, sizeof err) < 0) fail_msg("client ctx: %s", err);

    enum { FILE_LEN = 200 * 1024 };
    char path[] = "/tmp/csock-counts-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    char *data = calloc(1, FILE_LEN);
    assert_non_null(data);
    assert_int_equal(write(fd, data, FILE_LEN), FILE_LEN);
    free(data);

    csock_loop *loop = h_loop_new();
    csock_addr a;
    csock_listener *l;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", CSOCK_ADDR_NUMERIC, &a));
    CHECK_OK(csock_listen(loop, &a, NULL, srv_accept, NULL, &l));
    CHECK_OK(csock_listener_addr(l, &a));
    a.scheme = CSOCK_TLS; /* csock_tls_connect takes a tls:// address */
    CHECK_OK(csock_tls_connect(loop, &a, cli_ctx, NULL, cli_ready, &cli, &cli.s));
    CHECK_OK(csock_stream_write(cli.s, "early", 5)); /* before the handshake */
    struct iovec iov[2] = {{"ab", 2}, {"cde", 3}};
    CHECK_OK(csock_stream_writev(cli.s, iov, 2));
    CHECK_OK(csock_stream_write_ref(cli.s, "ref!", 4, NULL, NULL));
    CHECK_OK(csock_stream_write_file(cli.s, fd, 0, FILE_LEN, 0));
    CHECK_OK(csock_stream_write(cli.s, "!", 1));
    const uint64_t total = 5 + 5 + 4 + FILE_LEN + 1;
    /* Ends on a close too: a refused allocation (the fault sweep) fails a
     * stream, which then never gets everything. */
    RUN_UNTIL(loop, cli.got == total || cli.closed || srv.closed, 20000);
    assert_int_equal(cli.got, total);
    CHECK_OK(csock_stream_shutdown(cli.s, NULL)); /* the server ends on our EOF */
    RUN_UNTIL(loop, srv.closed && cli.closed, 20000);
    expect(&cli, total, total, "client");
    expect(&srv, total, total, "server");

    csock_listener_close(l, NULL);
    h_loop_free(loop);
    csock_tls_ctx_free(cli_ctx);
    csock_tls_ctx_free(srv_ctx);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tls_counts_are_plaintext),
    };
    return cmocka_run_group_tests(tests, make_cert, remove_cert);
}
