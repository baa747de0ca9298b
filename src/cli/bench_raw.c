/* csock bench over plain TCP and Unix sockets, driven directly: a socket
 * per connection, watched with the loop's readiness watchers (csock_io), a
 * recv() into one buffer per thread when it is readable and one sendmsg()
 * of the messages its answers let go. A load generator should cost less than the server it loads;
 * csock streams buffer, queue and time every write for servers that need
 * it, which a client sending bytes it can make again does not. Messages
 * are never copied: a message not written whole is sent again from the
 * pattern (conn.wseq, conn.wpos), and answers are checked in the read
 * buffer. The checks, the stamps and the histogram are bench_run.c's, the
 * same as for streams. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cli/bench_conn.h"

int bench_raw_wanted(const bench_opts *o, const char *backend)
{
    if (o->streams || o->tls || o->ws || o->udp || o->mode == BENCH_HTTP ||
        (o->addr.scheme != CSOCK_TCP && o->addr.scheme != CSOCK_UNIX))
        return 0;
    return strcmp(backend, "uring") != 0;
}

static int watch(conn *c, int events)
{
    if (c->watching == events) return 0;
    c->watching = events;
    return csock_io_start(c->io, events);
}

static void on_raw_closed(csock_io *io)
{
    close(csock_io_fd(io));
    bench_conn_down(csock_io_data(io));
}

void bench_raw_close(conn *c)
{
    csock_io_close(c->io, on_raw_closed);
    c->io = NULL;
}

/* Messages a write takes at most: 2 pieces each (--upper's '\n'). */
#define RAW_IOV 64

int bench_raw_flush(conn *c)
{
    const bench_opts *o = c->r->o;
    size_t nl = o->size - o->body; /* --upper: 1, the '\n' after the letters */
    while (c->wseq < c->sent) {
        /* Every message not written yet, as far as the iovec goes: the
         * answers one read brought let as many go, and they leave in one
         * segment, as a client that keeps messages in flight sends them
         * (one send each cost a syscall and a segment per message). */
        struct iovec iov[RAW_IOV];
        int k = 0;
        size_t want = 0, pos = c->wpos;
        for (uint64_t q = c->wseq; q < c->sent && k + 2 <= RAW_IOV; q++, pos = 0) {
            if (pos < o->body)
                iov[k++] = (struct iovec){o->send_pat + bench_msg_off(c, q) + pos, o->body - pos};
            if (nl) iov[k++] = (struct iovec){(void *)"\n", o->size - (pos > o->body ? pos : o->body)};
            want += o->size - pos;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)k};
        ssize_t n = sendmsg(csock_io_fd(c->io), &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -errno;
        }
        for (size_t left = (size_t)n; left;) { /* past what was taken */
            size_t rest = o->size - c->wpos;
            if (left < rest) {
                c->wpos += left;
                break;
            }
            left -= rest;
            c->wseq++;
            c->wpos = 0;
        }
        if ((size_t)n < want) break; /* the socket is full: wait until it is writable */
    }
    return watch(c, c->wseq < c->sent ? CSOCK_READABLE | CSOCK_WRITABLE : CSOCK_READABLE);
}

/* The connect's outcome, when the socket became writable. */
static void connected(conn *c)
{
    int fd = csock_io_fd(c->io), err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err) bench_conn_fail(c, bench_err_kind(-err), RETRY_NS); /* as a failed stream connect */
    else bench_conn_up(c, watch(c, CSOCK_READABLE));
}

static void on_raw_io(csock_io *io, int events)
{
    conn *c = csock_io_data(io);
    run *r = c->r;
    if (c->state == C_CONNECTING) {
        if (events & CSOCK_WRITABLE) connected(c);
        return;
    }
    if ((events & CSOCK_WRITABLE) && c->wseq < c->sent) {
        int rc = bench_raw_flush(c);
        if (rc < 0) {
            bench_conn_fail(c, bench_err_kind(rc), 0);
            return;
        }
    }
    if (!(events & CSOCK_READABLE)) return;
    ssize_t n = recv(csock_io_fd(io), r->rbuf, BENCH_RAW_RBUF, 0);
    if (n > 0) {
        r->raw_input = c; /* the messages its answers let go wait for the flush */
        int rc = bench_echo_input(c, r->rbuf, (size_t)n);
        r->raw_input = NULL;
        if (rc == 0 && c->wseq < c->sent && (rc = bench_raw_flush(c)) < 0)
            bench_conn_fail(c, bench_err_kind(rc), 0);
    } else if (n == 0) bench_conn_fail(c, bench_err_kind(CSOCK_EOF), 0);
    else if (errno != EAGAIN && errno != EWOULDBLOCK) bench_conn_fail(c, bench_err_kind(-errno), 0);
}

void bench_raw_connect(conn *c)
{
    run *r = c->r;
    const csock_addr *a = &r->o->addr;
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -errno : 0;
    if (rc == 0 && a->scheme == CSOCK_TCP) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (rc == 0 && connect(fd, (const struct sockaddr *)&a->sa, a->len) < 0 && errno != EINPROGRESS)
        rc = -errno;
    if (rc == 0) rc = csock_io_new(r->loop, fd, on_raw_io, c, &c->io);
    if (rc == 0) {
        c->state = C_CONNECTING;
        c->watching = 0;
        rc = watch(c, CSOCK_WRITABLE); /* writable: connected, or the connect failed */
        if (rc < 0) bench_conn_fail(c, bench_err_kind(rc), RETRY_NS);
        return;
    }
    if (fd >= 0) close(fd);
    c->io = NULL;
    /* A Unix socket whose backlog is full says EAGAIN: try again later. */
    bench_count_err(r, bench_err_kind(rc == -EAGAIN ? -ECONNREFUSED : rc));
    c->state = C_DOWN;
    c->retry_at = bench_now_ns() + RETRY_NS;
}
