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

#include "helpers.h" /* CHECK_OK, RUN_UNTIL, h_now_ms */

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
    int file_fd;          /* > 0: send "HEAD", this file, "TAIL", then end */
    size_t file_len;
    int ref_replies;      /* answer each byte with a 16 KiB csock_stream_write_ref() */
    int requests;         /* bytes answered so far */
    csock_stream *last;   /* the last stream accepted */
    csock_listener *l;
    csock_tls_ctx *ctx;
    csock_addr addr;
    csock_framing framing;
    int framed;
    int close_abruptly;   /* at the client's end: close without close_notify */
    int hs_ok, hs_failed;
    char reason[200];     /* last handshake failure on the server side */
} server;

static void srv_closed(csock_stream *s) {}

static char reply16k[16384];

static size_t srv_echo(csock_stream *s, int status, const char *buf, size_t len)
{
    server *srv = csock_stream_data(s);
    if (status == 0 && srv->ref_replies) {
        for (size_t i = 0; i < len; i++, srv->requests++)
            CHECK_OK(csock_stream_write_ref(s, reply16k, sizeof reply16k, NULL, NULL));
        return len;
    }
    if (srv->close_abruptly) {
        /* Once the client has ended (its close_notify and FIN read), close
         * without ours. Closing at the first read raced the client's
         * close_notify: under injected short writes it was still on its
         * way, met the closed socket's reset, and the client saw EPIPE
         * instead of the truncation (the syscall sweep, 1 run in ~40). */
        if (status != 0) csock_stream_close(s, srv_closed);
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
    srv->last = s;
    if (srv->file_fd > 0) {
        CHECK_OK(csock_stream_write(s, "HEAD", 4));
        CHECK_OK(csock_stream_write_file(s, srv->file_fd, 0, srv->file_len, 0));
        CHECK_OK(csock_stream_write(s, "TAIL", 4)); /* must wait for the file */
        csock_stream_end(s, srv_closed);
        return;
    }
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
    int rc = csock_tls_ctx_new(&o, &srv->ctx, err, sizeof err);
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
        char *in = realloc(c->in, (c->in_len + len) * 2);
        if (!in) { /* the test's own memory (the allocation sweep): end plainly */
            c->end_status = -ENOMEM;
            csock_stream_close(s, cli_closed);
            return len;
        }
        c->in = in;
        c->in_cap = (c->in_len + len) * 2;
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
    int rc = csock_tls_ctx_new(&o, &ctx, err, sizeof err);
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

/* The closes finish when the kernel has completed the streams' requests
 * (io_uring): on a slow machine that takes longer than a hundred quick
 * turns (a software-emulated one left a handle open after them), so turn
 * for up to 10 s, resting a millisecond between turns. */
static void finish(csock_loop *loop)
{
    uint64_t end = h_now_ms() + 10000;
    while (csock_loop_run(loop, CSOCK_RUN_NOWAIT) > 0 && csock_loop_handles(loop) &&
           h_now_ms() < end)
        usleep(1000);
    assert_int_equal(csock_loop_free(loop), 0);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_echo_1mib(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(NULL, &loop));
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
    CHECK_OK(csock_loop_new(NULL, &loop));
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
    /* A close ends the wait too: under allocation faults a side may give up
     * with -ENOMEM, which the assertion below reports at once. */
    RUN_UNTIL(loop, c.nmsgs >= 200 || c.closed, 20000);
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
    CHECK_OK(csock_loop_new(NULL, &loop));
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
    CHECK_OK(csock_loop_new(NULL, &loop));
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

/* ---- a large file over TLS ------------------------------------------------------- */

/* The file: zeros (sparse), with each 64 KiB block's index at its start. */
#define BIG_FILE (64u << 20)
#define BLOCK (64u << 10)

static unsigned char file_byte(size_t off)
{
    size_t in = off % BLOCK;
    return in < sizeof(uint32_t) ? (unsigned char)((off / BLOCK) >> (8 * in)) : 0;
}

static int big_file(void)
{
    char path[] = "/tmp/csock-tls-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(ftruncate(fd, BIG_FILE), 0);
    for (uint32_t b = 0; b < BIG_FILE / BLOCK; b++)
        assert_int_equal(pwrite(fd, &b, sizeof b, (off_t)b * BLOCK), (ssize_t)sizeof b);
    return fd;
}

typedef struct file_reader {
    size_t got;   /* bytes of "HEAD" + file + "TAIL" checked so far */
    int bad, status, closed;
} file_reader;

static size_t cli_check_file(csock_stream *s, int status, const char *buf, size_t len)
{
    file_reader *r = csock_stream_data(s);
    for (size_t i = 0; i < len && !r->bad; i++, r->got++) {
        size_t at = r->got;
        unsigned char want = at < 4 ? (unsigned char)"HEAD"[at]
                             : at < 4 + BIG_FILE ? file_byte(at - 4)
                             : at < 8 + BIG_FILE ? (unsigned char)"TAIL"[at - 4 - BIG_FILE] : 0;
        if (at >= 8 + BIG_FILE || (unsigned char)buf[i] != want) r->bad = 1;
    }
    if (status != 0) {
        r->status = status;
        csock_stream_close(s, NULL);
        r->closed = 1;
    }
    return len;
}

static void cli_file_hs(csock_stream *s, int status)
{
    file_reader *r = csock_stream_data(s);
    r->status = status; /* the reader does not read yet: the server must stall */
}

/* Bytes this process has read by any read-like call (/proc/self/io rchar):
 * while the client reads nothing, that is what the server read of the file. */
static uint64_t rchar(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "rchar: %llu", &v) != 1) v = 0;
        fclose(f);
    }
    return v;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

static void tick(csock_timer *t) { (void)t; }

/* A client that does not read after its handshake, and a 5 ms ticker that
 * keeps each loop iteration short (*t: close it at the end). */
static csock_stream *idle_client(csock_loop *loop, server *srv, csock_tls_ctx *ctx,
                                 file_reader *r, csock_timer **t)
{
    csock_stream *cs;
    CHECK_OK(csock_tls_connect(loop, &srv->addr, ctx, NULL, cli_file_hs, r, &cs));
    CHECK_OK(csock_timer_new(loop, t));
    CHECK_OK(csock_timer_start(*t, tick, 5, 5));
    /* Bounded: a handshake that fails (the fault sweep's ENOMEM) ends the
     * wait as a failed check, not a hang. */
    uint64_t end = h_now_ms() + 20000;
    while ((r->status == 1 || !srv->last) && h_now_ms() < end) csock_loop_run(loop, CSOCK_RUN_ONCE);
    assert_int_equal(r->status, 0);
    assert_non_null(srv->last);
    return cs;
}

/* csock_stream_write_file on TLS reads and encrypts a piece at a time while
 * the raw queue is short: against a peer that does not read, the server
 * reads (and holds) a few MiB of a 64 MiB file, not all of it; once the peer
 * reads, all of it arrives intact, and a write made after it follows it. */
static void test_file_bounded(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(NULL, &loop));
    int fd = big_file();
    server srv = {.file_fd = fd, .file_len = BIG_FILE};
    server_start(&srv, loop, "server.pem", "server.key", NULL);
    csock_tls_ctx *ctx = client_ctx("ca.pem", NULL, NULL, NULL);
    file_reader r = {.status = 1};
    csock_timer *t;
    csock_stream *cs = idle_client(loop, &srv, ctx, &r, &t);
    /* Phase 1: the client reads nothing until the server has been stuck
     * for 50 iterations (at most 1.5 s: csock_stream_end() gives up on a
     * peer that takes nothing for 2 s). Reading /proc/self/io itself
     * counts a little. */
    uint64_t io0 = rchar(), last = io0;
    long rss0 = rss_kib();
    uint64_t until = csock_loop_now(loop) + 1500;
    for (int still = 0; still < 50 && csock_loop_now(loop) < until;) {
        csock_loop_run(loop, CSOCK_RUN_ONCE);
        uint64_t io = rchar();
        still = io - last < 4096 ? still + 1 : 0;
        last = io;
    }
    uint64_t read_ahead = last - io0;
    long grown = rss_kib() - rss0;
    print_message("stalled: %llu bytes of the file read, RSS +%ld KiB\n",
                  (unsigned long long)read_ahead, grown);
    assert_true(read_ahead < 24u << 20); /* the kernel's buffers and a little more */
    assert_true(grown < 24 * 1024);
    /* Phase 2: read it all. */
    CHECK_OK(csock_stream_read_start(cs, cli_check_file));
    while (!r.closed) csock_loop_run(loop, CSOCK_RUN_ONCE);
    assert_int_equal(r.bad, 0);
    assert_int_equal(r.status, CSOCK_EOF);
    assert_int_equal(r.got, 8 + (size_t)BIG_FILE);
    csock_timer_close(t, NULL);
    csock_tls_ctx_free(ctx);
    server_stop(&srv);
    finish(loop);
    close(fd);
}

