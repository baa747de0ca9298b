/* upper_udp_server [ADDR]: answer each datagram in upper case, to its sender.
 *
 * ADDR defaults to udp://127.0.0.1:0 (unixgram:PATH works too). Prints
 * "listening ADDR" with the real port once it is bound, then serves until
 * killed. */
#include <ctype.h>
#include <stdio.h>

#include "csock/csock.h"

static void on_datagram(csock_dgram *d, int status, const char *buf, size_t len,
                        const csock_addr *from)
{
    static char up[65536];
    if (status < 0) {
        fprintf(stderr, "upper_udp_server: receive: %s\n", csock_strerror(status));
        return; /* one bad datagram (or ICMP) never stops the server */
    }
    if (!from) return; /* an unbound Unix sender: nowhere to answer */
    for (size_t i = 0; i < len; i++) up[i] = (char)toupper((unsigned char)buf[i]);
    int rc = csock_dgram_send(d, up, len, from);
    if (rc < 0) fprintf(stderr, "upper_udp_server: send: %s\n", csock_strerror(rc));
}

int main(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "udp://127.0.0.1:0";
    csock_addr addr;
    csock_loop *loop = NULL;
    csock_dgram *d;
    int rc = csock_addr_parse(text, 0, &addr);
    if (rc == 0) rc = csock_loop_new(NULL, &loop);
    if (rc == 0) rc = csock_dgram_new(loop, &addr, NULL, &d);
    if (rc == 0) rc = csock_dgram_recv_start(d, on_datagram);
    if (rc == 0) rc = csock_dgram_local(d, &addr);
    if (rc < 0) {
        fprintf(stderr, "upper_udp_server: bind %s: %s\n", text, csock_strerror(rc));
        return 1;
    }
    char name[300];
    csock_addr_format(&addr, name, sizeof name);
    printf("listening %s\n", name);
    fflush(stdout);
    rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) fprintf(stderr, "upper_udp_server: %s\n", csock_strerror(rc));
    return rc < 0;
}
