/* Why a TLS connection failed, in words people can act on (kept in
 * tls_conn.reason for csock_tls_last_error()). OpenSSL's reasons are kept
 * where they are clear ("certificate verify failed: ..."); the classic
 * mistake of a TLS peer talking to a plain one, which OpenSSL reports as
 * "wrong version number", "packet length too long", "http request" or
 * "unexpected message", is told from the first bytes the peer sent. */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/tls_int.h"

/* TLS record content types (RFC 8446 section 5.1): change_cipher_spec (20)
 * to heartbeat (24). Every TLS record starts with one, then version 3.x. */
#define RECORD_TYPE_FIRST 0x14
#define RECORD_TYPE_LAST 0x18
#define RECORD_HANDSHAKE 0x16
#define RECORD_HEADER 5          /* type, version (2), length (2) */
#define HS_CLIENT_HELLO 0x01     /* the first handshake message type after the header */

void csock__tls_peek(tls_conn *c, const char *raw, size_t len)
{
    size_t room = sizeof c->peek - c->peek_len;
    size_t n = len < room ? len : room;
    memcpy(c->peek + c->peek_len, raw, n);
    c->peek_len += (unsigned char)n;
}

/* The peer's first bytes, quoted: printable ASCII as is, the rest escaped. */
static void quote(const tls_conn *c, char *out, size_t size)
{
    size_t w = 0;
    for (unsigned i = 0; i < c->peek_len && w + 5 < size; i++) {
        unsigned char b = c->peek[i];
        if (b == '\r' || b == '\n')
            w += (size_t)snprintf(out + w, size - w, "\\%c", b == '\r' ? 'r' : 'n');
        else if (b >= 0x20 && b < 0x7f && b != '"' && b != '\\')
            out[w++] = (char)b;
        else
            w += (size_t)snprintf(out + w, size - w, "\\x%02x", b);
    }
    out[w] = 0;
}

/* A request line's start: an upper-case method and a space ("GET /"). */
static int looks_like_http(const tls_conn *c)
{
    unsigned i = 0;
    while (i < c->peek_len && c->peek[i] >= 'A' && c->peek[i] <= 'Z') i++;
    return i >= 3 && i < c->peek_len && c->peek[i] == ' ';
}

/* If the peer's first bytes show it does not speak TLS, say so in
 * c->reason and return 1. A first byte with the high bit set may be an
 * SSLv2-style ClientHello: not claimed. */
static int not_tls(tls_conn *c)
{
    if (c->hs_done || c->peek_len == 0) return 0;
    const unsigned char *p = c->peek;
    int record = p[0] >= RECORD_TYPE_FIRST && p[0] <= RECORD_TYPE_LAST &&
                 (c->peek_len < 2 || p[1] == 3);
    if (record || (p[0] & 0x80)) {
        /* A plain echo service returns our ClientHello, which OpenSSL reads
         * as an "unexpected message". */
        if (c->ctx->server || p[0] != RECORD_HANDSHAKE || c->peek_len <= RECORD_HEADER ||
            p[RECORD_HEADER] != HS_CLIENT_HELLO)
            return 0;
        snprintf(c->reason, sizeof c->reason,
                 "the peer did not speak TLS: it sent our ClientHello back (an echo service?)");
        return 1;
    }
    if (c->ctx->server && looks_like_http(c)) {
        snprintf(c->reason, sizeof c->reason, "the client spoke plain HTTP, not TLS");
        return 1;
    }
    char q[sizeof c->peek * 4 + 1];
    quote(c, q, sizeof q);
    snprintf(c->reason, sizeof c->reason, "the %s did not speak TLS (it sent \"%s\")",
             c->ctx->server ? "client" : "peer", q);
    return 1;
}

void csock__tls_set_reason(tls_conn *c, int sslerr)
{
    long v = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_peek_last_error();
    if (not_tls(c)) {
        /* said above */
    } else if (v != X509_V_OK && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
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

void csock__tls_eof_reason(tls_conn *c)
{
    if (c->hs_done)
        snprintf(c->reason, sizeof c->reason, "connection closed without close_notify (truncated)");
    else if (not_tls(c))
        return;
    else if (c->peek_len == 0 && !c->ctx->server)
        snprintf(c->reason, sizeof c->reason,
                 "connection closed during the TLS handshake, before the peer sent anything "
                 "(is it a TLS server?)");
    else
        snprintf(c->reason, sizeof c->reason, "connection closed during the TLS handshake");
}

/* The stream failed during the handshake (a reset, a broken pipe): a plain
 * server that closes on our ClientHello is the usual cause when it never
 * sent a byte. */
void csock__tls_stream_error_reason(tls_conn *c, int status)
{
    if (c->peek_len == 0 && !c->ctx->server && !c->hs_done)
        snprintf(c->reason, sizeof c->reason,
                 "%s during the TLS handshake, before the peer sent anything (is it a TLS server?)",
                 csock_strerror(status));
    else
        snprintf(c->reason, sizeof c->reason, "%s", csock_strerror(status));
}

void csock__tls_timeout_reason(tls_conn *c)
{
    if (c->peek_len == 0 && !c->ctx->server)
        snprintf(c->reason, sizeof c->reason,
                 "TLS handshake timed out: the peer sent nothing (is it a TLS server?)");
    else
        snprintf(c->reason, sizeof c->reason, "TLS handshake timed out");
}
