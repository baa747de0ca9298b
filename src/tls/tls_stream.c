/* TLS over a csock stream: OpenSSL with two memory BIOs behind the stream's
 * filter hook (net_int.h). Raw bytes read by the stream go into `rbio`; what
 * OpenSSL writes to `wbio` is moved onto the stream's write queue, so the loop
 * keeps owning the socket and backpressure works on the encrypted bytes. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/tls_int.h"

/* Plaintext written before the handshake is done is held in a buffer that
 * starts at this size (a request or a greeting) and doubles. */
#define PEND_FIRST_CAP 4096

/* ---- a connection: moving bytes ------------------------------------------------------ */

static void conn_destroy(tls_conn *c)
{
    if (c->timer) csock_timer_close(c->timer, NULL);
    SSL_free(c->ssl); /* frees both BIOs */
    free(c->pend);
    csock_tls_ctx_free(c->ctx);
    c->magic = 0;
    free(c);
}

/* Every entry point brackets its work with enter/leave: a callback we call
 * may close the stream, which frees the filter; the free waits for us. */
static void enter(tls_conn *c) { c->busy++; }
static int leave(tls_conn *c)
{
    if (--c->busy == 0 && c->dead) {
        conn_destroy(c);
        return 1;
    }
    return c->dead;
}

/* Move what OpenSSL wrote (handshake messages, records, alerts) to the
 * stream's write queue. */
static int flush_out(tls_conn *c)
{
    char buf[CHUNK];
    int n;
    while ((n = BIO_read(c->wbio, buf, sizeof buf)) > 0) {
        int rc = csock__stream_queue_raw(c->s, buf, (size_t)n);
        if (rc < 0) return rc;
    }
    return 0;
}

static int encrypt(tls_conn *c, const char *buf, size_t len)
{
    while (len) {
        size_t n = len < CHUNK ? len : CHUNK, done = 0;
        ERR_clear_error();
        if (SSL_write_ex(c->ssl, buf, n, &done) != 1) {
            csock__tls_set_reason(c, SSL_get_error(c->ssl, 0));
            return CSOCK_ETLS;
        }
        int rc = flush_out(c);
        if (rc < 0) return rc;
        buf += done;
        len -= done;
    }
    return 0;
}

static void hs_timer_stop(tls_conn *c)
{
    if (c->timer) csock_timer_stop(c->timer);
}

/* Report a failed handshake once, then close the stream (the alert we may
 * owe the peer is sent first, if the socket takes it now). */
static void hs_fail(tls_conn *c, int err)
{
    if (c->hs_failed || c->dead) return;
    c->hs_failed = 1;
    hs_timer_stop(c);
    csock_stream *s = c->s;
    flush_out(c);
    csock__stream_flush(s);
    csock_stream_cb cb = c->hs_cb;
    c->hs_cb = NULL;
    if (cb && !c->dead) cb(s, err);
    csock_stream_close(s, NULL); /* a no-op if cb closed it */
}

static void hs_succeed(tls_conn *c)
{
    c->hs_done = 1;
    hs_timer_stop(c);
    const unsigned char *p;
    unsigned plen;
    SSL_get0_alpn_selected(c->ssl, &p, &plen);
    if (plen && plen < sizeof c->alpn) {
        memcpy(c->alpn, p, plen);
        c->alpn[plen] = '\0';
    }
    /* Our handshake reader steps aside: the application's read_start takes over. */
    csock_stream_read_stop(c->s);
    if (c->pend_len) {
        int rc = encrypt(c, c->pend, c->pend_len);
        free(c->pend);
        c->pend = NULL;
        c->pend_len = c->pend_cap = 0;
        if (rc < 0) {
            csock__stream_fail(c->s, rc);
            return;
        }
    }
    csock_stream_cb cb = c->hs_cb;
    c->hs_cb = NULL;
    if (cb) cb(c->s, 0);
    if (!c->dead) csock__stream_flush(c->s);
}

/* Drive the handshake, then decrypt everything that is complete. Returns 0,
 * CSOCK_EOF (close_notify received) or an error for the stream. */
static int pump(tls_conn *c)
{
    if (!c->hs_done) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        int rc = flush_out(c);
        if (rc < 0) return rc;
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
            csock__tls_set_reason(c, e);
            hs_fail(c, CSOCK_ETLS);
            return 0;
        }
        hs_succeed(c);
        if (c->dead || !c->hs_done) return 0;
    }
    char buf[CHUNK];
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(c->ssl, buf, sizeof buf, &n);
        if (r == 1) {
            int rc = csock__stream_input(c->s, buf, n);
            if (rc < 0) return rc;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        int rc = flush_out(c); /* key updates, alerts */
        if (rc < 0) return rc;
        if (e == SSL_ERROR_WANT_READ) return 0;
        if (e == SSL_ERROR_ZERO_RETURN) {
            c->got_close = 1;
            return CSOCK_EOF;
        }
        csock__tls_set_reason(c, e);
        return CSOCK_ETLS;
    }
}