/* Replies by reference over TLS pause reading like any write: a client
 * that sends requests and reads no answer gets a few of them answered, not
 * every one (the server's memory stays near its high watermark). */
static void test_write_ref_backpressure(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(NULL, &loop));
    server srv = {.ref_replies = 1};
    server_start(&srv, loop, "server.pem", "server.key", NULL);
    csock_tls_ctx *ctx = client_ctx("ca.pem", NULL, NULL, NULL);
    file_reader r = {.status = 1};
    csock_timer *t;
    csock_stream *cs = idle_client(loop, &srv, ctx, &r, &t);
    for (int i = 0; i < 2000; i++) { /* one request per iteration: one read each */
        CHECK_OK(csock_stream_write(cs, "?", 1));
        csock_loop_run(loop, CSOCK_RUN_NOWAIT);
        csock_loop_run(loop, CSOCK_RUN_NOWAIT);
    }
    print_message("answered %d of 2000, %zu bytes queued\n", srv.requests,
                  csock_stream_write_queue_size(srv.last));
    assert_true(srv.requests < 1000);
    assert_true(csock_stream_write_queue_size(srv.last) < 2u << 20);
    csock_stream_close(cs, NULL);
    csock_timer_close(t, NULL);
    csock_tls_ctx_free(ctx);
    server_stop(&srv);
    finish(loop);
}

