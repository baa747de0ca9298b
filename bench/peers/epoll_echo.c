/* epoll_echo: the hand-written floor for the echo benchmarks.
 *
 * One thread, one level-triggered epoll set, no library. Per readiness event it
 * makes exactly the syscalls an echo needs: one read() into a shared 16 KiB
 * buffer and one write() of what was read. Only when that write is partial does
 * it copy the rest aside, swap EPOLLIN for EPOLLOUT (so a slow reader cannot make
 * us buffer more than one read's worth) and finish the write later. Idle and
 * fast connections hold no buffer at all.
 *
 * usage: epoll_echo PORT   (0 = ephemeral); prints "listening tcp://127.0.0.1:PORT"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    READ_BUF = 16 * 1024, /* one read() per event; larger gains nothing for small messages */
    MAX_EVENTS = 256,
    BACKLOG = 1024,       /* same backlog for every peer, so connect bursts are fair */
    ACCEPT_BATCH = 64,    /* bound accepts per wakeup so a connect storm cannot starve I/O */
};

struct conn {
    int fd;
    char *pending; /* unsent echo bytes; non-NULL only while a write was partial */
    size_t len;    /* bytes in pending */
    size_t off;    /* bytes of pending already written */
};

/* Shared by all connections: each read is fully written (or parked in
 * conn.pending) before the next read, so nothing in it outlives one event. */
static char rbuf[READ_BUF];

static void die(const char *what)
{
    fprintf(stderr, "epoll_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void conn_close(struct conn *c)
{
    close(c->fd); /* also removes it from the epoll set: we never dup() */
    free(c->pending);
    free(c);
}

static void conn_watch(int ep, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl mod");
}

/* Readable (or error/hangup, which read() reports): echo one read's worth. */
static void conn_on_readable(int ep, struct conn *c)
{
    ssize_t n = read(c->fd, rbuf, sizeof rbuf);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c); /* EOF or reset */
        return;
    }
    ssize_t w = write(c->fd, rbuf, (size_t)n);
    if (w == n)
        return; /* the common case: two syscalls per echo, nothing kept */
    if (w < 0) {
        if (errno != EAGAIN) {
            conn_close(c);
            return;
        }
        w = 0;
    }
    c->len = (size_t)(n - w);
    c->off = 0;
    c->pending = malloc(c->len);
    if (!c->pending) {
        conn_close(c);
        return;
    }
    memcpy(c->pending, rbuf + w, c->len);
    conn_watch(ep, c, EPOLLOUT); /* stop reading until the peer drains us */
}

/* Writable while a partial echo is parked: finish it, then read again. */
static void conn_on_writable(int ep, struct conn *c)
{
    ssize_t w = write(c->fd, c->pending + c->off, c->len - c->off);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_close(c);
        return;
    }
    c->off += (size_t)w;
    if (c->off < c->len)
        return;
    free(c->pending);
    c->pending = NULL;
    conn_watch(ep, c, EPOLLIN);
}

static void accept_batch(int ep, int lfd)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                perror("epoll_echo: accept4"); /* e.g. EMFILE: level-triggered, retried */
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl add");
    }
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind 127.0.0.1");
    if (listen(fd, BACKLOG) < 0)
        die("listen");
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        die("getsockname");
    printf("listening tcp://127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: epoll_echo PORT\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer reset must surface as EPIPE, not kill us */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    int lfd = listen_on(atoi(argv[1]));
    static struct conn listener; /* its address tags the listening socket's events */
    listener.fd = lfd;
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listener};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll_ctl add listener");

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        /* Each fd appears at most once per batch and a handler frees only its
         * own connection, so no later event in the batch can see freed memory. */
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == &listener)
                accept_batch(ep, lfd);
            else if (c->pending)
                conn_on_writable(ep, c);
            else
                conn_on_readable(ep, c);
        }
    }
}
