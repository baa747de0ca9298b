/* loadgen: closed-loop load generator for the echo benchmarks.
 *
 *   loadgen -H 127.0.0.1 -p PORT -c CONNS -s SIZE -d DEPTH -t SECONDS
 *           [-w WARMUP_SECONDS] [-T THREADS] [-P SERVER_PID] [-U] [--json]
 *           [--ws [--text] [--path /PATH]]
 *
 * Each of CONNS connections keeps DEPTH messages of SIZE bytes in flight: it
 * sends DEPTH at the start and one more each time a full echo comes back
 * (DEPTH=1 is ping-pong, more is pipelining). Every echoed byte is checked:
 * a message carries its sequence number and connection id in its first 8 bytes
 * and the rest is a slice of a fixed pseudo-random pattern whose offset depends
 * on both, so bytes from another message or another connection do not match.
 * Any mismatch, or more bytes echoed than sent, exits with status 2.
 *
 * Only messages completed inside the measured window (after the warm-up) count.
 * Latency is from the moment a message is handed to write() to the moment its
 * last byte is read back. With -P, the server's CPU time (utime+stime from
 * /proc/PID/stat) is sampled exactly at the window's edges, so CPU per message
 * is measured over the same interval as the throughput; so is the time the
 * server sat runnable waiting for its CPU (/proc/PID/task/.../schedstat), which
 * tells a busy machine apart from a slow server.
 *
 * A connection that completes no message in the window counts as stalled: a
 * server that drops bytes, or starves a connection, shows up there.
 *
 * Two engines drive the sockets; everything else (message content,
 * verification, latency, windows, statistics, output) is shared:
 *   epoll (default)  one read() per readable socket and one write() per reply
 *                    batch: over two syscalls per echo at DEPTH 1.
 *   io_uring (-U)    one io_uring_enter per loop iteration for all connections:
 *                    multishot recvs into a provided-buffer ring, one send per
 *                    connection carrying everything it has queued. Where a
 *                    syscall costs ~1 us (PTI, VM) that is what made loadgen
 *                    run out of CPU before a fast server did; what it still
 *                    spends is mostly the kernel's TCP work for each message.
 *                    Needs liburing at build time: -DHAVE_LIBURING ... -luring.
 *
 * WebSocket (--ws): each connection first makes the RFC 6455 client handshake
 * (GET PATH with a key; the 101 must carry the matching Sec-WebSocket-Accept
 * and no extension), then every message is one masked frame (binary, or text
 * with --text: then the payload is ASCII, the header's numbers 7 bits a byte),
 * a new mask key per message. The echo must come back as one unmasked final
 * frame of the same type and length: its header bytes are checked exactly,
 * like the payload. SIZE is the payload; throughput counts messages.
 *
 * Output: one line of key=value pairs (or one JSON object with --json).
 * Exit status: 0 ok, 1 usage or setup failure, 2 corrupt echo, 3 connection
 * errors or stalled connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

enum {
    HDR = 8,          /* message header: le32 sequence number, le32 connection id */
    PAT_LEN = 4093,   /* pattern period; prime, so offsets spread over all of it */
    RBUF = 64 * 1024, /* per-thread read buffer; one read() per readiness event */
    MAX_EVENTS = 256,
    SUB_BITS = 6, /* histogram: 64 buckets per power of two, <= 1.6 % wide */
    SUB = 1 << SUB_BITS,
    NBUCKETS = (64 - SUB_BITS) * SUB,
    MAX_ERR_LOG = 5, /* connection errors printed per thread before going quiet */
};

struct opts {
    const char *host;
    int port;
    int conns;
    size_t size;
    int depth;
    double secs;
    double warmup;
    int threads;
    pid_t server_pid; /* 0: do not measure server CPU */
    bool json;
    bool uring; /* -U: io_uring engine instead of epoll */
    int ws;     /* 0: raw bytes; WS_TEXT or WS_BINARY: WebSocket frames of that opcode */
    const char *path; /* --path: the WebSocket request target */
    size_t tx_size, rx_size; /* bytes of one message on the wire: sent (a masked frame
                              * with --ws) and echoed (an unmasked one) */
};

enum { WS_TEXT = 1, WS_BINARY = 2, WS_HDR_MAX = 14 };

struct conn {
    int fd;
    uint32_t id;       /* global connection index, stamped into each message */
    uint32_t sseq;     /* sequence number of the next message to send */
    uint32_t rseq;     /* sequence number of the message being received */
    size_t rpos;       /* bytes of message rseq received and checked so far */
    uint64_t tx, rx;   /* bytes written / read: an echo can never be ahead */
    char *out;         /* unsent bytes, capacity out_cap */
    size_t out_cap;    /* depth * tx_size; twice that for io_uring (see uring_prep_sends) */
    size_t out_off;    /* first unsent byte in out */
    size_t out_len;    /* end of queued bytes in out */
    size_t sending;    /* io_uring: bytes out[0..sending) of the send in flight, else 0 */
    bool want_out;     /* epoll: EPOLLOUT is registered (a write was partial) */
    bool send_queued;  /* io_uring: listed to be sent in this loop iteration */
    bool dead;         /* closed after an error; ignore further events */
    uint64_t msgs;     /* messages completed inside the window (0 at the end: stalled) */
    uint64_t *sent_ns; /* send time of in-flight message s at [s % depth] */
};

struct hist {
    uint64_t n[NBUCKETS];
    uint64_t count;
    uint64_t max;
};

struct worker {
    pthread_t tid;
    int ep; /* epoll engine only */
    struct conn *conns;
    int nconns;
    int alive;       /* connections not closed by an error */
    uint64_t msgs;   /* messages completed inside the window */
    uint64_t errors; /* connections lost before the window ended */
    double wait0_ns; /* this thread's run-queue wait at the window start, -1: not yet */
    double wait_ns;  /* ... and its growth over the window */
    struct hist hist;
};