static void test_alpn_and_info(void **state)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(NULL, &loop));
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
    CHECK_OK(csock_loop_new(NULL, &loop));
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
    CHECK_OK(csock_loop_new(NULL, &loop));
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
    CHECK_OK(csock_loop_new(NULL, &loop));
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
    assert_int_equal(csock_tls_ctx_new(&o, &ctx, err, sizeof err), -EINVAL);
    o.cert_file = "/nonexistent/c.pem";
    assert_int_equal(csock_tls_ctx_new(&o, &ctx, err, sizeof err), CSOCK_ETLS);
    assert_non_null(strstr(err, "No such file"));
    o.cert_file = cert("server.pem");
    o.key_file = cert("client.key");
    assert_int_equal(csock_tls_ctx_new(&o, &ctx, err, sizeof err), CSOCK_ETLS);
    assert_non_null(strstr(err, "does not match"));
    csock_tls_opts a = {.alpn = "h2,,x"};
    assert_int_equal(csock_tls_ctx_new(&a, &ctx, err, sizeof err), -EINVAL);
}

/* Setup errors say what is wrong with which file, in words (not OpenSSL's
 * "PEM lib" or "unsupported"). */
static void expect_ctx_error(const char *crt, const char *key, const char *want)
{
    csock_tls_ctx *ctx;
    char err[300];
    csock_tls_opts o = {.server = 1, .cert_file = crt, .key_file = key};
    assert_int_equal(csock_tls_ctx_new(&o, &ctx, err, sizeof err), CSOCK_ETLS);
    if (!strstr(err, want)) fail_msg("got \"%s\", want \"%s\"", err, want);
}

