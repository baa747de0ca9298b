/* uring_echo: the hand-written io_uring floor for the echo benchmarks.
 *
 * One thread, one ring, liburing, no library of ours. The idiomatic fast
 * shape on a recent kernel: a multishot accept; per connection one
 * multishot recv that takes its buffers from a ring of provided buffers
 * (so an idle connection holds none), and a send straight from the buffer
 * the bytes landed in, which goes back to the ring when the send
 * completes. One io_uring_enter per loop iteration submits every request
 * made while handling the last batch and waits for the next.
 *
 * A connection has at most one send in flight (two sends of one socket
 * could pass each other after a short write); buffers that arrive
 * meanwhile wait in a per-connection FIFO threaded through the buffer
 * table, so queueing allocates nothing. When every buffer is out the
 * kernel ends the multishot recv with -ENOBUFS; it is made again at the
 * next iteration, once sends have given buffers back.
 *
 * usage: uring_echo PORT   (0 = ephemeral); prints "listening tcp://127.0.0.1:PORT"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    NBUFS = 4096,       /* provided buffers: 1,000 connections x 16 in flight fit */
    BUF_SIZE = 4096,    /* one recv's most, as csock's ring takes */
    BGID = 0,
    RING_ENTRIES = 4096,
    CQ_ENTRIES = 16384, /* every connection has a recv in flight */
    BACKLOG = 1024,     /* same backlog for every peer, so connect bursts are fair */
    NONE = 0xffff,
};

/* user_data: a connection's address with the operation in the low bits. */
enum { OP_ACCEPT = 0, OP_RECV = 1, OP_SEND = 2 };

struct conn {
    int fd;
    uint8_t recv_on;   /* a multishot recv is in flight */
    uint8_t send_on;   /* a send is in flight */
    uint8_t dead;      /* closing: free once nothing is in flight */
    uint16_t head, tail; /* FIFO of buffers to send, through next[] */
    uint32_t off;      /* bytes of the head buffer already sent */
    struct conn *retry; /* recv to make again (-ENOBUFS) */
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static uint16_t next_buf[NBUFS];
static uint32_t buf_len[NBUFS];
static struct conn *retry_list;
static int lfd;

static void die(const char *what, int err)
{
    fprintf(stderr, "uring_echo: %s: %s\n", what, strerror(err));
    exit(1);
}

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) { /* full: hand what is queued to the kernel first */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
        if (!sqe) die("io_uring_get_sqe", EBUSY);
    }
    return sqe;
}

static void give_back(unsigned bid)
{
    io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(br, 1);
}

static void arm_accept(void)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, OP_ACCEPT);
}

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_RECV);
    c->recv_on = 1;
}

static void send_head(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    unsigned bid = c->head;
    io_uring_prep_send(sqe, c->fd, bufs + (size_t)bid * BUF_SIZE + c->off, buf_len[bid] - c->off,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_SEND);
    c->send_on = 1;
}

/* Closing: the queued buffers go back; the memory once nothing is in flight. */
static void conn_kill(struct conn *c)
{
    if (!c->dead) {
        c->dead = 1;
        if (!c->send_on) {
            for (unsigned b = c->head; b != NONE; b = next_buf[b]) give_back(b);
            c->head = c->tail = NONE;
        }
        shutdown(c->fd, SHUT_RDWR); /* ends the multishot recv */
    }
    if (c->recv_on || c->send_on || c->retry || retry_list == c) return;
    close(c->fd);
    free(c);
}

static void on_accept(int res, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE)) arm_accept(); /* e.g. EMFILE ended it */
    if (res < 0) return;
    int one = 1;
    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(res);
        return;
    }
    c->fd = res;
    c->head = c->tail = NONE;
    arm_recv(c);
}

static void on_recv(struct conn *c, int res, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE)) c->recv_on = 0;
    if (res == -ENOBUFS && !c->dead) { /* again at the next iteration */
        c->retry = retry_list;
        retry_list = c;
        return;
    }
    if (res <= 0) {
        if (flags & IORING_CQE_F_BUFFER) give_back(flags >> IORING_CQE_BUFFER_SHIFT);
        conn_kill(c); /* EOF or error */
        return;
    }
    unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
    if (c->dead) {
        give_back(bid);
        conn_kill(c);
        return;
    }
    buf_len[bid] = (uint32_t)res;
    next_buf[bid] = NONE;
    if (c->tail == NONE) c->head = (uint16_t)bid;
    else next_buf[c->tail] = (uint16_t)bid;
    c->tail = (uint16_t)bid;
    if (!c->send_on) {
        c->off = 0;
        send_head(c);
    }
    if (!c->recv_on) arm_recv(c); /* the multishot ended (the kernel may end it any time) */
}

static void on_send(struct conn *c, int res)
{
    c->send_on = 0;
    unsigned bid = c->head;
    if (res < 0 || c->dead) {
        for (unsigned b = bid; b != NONE; b = next_buf[b]) give_back(b);
        c->head = c->tail = NONE;
        conn_kill(c);
        return;
    }
    c->off += (uint32_t)res;
    if (c->off < buf_len[bid]) { /* short send: the rest */
        send_head(c);
        return;
    }
    c->head = next_buf[bid];
    if (c->head == NONE) c->tail = NONE;
    give_back(bid);
    c->off = 0;
    if (c->head != NONE) send_head(c);
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket", errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind 127.0.0.1", errno);
    if (listen(fd, BACKLOG) < 0) die("listen", errno);
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) die("getsockname", errno);
    printf("listening tcp://127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

/* The fastest ring the kernel gives: single issuer with deferred task
 * work (6.1), else cooperative task work (5.19), else plain. */
static void ring_init(void)
{
    static const unsigned tries[] = {
        IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_CQSIZE,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0] && rc == -EINVAL; i++) {
        struct io_uring_params p = {.flags = tries[i], .cq_entries = CQ_ENTRIES};
        rc = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
    }
    if (rc < 0) die("io_uring_queue_init", -rc);
    /* By hand: liburing 2.3 has no io_uring_setup_buf_ring(). */
    br = mmap(NULL, NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
              MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED) die("mmap", errno);
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = NBUFS, .bgid = BGID};
    if ((rc = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) die("io_uring_register_buf_ring", -rc);
    bufs = malloc((size_t)NBUFS * BUF_SIZE);
    if (!bufs) die("malloc", ENOMEM);
    for (unsigned i = 0; i < NBUFS; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(NBUFS), (int)i);
    io_uring_buf_ring_advance(br, NBUFS);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: uring_echo PORT\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    ring_init();
    lfd = listen_on(atoi(argv[1]));
    arm_accept();
    for (;;) {
        while (retry_list) { /* sends have given buffers back since */
            struct conn *c = retry_list;
            retry_list = c->retry;
            c->retry = NULL;
            if (c->dead) conn_kill(c);
            else arm_recv(c);
        }
        int rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EBUSY) die("io_uring_submit_and_wait", -rc);
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            n++;
            uint64_t ud = cqe->user_data;
            struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)3);
            switch (ud & 3) {
            case OP_ACCEPT: on_accept(cqe->res, cqe->flags); break;
            case OP_RECV: on_recv(c, cqe->res, cqe->flags); break;
            default: on_send(c, cqe->res); break;
            }
        }
        io_uring_cq_advance(&ring, n);
    }
}
