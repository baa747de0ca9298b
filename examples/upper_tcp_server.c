/* upper_tcp_server [ADDR]: answer each line in upper case.
 *
 * ADDR defaults to tcp://127.0.0.1:0 (any stream address works, e.g.
 * unix:/tmp/upper.sock). Prints "listening ADDR" with the real port once it
 * accepts connections, then serves until killed. */
#include <ctype.h>
#include <stdio.h>

#include "csock/csock.h"

static const csock_framing lines = {.kind = CSOCK_FRAME_LINE, .max = 65536};

static void on_line(csock_stream *s, int status, const char *msg, size_t len)
{
    static char up[65536]; /* one loop, one thread: one buffer is enough */
    if (status != 0) {
        /* EOF, a line over the limit, or an error: send what is queued, then close. */
        csock_stream_end(s, NULL);
        return;
    }
    for (size_t i = 0; i < len; i++) up[i] = (char)toupper((unsigned char)msg[i]);
    if (csock_stream_write_msg(s, &lines, up, len) < 0) csock_stream_close(s, NULL);
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    if (status < 0) {
        fprintf(stderr, "upper_tcp_server: accept: %s\n", csock_strerror(status));
        return;
    }
    if (csock_stream_read_framed(s, &lines, on_line) < 0) csock_stream_close(s, NULL);
}

int main(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "tcp://127.0.0.1:0";
    csock_addr addr;
    csock_loop *loop = NULL;
    csock_listener *l;
    int rc = csock_addr_parse(text, 0, &addr);
    if (rc == 0) rc = csock_loop_new(NULL, &loop);
    if (rc == 0) rc = csock_listen(loop, &addr, NULL, on_accept, NULL, &l);
    if (rc == 0) rc = csock_listener_addr(l, &addr);
    if (rc < 0) {
        fprintf(stderr, "upper_tcp_server: listen %s: %s\n", text, csock_strerror(rc));
        return 1;
    }
    char name[300];
    csock_addr_format(&addr, name, sizeof name);
    printf("listening %s\n", name);
    fflush(stdout); /* the readiness signal for whoever started us */
    rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) fprintf(stderr, "upper_tcp_server: %s\n", csock_strerror(rc));
    return rc < 0;
}
