/* What a TLS stream tells about itself: its last error, and after the
 * handshake its version, cipher, ALPN protocol and resumption. */
#include <stdio.h>
#include <string.h>

#include "tls/tls_int.h"

/* ---- inspection --------------------------------------------------------------------- */

int csock_tls_last_error(const csock_stream *s, char *buf, size_t size)
{
    tls_conn *c = conn_of(s);
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
