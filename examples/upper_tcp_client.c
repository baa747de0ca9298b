/* upper_tcp_client ADDR: send each line of stdin to an upper-case server and
 * print each answer. At the end of stdin it half-closes the connection,
 * prints the remaining answers and exits when the server closes.
 *
 * stdin is a csock stream too (made non-blocking), so typing and answers
 * interleave without threads. */
#include <stdio.h>

#include "csock/csock.h"

static const csock_framing lines = {.kind = CSOCK_FRAME_LINE, .max = 65536};
static csock_stream *conn, *input;
static int status_code;

static void fail(const char *what, int err)
{
    fprintf(stderr, "upper_tcp_client: %s: %s\n", what, csock_strerror(err));
    status_code = 1;
}

static void stop_input(void)
{
    if (input) csock_stream_close(input, NULL);
    input = NULL;
}

static void on_answer(csock_stream *s, int status, const char *msg, size_t len)
{
    if (status == 0) {
        printf("%.*s\n", (int)len, msg);
        fflush(stdout);
        return;
    }
    if (status != CSOCK_EOF) fail("read", status);
    csock_stream_close(s, NULL); /* the server is done: so are we */
    stop_input();
}

static void on_input(csock_stream *s, int status, const char *msg, size_t len)
{
    if (status == 0) {
        int rc = csock_stream_write_msg(conn, &lines, msg, len);
        if (rc < 0) fail("write", rc);
        return;
    }
    if (status != CSOCK_EOF) fail("stdin", status);
    csock_stream_shutdown(conn, NULL); /* "no more questions"; answers still come */
    stop_input();
}

static void on_connect(csock_stream *s, int status)
{
    int rc = status;
    if (rc == 0) rc = csock_stream_read_framed(s, &lines, on_answer);
    if (rc == 0) rc = csock_stream_open(csock_stream_loop(s), 0, &input);
    if (rc == 0) rc = csock_stream_read_framed(input, &lines, on_input);
    if (rc < 0) {
        fail("connect", rc);
        if (status == 0) csock_stream_close(s, NULL); /* on error csock closes it */
        stop_input();
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: upper_tcp_client ADDR\n");
        return 2;
    }
    csock_addr addr;
    csock_loop *loop = NULL;
    int rc = csock_addr_parse(argv[1], 0, &addr);
    if (rc == 0) rc = csock_loop_new(NULL, &loop);
    if (rc == 0) rc = csock_connect(loop, &addr, NULL, on_connect, NULL, &conn);
    if (rc < 0) {
        fail(argv[1], rc);
        return 1;
    }
    rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) fail("loop", rc);
    csock_loop_free(loop);
    return status_code;
}
