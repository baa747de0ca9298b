/* upper_tls_server CERT KEY [ADDR]: the upper-case line server over TLS.
 *
 * CERT and KEY are PEM files (the certificate chain and its private key).
 * ADDR defaults to tcp://127.0.0.1:0; the listener is plain TCP and TLS is
 * put on each accepted stream, so the same program could serve TLS and
 * plaintext on two listeners. Prints "listening ADDR" and serves until
 * killed.
 *
 * After the handshake a TLS stream is an ordinary stream: the line handler
 * below is the one upper_tcp_server uses, unchanged. */
#include <ctype.h>
#include <stdio.h>

#include "csock/csock.h"

static const csock_framing lines = {.kind = CSOCK_FRAME_LINE, .max = 65536};

static void on_line(csock_stream *s, int status, const char *msg, size_t len)
{
    static char up[65536]; /* one loop, one thread: one buffer is enough */
    if (status != 0) {
        csock_stream_end(s, NULL); /* EOF or an error: send what is queued, close */
        return;
    }
    for (size_t i = 0; i < len; i++) up[i] = (char)toupper((unsigned char)msg[i]);
    if (csock_stream_write_msg(s, &lines, up, len) < 0) csock_stream_close(s, NULL);
}

static void on_handshake(csock_stream *s, int status)
{
    if (status < 0) {
        /* A client that does not trust us, or speaks no TLS: say why, and
         * let csock close the stream (it does after this callback). */
        char why[256] = "";
        csock_tls_last_error(s, why, sizeof why);
        fprintf(stderr, "upper_tls_server: handshake: %s %s\n", csock_strerror(status), why);
        return;
    }
    if (csock_stream_read_framed(s, &lines, on_line) < 0) csock_stream_close(s, NULL);
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    if (status < 0) return; /* the listener keeps listening */
    /* The listener's data is the TLS context: one for every connection. */
    if (csock_tls_accept(s, csock_listener_data(l), on_handshake) < 0) csock_stream_close(s, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: upper_tls_server CERT KEY [ADDR]\n");
        return 2;
    }
    const char *text = argc > 3 ? argv[3] : "tcp://127.0.0.1:0";
    csock_tls_opts opts = {.server = 1, .cert_file = argv[1], .key_file = argv[2]};
    char err[256] = "";
    csock_tls_ctx *ctx;
    int rc = csock_tls_ctx_new(&opts, &ctx, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "upper_tls_server: %s\n", err);
        return 1;
    }
    csock_addr addr;
    csock_loop *loop = NULL;
    csock_listener *l;
    rc = csock_addr_parse(text, 0, &addr);
    if (rc == 0) rc = csock_loop_new(NULL, &loop);
    if (rc == 0) rc = csock_listen(loop, &addr, NULL, on_accept, ctx, &l);
    if (rc == 0) rc = csock_listener_addr(l, &addr);
    if (rc < 0) {
        fprintf(stderr, "upper_tls_server: listen %s: %s\n", text, csock_strerror(rc));
        return 1;
    }
    char name[CSOCK_ADDR_STRLEN];
    csock_addr_format(&addr, name, sizeof name);
    printf("listening %s\n", name);
    fflush(stdout);
    rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) fprintf(stderr, "upper_tls_server: %s\n", csock_strerror(rc));
    return rc < 0;
}