/* Set once in main() before any worker starts, read-only afterwards. */
static struct opts opt;
static unsigned char *pattern; /* PAT_LEN + size bytes, so any offset has a full slice */
static uint64_t t_measure;     /* CLOCK_MONOTONIC ns: window start (end of warm-up) */
static uint64_t t_end;         /* CLOCK_MONOTONIC ns: window end; workers stop here */
/* --ws: the header of every echoed frame (all are alike), and the lengths of
 * the frame headers each way; 0 without --ws. */
static unsigned char ws_rx_hdr[WS_HDR_MAX];
static size_t ws_rx_hl, ws_tx_hl;

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* The calling thread's run-queue wait in ns (schedstat field 2), or -1. */
static double thread_runq_wait_ns(void)
{
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    unsigned long long run, wait;
    int ok = f && fscanf(f, "%llu %llu", &run, &wait) == 2;
    if (f)
        fclose(f);
    return ok ? (double)wait : -1;
}

/* ---- histogram: log-linear buckets over nanoseconds (HdrHistogram's idea) ---- */

static unsigned hist_bucket(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v; /* exact below 64 ns */
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - SUB_BITS;
    return (shift + 1) * SUB + (unsigned)((v >> shift) - SUB);
}

static uint64_t hist_bucket_mid(unsigned b)
{
    if (b < SUB)
        return b;
    unsigned shift = b / SUB - 1;
    uint64_t low = (uint64_t)(SUB + b % SUB) << shift;
    return low + ((uint64_t)1 << shift) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->n[hist_bucket(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *from)
{
    for (unsigned i = 0; i < NBUCKETS; i++)
        into->n[i] += from->n[i];
    into->count += from->count;
    if (from->max > into->max)
        into->max = from->max;
}

/* The q-quantile in microseconds (bucket midpoint, so within ~0.8 %). */
static double hist_quantile_us(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        seen += h->n[i];
        if (seen > want) {
            uint64_t v = hist_bucket_mid(i);
            return (double)(v < h->max ? v : h->max) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

/* ---- message content ---- */

static size_t msg_offset(uint32_t id, uint32_t seq)
{
    return (size_t)(((uint64_t)id * 2654435761u + (uint64_t)seq * 40503u) % PAT_LEN);
}

/* Bits of a number per header byte: 7 in a text message, so every byte is
 * ASCII (valid UTF-8); the numbers then wrap at 2^28, far beyond a run. */
static unsigned hdr_bits(void)
{
    return opt.ws == WS_TEXT ? 7 : 8;
}

static void msg_header(unsigned char hdr[HDR], uint32_t id, uint32_t seq)
{
    unsigned b = hdr_bits(), m = (1u << b) - 1;
    for (unsigned i = 0; i < 4; i++) {
        hdr[i] = (unsigned char)((seq >> (b * i)) & m);
        hdr[4 + i] = (unsigned char)((id >> (b * i)) & m);
    }
}

/* The number in 4 header bytes (inverse of msg_header, for error messages). */
static uint32_t hdr_field(const unsigned char *p)
{
    unsigned b = hdr_bits();
    return (uint32_t)p[0] | (uint32_t)p[1] << b | (uint32_t)p[2] << 2 * b | (uint32_t)p[3] << 3 * b;
}

/* A frame header for a payload of len bytes: FIN, opcode, the length in the
 * shortest form, and the mask flag and key if mask (RFC 6455 5.2). Returns
 * its length. */
static size_t ws_frame_header(unsigned char *h, int opcode, uint64_t len, const unsigned char *mask)
{
    size_t n = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)len;
    } else if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        h[1] |= 0x80;
        memcpy(h + n, mask, 4);
        n += 4;
    }
    return n;
}

/* Frame the payload already at dst + ws_tx_hl: header, then mask it with a
 * key of its own (any 32 bits; derived from id and seq so runs repeat). */
static void ws_frame(unsigned char *dst, uint32_t id, uint32_t seq)
{
    uint32_t k = id * 2654435761u ^ seq * 2246822519u ^ 0x5bd1e995u;
    unsigned char key[4] = {(unsigned char)k, (unsigned char)(k >> 8), (unsigned char)(k >> 16),
                            (unsigned char)(k >> 24)};
    ws_frame_header(dst, opt.ws, opt.size, key);
    unsigned char *p = dst + ws_tx_hl;
    for (size_t i = 0; i < opt.size; i++)
        p[i] ^= key[i & 3];
}

/* One message as it goes on the wire: opt.tx_size bytes at dst. */
static void msg_build(char *dst, uint32_t id, uint32_t seq)
{
    unsigned char hdr[HDR], *p = (unsigned char *)dst + ws_tx_hl;
    msg_header(hdr, id, seq);
    memcpy(p, pattern + msg_offset(id, seq), opt.size);
    memcpy(p, hdr, opt.size < HDR ? opt.size : HDR);
    if (opt.ws)
        ws_frame((unsigned char *)dst, id, seq);
}

/* `at` is a byte of the message on the wire: below ws_rx_hl, of its frame
 * header; from there on, of the payload. */
static void msg_corrupt(const struct conn *c, const unsigned char *data, size_t n, size_t at,
                        unsigned char want)
{
    size_t i = at - c->rpos; /* index of the bad byte in data */
    fprintf(stderr,
            "loadgen: conn %u: corrupt echo in message %u at %s byte %zu: expected 0x%02x, got "
            "0x%02x\n",
            c->id, c->rseq, at < ws_rx_hl ? "frame header" : "payload",
            at < ws_rx_hl ? at : at - ws_rx_hl, want, data[i]);
    if (c->rpos == 0 && n >= ws_rx_hl + HDR && opt.size >= HDR)
        fprintf(stderr, "loadgen: the received message's header says conn %u, message %u\n",
                hdr_field(data + ws_rx_hl + 4), hdr_field(data + ws_rx_hl));
    exit(2);
}

/* Check n received bytes that belong at offset c->rpos of message c->rseq
 * on the wire (with --ws: its frame header of ws_rx_hl bytes, then the
 * payload). */
static void msg_check(const struct conn *c, const unsigned char *data, size_t n)
{
    const size_t hl = ws_rx_hl;
    size_t pos = c->rpos, end = c->rpos + n;
    for (; pos < end && pos < hl; pos++)
        if (data[pos - c->rpos] != ws_rx_hdr[pos])
            msg_corrupt(c, data, n, pos, ws_rx_hdr[pos]);
    unsigned char hdr[HDR];
    msg_header(hdr, c->id, c->rseq);
    for (; pos < end && pos < hl + HDR; pos++)
        if (data[pos - c->rpos] != hdr[pos - hl])
            msg_corrupt(c, data, n, pos, hdr[pos - hl]);
    if (pos >= end)
        return;
    const unsigned char *want = pattern + msg_offset(c->id, c->rseq); /* the payload */
    if (memcmp(data + (pos - c->rpos), want + (pos - hl), end - pos) == 0)
        return;
    for (; pos < end; pos++) /* slow path only to name the first bad byte */
        if (data[pos - c->rpos] != want[pos - hl])
            msg_corrupt(c, data, n, pos, want[pos - hl]);
}

/* ---- connections ---- */

static void conn_fail(struct worker *w, struct conn *c, const char *why)
{
    if (now_ns() < t_end) { /* losing a connection after the window is not an error */
        if (w->errors < MAX_ERR_LOG)
            fprintf(stderr, "loadgen: conn %u: %s\n", c->id, why);
        w->errors++;
    }
    /* shutdown() first: an io_uring request in flight holds its own reference
     * to the socket, so close() alone would neither send FIN nor end it. */
    shutdown(c->fd, SHUT_RDWR);
    close(c->fd);
    c->dead = true;
    w->alive--;
}

static void conn_watch(struct worker *w, struct conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die(1, "epoll_ctl: %s", strerror(errno));
    c->want_out = out;
}

/* Write what is queued. One write() per call: a partial write means the socket
 * is full, so wait for EPOLLOUT instead of spending a syscall on EAGAIN. */
static void conn_flush(struct worker *w, struct conn *c)
{
    size_t left = c->out_len - c->out_off;
    ssize_t n = left ? write(c->fd, c->out + c->out_off, left) : 0;
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            conn_fail(w, c, strerror(errno));
            return;
        }
        n = 0;
    }
    c->out_off += (size_t)n;
    c->tx += (uint64_t)n;
    bool partial = c->out_off < c->out_len;
    if (!partial)
        c->out_off = c->out_len = 0;
    if (partial != c->want_out)
        conn_watch(w, c, partial);
}

