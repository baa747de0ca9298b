/* tls_client [-k] [--ca FILE] ADDR: send each line of stdin over TLS and
 * print each answer line; once stdin has ended and every line has been
 * answered, close the connection gracefully and exit 0.
 *
 * ADDR is tls://HOST:PORT. The server's certificate is verified against the
 * system CAs, or against FILE with --ca, and must name HOST; -k skips the
 * check (for a test server only). A failure prints OpenSSL's reason in
 * words (csock_tls_last_error) and exits 1.
 *
 * Why it counts answers instead of half-closing at the end of stdin: a TLS
 * close_notify ends the session for many servers, which would drop the
 * answers still owed. Counting works with any line-for-line server. */
#include <stdio.h>
#include <string.h>

#include "csock/csock.h"

static const csock_framing lines = {.kind = CSOCK_FRAME_LINE, .max = 65536};
static csock_stream *conn, *input;
static unsigned long sent, answered;
static int input_done, status_code;

static void fail(const char *what, int err)
{
    fprintf(stderr, "tls_client: %s: %s\n", what, csock_strerror(err));
    status_code = 1;
}

static void stop_input(void)
{
    if (input) csock_stream_close(input, NULL);
    input = NULL;
}

static void maybe_finish(void)
{
    if (input_done && answered >= sent) csock_stream_end(conn, NULL); /* close_notify, FIN */
}

static void on_answer(csock_stream *s, int status, const char *msg, size_t len)
{
    if (status == 0) {
        printf("%.*s\n", (int)len, msg);
        fflush(stdout);
        answered++;
        maybe_finish();
        return;
    }
    if (status == CSOCK_ETLS) {
        char why[256];
        csock_tls_last_error(s, why, sizeof why);
        fprintf(stderr, "tls_client: %s\n", why);
        status_code = 1;
    } else if (status != CSOCK_EOF || answered < sent) {
        fail("read", status == CSOCK_EOF ? -ECONNRESET : status); /* answers went missing */
    }
    csock_stream_close(s, NULL);
    stop_input();
}

static void on_input(csock_stream *s, int status, const char *msg, size_t len)
{
    (void)s;
    if (status == 0) {
        int rc = csock_stream_write_msg(conn, &lines, msg, len);
        if (rc < 0) fail("write", rc);
        else sent++;
        return;
    }
    if (status != CSOCK_EOF) fail("stdin", status);
    input_done = 1;
    stop_input();
    maybe_finish();
}

static void on_handshake(csock_stream *s, int status)
{
    if (status < 0) {
        char why[256] = "";
        csock_tls_last_error(s, why, sizeof why);
        fprintf(stderr, "tls_client: %s%s%s\n", csock_strerror(status), why[0] ? ": " : "", why);
        status_code = 1;
        return; /* csock closes the stream after this callback */
    }
    int rc = csock_stream_read_framed(s, &lines, on_answer);
    /* stdin is read only now: nothing is sent to a server we do not trust. */
    if (rc == 0) rc = csock_stream_open(csock_stream_loop(s), 0, &input);
    if (rc == 0) rc = csock_stream_read_framed(input, &lines, on_input);
    if (rc < 0) {
        fail("start", rc);
        csock_stream_close(s, NULL);
        stop_input();
    }
}

int main(int argc, char **argv)
{
    csock_tls_opts opts = {0}; /* zero: a client that verifies */
    const char *target = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-k")) opts.insecure = 1;
        else if (!strcmp(argv[i], "--ca") && i + 1 < argc) opts.ca_file = argv[++i];
        else target = argv[i];
    }
    if (!target) {
        fprintf(stderr, "usage: tls_client [-k] [--ca FILE] tls://HOST:PORT\n");
        return 2;
    }
    char err[256] = "";
    csock_addr addr;
    csock_tls_ctx *ctx = NULL;
    csock_loop *loop = NULL;
    int rc = csock_addr_parse(target, 0, &addr);
    if (rc < 0) {
        fail(target, rc);
        return 2;
    }
    rc = csock_tls_ctx_new(&opts, &ctx, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "tls_client: %s\n", err);
        return 1;
    }
    rc = csock_loop_new(NULL, &loop);
    if (rc == 0) rc = csock_tls_connect(loop, &addr, ctx, NULL, on_handshake, NULL, &conn);
    csock_tls_ctx_free(ctx); /* the stream holds its own reference */
    if (rc < 0) {
        fail(target, rc);
        return 1;
    }
    rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) fail("loop", rc);
    csock_loop_free(loop);
    return status_code;
}
