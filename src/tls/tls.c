/* TLS over a csock stream: OpenSSL with two memory BIOs behind the stream's
 * filter hook (net_int.h). Raw bytes read by the stream go into `rbio`; what
 * OpenSSL writes to `wbio` is moved onto the stream's write queue, so the loop
 * keeps owning the socket and backpressure works on the encrypted bytes. */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "csock/tls.h"
#include "net/net_int.h"

#define DEFAULT_HS_TIMEOUT_MS 10000
#define CHUNK 16384         /* one TLS record of plaintext */
#define CONN_MAGIC 0x544c5331u

/* Mozilla "intermediate" (v5.7): TLS 1.2 AEAD suites with forward secrecy;
 * TLS 1.3 uses OpenSSL's default suites, which are the same three. */
static const char intermediate_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
static const char intermediate_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char intermediate_groups[] = "X25519:P-256:P-384";

struct csock_tls_ctx {
    SSL_CTX *ssl;
    atomic_int refs;          /* the creator + each wrapped stream */
    int server;
    int insecure;             /* client: no verification at all */
    uint64_t hs_timeout_ms;
    unsigned char *alpn;      /* ALPN list in wire format (length-prefixed), or NULL */
    unsigned alpn_len;
    csock_tls_sni_cb sni_cb;
    void *sni_arg;
};

typedef struct tls_conn {
    unsigned magic;           /* CONN_MAGIC: csock_tls_* can tell a TLS stream */
    SSL *ssl;
    BIO *rbio, *wbio;         /* network side: we fill rbio, we drain wbio */
    csock_tls_ctx *ctx;
    csock_stream *s;
    csock_stream_cb hs_cb;    /* pending handshake callback (NULL once called) */
    csock_timer *timer;       /* handshake timeout */
    char *pend;               /* application writes made during the handshake */
    size_t pend_len, pend_cap;
    unsigned busy;            /* inside one of our entry points: defer free */
    unsigned hs_done : 1;     /* handshake finished successfully */
    unsigned hs_failed : 1;   /* handshake failure reported */
    unsigned got_close : 1;   /* peer's close_notify received */
    unsigned sent_close : 1;  /* our close_notify queued */
    unsigned dead : 1;        /* the stream closed while we were busy */
    char alpn[64];            /* negotiated ALPN protocol, NUL-terminated */
    char reason[200];         /* last error, one line */
} tls_conn;

/* ---- errors ------------------------------------------------------------------------ */

static void errbuf(char *buf, size_t size, const char *fmt, const char *a, const char *b)
{
    if (buf && size) snprintf(buf, size, fmt, a, b);
}

/* The most telling OpenSSL reason in the thread's error queue ("" if none). */
static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "";
}

/* Record why the handshake or a record failed, as people read it. */
static void set_reason(tls_conn *c, int sslerr)
{
    long v = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_peek_last_error();
    if (v != X509_V_OK && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        snprintf(c->reason, sizeof c->reason, "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    } else if (e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(c->reason, sizeof c->reason, "%s", r ? r : "TLS protocol error");
    } else if (sslerr == SSL_ERROR_SYSCALL) {
        snprintf(c->reason, sizeof c->reason, "unexpected end of TLS input");
    } else {
        snprintf(c->reason, sizeof c->reason, "TLS error %d", sslerr);
    }
    ERR_clear_error();
}

/* ---- contexts ------------------------------------------------------------------------ */

/* "h2,http/1.1" -> "\x02h2\x08http/1.1". */
static int alpn_wire(const char *list, unsigned char **out, unsigned *outlen)
{
    size_t n = strlen(list);
    unsigned char *w = malloc(n + 1);
    if (!w) return -ENOMEM;
    size_t len = 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0 || l > 255) {
            free(w);
            return -EINVAL;
        }
        w[len++] = (unsigned char)l;
        memcpy(w + len, p, l);
        len += l;
        p += l + (e ? 1 : 0);
        if (e && !*p) {
            free(w);
            return -EINVAL;
        }
    }
    *out = w;
    *outlen = (unsigned)len;
    return 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    csock_tls_ctx *ctx = arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ctx->alpn, ctx->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    csock_tls_ctx *ctx = arg;
    tls_conn *c = SSL_get_app_data(ssl);
    if (!ctx->sni_cb || !c) return SSL_TLSEXT_ERR_OK;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    csock_tls_ctx *other = ctx->sni_cb(c->s, name, ctx->sni_arg);
    if (other && other != ctx && !SSL_set_SSL_CTX(ssl, other->ssl)) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* A readable file, or a one-line reason why not. */
static int check_file(const char *what, const char *path, char *err, size_t errsize)
{
    if (access(path, R_OK) == 0) return 0;
    errbuf(err, errsize, "%s: %s", path, strerror(errno));
    (void)what;
    return CSOCK_ETLS;
}