/* ---- the filter -------------------------------------------------------------------- */

static int f_input(csock_stream *s, const char *raw, size_t len)
{
    tls_conn *c = conn_of(s);
    if (!c) return -EINVAL;
    if (c->got_close) return 0; /* nothing may follow close_notify */
    if (!c->hs_done) csock__tls_peek(c, raw, len);
    if (BIO_write(c->rbio, raw, (int)len) != (int)len) return -ENOMEM;
    enter(c);
    int rc = pump(c);
    if (leave(c)) return 0;
    return rc;
}

static int f_eof(csock_stream *s)
{
    tls_conn *c = conn_of(s);
    if (!c) return CSOCK_EOF;
    if (c->got_close) return CSOCK_EOF;
    if (!c->hs_done) {
        csock__tls_eof_reason(c);
        enter(c);
        hs_fail(c, CSOCK_ETLS);
        leave(c);
        return CSOCK_ETLS;
    }
    csock__tls_eof_reason(c);
    return CSOCK_ETLS;
}

static int f_write(csock_stream *s, const void *buf, size_t len)
{
    tls_conn *c = conn_of(s);
    if (!c) return -EINVAL;
    if (c->sent_close) return -EPIPE;
    if (!c->hs_done) { /* held until the handshake is done */
        if (c->pend_len + len > c->pend_cap) {
            size_t cap = c->pend_cap ? c->pend_cap : PEND_FIRST_CAP;
            while (cap < c->pend_len + len) cap *= 2;
            char *p = realloc(c->pend, cap);
            if (!p) return -ENOMEM;
            c->pend = p;
            c->pend_cap = cap;
        }
        memcpy(c->pend + c->pend_len, buf, len);
        c->pend_len += len;
        return 0;
    }
    int rc = encrypt(c, buf, len);
    if (rc == CSOCK_ETLS) csock__stream_fail(s, rc);
    return rc;
}

static void f_shutdown(csock_stream *s)
{
    tls_conn *c = conn_of(s);
    if (!c || !c->hs_done || c->sent_close) return;
    c->sent_close = 1;
    ERR_clear_error();
    SSL_shutdown(c->ssl); /* queues close_notify; we do not wait for the peer's */
    ERR_clear_error();
    int rc = flush_out(c);
    if (rc < 0) csock__stream_fail(s, rc); /* a close_notify lost would read as truncation */
}

static void f_free(csock_stream *s)
{
    tls_conn *c = conn_of(s);
    csock__stream_set_filter(s, NULL, NULL);
    if (!c) return;
    c->dead = 1;
    if (!c->busy) conn_destroy(c);
}

/* Before the handshake is done, f_write() only collects plaintext. */
static int f_ready(csock_stream *s)
{
    tls_conn *c = conn_of(s);
    return c && c->hs_done;
}

static const csock__filter tls_filter = {
    .input = f_input,
    .eof = f_eof,
    .write = f_write,
    .shutdown = f_shutdown,
    .free = f_free,
    .ready = f_ready,
};

/* ---- wrapping a stream ------------------------------------------------------------- */

/* During the handshake the stream reads for us; errors the stream itself
 * finds (a reset) end the handshake. No plaintext can arrive before it. */
static size_t hs_read(csock_stream *s, int status, const char *buf, size_t len)
{
    tls_conn *c = conn_of(s);
    if (!c || status == 0) return 0;
    if (!c->reason[0]) csock__tls_stream_error_reason(c, status);
    enter(c);
    hs_fail(c, status == CSOCK_EOF ? CSOCK_ETLS : status);
    leave(c);
    return len;
}

static void on_hs_timeout(csock_timer *t)
{
    tls_conn *c = csock_timer_data(t);
    csock__tls_timeout_reason(c);
    enter(c);
    hs_fail(c, -ETIMEDOUT);
    leave(c);
}

