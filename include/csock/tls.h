/* TLS over a csock stream (OpenSSL, memory BIOs).
 *
 * A TLS stream is an ordinary csock_stream: once the handshake callback has
 * reported 0, csock_stream_read_start/read_framed/write/shutdown/end/close
 * behave as on TCP (same framing, same backpressure by watermarks), with
 * plaintext on the application side. The loop keeps owning the socket; OpenSSL
 * only ever sees memory buffers.
 *
 * Safe defaults: TLS 1.2 and 1.3 only, Mozilla "intermediate" ciphers, no
 * renegotiation, no compression. A client verifies the server's certificate
 * (system CAs, or ca_file) and its host name or IP address; only `insecure`
 * skips that. Errors are CSOCK_ETLS with a one-line reason from
 * csock_tls_last_error(); a handshake timeout is -ETIMEDOUT.
 */
#ifndef CSOCK_TLS_H
#define CSOCK_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "csock/net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csock_tls_ctx csock_tls_ctx;

/* Options for csock_tls_ctx_new(). Strings are read during the call only. */
typedef struct csock_tls_opts {
    int server;              /* 1: accept TLS (cert_file and key_file required); 0: connect */
    const char *cert_file;   /* PEM certificate chain: the server's, or a client certificate */
    const char *key_file;    /* PEM private key for cert_file (NULL: read from cert_file) */
    const char *ca_file;     /* PEM CAs to verify the peer with (client: instead of the
                                system CAs; server: needed by verify_client) */
    const char *alpn;        /* comma-separated ALPN protocols ("h2,http/1.1"), or NULL */
    int insecure;            /* client: do not verify the server's certificate or name */
    int verify_client;       /* server: require a client certificate signed by ca_file */
    uint64_t handshake_timeout_ms; /* 0: 10 seconds */
} csock_tls_opts;

/* Make a TLS context (an OpenSSL SSL_CTX with csock's defaults). Returns 0
 * and sets *out, or CSOCK_ETLS / -EINVAL / -ENOMEM; when `err` is not NULL
 * it receives a one-line reason ("key_file k.pem: No such file or directory").
 * A context may be shared by any number of streams, on any number of loops
 * and threads: it is immutable once made (set the SNI callback before use). */
int csock_tls_ctx_new(const csock_tls_opts *opts, csock_tls_ctx **out, char *err, size_t errsize);

/* Drop the caller's reference. Streams wrapped with the context hold their
 * own reference, so it may be freed while they are still open. NULL is ok. */
void csock_tls_ctx_free(csock_tls_ctx *ctx);

/* Server name indication (servers): called during the handshake with the
 * name the client asked for (NULL if none). Return the context to continue
 * with (its certificate is used), or NULL to keep the current one. Runs on
 * the loop's thread of the connection; must not block. */
typedef csock_tls_ctx *(*csock_tls_sni_cb)(csock_stream *s, const char *name, void *arg);
void csock_tls_ctx_set_sni(csock_tls_ctx *ctx, csock_tls_sni_cb cb, void *arg);

/* The underlying SSL_CTX (an SSL_CTX *), for settings csock does not offer. */
void *csock_tls_ctx_ssl(csock_tls_ctx *ctx);

/* Put TLS on a connected (or accepted) stream that is not reading yet. `host`
 * (clients only) is the name or IP address to verify and, for a name, to
 * send as SNI; NULL on a server. `cb` runs once: 0 when the handshake is
 * done (start reading now), or CSOCK_ETLS / -ETIMEDOUT / -errno; after a
 * failure the stream is closed by csock right after `cb` returns (call
 * csock_stream_close(s, your_cb) inside `cb` to get a close callback).
 * Writes made before the handshake completes are held and sent after it;
 * call shutdown/end only after `cb` has reported 0. Returns 0, or an error
 * (the stream is untouched then). */
int csock_tls_wrap(csock_stream *s, csock_tls_ctx *ctx, const char *host, csock_stream_cb cb);

/* Connect to `addr` (tls://, or tcp://) and run the client handshake, with
 * addr->host as the name to verify. `cb` runs once, as for csock_tls_wrap()
 * (a TCP connect error is reported the same way). `data` goes into the
 * stream's data slot. Returns 0 and sets *out, or an error. */
int csock_tls_connect(csock_loop *loop, const csock_addr *addr, csock_tls_ctx *ctx,
                      const csock_connect_opts *opts, csock_stream_cb cb, void *data,
                      csock_stream **out);

/* The listener helper: call from a csock_listen() accept callback on a
 * listener serving TLS. Same as csock_tls_wrap(s, ctx, NULL, cb). */
int csock_tls_accept(csock_stream *s, csock_tls_ctx *ctx, csock_stream_cb cb);

/* A one-line reason for the last TLS failure on `s` ("certificate verify
 * failed: certificate has expired", "wrong version number", "handshake timed
 * out"), copied into buf. Returns its length (0: no TLS error recorded), or
 * -EINVAL when `s` is not a TLS stream. Valid until the stream is closed:
 * call it from the handshake or read callback that got the error. */
int csock_tls_last_error(const csock_stream *s, char *buf, size_t size);

/* After the handshake: the protocol version ("TLSv1.3"), the cipher, the
 * ALPN protocol chosen (NULL: none) and whether the session was resumed.
 * Static or stream-owned strings, NULL when `s` is not a TLS stream. */
const char *csock_tls_version(const csock_stream *s);
const char *csock_tls_cipher(const csock_stream *s);
const char *csock_tls_alpn(const csock_stream *s);
int csock_tls_resumed(const csock_stream *s);

/* 1 when `s` runs TLS (csock_tls_wrap() was called on it). */
int csock_tls_is_tls(const csock_stream *s);

#ifdef __cplusplus
}
#endif
#endif