/* Queue k new messages stamped with send time now. The room always suffices:
 * sseq - rseq never exceeds depth, and unsent bytes belong to in-flight messages
 * (for io_uring, the bytes of the send in flight may come on top: out_cap). */
static void conn_queue(struct conn *c, int k, uint64_t now)
{
    if (c->out_len + (size_t)k * opt.tx_size > c->out_cap) {
        if (c->sending) /* the kernel may still read out[]: moving it corrupts the send */
            die(1, "internal error: conn %u: send buffer full while a send is in flight", c->id);
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    for (int i = 0; i < k; i++) {
        msg_build(c->out + c->out_len, c->id, c->sseq);
        c->sent_ns[c->sseq % (uint32_t)opt.depth] = now;
        c->sseq++;
        c->out_len += opt.tx_size;
    }
}

/* n echoed bytes arrived at time now (shared by both engines): check them,
 * record the latency of each message they complete, and queue one new message
 * per completed one to keep DEPTH in flight. Returns whether anything was
 * queued; the engine then sends it its own way. */
static bool conn_consume(struct worker *w, struct conn *c, const unsigned char *data, size_t n,
                         uint64_t now)
{
    c->rx += n;
    /* Bytes in a send still in flight count as sent: the server may echo them
     * before that send's completion is reaped. */
    if (c->rx > c->tx + c->sending) {
        fprintf(stderr, "loadgen: conn %u: server echoed %llu bytes but only %llu were sent\n",
                c->id, (unsigned long long)c->rx, (unsigned long long)(c->tx + c->sending));
        exit(2);
    }
    bool counting = now >= t_measure && now < t_end;
    int completed = 0;
    for (size_t done = 0; done < n;) {
        size_t k = opt.rx_size - c->rpos;
        if (k > n - done)
            k = n - done;
        msg_check(c, data + done, k);
        c->rpos += k;
        done += k;
        if (c->rpos < opt.rx_size)
            break;
        if (counting) {
            hist_add(&w->hist, now - c->sent_ns[c->rseq % (uint32_t)opt.depth]);
            w->msgs++;
            c->msgs++;
        }
        c->rpos = 0;
        c->rseq++;
        completed++;
    }
    if (!completed || now >= t_end)
        return false;
    conn_queue(c, completed, now);
    return true;
}

/* ---- epoll engine ---- */

/* Readable: one read(), then the shared accounting, then write the replies.
 * The clock is read per read() (27 ns through the vDSO here), not per epoll
 * batch: a batch of 100 ready sockets takes about a millisecond to serve,
 * which is the latency itself. */
static void conn_on_readable(struct worker *w, struct conn *c, unsigned char *buf)
{
    ssize_t r = read(c->fd, buf, RBUF);
    uint64_t now = now_ns(); /* completion time of what was read, send time of replies */
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_fail(w, c, r == 0 ? "closed by the server" : strerror(errno));
        return;
    }
    if (conn_consume(w, c, buf, (size_t)r, now))
        conn_flush(w, c);
}

