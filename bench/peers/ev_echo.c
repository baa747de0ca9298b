/* ev_echo: a libevent echo server in libevent's documented style (the
 * "bufferevent" echo server of the libevent book and sample/): an
 * evconnlistener hands each accepted socket to a bufferevent whose read callback
 * moves the whole input buffer to the output buffer with evbuffer_add_buffer()
 * (no copy: the chains move). libevent then writes it out on its own.
 *
 * usage: ev_echo PORT   (0 = ephemeral); prints "listening tcp://127.0.0.1:PORT"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum { BACKLOG = 1024 }; /* same backlog for every peer */

static void read_cb(struct bufferevent *bev, void *ctx)
{
    (void)ctx;
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void event_cb(struct bufferevent *bev, short what, void *ctx)
{
    (void)ctx;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev); /* BEV_OPT_CLOSE_ON_FREE closes the socket too */
}

static void accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *ctx)
{
    (void)sa, (void)socklen, (void)ctx;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct event_base *base = evconnlistener_get_base(listener);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, read_cb, NULL, event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ev_echo PORT\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer reset must surface as EPIPE, not kill us */
    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "ev_echo: event_base_new failed\n");
        return 1;
    }
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)atoi(argv[1]));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Accepted sockets come back non-blocking (no LEV_OPT_LEAVE_SOCKETS_BLOCKING). */
    struct evconnlistener *listener =
        evconnlistener_new_bind(base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                BACKLOG, (struct sockaddr *)&sin, sizeof sin);
    if (!listener) {
        perror("ev_echo: listen 127.0.0.1");
        return 1;
    }
    socklen_t len = sizeof sin;
    getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&sin, &len);
    printf("listening tcp://127.0.0.1:%d\n", ntohs(sin.sin_port));
    fflush(stdout);
    event_base_dispatch(base);
    evconnlistener_free(listener);
    event_base_free(base);
    return 0;
}
