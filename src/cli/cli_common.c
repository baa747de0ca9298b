/* What the serving commands (serve, serve http, listen) share: the
 * `listening ADDR` line and the accept callback, with the TLS handshake of
 * tls:// endpoints and the -v lines about accepting. */
#include <stddef.h>

#include "cli/cli.h"

void cli_print_listening(FILE *f, const csock_addr *a)
{
    char text[CLI_ADDR_TEXT];
    csock_addr_format(a, text, sizeof text);
    /* Tests and scripts wait for this exact line to learn the port. */
    fprintf(f, "listening %s\n", text);
    fflush(f);
}

const char *cli_peer_text(const csock_stream *s, char *buf, size_t size)
{
    csock_addr a;
    if (csock_stream_peer(s, &a) < 0 || csock_addr_format(&a, buf, size) <= 0)
        snprintf(buf, size, "?");
    return buf;
}

const char *cli_counts_text(const csock_stream *s, char *buf, size_t size)
{
    uint64_t in = 0, out = 0;
    csock_stream_counts(s, &in, &out);
    snprintf(buf, size, "%llu bytes in, %llu out", (unsigned long long)in,
             (unsigned long long)out);
    return buf;
}

void cli_log_handshake(const csock_stream *s, int status, const char *peer)
{
    char why[CLI_REASON_TEXT];
    cli_warn("TLS handshake with %s failed: %s", peer,
             cli_tls_reason(s, status, why, sizeof why));
}

void cli_on_accept(csock_listener *l, csock_stream *s, int status)
{
    const cli_acceptor *a = csock_listener_data(l);
    if (status < 0) {
        /* Out of descriptors and the like: the listener goes on. */
        if (a->verbose) cli_warn("accept: %s", csock_strerror(status));
        return;
    }
    if (a->accepted && a->accepted(a, s) < 0) return; /* turned away (and closed) */
    if (!a->tls) return a->ready(s, 0);
    /* A failed or stalled handshake costs only this connection: csock
     * closes it after a->ready has seen the failure. */
    int rc = csock_tls_accept(s, a->tls, a->ready);
    if (rc < 0) { /* out of memory: this connection only */
        if (a->verbose) cli_warn("TLS: %s", csock_strerror(rc));
        csock_stream_close(s, NULL);
    }
}