static void epoll_run(struct worker *w)
{
    unsigned char *buf = malloc(RBUF);
    if (!buf)
        die(1, "out of memory");
    uint64_t now = now_ns();
    for (int i = 0; i < w->nconns; i++) { /* prime: DEPTH messages on every connection */
        conn_queue(&w->conns[i], opt.depth, now);
        conn_flush(w, &w->conns[i]);
    }
    struct epoll_event evs[MAX_EVENTS];
    while (w->alive > 0 && (now = now_ns()) < t_end) {
        int timeout_ms = (int)((t_end - now) / 1000000u) + 1;
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die(1, "epoll_wait: %s", strerror(errno));
        }
        now = now_ns();
        if (w->wait0_ns < 0 && now >= t_measure)
            w->wait0_ns = thread_runq_wait_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c->dead && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                conn_on_readable(w, c, buf);
            if (!c->dead && (evs[i].events & EPOLLOUT))
                conn_flush(w, c);
        }
    }
    free(buf);
}

#ifdef HAVE_LIBURING
/* ---- io_uring engine ----
 *
 * Each loop iteration lists one send per connection that has bytes queued,
 * then ONE io_uring_submit_and_wait() submits them all and waits, then every
 * completion is reaped without another syscall. Receives are multishot recvs,
 * armed once per connection, into a ring of provided buffers that are checked
 * in place and handed straight back. With DEFER_TASKRUN the kernel does the
 * completion work of our requests only inside that one call, so an iteration
 * batches everything that became ready since the previous one: the syscall
 * cost per message falls with the load instead of staying at two per echo.
 */

/* user_data: connection index << OP_BITS | operation. */
enum { OP_RECV, OP_SEND, OP_WINDOW_END, OP_BITS = 2 };
enum { BGID = 0 }; /* the one provided-buffer group */
#define URING_BUF_MEM ((size_t)64 << 20) /* cap on receive buffer memory per worker */

struct uring {
    struct io_uring ring;
    struct io_uring_buf_ring *br;    /* provided-buffer descriptors, shared with the kernel */
    unsigned char *bufs;             /* their memory: nbufs * buf_size */
    unsigned nbufs, buf_size;
    int recycled;                    /* buffers handed back since the last advance */
    int *send_list;                  /* connections to send for in this iteration */
    int nsend;
    struct __kernel_timespec end_ts; /* t_end: the kernel reads it when the timeout is issued */
};

static unsigned pow2_at_least(size_t v, unsigned max)
{
    unsigned p = 1;
    while (p < v && p < max)
        p <<= 1;
    return p;
}

/* The SQ is sized for every SQE an iteration can need; should it still fill,
 * submit early rather than lose an operation. */
static struct io_uring_sqe *uring_sqe(struct uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
        if (!sqe)
            die(1, "io_uring: no free submission entry");
    }
    return sqe;
}

static void uring_arm_recv(struct uring *u, const struct conn *c, int idx)
{
    struct io_uring_sqe *sqe = uring_sqe(u);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, (uint64_t)idx << OP_BITS | OP_RECV);
}

static void uring_queue_send(struct uring *u, struct conn *c, int idx)
{
    if (!c->send_queued) {
        c->send_queued = true;
        u->send_list[u->nsend++] = idx;
    }
}

/* One send per listed connection, carrying everything it has queued, moved to
 * the front of out[] first. A connection whose previous send is still in
 * flight is skipped (its completion lists it again): two sends in flight on one
 * socket could interleave after a partial send. While a send is in flight
 * out[] must not move, so messages queued meanwhile go behind it; hence
 * out_cap = 2 * depth * size: the send's bytes (all unsent when it was issued,
 * so at most depth * size) plus those queued since (each replaces a completed
 * message, so at most depth * size too). */
static void uring_prep_sends(struct uring *u, struct worker *w)
{
    for (int i = 0; i < u->nsend; i++) {
        int idx = u->send_list[i];
        struct conn *c = &w->conns[idx];
        c->send_queued = false;
        if (c->dead || c->sending || c->out_off == c->out_len)
            continue;
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        struct io_uring_sqe *sqe = uring_sqe(u);
        io_uring_prep_send(sqe, c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, (uint64_t)idx << OP_BITS | OP_SEND);
        c->sending = c->out_len;
    }
    u->nsend = 0;
}

static void uring_on_send(struct uring *u, struct worker *w, int idx, int res)
{
    struct conn *c = &w->conns[idx];
    c->sending = 0;
    if (c->dead)
        return;
    if (res < 0 && res != -EAGAIN && res != -EINTR) {
        conn_fail(w, c, strerror(-res));
        return;
    }
    size_t sent = res > 0 ? (size_t)res : 0;
    c->tx += sent;
    c->out_off += sent;
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    else /* a partial send, or messages queued while it was in flight */
        uring_queue_send(u, c, idx);
}

static void uring_on_recv(struct uring *u, struct worker *w, int idx,
                          const struct io_uring_cqe *cqe)
{
    struct conn *c = &w->conns[idx];
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        unsigned char *buf = u->bufs + (size_t)bid * u->buf_size;
        /* The clock is read per completion, as the epoll engine reads it per
         * read(): no syscall separates two completions, so it is cheap. */
        if (!c->dead && cqe->res > 0 && conn_consume(w, c, buf, (size_t)cqe->res, now_ns()))
            uring_queue_send(u, c, idx);
        /* Checked in place: hand it back (the kernel sees it at the next advance). */
        io_uring_buf_ring_add(u->br, buf, u->buf_size, (unsigned short)bid,
                              io_uring_buf_ring_mask(u->nbufs), u->recycled++);
    }
    if (c->dead || (cqe->flags & IORING_CQE_F_MORE))
        return;
    /* The multishot recv has ended. Out of buffers (ENOBUFS; they are handed
     * back before the next submit) or stopped while data flowed: arm it again. */
    if (cqe->res > 0 || cqe->res == -ENOBUFS)
        uring_arm_recv(u, c, idx);
    else
        conn_fail(w, c, cqe->res == 0 ? "closed by the server" : strerror(-cqe->res));
}