static int is_ip(const char *host)
{
    unsigned char b[16];
    return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

static int setup_peer_name(tls_conn *c, const char *host)
{
    if (!host || !*host) return c->ctx->insecure ? 0 : -EINVAL;
    if (is_ip(host)) { /* no SNI for addresses (RFC 6066) */
        if (!c->ctx->insecure && !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host))
            return -EINVAL;
        return 0;
    }
    if (!SSL_set_tlsext_host_name(c->ssl, host)) return -EINVAL;
    if (!c->ctx->insecure && !SSL_set1_host(c->ssl, host)) return -EINVAL;
    SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return 0;
}

static tls_conn *conn_new(csock_stream *s, csock_tls_ctx *ctx)
{
    tls_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->magic = CONN_MAGIC;
    c->s = s;
    c->ssl = SSL_new(ctx->ssl);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        free(c);
        return NULL;
    }
    BIO_set_mem_eof_return(c->rbio, -1); /* empty means "want more", not EOF */
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_app_data(c->ssl, c);
    atomic_fetch_add(&ctx->refs, 1);
    c->ctx = ctx;
    return c;
}

int csock_tls_wrap(csock_stream *s, csock_tls_ctx *ctx, const char *host, csock_stream_cb cb)
{
    if (!s || !ctx || !cb || csock__stream_filter_state(s)) return -EINVAL;
    tls_conn *c = conn_new(s, ctx);
    if (!c) return -ENOMEM;
    int rc = ctx->server ? 0 : setup_peer_name(c, host);
    if (rc == 0) rc = csock__timer_new_internal(csock_stream_loop(s), &c->timer);
    if (rc < 0) {
        conn_destroy(c);
        return rc;
    }
    csock_timer_set_data(c->timer, c);
    c->hs_cb = cb;
    if (ctx->server)
        SSL_set_accept_state(c->ssl);
    else
        SSL_set_connect_state(c->ssl);
    rc = csock_stream_read_start(s, hs_read);
    if (rc < 0) {
        conn_destroy(c);
        return rc;
    }
    rc = csock__stream_set_filter(s, &tls_filter, c);
    if (rc < 0) {
        csock_stream_read_stop(s);
        conn_destroy(c);
        return rc;
    }
    csock_timer_start(c->timer, on_hs_timeout, ctx->hs_timeout_ms, 0);
    if (!ctx->server) { /* the ClientHello */
        enter(c);
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        int e = SSL_get_error(c->ssl, r);
        /* The ClientHello has left OpenSSL's BIO: if the stream cannot queue
         * it, it is gone, and the handshake would wait for an answer that
         * cannot come. Fail the stream instead (reported through hs_read). */
        int frc = flush_out(c);
        if (frc < 0) {
            csock__stream_fail(s, frc);
        } else if (e != SSL_ERROR_WANT_READ) {
            csock__tls_set_reason(c, e);
            csock__stream_fail(s, CSOCK_ETLS); /* reported through hs_read */
        } else {
            csock__stream_flush(s);
        }
        leave(c);
    }
    return 0;
}

int csock_tls_accept(csock_stream *s, csock_tls_ctx *ctx, csock_stream_cb cb)
{
    if (!ctx || !ctx->server) return -EINVAL;
    return csock_tls_wrap(s, ctx, NULL, cb);
}

/* csock_tls_connect(): TLS goes on the stream while TCP is still connecting
 * (the ClientHello waits in the write queue), so writes made right away are
 * held as plaintext until the handshake is done, never sent in the clear. */
static void on_tcp_connected(csock_stream *s, int status)
{
    tls_conn *c = conn_of(s);
    if (status == 0 || !c) return; /* the handshake goes on */
    c->hs_failed = 1;
    hs_timer_stop(c);
    csock_stream_cb cb = c->hs_cb;
    c->hs_cb = NULL;
    if (cb) cb(s, status); /* csock_connect() closes the stream after this */
}

int csock_tls_connect(csock_loop *loop, const csock_addr *addr, csock_tls_ctx *ctx,
                      const csock_connect_opts *opts, csock_stream_cb cb, void *data,
                      csock_stream **out)
{
    if (!addr || !ctx || !cb || ctx->server) return -EINVAL;
    if (addr->scheme != CSOCK_TLS && addr->scheme != CSOCK_TCP) return CSOCK_ESCHEME;
    if (!addr->host[0] && !ctx->insecure) return -EINVAL; /* nothing to verify against */
    csock_addr tcp = *addr;
    tcp.scheme = CSOCK_TCP;
    csock_stream *s;
    int rc = csock_connect(loop, &tcp, opts, on_tcp_connected, data, &s);
    if (rc < 0) return rc;
    rc = csock_tls_wrap(s, ctx, addr->host, cb);
    if (rc < 0) {
        csock_stream_close(s, NULL);
        return rc;
    }
    *out = s;
    return 0;
}
