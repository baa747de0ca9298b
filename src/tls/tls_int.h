/* Private to TLS (src/tls/tls_*.c): a context, a connection's state, and
 * how a stream's filter state is recognised as ours. Who does what:
 * tls_ctx.c making contexts (defaults, certificates, keys, CAs, ALPN, SNI);
 * tls_stream.c the stream filter, the handshake and wrapping a stream;
 * tls_reason.c why a connection failed, in words; tls_info.c what a TLS
 * stream tells about itself afterwards. */
#ifndef CSOCK_TLS_INT_H
#define CSOCK_TLS_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "csock/tls.h"
#include "net/net_int.h"

/* The most plaintext one TLS record carries (2^14, RFC 8446 section 5.1):
 * writes are encrypted and records read in pieces of this size. */
#define CHUNK 16384
/* Negotiated ALPN names longer than this are not kept (csock_tls_alpn()
 * says none): real ones ("h2", "http/1.1", "acme-tls/1") are short. */
#define ALPN_KEEP 64
/* One line of reason; the longest we make, with a quoted peer greeting,
 * is under 120 characters. */
#define REASON_MAX 200
/* Enough of the peer's first bytes to tell a TLS record from plain text
 * and to quote the start of a greeting or a request line. */
#define PEEK_BYTES 16
#define CONN_MAGIC 0x544c5331u

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
    unsigned char peek_len;
    unsigned char peek[PEEK_BYTES]; /* the peer's first bytes: do they look like TLS? */
    char alpn[ALPN_KEEP];     /* negotiated ALPN protocol, NUL-terminated */
    char reason[REASON_MAX];  /* last error, one line */
} tls_conn;

/* The TLS state of `s`, or NULL when `s` is NULL or does not run TLS: the
 * magic tells our filter state from another filter's. */
static inline tls_conn *conn_of(const csock_stream *s)
{
    tls_conn *c = s ? csock__stream_filter_state(s) : NULL;
    return c && c->magic == CONN_MAGIC ? c : NULL;
}

/* tls_reason.c: c->reason in words */
void csock__tls_peek(tls_conn *c, const char *raw, size_t len);
void csock__tls_set_reason(tls_conn *c, int sslerr);
void csock__tls_eof_reason(tls_conn *c);
void csock__tls_timeout_reason(tls_conn *c);
void csock__tls_stream_error_reason(tls_conn *c, int status);

#endif