static void uring_setup(struct uring *u, struct worker *w)
{
    memset(u, 0, sizeof *u);
    size_t n = (size_t)w->nconns;
    /* Receive buffers, each as large as all a connection can have in flight
     * (depth * size), so one completion normally carries all that arrived;
     * about two per connection, so they rarely run out within an iteration
     * (when they do, the recv ends with ENOBUFS and is re-armed). */
    u->buf_size = pow2_at_least((size_t)opt.depth * opt.rx_size, 64 * 1024);
    if (u->buf_size < 512)
        u->buf_size = 512;
    u->nbufs = pow2_at_least(2 * n + 64, 32768);
    while (u->nbufs > 64 && (size_t)u->nbufs * u->buf_size > URING_BUF_MEM)
        u->nbufs /= 2;
    /* SQ: at most one send and one recv re-arm per connection per iteration.
     * CQ: room for every completion one wait can produce, since an overflow
     * ends multishot recvs: one per buffer (a recv holds its buffer until we
     * reap it), one send and one ENOBUFS per connection, the timeout. */
    unsigned sq = pow2_at_least(2 * n + 8, 32768);
    unsigned cq = pow2_at_least(u->nbufs + 2 * n + 8, 65536);
    /* SINGLE_ISSUER + DEFER_TASKRUN (Linux 6.1+): completion work runs only
     * inside our submit-and-wait, batched, never interrupting us between
     * syscalls. COOP_TASKRUN is the next best on older kernels. The ring is
     * created here, in the thread that uses it, as SINGLE_ISSUER requires. */
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0] && rc == -EINVAL; i++) {
        struct io_uring_params p = {
            .flags = flag_sets[i] | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
            .cq_entries = cq,
        };
        rc = io_uring_queue_init_params(sq, &u->ring, &p);
    }
    if (rc < 0)
        die(1, "io_uring_queue_init: %s", strerror(-rc));
    io_uring_register_ring_fd(&u->ring); /* optional: spares an fd lookup per syscall */

    u->bufs = malloc((size_t)u->nbufs * u->buf_size);
    u->send_list = malloc(n * sizeof *u->send_list);
    void *br = NULL;
    if (!u->bufs || !u->send_list ||
        posix_memalign(&br, 4096, u->nbufs * sizeof(struct io_uring_buf)) != 0)
        die(1, "out of memory");
    u->br = br;
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)u->br, .ring_entries = u->nbufs, .bgid = BGID};
    rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0)
        die(1, "io_uring_register_buf_ring: %s", strerror(-rc));
    io_uring_buf_ring_init(u->br);
    for (unsigned i = 0; i < u->nbufs; i++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * u->buf_size, u->buf_size,
                              (unsigned short)i, io_uring_buf_ring_mask(u->nbufs), (int)i);
    io_uring_buf_ring_advance(u->br, (int)u->nbufs);

    for (int i = 0; i < w->nconns; i++)
        uring_arm_recv(u, &w->conns[i], i);
    /* Wakes the wait at t_end even if nothing else completes (a stalled
     * server), as epoll_wait's timeout does in the epoll engine. */
    u->end_ts.tv_sec = (long long)(t_end / 1000000000u);
    u->end_ts.tv_nsec = (long long)(t_end % 1000000000u);
    struct io_uring_sqe *sqe = uring_sqe(u);
    io_uring_prep_timeout(sqe, &u->end_ts, 0, IORING_TIMEOUT_ABS); /* CLOCK_MONOTONIC */
    io_uring_sqe_set_data64(sqe, OP_WINDOW_END);
}

static void uring_run(struct worker *w)
{
    struct uring u;
    uring_setup(&u, w);
    uint64_t now = now_ns();
    for (int i = 0; i < w->nconns; i++) { /* prime: DEPTH messages on every connection */
        conn_queue(&w->conns[i], opt.depth, now);
        uring_queue_send(&u, &w->conns[i], i);
    }
    while (w->alive > 0 && (now = now_ns()) < t_end) {
        uring_prep_sends(&u, w);
        int rc = io_uring_submit_and_wait(&u.ring, 1); /* the iteration's only syscall */
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            die(1, "io_uring_submit_and_wait: %s", strerror(-rc));
        now = now_ns();
        if (w->wait0_ns < 0 && now >= t_measure)
            w->wait0_ns = thread_runq_wait_ns();
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&u.ring, head, cqe)
        {
            int idx = (int)(cqe->user_data >> OP_BITS);
            switch (cqe->user_data & ((1u << OP_BITS) - 1)) {
            case OP_RECV: uring_on_recv(&u, w, idx, cqe); break;
            case OP_SEND: uring_on_send(&u, w, idx, cqe->res); break;
            default: break; /* OP_WINDOW_END: it only had to wake us */
            }
            seen++;
        }
        io_uring_cq_advance(&u.ring, seen);
        io_uring_buf_ring_advance(u.br, u.recycled);
        u.recycled = 0;
    }
    io_uring_queue_exit(&u.ring); /* cancels what is still in flight */
    free(u.br);
    free(u.bufs);
    free(u.send_list);
}
#else
static void uring_run(struct worker *w) /* unreachable: parse_args refuses -U */
{
    (void)w;
}
#endif

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    if (opt.uring)
        uring_run(w);
    else
        epoll_run(w);
    /* Sampled by the thread itself: once it exits, /proc forgets its wait time. */
    double wait1 = thread_runq_wait_ns();
    w->wait_ns = (w->wait0_ns < 0 || wait1 < 0) ? 0 : wait1 - w->wait0_ns;
    return NULL;
}