static int load_identity(csock_tls_ctx *ctx, const csock_tls_opts *o, char *err, size_t errsize)
{
    const char *key = o->key_file ? o->key_file : o->cert_file;
    int rc = check_file("cert", o->cert_file, err, errsize);
    if (rc == 0) rc = check_file("key", key, err, errsize);
    if (rc < 0) return rc;
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl, o->cert_file) != 1) {
        errbuf(err, errsize, "certificate %s: %s", o->cert_file, openssl_reason());
        return CSOCK_ETLS;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx->ssl, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            errbuf(err, errsize, "key %s does not match certificate %s", key, o->cert_file);
        else
            errbuf(err, errsize, "key %s: %s", key, openssl_reason());
        return CSOCK_ETLS;
    }
    if (SSL_CTX_check_private_key(ctx->ssl) != 1) {
        errbuf(err, errsize, "key %s does not match certificate %s", key, o->cert_file);
        return CSOCK_ETLS;
    }
    return 0;
}

static int load_ca(csock_tls_ctx *ctx, const char *ca, char *err, size_t errsize)
{
    int rc = check_file("ca", ca, err, errsize);
    if (rc < 0) return rc;
    if (SSL_CTX_load_verify_locations(ctx->ssl, ca, NULL) != 1) {
        errbuf(err, errsize, "CA file %s: %s", ca, openssl_reason());
        return CSOCK_ETLS;
    }
    return 0;
}

