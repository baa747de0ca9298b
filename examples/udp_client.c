/* udp_client ADDR MESSAGE [TRIES [TIMEOUT_MS]]: send MESSAGE as one datagram
 * and print the answer. UDP may lose the request or the answer, so when no
 * answer comes within TIMEOUT_MS (default 500) the request is sent again,
 * up to TRIES times in all (default 5), each wait twice as long as the one
 * before; then it gives up and exits 1.
 *
 * The retries make the request at-least-once: a server may see it several
 * times, and a late answer to an earlier try is as good as the last one's.
 * That suits idempotent requests (a lookup, the upper-case service); a
 * request that must run once needs an id the server remembers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csock/csock.h"

typedef struct client {
    csock_dgram *sock;
    csock_timer *timer;
    const char *msg;
    unsigned tries, max_tries;
    uint64_t wait_ms;
    int status;
} client;

static void finish(client *c, int status)
{
    c->status = status;
    csock_dgram_close(c->sock, NULL);
    csock_timer_close(c->timer, NULL); /* nothing left: the loop returns */
}

static void send_try(client *c)
{
    c->tries++;
    int rc = csock_dgram_send(c->sock, c->msg, strlen(c->msg), NULL);
    if (rc < 0) fprintf(stderr, "udp_client: send: %s\n", csock_strerror(rc));
}

static void on_timeout(csock_timer *t);

/* Wait for an answer to the try just sent. */
static void arm(client *c)
{
    csock_timer_start(c->timer, on_timeout, c->wait_ms, 0);
    c->wait_ms *= 2; /* back off: a busy server gets more time each try */
}

static void on_timeout(csock_timer *t)
{
    client *c = csock_timer_data(t);
    if (c->tries >= c->max_tries) {
        fprintf(stderr, "udp_client: no answer after %u tries\n", c->tries);
        finish(c, 1);
        return;
    }
    send_try(c);
    arm(c);
}

static void on_answer(csock_dgram *d, int status, const char *buf, size_t len,
                      const csock_addr *from)
{
    client *c = csock_dgram_data(d);
    (void)from; /* connected: only the server's datagrams reach us */
    if (status < 0) {
        /* -ECONNREFUSED: an ICMP "port unreachable" for an earlier try (the
         * server is not up yet). Not final: the timer sends again. */
        fprintf(stderr, "udp_client: try %u: %s\n", c->tries, csock_strerror(status));
        return;
    }
    printf("%.*s\n", (int)len, buf);
    fflush(stdout);
    finish(c, 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: udp_client ADDR MESSAGE [TRIES [TIMEOUT_MS]]\n");
        return 2;
    }
    client c = {.msg = argv[2],
                .max_tries = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 5,
                .wait_ms = argc > 4 ? strtoull(argv[4], NULL, 10) : 500};
    if (c.max_tries == 0) c.max_tries = 1;
    csock_addr peer;
    csock_loop *loop = NULL;
    int rc = csock_addr_parse(argv[1], 0, &peer);
    if (rc == 0) rc = csock_loop_new(NULL, &loop);
    /* Connected to the peer: sends need no address, and the kernel drops
     * datagrams from anyone else. */
    if (rc == 0) rc = csock_dgram_new(loop, NULL, &peer, &c.sock);
    if (rc == 0) rc = csock_timer_new(loop, &c.timer);
    if (rc < 0) {
        fprintf(stderr, "udp_client: %s: %s\n", argv[1], csock_strerror(rc));
        return 1;
    }
    csock_dgram_set_data(c.sock, &c);
    csock_timer_set_data(c.timer, &c);
    rc = csock_dgram_recv_start(c.sock, on_answer);
    if (rc < 0) {
        fprintf(stderr, "udp_client: %s\n", csock_strerror(rc));
        return 1;
    }
    send_try(&c);
    arm(&c);
    rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) fprintf(stderr, "udp_client: %s\n", csock_strerror(rc));
    return csock_loop_free(loop) < 0 || rc < 0 ? 1 : c.status;
}