/* ---- setup ---- */

static void raise_nofile(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die(1, "getrlimit: %s", strerror(errno));
    if (rl.rlim_cur >= (rlim_t)need)
        return;
    rl.rlim_cur = (rlim_t)need;
    if (rl.rlim_max < (rlim_t)need)
        rl.rlim_max = (rlim_t)need; /* allowed for root only; the error says so */
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die(1, "cannot raise the open-file limit to %d: %s", need, strerror(errno));
}

/* ---- WebSocket client handshake (--ws) ---- */

static uint32_t rol32(uint32_t x, unsigned n)
{
    return x << n | x >> (32 - n);
}

/* SHA-1 of a short message (the handshake's key + GUID: under 119 bytes). */
static void sha1(const unsigned char *msg, size_t len, unsigned char out[20])
{
    unsigned char buf[128] = {0};
    size_t padded = len + 9 <= 64 ? 64 : 128;
    if (len > sizeof buf - 9)
        die(1, "internal error: sha1 input too long");
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    for (int i = 0; i < 8; i++)
        buf[padded - 1 - i] = (unsigned char)((uint64_t)len * 8 >> (8 * i));
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    for (size_t blk = 0; blk < padded; blk += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++) {
            const unsigned char *p = buf + blk + 4 * i;
            w[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        }
        for (int i = 16; i < 80; i++)
            w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20)
                f = (b & c) | (~b & d), k = 0x5a827999;
            else if (i < 40)
                f = b ^ c ^ d, k = 0x6ed9eba1;
            else if (i < 60)
                f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
            else
                f = b ^ c ^ d, k = 0xca62c1d6;
            uint32_t t = rol32(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol32(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    for (int i = 0; i < 20; i++)
        out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const unsigned char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *out++ = i + 2 < len ? tab[v & 63] : '=';
    }
    *out = '\0';
}

/* The value of header field `name` in a response head, trimmed, or NULL. */
static const char *ws_field(const char *head, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        const char *f = p + 2;
        if (strncasecmp(f, name, nl) != 0 || f[nl] != ':')
            continue;
        const char *v = f + nl + 1, *e = strstr(v, "\r\n");
        while (*v == ' ' || *v == '\t')
            v++;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *len = (size_t)(e - v);
        return v;
    }
    return NULL;
}

static bool ws_field_is(const char *head, const char *name, const char *want)
{
    size_t len;
    const char *v = ws_field(head, name, &len);
    return v && len == strlen(want) && strncasecmp(v, want, len) == 0;
}

/* The client handshake on a blocking socket: send the upgrade with a key of
 * our own, read the answer head (the server sends nothing after it until we
 * do) and check it: 101, Upgrade: websocket, Connection: upgrade, the accept
 * key SHA-1(key + GUID) in base64, no extension (we offered none). */
static void ws_handshake(int fd, uint32_t id)
{
    unsigned char raw[16];
    for (int i = 0; i < 16; i++)
        raw[i] = (unsigned char)((id + 1) * 2654435761u >> (i % 4 * 8)) ^ (unsigned char)(i * 37);
    char key[32], req[512], head[4096];
    base64(raw, sizeof raw, key);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.path, opt.host, opt.port, key);
    if (n < 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n)
        die(1, "conn %u: cannot send the WebSocket handshake", id);
    size_t got = 0;
    while (got < 4 || memcmp(head + got - 4, "\r\n\r\n", 4) != 0) {
        /* One byte at a time: a read must not take frame bytes past the head. */
        ssize_t r = got + 1 < sizeof head ? read(fd, head + got, 1) : -1;
        if (r <= 0)
            die(1, "conn %u: WebSocket handshake: %s", id,
                r == 0 ? "closed by the server" : got + 1 >= sizeof head ? "answer head too long" : strerror(errno));
        got++;
    }
    head[got] = '\0';
    if (strncmp(head, "HTTP/1.1 101", 12) != 0)
        die(1, "conn %u: WebSocket handshake refused: %.*s", id, (int)strcspn(head, "\r"), head);
    char kg[96], want[32];
    unsigned char digest[20];
    snprintf(kg, sizeof kg, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    sha1((const unsigned char *)kg, strlen(kg), digest);
    base64(digest, sizeof digest, want);
    size_t len;
    const char *acc = ws_field(head, "Sec-WebSocket-Accept", &len);
    if (!acc || len != strlen(want) || memcmp(acc, want, len) != 0)
        die(1, "conn %u: wrong Sec-WebSocket-Accept %.*s (expected %s)", id, acc ? (int)len : 6,
            acc ? acc : "(none)", want);
    if (!ws_field_is(head, "Upgrade", "websocket") || !ws_field(head, "Connection", &len))
        die(1, "conn %u: 101 without Upgrade: websocket and Connection", id);
    if (ws_field(head, "Sec-WebSocket-Extensions", &len))
        die(1, "conn %u: the server chose an extension we did not offer", id);
}

/* Blocking connect (and handshake) keeps setup simple; only then is the socket
 * made non-blocking. */
static int connect_one(const struct sockaddr_in *sa, uint32_t id)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die(1, "socket: %s", strerror(errno));
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0)
        die(1, "connect %s:%d: %s", opt.host, opt.port, strerror(errno));
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die(1, "setsockopt TCP_NODELAY: %s", strerror(errno));
    if (opt.ws) {
        struct timeval tv = {.tv_sec = 10}; /* a silent server fails the run, not hangs it */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ws_handshake(fd, id);
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        die(1, "fcntl O_NONBLOCK: %s", strerror(errno));
    return fd;
}