static void test_ctx_error_words(void **state)
{
    char want[700], enc[600], crt[600]; /* cert() reuses its buffers: keep copies */
    snprintf(crt, sizeof crt, "%s", cert("server.pem"));
    snprintf(want, sizeof want, "no private key in %s; pass --key", crt);
    expect_ctx_error(crt, NULL, want);
    snprintf(want, sizeof want, "no private key in %s", crt); /* --key given: no hint */
    expect_ctx_error(crt, crt, want);
    snprintf(want, sizeof want, "no certificate in %s (it holds a private key)", cert("server.key"));
    expect_ctx_error(cert("server.key"), cert("server.key"), want);
    snprintf(want, sizeof want, "key %s does not match certificate %s", cert("client.key"), crt);
    expect_ctx_error(crt, cert("client.key"), want);
    snprintf(want, sizeof want, "key %s/none.key: No such file or directory", certdir);
    expect_ctx_error(crt, cert("none.key"), want);
    snprintf(want, sizeof want, "certificate %s: Is a directory", certdir);
    expect_ctx_error(certdir, cert("server.key"), want);
    snprintf(enc, sizeof enc, "%s", cert("enc.key"));
    FILE *f = fopen(enc, "w");
    assert_non_null(f);
    fputs("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", f);
    fclose(f);
    snprintf(want, sizeof want, "key %s is encrypted", enc);
    expect_ctx_error(crt, enc, want);
}

/* ---- a TLS peer meeting a plain one ----------------------------------------------- */

enum { PLAIN_GREET, PLAIN_ECHO, PLAIN_CLOSE };

typedef struct plain {
    int mode;
    const char *send;     /* client: what to send */
    int closed;
} plain;

static void plain_closed(csock_stream *s)
{
    plain *p = csock_stream_data(s);
    p->closed = 1;
}

static size_t plain_read(csock_stream *s, int status, const char *buf, size_t len)
{
    plain *p = csock_stream_data(s);
    if (status == 0 && p->mode == PLAIN_ECHO) csock_stream_write(s, buf, len);
    if (status != 0) csock_stream_close(s, plain_closed);
    return len;
}

static void plain_accept(csock_listener *l, csock_stream *s, int status)
{
    plain *p = csock_listener_data(l);
    if (status < 0) return;
    csock_stream_set_data(s, p);
    if (p->mode == PLAIN_CLOSE) return (void)csock_stream_close(s, plain_closed);
    if (p->mode == PLAIN_GREET) CHECK_OK(csock_stream_write(s, "hello there\n", 12));
    CHECK_OK(csock_stream_read_start(s, plain_read));
}

/* A TLS client against a plain TCP server: the reason says the peer did
 * not speak TLS, instead of "wrong version number" or "unexpected message". */
static void client_meets_plain(int mode, const char *want)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(NULL, &loop));
    plain p = {.mode = mode};
    csock_listener *l;
    csock_addr a;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", 0, &a));
    CHECK_OK(csock_listen(loop, &a, NULL, plain_accept, &p, &l));
    CHECK_OK(csock_listener_addr(l, &a));
    snprintf(a.host, sizeof a.host, "localhost");
    a.scheme = CSOCK_TLS;
    client c = {0};
    csock_tls_ctx *ctx = client_ctx("ca.pem", NULL, NULL, NULL);
    client_start(&c, loop, ctx, &a);
    run_until(loop, &c.closed);
    /* A close the client sees while still writing its ClientHello (short
     * writes) is a reset or a broken pipe, not an end: either is told. */
    if (mode == PLAIN_CLOSE) assert_true(c.hs_status < 0);
    else assert_int_equal(c.hs_status, CSOCK_ETLS);
    if (!strstr(c.reason, want)) fail_msg("got \"%s\", want \"%s\"", c.reason, want);
    if (mode != PLAIN_CLOSE) run_until(loop, &p.closed);
    csock_tls_ctx_free(ctx);
    csock_listener_close(l, NULL);
    finish(loop);
}

