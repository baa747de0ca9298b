/* Making TLS contexts: csock's defaults (versions, ciphers, groups), the
 * certificate and key, the CAs to verify with, ALPN and SNI. Setup errors
 * are put in words in the caller's err buffer. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/tls_int.h"

/* csock_tls_opts.handshake_timeout_ms 0 (csock/tls.h): a handshake takes
 * a few round trips; 10 s covers a slow network, and a peer that sends
 * nothing (or speaks no TLS) does not hold a connection longer. */
#define DEFAULT_HS_TIMEOUT_MS 10000
/* An ALPN protocol name is length-prefixed by one byte (RFC 7301). */
#define ALPN_NAME_MAX 255
/* Session tickets sent after a TLS 1.3 handshake: OpenSSL's default, so a
 * client can open two resumed connections at once (tickets are meant for
 * one use each, RFC 8446 appendix C.4). */
#define SESSION_TICKETS 2

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
        if (l == 0 || l > ALPN_NAME_MAX) {
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

/* PEM files are small (a chain of a few certificates is a few KiB): the
 * label scan stops after this much of a file that is no such thing. */
#define PEM_SCAN_MAX (1024 * 1024)
/* Longer than any PEM line (64 characters, or a label with its dashes); a
 * longer line is read in pieces, which a label at its start survives. */
#define PEM_LINE_MAX 256

/* A readable regular file, or a one-line reason why not, with its path.
 * (A directory opens fine but reads as EISDIR later: say so now.) */
static int check_file(const char *what, const char *path, char *err, size_t errsize)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    int e = fd < 0 ? errno : fstat(fd, &sb) < 0 ? errno : S_ISDIR(sb.st_mode) ? EISDIR : 0;
    if (fd >= 0) close(fd);
    if (e == 0) return 0;
    if (err && errsize) snprintf(err, errsize, "%s %s: %s", what, path, strerror(e));
    return CSOCK_ETLS;
}

/* Does the PEM file at `path` hold `label` ("-----BEGIN CERTIFICATE")? 1,
 * 0, or -1 when it cannot be read (OpenSSL's own error then says more).
 * OpenSSL only says "PEM lib" or "unsupported" for a file without the
 * block it looked for, so the words come from looking ourselves. Labels
 * start their line; lines are 64 characters of base64 (RFC 7468). */
static int pem_has(const char *path, const char *label)
{
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    char line[PEM_LINE_MAX];
    size_t seen = 0;
    int has = 0;
    while (!has && seen < PEM_SCAN_MAX && fgets(line, sizeof line, f)) {
        seen += strlen(line);
        has = strstr(line, label) != NULL;
    }
    fclose(f);
    return has;
}

/* Never prompt for a passphrase on the terminal from inside a library:
 * an encrypted key fails to load instead (said in words by load_key). */
static int no_passphrase(char *buf, int size, int rwflag, void *u) { return 0; }

static int load_cert(csock_tls_ctx *ctx, const char *cert, char *err, size_t errsize)
{
    if (pem_has(cert, "-----BEGIN CERTIFICATE") == 0 &&
        pem_has(cert, "-----BEGIN TRUSTED CERTIFICATE") == 0) {
        errbuf(err, errsize, "no certificate in %s%s", cert,
               pem_has(cert, "PRIVATE KEY-----") == 1 ? " (it holds a private key)" : "");
        return CSOCK_ETLS;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl, cert) != 1) {
        errbuf(err, errsize, "certificate %s: %s", cert, openssl_reason());
        return CSOCK_ETLS;
    }
    return 0;
}

/* `key` is key_file, or cert_file when key_file is NULL (`in_cert`). */
static int load_key(csock_tls_ctx *ctx, const char *key, const char *cert, int in_cert, char *err,
                    size_t errsize)
{
    if (pem_has(key, "PRIVATE KEY-----") == 0) {
        errbuf(err, errsize, "no private key in %s%s", key, in_cert ? "; pass --key" : "");
        return CSOCK_ETLS;
    }
    if (pem_has(key, "ENCRYPTED") == 1) {
        errbuf(err, errsize, "key %s is encrypted: csock needs it without a passphrase%s", key, "");
        return CSOCK_ETLS;
    }
    SSL_CTX_set_default_passwd_cb(ctx->ssl, no_passphrase);
    if (SSL_CTX_use_PrivateKey_file(ctx->ssl, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            errbuf(err, errsize, "key %s does not match certificate %s", key, cert);
        else
            errbuf(err, errsize, "key %s: %s", key, openssl_reason());
        return CSOCK_ETLS;
    }
    if (SSL_CTX_check_private_key(ctx->ssl) != 1) {
        errbuf(err, errsize, "key %s does not match certificate %s", key, cert);
        return CSOCK_ETLS;
    }
    return 0;
}

static int load_identity(csock_tls_ctx *ctx, const csock_tls_opts *o, char *err, size_t errsize)
{
    const char *key = o->key_file ? o->key_file : o->cert_file;
    int rc = check_file("certificate", o->cert_file, err, errsize);
    if (rc == 0) rc = check_file("key", key, err, errsize);
    if (rc == 0) rc = load_cert(ctx, o->cert_file, err, errsize);
    if (rc == 0) rc = load_key(ctx, key, o->cert_file, !o->key_file, err, errsize);
    return rc;
}

static int load_ca(csock_tls_ctx *ctx, const char *ca, char *err, size_t errsize)
{
    int rc = check_file("CA file", ca, err, errsize);
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
    SSL_CTX_set_num_tickets(ctx->ssl, SESSION_TICKETS);
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