/* Open every connection and deal them round-robin to the workers (and, for the
 * epoll engine, their epoll sets; an io_uring worker sets its ring up itself). */
static void setup_workers(struct worker *ws)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1)
        die(1, "-H %s: not an IPv4 address", opt.host);
    for (int t = 0; t < opt.threads; t++) {
        ws[t].ep = opt.uring ? -1 : epoll_create1(EPOLL_CLOEXEC);
        if (!opt.uring && ws[t].ep < 0)
            die(1, "epoll_create1: %s", strerror(errno));
        ws[t].wait0_ns = -1;
        ws[t].conns = calloc((size_t)(opt.conns / opt.threads + 1), sizeof(struct conn));
        if (!ws[t].conns)
            die(1, "out of memory");
    }
    for (int i = 0; i < opt.conns; i++) {
        struct worker *w = &ws[i % opt.threads];
        struct conn *c = &w->conns[w->nconns++];
        c->fd = connect_one(&sa, (uint32_t)i);
        c->id = (uint32_t)i;
        c->out_cap = (size_t)(opt.uring ? 2 : 1) * (size_t)opt.depth * opt.tx_size;
        c->out = malloc(c->out_cap);
        c->sent_ns = calloc((size_t)opt.depth, sizeof *c->sent_ns);
        if (!c->out || !c->sent_ns)
            die(1, "out of memory");
        if (!opt.uring) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                die(1, "epoll_ctl: %s", strerror(errno));
        }
        w->alive++;
    }
}

static void make_pattern(void)
{
    pattern = malloc(PAT_LEN + opt.size);
    if (!pattern)
        die(1, "out of memory");
    uint64_t x = 0x9e3779b97f4a7c15u; /* xorshift64: fixed seed, same bytes every run */
    for (size_t i = 0; i < PAT_LEN + opt.size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* A text message must be UTF-8: printable ASCII then. */
        pattern[i] = opt.ws == WS_TEXT ? (unsigned char)(' ' + (x >> 24) % 95) : (unsigned char)(x >> 24);
    }
}

/* utime + stime of a process in microseconds, or -1 if it cannot be read. */
static double proc_cpu_us(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    char *p = strrchr(line, ')'); /* comm may contain spaces and parentheses */
    unsigned long long ut, st;
    /* After "comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt utime stime (fields 3..15 of proc(5)). */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                     &st) != 2)
        return -1;
    return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* Nanoseconds the server's threads spent runnable but waiting for a CPU (field 2
 * of /proc/PID/task/TID/schedstat, summed), or -1. A large share of the window
 * means another process took the server's core: the run measured the machine. */
static double proc_runq_wait_ns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    double sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[sizeof path + sizeof e->d_name + sizeof "/schedstat"];
        snprintf(p, sizeof p, "%s/%s/schedstat", path, e->d_name);
        FILE *f = fopen(p, "r");
        unsigned long long run, wait;
        if (f && fscanf(f, "%llu %llu", &run, &wait) == 2)
            sum += (double)wait;
        if (f)
            fclose(f);
    }
    closedir(d);
    return sum;
}

static double self_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void usage(void)
{
    fputs("usage: loadgen -H HOST -p PORT -c CONNS -s SIZE -d DEPTH -t SECONDS\n"
          "               [-w WARMUP_SECONDS] [-T THREADS] [-P SERVER_PID] [-U] [--json]\n"
          "               [--ws [--text] [--path /PATH]]\n"
          "  -U, --uring  io_uring engine (batched: one syscall per loop, not per message)\n"
          "  --ws         WebSocket: handshake to PATH (default /), then each message is a\n"
          "               masked binary frame (--text: a text frame) of SIZE payload bytes\n",
          stderr);
    exit(1);
}

static void parse_args(int argc, char **argv)
{
    opt = (struct opts){.host = "127.0.0.1", .conns = 1, .size = 64, .depth = 1, .secs = 5,
                        .warmup = 1, .threads = 1, .path = "/"};
    bool text = false;
    static const struct option longs[] = {{"json", no_argument, NULL, 'j'},
                                          {"uring", no_argument, NULL, 'U'},
                                          {"ws", no_argument, NULL, 'W'},
                                          {"text", no_argument, NULL, 'X'},
                                          {"path", required_argument, NULL, 'A'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "H:p:c:s:d:t:w:T:P:Ujh", longs, NULL)) != -1) {
        switch (ch) {
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'c': opt.conns = atoi(optarg); break;
        case 's': opt.size = (size_t)strtoul(optarg, NULL, 10); break;
        case 'd': opt.depth = atoi(optarg); break;
        case 't': opt.secs = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'T': opt.threads = atoi(optarg); break;
        case 'P': opt.server_pid = (pid_t)atoi(optarg); break;
        case 'j': opt.json = true; break;
        case 'U': opt.uring = true; break;
        case 'W': opt.ws = WS_BINARY; break;
        case 'X': text = true; break;
        case 'A': opt.path = optarg; break;
        default: usage();
        }
    }
    if (optind != argc || opt.port <= 0 || opt.port > 65535 || opt.conns < 1 || opt.size < 1 ||
        opt.depth < 1 || opt.secs <= 0 || opt.warmup < 0 || opt.threads < 1)
        usage();
    if (opt.threads > opt.conns)
        opt.threads = opt.conns;
    if ((text && !opt.ws) || opt.path[0] != '/' || strpbrk(opt.path, " \r\n"))
        usage();
    if (text)
        opt.ws = WS_TEXT;
    opt.tx_size = opt.rx_size = opt.size;
    if (opt.ws) {
        static const unsigned char key[4];
        unsigned char h[WS_HDR_MAX];
        ws_tx_hl = ws_frame_header(h, opt.ws, opt.size, key);
        ws_rx_hl = ws_frame_header(ws_rx_hdr, opt.ws, opt.size, NULL);
        opt.tx_size += ws_tx_hl;
        opt.rx_size += ws_rx_hl;
    }