static void test_client_meets_plain_greeting(void **state)
{
    /* Only the start: with short reads OpenSSL gives up after 5 bytes. */
    client_meets_plain(PLAIN_GREET, "the peer did not speak TLS (it sent \"hello");
}

static void test_client_meets_plain_echo(void **state)
{
    client_meets_plain(PLAIN_ECHO, "the peer did not speak TLS: it sent our ClientHello back");
}

static void test_client_meets_plain_close(void **state)
{
    client_meets_plain(PLAIN_CLOSE, "before the peer sent anything (is it a TLS server?)");
}

static void plain_connected(csock_stream *s, int status)
{
    plain *p = csock_stream_data(s);
    if (status < 0) return (void)(p->closed = 1);
    CHECK_OK(csock_stream_read_start(s, plain_read));
    CHECK_OK(csock_stream_write(s, p->send, strlen(p->send)));
    CHECK_OK(csock_stream_shutdown(s, NULL));
}

/* A plain client against a TLS server: the server's reason says so. */
static void plain_meets_server(const char *send, const char *want)
{
    csock_loop *loop;
    CHECK_OK(csock_loop_new(NULL, &loop));
    server srv = {0};
    server_start(&srv, loop, "server.pem", "server.key", NULL);
    srv.addr.scheme = CSOCK_TCP;
    plain p = {.send = send};
    csock_stream *s;
    CHECK_OK(csock_connect(loop, &srv.addr, NULL, plain_connected, &p, &s));
    run_until(loop, &p.closed);
    RUN_UNTIL(loop, srv.hs_failed, 10000);
    assert_int_equal(srv.hs_failed, 1);
    if (!strstr(srv.reason, want)) fail_msg("got \"%s\", want \"%s\"", srv.reason, want);
    server_stop(&srv);
    finish(loop);
}

static void test_plain_http_meets_server(void **state)
{
    plain_meets_server("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
                       "the client spoke plain HTTP, not TLS");
}

static void test_plain_text_meets_server(void **state)
{
    plain_meets_server("hi\n", "the client did not speak TLS (it sent \"hi\\n\")");
}

/* The getters answer "not TLS" for NULL, as the header says, instead of
 * dereferencing it. */
static void test_info_null(void **state)
{
    char buf[8];
    assert_int_equal(csock_tls_last_error(NULL, buf, sizeof buf), -EINVAL);
    assert_null(csock_tls_version(NULL));
    assert_null(csock_tls_cipher(NULL));
    assert_null(csock_tls_alpn(NULL));
    assert_int_equal(csock_tls_resumed(NULL), 0);
    assert_int_equal(csock_tls_is_tls(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_1mib),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_write_before_handshake),
        cmocka_unit_test(test_file_bounded),
        cmocka_unit_test(test_write_ref_backpressure),
        cmocka_unit_test(test_alpn_and_info),
        cmocka_unit_test(test_verify_selfsigned),
        cmocka_unit_test(test_verify_expired),
        cmocka_unit_test(test_verify_wronghost),
        cmocka_unit_test(test_verify_wrong_ip),
        cmocka_unit_test(test_verify_unknown_ca),
        cmocka_unit_test(test_ip_address_ok),
        cmocka_unit_test(test_client_cert),
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_ctx_error_words),
        cmocka_unit_test(test_info_null),
        cmocka_unit_test(test_client_meets_plain_greeting),
        cmocka_unit_test(test_client_meets_plain_echo),
        cmocka_unit_test(test_client_meets_plain_close),
        cmocka_unit_test(test_plain_http_meets_server),
        cmocka_unit_test(test_plain_text_meets_server),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
