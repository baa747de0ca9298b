/* upper_udp_client ADDR: send each line of stdin as one datagram and print
 * each answer. At the end of stdin it waits for the answers still owed, up
 * to 3 s after the last one arrived (datagrams can be lost), then exits. */
#include <stdio.h>

#include "csock/csock.h"

#define WAIT_MS 3000

static const csock_framing lines = {.kind = CSOCK_FRAME_LINE, .max = 65000};
static csock_dgram *sock;
static csock_stream *input;
static csock_timer *timer;
static unsigned long sent, answered;
static int status_code;

static void finish(void)
{
    csock_dgram_close(sock, NULL);
    csock_timer_close(timer, NULL);
}

static void on_timeout(csock_timer *t)
{
    fprintf(stderr, "upper_udp_client: %lu answer(s) missing\n", sent - answered);
    status_code = 1;
    finish();
}

static void on_answer(csock_dgram *d, int status, const char *buf, size_t len,
                      const csock_addr *from)
{
    if (status < 0) {
        fprintf(stderr, "upper_udp_client: receive: %s\n", csock_strerror(status));
        status_code = 1;
        return;
    }
    printf("%.*s\n", (int)len, buf);
    fflush(stdout);
    answered++;
    if (!input && answered >= sent) finish(); /* stdin is done and all answered */
    else if (!input) csock_timer_start(timer, on_timeout, WAIT_MS, 0);
}

static void on_input(csock_stream *s, int status, const char *msg, size_t len)
{
    if (status == 0) {
        int rc = csock_dgram_send(sock, msg, len, NULL);
        if (rc < 0) fprintf(stderr, "upper_udp_client: send: %s\n", csock_strerror(rc));
        else sent++;
        return;
    }
    csock_stream_close(s, NULL);
    input = NULL;
    if (answered >= sent) finish();
    else csock_timer_start(timer, on_timeout, WAIT_MS, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: upper_udp_client ADDR\n");
        return 2;
    }
    csock_addr peer;
    csock_loop *loop = NULL;
    int rc = csock_addr_parse(argv[1], 0, &peer);
    if (rc == 0) rc = csock_loop_new(NULL, &loop);
    if (rc == 0) rc = csock_dgram_new(loop, NULL, &peer, &sock);
    if (rc == 0) rc = csock_dgram_recv_start(sock, on_answer);
    if (rc == 0) rc = csock_timer_new(loop, &timer);
    if (rc == 0) rc = csock_stream_open(loop, 0, &input);
    if (rc == 0) rc = csock_stream_read_framed(input, &lines, on_input);
    if (rc < 0) {
        fprintf(stderr, "upper_udp_client: %s: %s\n", argv[1], csock_strerror(rc));
        return 1;
    }
    rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    csock_loop_free(loop);
    return rc < 0 ? 1 : status_code;
}