#ifndef HAVE_LIBURING
    if (opt.uring) /* run.sh reads this to fall back to epoll */
        die(1, "-U: built without io_uring (compile with -DHAVE_LIBURING ... -luring)");
#endif
}

static void report(const struct hist *h, uint64_t msgs, uint64_t errors, uint64_t stalled,
                   double srv_cpu, double srv_wait_ns, double lg_cpu, double lg_wait_ns)
{
    double rate = (double)msgs / opt.secs;
    char srv_per_msg[32] = "na", srv_pct[32] = "na";
    if (srv_cpu >= 0 && msgs > 0)
        snprintf(srv_per_msg, sizeof srv_per_msg, "%.3f", srv_cpu / (double)msgs);
    if (srv_cpu >= 0)
        snprintf(srv_pct, sizeof srv_pct, "%.1f", srv_cpu / (opt.secs * 1e4));
    char runq_pct[32] = "na";
    if (srv_wait_ns >= 0)
        snprintf(runq_pct, sizeof runq_pct, "%.1f", srv_wait_ns / (opt.secs * 1e7));
    double p50 = hist_quantile_us(h, 0.50), p99 = hist_quantile_us(h, 0.99);
    double p999 = hist_quantile_us(h, 0.999), max = (double)h->max / 1000.0;
    double lg_pct = lg_cpu / (opt.secs * 1e4), lg_runq = lg_wait_ns / (opt.secs * 1e7);
    if (opt.json)
        printf("{\"msgs_per_s\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
               "\"max_us\":%.1f,\"errors\":%llu,\"stalled\":%llu,\"conns\":%d,\"size\":%zu,\"depth\":%d,"
               "\"secs\":%g,\"msgs\":%llu,\"srv_cpu_us_per_msg\":%s,\"srv_cpu_pct\":%s,"
               "\"srv_runq_pct\":%s,\"lg_cpu_pct\":%.1f,\"lg_runq_pct\":%.1f}\n",
               rate, p50, p99, p999, max, (unsigned long long)errors,
               (unsigned long long)stalled, opt.conns, opt.size,
               opt.depth, opt.secs, (unsigned long long)msgs,
               strcmp(srv_per_msg, "na") ? srv_per_msg : "null",
               strcmp(srv_pct, "na") ? srv_pct : "null",
               strcmp(runq_pct, "na") ? runq_pct : "null", lg_pct, lg_runq);
    else
        printf("msgs/s=%.0f p50_us=%.1f p99_us=%.1f errors=%llu conns=%d stalled=%llu "
               "p999_us=%.1f "
               "max_us=%.1f size=%zu depth=%d secs=%g msgs=%llu srv_cpu_us_per_msg=%s "
               "srv_cpu_pct=%s srv_runq_pct=%s lg_cpu_pct=%.1f lg_runq_pct=%.1f\n",
               rate, p50, p99, (unsigned long long)errors, opt.conns, (unsigned long long)stalled,
               p999, max, opt.size,
               opt.depth, opt.secs, (unsigned long long)msgs, srv_per_msg, srv_pct, runq_pct,
               lg_pct, lg_runq);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN); /* a dying server must show up as EPIPE, not kill us */
    raise_nofile(opt.conns + 64);
    make_pattern();
    struct worker *ws = calloc((size_t)opt.threads, sizeof *ws);
    if (!ws)
        die(1, "out of memory");
    setup_workers(ws);

    t_measure = now_ns() + (uint64_t)(opt.warmup * 1e9);
    t_end = t_measure + (uint64_t)(opt.secs * 1e9);
    for (int t = 0; t < opt.threads; t++)
        if (pthread_create(&ws[t].tid, NULL, worker_run, &ws[t]) != 0)
            die(1, "pthread_create failed");

    /* The main thread only samples CPU clocks at the window's two edges. */
    sleep_until(t_measure);
    double srv0 = opt.server_pid ? proc_cpu_us(opt.server_pid) : -1, lg0 = self_cpu_us();
    double wait0 = opt.server_pid ? proc_runq_wait_ns(opt.server_pid) : -1;
    sleep_until(t_end);
    double srv1 = opt.server_pid ? proc_cpu_us(opt.server_pid) : -1, lg1 = self_cpu_us();
    double wait1 = opt.server_pid ? proc_runq_wait_ns(opt.server_pid) : -1;
    if (opt.server_pid && (srv0 < 0 || srv1 < 0))
        fprintf(stderr, "loadgen: cannot read /proc/%d/stat: server CPU not measured\n",
                (int)opt.server_pid);

    struct hist *all = calloc(1, sizeof *all);
    uint64_t msgs = 0, errors = 0, stalled = 0;
    double lg_wait_ns = 0;
    if (!all)
        die(1, "out of memory");
    for (int t = 0; t < opt.threads; t++) {
        pthread_join(ws[t].tid, NULL);
        hist_merge(all, &ws[t].hist);
        msgs += ws[t].msgs;
        errors += ws[t].errors;
        lg_wait_ns += ws[t].wait_ns;
        for (int i = 0; i < ws[t].nconns; i++)
            stalled += ws[t].conns[i].msgs == 0;
    }
    report(all, msgs, errors, stalled, (srv0 < 0 || srv1 < 0) ? -1 : srv1 - srv0,
           (wait0 < 0 || wait1 < 0) ? -1 : wait1 - wait0, lg1 - lg0, lg_wait_ns);
    if (stalled)
        fprintf(stderr, "loadgen: %llu connection(s) completed no message in the window\n",
                (unsigned long long)stalled);
    return (errors || stalled) ? 3 : 0;
}