static int setup_defaults(csock_tls_ctx *ctx)
{
    SSL_CTX *s = ctx->ssl;
    if (!SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(s, intermediate_ciphers) ||
        !SSL_CTX_set_ciphersuites(s, intermediate_suites) ||
        !SSL_CTX_set1_groups_list(s, intermediate_groups))
        return CSOCK_ETLS;
    SSL_CTX_set_options(s, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* Idle connections give their record buffers back. */
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_dh_auto(s, 1);
    return 0;
}

static int setup_server(csock_tls_ctx *ctx, const csock_tls_opts *o, char *err, size_t errsize)
{
    if (!o->cert_file) {
        errbuf(err, errsize, "%s%s", "a TLS server needs a certificate and a key", "");
        return -EINVAL;
    }
    int rc = load_identity(ctx, o, err, errsize);
    if (rc < 0) return rc;
    static const unsigned char sid[] = "csock";
    SSL_CTX_set_session_id_context(ctx->ssl, sid, sizeof sid - 1);
    SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_num_tickets(ctx->ssl, 2);
    SSL_CTX_set_tlsext_servername_callback(ctx->ssl, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx->ssl, ctx);
    if (ctx->alpn) SSL_CTX_set_alpn_select_cb(ctx->ssl, alpn_select, ctx);
    if (o->verify_client) {
        if (!o->ca_file) {
            errbuf(err, errsize, "%s%s", "verifying client certificates needs a CA file", "");
            return -EINVAL;
        }
        if ((rc = load_ca(ctx, o->ca_file, err, errsize)) < 0) return rc;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
        if (names) SSL_CTX_set_client_CA_list(ctx->ssl, names);
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return 0;
}

static int setup_client(csock_tls_ctx *ctx, const csock_tls_opts *o, char *err, size_t errsize)
{
    int rc;
    if (o->cert_file && (rc = load_identity(ctx, o, err, errsize)) < 0) return rc;
    if (ctx->alpn && SSL_CTX_set_alpn_protos(ctx->ssl, ctx->alpn, ctx->alpn_len) != 0)
        return CSOCK_ETLS;
    if (o->insecure) {
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    if (o->ca_file) {
        if ((rc = load_ca(ctx, o->ca_file, err, errsize)) < 0) return rc;
    } else if (SSL_CTX_set_default_verify_paths(ctx->ssl) != 1) {
        errbuf(err, errsize, "system CA certificates: %s%s", openssl_reason(), "");
        return CSOCK_ETLS;
    }
    SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
    return 0;
}

int csock_tls_ctx_new(const csock_tls_opts *o, csock_tls_ctx **out, char *err, size_t errsize)
{
    static const csock_tls_opts none = {0};
    if (!o) o = &none;
    errbuf(err, errsize, "%s%s", "", "");
    csock_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return -ENOMEM;
    atomic_init(&ctx->refs, 1);
    ctx->server = o->server != 0;
    ctx->insecure = o->insecure != 0;
    ctx->hs_timeout_ms = o->handshake_timeout_ms ? o->handshake_timeout_ms : DEFAULT_HS_TIMEOUT_MS;
    int rc = 0;
    ERR_clear_error();
    if (o->alpn && (rc = alpn_wire(o->alpn, &ctx->alpn, &ctx->alpn_len)) < 0) {
        /* Only a malformed list is the caller's mistake; ENOMEM passes through. */
        if (rc == -EINVAL) errbuf(err, errsize, "bad ALPN list '%s'%s", o->alpn, "");
    }
    if (rc == 0) {
        ctx->ssl = SSL_CTX_new(ctx->server ? TLS_server_method() : TLS_client_method());
        rc = ctx->ssl ? setup_defaults(ctx) : -ENOMEM;
    }
    if (rc == 0)
        rc = ctx->server ? setup_server(ctx, o, err, errsize) : setup_client(ctx, o, err, errsize);
    if (rc < 0) {
        if (err && errsize && !err[0]) errbuf(err, errsize, "%s%s", csock_strerror(rc), "");
        ERR_clear_error();
        csock_tls_ctx_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

void csock_tls_ctx_free(csock_tls_ctx *ctx)
{
    if (!ctx || atomic_fetch_sub(&ctx->refs, 1) != 1) return;
    SSL_CTX_free(ctx->ssl);
    free(ctx->alpn);
    free(ctx);
}

void csock_tls_ctx_set_sni(csock_tls_ctx *ctx, csock_tls_sni_cb cb, void *arg)
{
    ctx->sni_cb = cb;
    ctx->sni_arg = arg;
}

void *csock_tls_ctx_ssl(csock_tls_ctx *ctx) { return ctx->ssl; }

/* ---- a connection: moving bytes ------------------------------------------------------ */

static tls_conn *conn_of(const csock_stream *s)
{
    tls_conn *c = csock__stream_filter_state(s);
    return c && c->magic == CONN_MAGIC ? c : NULL;
}

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
            set_reason(c, SSL_get_error(c->ssl, 0));
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
            set_reason(c, e);
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
        set_reason(c, e);
        return CSOCK_ETLS;
    }
}

/* ---- the filter -------------------------------------------------------------------- */

static int f_input(csock_stream *s, const char *raw, size_t len)
{
    tls_conn *c = conn_of(s);
    if (!c) return -EINVAL;
    if (c->got_close) return 0; /* nothing may follow close_notify */
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
        snprintf(c->reason, sizeof c->reason, "connection closed during the TLS handshake");
        enter(c);
        hs_fail(c, CSOCK_ETLS);
        leave(c);
        return CSOCK_ETLS;
    }
    snprintf(c->reason, sizeof c->reason, "connection closed without close_notify (truncated)");
    return CSOCK_ETLS;
}

static int f_write(csock_stream *s, const void *buf, size_t len)
{
    tls_conn *c = conn_of(s);
    if (!c) return -EINVAL;
    if (c->sent_close) return -EPIPE;
    if (!c->hs_done) { /* held until the handshake is done */
        if (c->pend_len + len > c->pend_cap) {
            size_t cap = c->pend_cap ? c->pend_cap : 4096;
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
    if (!c->reason[0]) snprintf(c->reason, sizeof c->reason, "%s", csock_strerror(status));
    enter(c);
    hs_fail(c, status == CSOCK_EOF ? CSOCK_ETLS : status);
    leave(c);
    return len;
}

static void on_hs_timeout(csock_timer *t)
{
    tls_conn *c = csock_timer_data(t);
    snprintf(c->reason, sizeof c->reason, "TLS handshake timed out");
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
    if (rc == 0) rc = csock_timer_new(csock_stream_loop(s), &c->timer);
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
    csock__stream_set_filter(s, &tls_filter, c);
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
            set_reason(c, e);
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

/* ---- inspection --------------------------------------------------------------------- */

int csock_tls_last_error(const csock_stream *s, char *buf, size_t size)
{
    tls_conn *c = s ? conn_of(s) : NULL;
    if (!c) return -EINVAL;
    if (buf && size) snprintf(buf, size, "%s", c->reason);
    return (int)strlen(c->reason);
}

const char *csock_tls_version(const csock_stream *s)
{
    tls_conn *c = conn_of(s);
    return c ? SSL_get_version(c->ssl) : NULL;
}

const char *csock_tls_cipher(const csock_stream *s)
{
    tls_conn *c = conn_of(s);
    return c ? SSL_get_cipher_name(c->ssl) : NULL;
}

const char *csock_tls_alpn(const csock_stream *s)
{
    tls_conn *c = conn_of(s);
    return c && c->alpn[0] ? c->alpn : NULL;
}

int csock_tls_resumed(const csock_stream *s)
{
    tls_conn *c = conn_of(s);
    return c ? SSL_session_reused(c->ssl) : 0;
}

int csock_tls_is_tls(const csock_stream *s) { return conn_of(s) != NULL; }
