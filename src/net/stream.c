/* A connected byte stream: reads into a pooled buffer that the application
 * consumes in place, a write queue that never loses or reorders a byte,
 * backpressure by watermarks, half-close, graceful and abrupt close. */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "net/net_int.h"

#define DEFAULT_MAX_READ (64u * 1024)
#define DEFAULT_HIGH (256u * 1024)
#define DEFAULT_LOW (64u * 1024)
/* How long csock_stream_end() waits for the peer's EOF once its output is
 * out, and how long it waits for a peer that takes none of that output. */
#define LINGER_MS 2000
/* A draining stream must also have been quiet this long before it ends:
 * empty queues and an empty receive queue can be a moment between two
 * segments of a peer that is still sending. */
#define DRAIN_QUIET_MS 250
#define IOV_MAX_BATCH 64

enum wkind { W_MEM, W_REF, W_FILE };

typedef struct wchunk {
    struct wchunk *next;
    const char *p;        /* next byte to send (MEM, REF) */
    size_t len;           /* bytes left to send */
    size_t cap;           /* MEM: bytes of data[] in all (for appending) */
    void (*release)(void *ud);
    void *ud;
    int fd;               /* FILE */
    off_t off;            /* FILE: next offset */
    unsigned char kind;
    unsigned char close_fd;
    unsigned char pooled; /* MEM: from a loop pool (1: the 16 KiB one, 2: the small one) */
    char data[];
} wchunk;

/* Stream flags. */
enum {
    F_READING = 1 << 0,    /* the application wants reads */
    F_PAUSED = 1 << 1,     /* reading paused by backpressure (write queue high) */
    F_EOF = 1 << 2,        /* the peer finished: nothing more to read */
    F_IN_READ = 1 << 3,    /* inside the read callback: writes are held */
    F_SHUT_REQ = 1 << 4,   /* shutdown once the queue drains */
    F_SHUT_DONE = 1 << 5,  /* write side shut down */
    F_ENDING = 1 << 6,     /* csock_stream_end(): discard input, close after */
    F_CONNECTING = 1 << 7, /* connect in progress (connect.c) */
    F_NOT_SOCK = 1 << 8,   /* a pipe or tty: plain writev, no sendfile */
    F_FAILED = 1 << 9,     /* an error was delivered: no more callbacks but close */
    F_FRAMED = 1 << 11,    /* reads are cut into messages for msg_cb */
    F_EOF_DONE = 1 << 12,  /* the application has taken the EOF */
    F_SHUT_FILTER = 1 << 13, /* the filter's shutdown (close_notify) is queued */
    F_DRAIN = 1 << 14,     /* server draining: end the stream once it is idle */
    F_RING = 1 << 15,      /* socket I/O by completion (s->x->rreq/wreq), not readiness */
    F_MSG_END = 1 << 16,   /* framed: msg_cb has had its final status */
};

/* What the stream's one timer is armed for. T_WATCH covers the idle, read
 * and write timeouts at once: it fires at the earliest of their deadlines. */
enum { T_NONE, T_CONNECT, T_WATCH, T_LINGER, T_DRAIN };

/* What a stream needs only sometimes lives beside it, made on first use, so
 * a plain idle stream costs one pointer for all of it: the timer and the
 * timeouts, and the requests of completion I/O (io_uring). Times are loop
 * milliseconds modulo 2^32: differences are right for any interval under
 * 49 days. */
typedef struct stream_ext {
    csock_stream *s;
    csock_timer *timer;   /* made when first armed */
    uint32_t idle_ms, read_ms, write_ms, recv_ms; /* 0: off */
    uint32_t read_since;  /* input has waited unconsumed since then */
    uint32_t write_since; /* output has waited, none taken by the kernel, since */
    uint32_t recv_since;  /* the last byte (or EOF) received, or reading (re)started */
    uint32_t due;         /* when the T_WATCH timer fires */
    csock__ioreq rreq, wreq; /* completion I/O: the one recv and one send in flight */
    /* Filtered streams (TLS): plaintext still to go through the filter,
     * behind everything in the raw queue (see feed_filter). */
    wchunk *plain_head, *plain_tail;
    size_t plain_bytes;   /* of it, counted in wq_bytes too */
    unsigned char ring;   /* the stream does its socket I/O by completion */
    unsigned char zombie; /* closed, finished once its requests complete */
    unsigned char drain_cancel; /* the recv was cancelled to see if a drain may end it */
    csock_stream_cb shutdown_cb, connect_cb; /* rare: kept out of the handle */
} stream_ext;

struct csock_stream {
    csock__handle h;
    csock__watcher w;
    unsigned flags;
    unsigned char timer_mode;
    unsigned char fkind, fkeep; /* framing: csock_frame_kind, keep_delimiter */
    unsigned char deferred; /* D_*: what the queued `task` is to do (0: not queued) */
    csock_read_cb read_cb;
    void *data;
    /* input: bytes [roff, roff+rlen) of rbuf are unconsumed */
    char *rbuf;
    uint32_t roff, rlen, rcap;
    uint32_t max_read;
    /* output */
    wchunk *wq_head, *wq_tail;
    size_t wq_bytes;
    uint32_t high, low;
    csock_stream_cb drain_cb;
    csock_stream_close_cb close_cb;
    csock__task task;       /* the stream's one deferred call (see stream_defer) */
    stream_ext *x;          /* timer, timeouts, completion I/O: made on first use */
    csock__conn_group *group;
    csock_stream *gnext, *gprev; /* the group's list of open streams */
    const csock__filter *filter;
    void *filter_state;
    csock_msg_cb msg_cb;    /* framed reads */
    uint32_t fmax;          /* framing: the largest message */
    int err;                /* first error seen, delivered once */
    /* The last byte read or written, in loop milliseconds modulo 2^32 (for
     * the idle timeout and the drain's quiet period). 32 bits keep the handle
     * small: ten thousand idle peers cost ~256 bytes each. */
    uint32_t last_io;
};

static void update_events(csock_stream *s);
static void watch_io(csock_stream *s);
static void ring_setup(csock_stream *s);
static void ring_recv(csock_stream *s);
static void ring_closed_done(csock_stream *s);
static stream_ext *ext(csock_stream *s);
static void process_input(csock_stream *s);
static void do_flush(csock_stream *s);
static void on_io(csock_loop *loop, csock__watcher *w, unsigned events);
static void drain_check(csock_stream *s);

/* Output waits: raw bytes for the socket, or plaintext for the filter. */
static int plain_waits(const csock_stream *s) { return s->x && s->x->plain_head; }
static int queued(const csock_stream *s) { return s->wq_head || plain_waits(s); }

csock_stream *csock__stream_new(csock_loop *loop, int fd, csock__conn_group *group)
{
    csock_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    csock__handle_init(loop, &s->h);
    csock__watcher_init(&s->w, fd, on_io);
    s->max_read = DEFAULT_MAX_READ;
    s->high = DEFAULT_HIGH;
    s->low = DEFAULT_LOW;
    s->group = group;
    if (group) {
        group->conns++;
        group->refs++;
        s->gnext = group->head;
        if (group->head) group->head->gprev = s;
        group->head = s;
        if (group->draining) s->flags |= F_DRAIN;
    }
    ring_setup(s);
    return s;
}

int csock_stream_open(csock_loop *loop, int fd, csock_stream **out)
{
    if (fd < 0) return -EBADF;
    int rc = csock__set_nonblock(fd, 1);
    if (rc < 0) return rc;
    csock__set_cloexec(fd);
    int type;
    socklen_t tl = sizeof type;
    int sock = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0;
    csock_stream *s = csock__stream_new(loop, fd, NULL);
    if (!s) return -ENOMEM;
    if (!sock) s->flags |= F_NOT_SOCK; /* a pipe, a tty, a file: plain read/write */
    if (!sock || type != SOCK_STREAM) s->flags &= ~(unsigned)F_RING; /* readiness */
    *out = s;
    return 0;
}

void *csock_stream_data(const csock_stream *s) { return s->data; }
void csock_stream_set_data(csock_stream *s, void *data) { s->data = data; }
csock_loop *csock_stream_loop(const csock_stream *s) { return s->h.loop; }
int csock_stream_fd(const csock_stream *s) { return s->w.fd; }
size_t csock_stream_write_queue_size(const csock_stream *s) { return s->wq_bytes; }
void csock_stream_on_drain(csock_stream *s, csock_stream_cb cb) { s->drain_cb = cb; }

static void maybe_pause(csock_stream *s);
static void maybe_resume(csock_stream *s);

void csock_stream_set_watermarks(csock_stream *s, size_t high, size_t low)
{
    s->high = high > UINT32_MAX ? UINT32_MAX : (uint32_t)high;
    s->low = low > s->high ? s->high : (uint32_t)low;
    /* A stream paused under the old marks must not wait for a drain that
     * the new ones no longer ask for (0 turns backpressure off). */
    maybe_resume(s);
    maybe_pause(s);
    update_events(s);
}

int csock_stream_set_max_read(csock_stream *s, size_t max)
{
    if (max < 4096) max = 4096;
    if (max > (1u << 30)) return -EINVAL;
    s->max_read = (uint32_t)max;
    return 0;
}

static int addr_of(const csock_stream *s, csock_addr *out, int peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = peer ? getpeername(s->w.fd, (struct sockaddr *)&ss, &len)
                  : getsockname(s->w.fd, (struct sockaddr *)&ss, &len);
    if (rc < 0) return -errno;
    csock_scheme sch = ss.ss_family == AF_UNIX ? CSOCK_UNIX : s->filter ? CSOCK_TLS : CSOCK_TCP;
    return csock__sockaddr_to_addr((struct sockaddr *)&ss, len, sch, out);
}

int csock_stream_peer(const csock_stream *s, csock_addr *out) { return addr_of(s, out, 1); }
int csock_stream_local(const csock_stream *s, csock_addr *out) { return addr_of(s, out, 0); }

int csock_stream_nodelay(csock_stream *s, int on)
{
    return setsockopt(s->w.fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) < 0 ? -errno : 0;
}

/* ---- watcher state ---------------------------------------------------------- */

static int wants_read(const csock_stream *s)
{
    if (s->flags & (F_EOF | F_FAILED)) return 0;
    if (s->flags & F_ENDING) return 1; /* draining the peer before close */
    if (s->flags & F_CONNECTING) return 0;
    return (s->flags & F_READING) && !(s->flags & F_PAUSED);
}

static void update_events(csock_stream *s)
{
    if (s->h.closing) return;
    unsigned ev = 0;
    int ring = (s->flags & F_RING) != 0;
    if (wants_read(s) && !ring) ev |= CSOCK_READABLE;
    /* Writes made inside the read callback are flushed when it returns: ask
     * for writability only for what a flush left behind, so a reply that
     * fits the socket costs no epoll_ctl at all. By completion, only a file
     * (sendfile) waits for writability; memory goes by send requests. */
    if ((s->wq_head && !(s->flags & F_IN_READ) && (!ring || s->wq_head->kind == W_FILE)) ||
        (s->flags & F_CONNECTING))
        ev |= CSOCK_WRITABLE;
    int rc = csock__watcher_set(s->h.loop, &s->w, ev);
    if (rc < 0 && !(s->flags & F_FAILED)) csock__stream_fail(s, rc);
    if (ring && !s->x->rreq.busy && wants_read(s)) ring_recv(s);
    watch_io(s);
}

/* ---- errors ------------------------------------------------------------------- */

/* What the stream's deferred call does: it needs at most these, so one
 * intrusive task serves them all and deferring cannot fail. */
enum {
    D_PROCESS = 1, /* offer buffered input (or the EOF) again */
    D_ERROR = 2,   /* deliver s->err */
    D_CONNECT = 4, /* report a connect that failed at once */
    D_FREE = 8,    /* the stream finished while the task was queued: free it */
};

static void run_task(csock__task *t);

/* Ask for `what` on the next pending phase. A stream that closes meanwhile
 * (from an I/O callback: the close phase comes before the next pending
 * phase) is freed by the task instead (D_FREE), never under it. */
static void stream_defer(csock_stream *s, unsigned what)
{
    if (!s->deferred) {
        s->task.fn = run_task;
        csock__defer(s->h.loop, &s->task);
    }
    s->deferred |= (unsigned char)what;
}

static void deliver_error(csock_stream *s)
{
    if (s->read_cb) {
        s->read_cb(s, s->err, s->rbuf ? s->rbuf + s->roff : "", s->rlen);
    } else if (s->drain_cb) {
        s->drain_cb(s, s->err);
    } else if (s->x && s->x->shutdown_cb) {
        csock_stream_cb cb = s->x->shutdown_cb;
        s->x->shutdown_cb = NULL;
        cb(s, s->err);
    }
}

/* Errors reach the application once, from the loop, never from inside the
 * call (a write) that found them: callers need not fear re-entrancy. */
void csock__stream_fail(csock_stream *s, int err)
{
    if (s->flags & F_FAILED || s->h.closing) return;
    s->flags |= F_FAILED;
    s->err = err;
    update_events(s);
    if (s->flags & F_ENDING) {
        csock_stream_close(s, s->close_cb);
        return;
    }
    stream_defer(s, D_ERROR);
}

/* ---- input -------------------------------------------------------------------- */

static void release_rbuf(csock_stream *s)
{
    if (!s->rbuf) return;
    if (s->rcap == CSOCK__BUF_SIZE)
        csock__buf_put(s->h.loop, s->rbuf);
    else
        free(s->rbuf);
    s->rbuf = NULL;
    s->roff = s->rlen = s->rcap = 0;
}

/* The most unconsumed input a stream holds before it calls the message
 * too large: the application was offered it all and took none. */
static size_t read_limit(const csock_stream *s)
{
    return s->max_read > CSOCK__BUF_SIZE ? s->max_read : CSOCK__BUF_SIZE;
}

/* Make room for at least `want` more bytes after the unconsumed ones.
 * Returns the free space, 0 when the buffer is at its maximum (plus `slack`),
 * <0 on ENOMEM. */
static long reserve(csock_stream *s, size_t want, size_t slack)
{
    if (!s->rbuf) {
        size_t cap = want > CSOCK__BUF_SIZE ? want : CSOCK__BUF_SIZE;
        s->rbuf = cap == CSOCK__BUF_SIZE ? csock__buf_get(s->h.loop) : malloc(cap);
        if (!s->rbuf) return -ENOMEM;
        s->rcap = (uint32_t)cap;
        s->roff = s->rlen = 0;
    }
    if (s->rcap - s->roff - s->rlen >= want) return (long)(s->rcap - s->roff - s->rlen);
    if (s->roff) { /* slide the unconsumed bytes to the front */
        memmove(s->rbuf, s->rbuf + s->roff, s->rlen);
        s->roff = 0;
        if (s->rcap - s->rlen >= want) return (long)(s->rcap - s->rlen);
    }
    size_t limit = read_limit(s) + slack;
    if (s->rlen >= limit) return 0;
    size_t cap = (size_t)s->rcap * 2;
    if (cap < s->rlen + want) cap = s->rlen + want;
    if (cap > limit) cap = limit;
    if (cap <= s->rcap) return (long)(s->rcap - s->rlen);
    char *nb = malloc(cap);
    if (!nb) return -ENOMEM;
    memcpy(nb, s->rbuf, s->rlen);
    uint32_t rlen = s->rlen;
    release_rbuf(s);
    s->rbuf = nb;
    s->rcap = (uint32_t)cap;
    s->rlen = rlen;
    return (long)(cap - rlen);
}

/* A filter decodes a whole raw read at once, which may carry a little more
 * than the room left: it may go past the maximum by FILTER_SLACK, and the
 * maximum is enforced before the next raw read instead (on_readable). */
#define FILTER_SLACK (4u * CSOCK__BUF_SIZE)

int csock__stream_input(csock_stream *s, const char *buf, size_t len)
{
    while (len) {
        long room = reserve(s, len < 4096 ? len : 4096, FILTER_SLACK);
        if (room < 0) return (int)room;
        if (room == 0) return CSOCK_ETOOBIG;
        size_t n = len < (size_t)room ? len : (size_t)room;
        memcpy(s->rbuf + s->roff + s->rlen, buf, n);
        s->rlen += (uint32_t)n;
        buf += n;
        len -= n;
    }
    return 0;
}

/* Record the time of a read or write for the idle timeout. The loop's
 * cached time is taken before it waits for I/O, so inside an I/O callback
 * it is as old as that wait was long: refresh it first (a vDSO
 * clock_gettime), or the idle timer fires early by the loop's idle time. */
static void touch(csock_stream *s) { s->last_io = (uint32_t)s->h.loop->now; }

/* The read timeout's clock restarts whenever input starts to wait and
 * whenever the application consumes some: it measures how long a peer
 * leaves a message unfinished, so a fast upload is never cut. */
static void read_clock(csock_stream *s)
{
    if (s->x) s->x->read_since = (uint32_t)s->h.loop->now;
}

/* The receive timeout's clock: restarted by every byte received, and when
 * reading starts or resumes (while we do not read, the peer is not silent
 * for all we know). Our own writes never restart it. */
static void recv_clock(csock_stream *s)
{
    if (s->x) s->x->recv_since = (uint32_t)s->h.loop->now;
}

/* Hand `n` bytes to the read callback (writes it makes are held until it
 * returns); returns how many it consumed. The caller checks for a close. */
static size_t offer(csock_stream *s, const char *buf, size_t n)
{
    s->flags |= F_IN_READ;
    size_t used = s->read_cb(s, 0, buf, n);
    s->flags &= ~F_IN_READ;
    if (used > n) used = n;
    if (used) read_clock(s);
    return used;
}

/* Offer the buffered input to the application (or discard it when ending). */
static void process_input(csock_stream *s)
{
    if (s->h.closing || (s->flags & F_FAILED)) return;
    if (s->flags & F_ENDING) {
        release_rbuf(s);
        return;
    }
    if (!s->rlen || !(s->flags & F_READING) || (s->flags & F_PAUSED)) return;
    size_t used = offer(s, s->rbuf + s->roff, s->rlen);
    if (s->h.closing) return;
    s->roff += (uint32_t)used;
    s->rlen -= (uint32_t)used;
    if (!s->rlen) release_rbuf(s); /* idle streams hold no buffer */
    do_flush(s);
    drain_check(s);
}

/* The EOF goes to the application with whatever input is still unconsumed.
 * If the application stops reading (or backpressure pauses it) before it has
 * consumed everything, the rest and the EOF are offered again on resume. */
static void deliver_eof(csock_stream *s)
{
    s->flags |= F_EOF;
    update_events(s);
    if (s->flags & F_ENDING) {
        if (!queued(s)) csock_stream_close(s, s->close_cb);
        return; /* else after_drain() closes once the reply is out */
    }
    if (!s->read_cb || (s->flags & (F_FAILED | F_EOF_DONE))) return;
    if (!(s->flags & F_READING) || (s->flags & F_PAUSED)) return;
    s->flags |= F_IN_READ;
    size_t used = s->read_cb(s, CSOCK_EOF, s->rbuf ? s->rbuf + s->roff : "", s->rlen);
    s->flags &= ~F_IN_READ;
    if (s->h.closing) return;
    if (used < s->rlen && (!(s->flags & F_READING) || (s->flags & F_PAUSED))) {
        s->roff += (uint32_t)used;
        s->rlen -= (uint32_t)used;
    } else {
        s->flags |= F_EOF_DONE;
        release_rbuf(s);
    }
    do_flush(s);
}

/* Offer bytes the backend received (completion I/O) straight from its
 * buffer: only what the application leaves unconsumed is copied. */
static void deliver_direct(csock_stream *s, const char *buf, size_t n)
{
    size_t used = offer(s, buf, n);
    if (s->h.closing) return;
    if (used < n) {
        int rc = csock__stream_input(s, buf + used, n - used);
        if (rc < 0) return csock__stream_fail(s, rc);
    }
    do_flush(s);
    drain_check(s);
}

/* `n` bytes arrived (0: the peer's EOF). They are in `raw` (a filter's raw
 * input, or a completion buffer to copy from), or already appended to rbuf
 * when `raw` is NULL. */
static void got_bytes(csock_stream *s, const char *raw, size_t n)
{
    touch(s);
    recv_clock(s);
    if (n == 0) {
        int st = s->filter ? s->filter->eof(s) : CSOCK_EOF;
        if (st != CSOCK_EOF) return csock__stream_fail(s, st);
        return deliver_eof(s);
    }
    if (s->filter) {
        int rc = s->filter->input(s, raw, n);
        if (rc < 0 && rc != CSOCK_EOF) return csock__stream_fail(s, rc);
        if (s->h.closing) return;
        if (s->wq_head) do_flush(s);
        if (rc == CSOCK_EOF) { /* the filter's clean end (TLS close_notify) */
            process_input(s);
            if (!s->h.closing) deliver_eof(s);
            return;
        }
    } else if (raw) {
        if (!s->rlen && (s->flags & (F_READING | F_PAUSED | F_ENDING | F_FAILED)) == F_READING)
            return deliver_direct(s, raw, n);
        int rc = csock__stream_input(s, raw, n);
        if (rc < 0) return csock__stream_fail(s, rc);
    } else {
        s->rlen += (uint32_t)n;
    }
    process_input(s);
}

static void on_readable(csock_stream *s)
{
    if (!s->rlen) read_clock(s); /* whatever arrives starts to wait now */
    char tmp_raw = s->filter != NULL;
    char *dst;
    size_t room;
    char *raw = NULL;
    if (tmp_raw) {
        if (s->rlen >= read_limit(s))
            return csock__stream_fail(s, CSOCK_ETOOBIG); /* as reserve() below */
        raw = csock__buf_get(s->h.loop);
        if (!raw) return csock__stream_fail(s, -ENOMEM);
        dst = raw;
        room = CSOCK__BUF_SIZE;
    } else {
        long r = reserve(s, 1024, 0);
        if (r < 0) return csock__stream_fail(s, (int)r);
        if (r == 0) {
            /* The application has not consumed a full buffer: the message is
             * larger than it allows. */
            return csock__stream_fail(s, CSOCK_ETOOBIG);
        }
        dst = s->rbuf + s->roff + s->rlen;
        room = (size_t)r;
    }
    ssize_t n = read(s->w.fd, dst, room);
    if (n < 0) {
        int err = errno;
        if (raw) csock__buf_put(s->h.loop, raw);
        if (err == EAGAIN || err == EINTR) return;
        if (!s->rlen) release_rbuf(s);
        return csock__stream_fail(s, -err);
    }
    got_bytes(s, raw, (size_t)n);
    if (raw) csock__buf_put(s->h.loop, raw);
}

/* ---- completion I/O (io_uring): one recv and one send in flight ------------------ */

static void on_recv_done(csock_loop *loop, csock__ioreq *r, int res, char *buf);
static void on_send_done(csock_loop *loop, csock__ioreq *r, int res, char *buf);

/* Streams on a loop that does completion I/O use it: reads and writes then
 * cost no syscall of their own. A pipe or tty keeps readiness (see
 * csock_stream_open). */
static void ring_setup(csock_stream *s)
{
    if (!csock__io_ok(s->h.loop) || !ext(s)) return;
    s->x->rreq.cb = on_recv_done;
    s->x->wreq.cb = on_send_done;
    s->flags |= F_RING;
}

static void on_recv_done(csock_loop *loop, csock__ioreq *r, int res, char *buf)
{
    (void)loop;
    csock_stream *s = csock__container_of(r, stream_ext, rreq)->s;
    if (s->h.closing) return ring_closed_done(s);
    if (s->flags & F_FAILED) return; /* nothing more is delivered */
    int drain = s->x->drain_cancel;
    s->x->drain_cancel = 0;
    if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
        if (drain) drain_check(s); /* nothing came: the drain may end it now */
        if (!s->h.closing) update_events(s); /* asks again if still reading */
        return;
    }
    if (res < 0) {
        if (!s->rlen) release_rbuf(s);
        return csock__stream_fail(s, res);
    }
    if (!s->rlen) read_clock(s);
    /* Bytes that arrive after reading stopped (a recv already in flight)
     * wait in rbuf like any unconsumed input: at most one buffer more. */
    got_bytes(s, buf, (size_t)res);
    /* Processing the bytes usually flushed and asked for the next recv
     * already (do_flush -> update_events); when it did not (paused, not
     * reading, EOF), settle the stream's state here. */
    if (!s->h.closing && !s->x->rreq.busy) update_events(s);
}

static void ring_recv(csock_stream *s)
{
    if (s->rlen >= read_limit(s)) {
        if (s->deferred & D_PROCESS) return; /* not offered yet: it may take some */
        return csock__stream_fail(s, CSOCK_ETOOBIG); /* offered it all, took none */
    }
    int rc = csock__io_recv(s->h.loop, &s->x->rreq, s->w.fd);
    if (rc < 0) csock__stream_fail(s, rc);
}

static void deferred_process(csock_stream *s)
{
    if ((s->flags & F_EOF) && !(s->flags & F_EOF_DONE))
        deliver_eof(s);
    else
        process_input(s);
}

/* Input already buffered must be offered again when reading resumes: no
 * readiness event will come for bytes the kernel no longer holds. */
static void schedule_process(csock_stream *s)
{
    if (!s->rlen && (!(s->flags & F_EOF) || (s->flags & F_EOF_DONE))) return;
    stream_defer(s, D_PROCESS);
}

int csock_stream_read_start(csock_stream *s, csock_read_cb cb)
{
    if (s->h.closing || !cb) return -EINVAL;
    if (s->flags & F_FAILED) return s->err;
    s->read_cb = cb;
    if (!(s->flags & F_READING)) {
        s->flags |= F_READING;
        touch(s);
        read_clock(s);
        recv_clock(s);
        schedule_process(s);
    }
    update_events(s);
    return 0;
}

int csock_stream_read_stop(csock_stream *s)
{
    s->flags &= ~F_READING;
    /* A recv in flight would keep the loop running (as a watcher would if
     * it were not stopped): cancel it. Bytes it already took are kept. */
    if (s->flags & F_RING) csock__io_cancel(s->h.loop, &s->x->rreq);
    update_events(s);
    return 0;
}

/* ---- output ------------------------------------------------------------------------ */

static void chunk_free(csock_stream *s, wchunk *c)
{
    if (c->kind == W_REF && c->release) c->release(c->ud);
    if (c->kind == W_FILE && c->close_fd) close(c->fd);
    if (c->pooled == 2)
        csock__sbuf_put(s->h.loop, c);
    else if (c->pooled)
        csock__buf_put(s->h.loop, c);
    else
        free(c);
}

static void free_chunks(csock_stream *s, wchunk *c)
{
    for (wchunk *next; c; c = next) {
        next = c->next;
        chunk_free(s, c);
    }
}

static void drop_queue(csock_stream *s)
{
    free_chunks(s, s->wq_head);
    s->wq_head = s->wq_tail = NULL;
    s->wq_bytes = 0;
    if (s->x) {
        free_chunks(s, s->x->plain_head);
        s->x->plain_head = s->x->plain_tail = NULL;
        s->x->plain_bytes = 0;
    }
}

/* The write timeout's clock: restarted when output starts to wait and each
 * time the kernel takes some of it. */
static void write_clock(csock_stream *s)
{
    if (s->x) s->x->write_since = (uint32_t)s->h.loop->now;
}

/* Append c to a list of output: the raw queue, or the plaintext waiting
 * for a filter (both count in wq_bytes). */
static void chunk_append(csock_stream *s, wchunk **head, wchunk **tail, wchunk *c)
{
    if (!queued(s)) write_clock(s);
    c->next = NULL;
    if (*tail)
        (*tail)->next = c;
    else
        *head = c;
    *tail = c;
    s->wq_bytes += c->len;
}

static void enqueue(csock_stream *s, wchunk *c) { chunk_append(s, &s->wq_head, &s->wq_tail, c); }

/* Copy bytes onto the queue, filling the tail chunk before making another. */
static int queue_copy(csock_stream *s, const char *buf, size_t len)
{
    wchunk *t = s->wq_tail;
    if (t && t->kind == W_MEM) {
        size_t used = (size_t)(t->p - t->data) + t->len;
        size_t room = t->cap - used;
        size_t n = len < room ? len : room;
        memcpy(t->data + used, buf, n);
        t->len += n;
        s->wq_bytes += n;
        buf += n;
        len -= n;
    }
    while (len) {
        size_t small = CSOCK__BUF_SIZE - sizeof(wchunk);
        wchunk *c;
        size_t cap;
        int pooled = 0;
        if ((s->flags & F_RING) && len <= CSOCK__SBUF_SIZE - sizeof(wchunk)) {
            /* A chunk stays until its send request completes, and a busy
             * loop has hundreds in flight at once: a small pooled one (room
             * for a few more replies), not a 16 KiB one. */
            c = csock__sbuf_get(s->h.loop);
            cap = CSOCK__SBUF_SIZE - sizeof(wchunk);
            pooled = 2;
        } else if (len <= small) {
            c = csock__buf_get(s->h.loop);
            cap = small;
            pooled = 1;
        } else {
            c = malloc(sizeof *c + len);
            cap = len;
        }
        if (!c) return -ENOMEM;
        memset(c, 0, sizeof *c);
        c->kind = W_MEM;
        c->pooled = (unsigned char)pooled;
        c->cap = cap;
        c->p = c->data;
        size_t n = len < cap ? len : cap;
        memcpy(c->data, buf, n);
        c->len = n;
        enqueue(s, c);
        buf += n;
        len -= n;
    }
    return 0;
}

static void maybe_pause(csock_stream *s)
{
    if (s->high && s->wq_bytes > s->high && !(s->flags & F_PAUSED)) {
        s->flags |= F_PAUSED;
        update_events(s);
    }
}

static int arm_timer(csock_stream *s, int mode, uint64_t ms);

/* Bound an ending stream's life: without a timer it could stay open
 * forever, so a timer that cannot be made closes it at once. */
static void linger(csock_stream *s)
{
    if (arm_timer(s, T_LINGER, LINGER_MS) < 0) csock_stream_close(s, s->close_cb);
}

static void maybe_resume(csock_stream *s)
{
    if ((s->flags & F_PAUSED) && (!s->high || s->wq_bytes <= s->low)) {
        s->flags &= ~F_PAUSED;
        read_clock(s); /* the wait was ours, not the peer's */
        recv_clock(s);
        update_events(s);
        schedule_process(s);
    }
}

/* What follows a flush: resume reading below the low watermark, then, once
 * the queue is empty, a requested half-close, a pending graceful close, or
 * the drain callback (only when there was something to drain). */
static void after_drain(csock_stream *s, int was_queued)
{
    int shut_now = 0;
    maybe_resume(s);
    if (queued(s)) return;
    if ((s->flags & F_SHUT_REQ) && !(s->flags & F_SHUT_DONE)) {
        if (s->filter && s->filter->shutdown && !(s->flags & F_SHUT_FILTER)) {
            s->flags |= F_SHUT_FILTER;
            s->filter->shutdown(s); /* may queue close_notify: send it first */
            if (s->wq_head) {
                do_flush(s);
                return;
            }
        }
        s->flags |= F_SHUT_DONE;
        shut_now = 1;
        int rc = shutdown(s->w.fd, SHUT_WR) < 0 ? -errno : 0;
        if (rc == -ENOTSOCK) rc = 0; /* a pipe: nothing to half-close */
        if (s->x && s->x->shutdown_cb) {
            csock_stream_cb cb = s->x->shutdown_cb;
            s->x->shutdown_cb = NULL;
            cb(s, rc);
            if (s->h.closing) return;
        }
    }
    if (s->flags & F_ENDING) {
        if (s->flags & (F_EOF | F_FAILED))
            csock_stream_close(s, s->close_cb);
        else if (shut_now)
            linger(s); /* the peer has LINGER_MS from now to finish */
        return;
    }
    if (was_queued && s->drain_cb && !(s->flags & F_IN_READ)) s->drain_cb(s, 0);
    if (!s->h.closing) drain_check(s);
}

static ssize_t send_iov(csock_stream *s, struct iovec *iov, int n)
{
    if (!(s->flags & F_NOT_SOCK)) {
        /* MSG_NOSIGNAL: never SIGPIPE. One buffer (the common reply) goes by
         * send(), which skips sendmsg's msghdr and iovec import. */
        ssize_t r;
        if (n == 1) {
            r = send(s->w.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            r = sendmsg(s->w.fd, &m, MSG_NOSIGNAL);
        }
        if (r >= 0 || errno != ENOTSOCK) return r;
        s->flags |= F_NOT_SOCK;
    }
    return writev(s->w.fd, iov, n);
}

static ssize_t send_file(csock_stream *s, wchunk *c)
{
    if (!(s->flags & F_NOT_SOCK)) {
        ssize_t r = sendfile(s->w.fd, c->fd, &c->off, c->len);
        if (r >= 0 || (errno != EINVAL && errno != ENOSYS)) return r;
    }
    /* Fallback: read a block and send it as a copy. */
    char *b = csock__buf_get(s->h.loop);
    if (!b) return -1;
    size_t want = c->len < CSOCK__BUF_SIZE ? c->len : CSOCK__BUF_SIZE;
    ssize_t r = pread(c->fd, b, want, c->off);
    if (r > 0) {
        struct iovec iov = {b, (size_t)r};
        r = send_iov(s, &iov, 1);
        if (r > 0) c->off += r;
    } else if (r == 0) {
        errno = EIO; /* the file shrank under us */
        r = -1;
    }
    csock__buf_put(s->h.loop, b);
    return r;
}

/* The kernel took `n` bytes from the head of the queue. */
static void advance(csock_stream *s, size_t n)
{
    touch(s);
    write_clock(s);
    s->wq_bytes -= n;
    while (s->wq_head && (n || !s->wq_head->len)) {
        wchunk *c = s->wq_head;
        if (n < c->len) {
            c->len -= n;
            if (c->kind != W_FILE) c->p += n;
            break;
        }
        n -= c->len;
        s->wq_head = c->next;
        if (!s->wq_head) s->wq_tail = NULL;
        chunk_free(s, c);
    }
}

static void on_send_done(csock_loop *loop, csock__ioreq *r, int res, char *buf)
{
    (void)loop;
    (void)buf;
    csock_stream *s = csock__container_of(r, stream_ext, wreq)->s;
    if (s->h.closing) return ring_closed_done(s);
    if (s->flags & F_FAILED) return;
    if (res < 0) {
        if (res == -EINTR || res == -EAGAIN) return do_flush(s); /* again */
        drop_queue(s);
        return csock__stream_fail(s, res == -ECANCELED ? -EPIPE : res);
    }
    advance(s, (size_t)res);
    if (s->h.closing) return; /* a release callback closed it */
    if (queued(s)) return do_flush(s); /* the rest, or a short send's remainder */
    update_events(s);
    after_drain(s, 1);
}

/* Send the head chunk by a send request; its completion sends the next.
 * Writes made meanwhile join the queue (and the tail chunk), so replies
 * pile up into few requests. */
static int ring_send(csock_stream *s)
{
    if (s->x->wreq.busy) return 0;
    wchunk *c = s->wq_head;
    int rc = csock__io_send(s->h.loop, &s->x->wreq, s->w.fd, c->p, c->len);
    if (rc < 0) {
        drop_queue(s);
        csock__stream_fail(s, rc);
    }
    return rc;
}

/* Hand the kernel as much of the queue as it takes now. Returns 0 when
 * the stream failed or closed on the way, else 1. */
static int send_queue(csock_stream *s)
{
    while (s->wq_head) {
        ssize_t r;
        wchunk *c = s->wq_head;
        if ((s->flags & F_RING) && c->kind != W_FILE) {
            if (!c->len) { /* an empty chunk: drop it and go on */
                advance(s, 0);
                continue;
            }
            if (ring_send(s) < 0) return 0;
            break; /* its completion goes on */
        }
        int file = c->kind == W_FILE;
        size_t want = 0;
        if (file) {
            r = send_file(s, c);
        } else {
            struct iovec iov[IOV_MAX_BATCH];
            int n = 0;
            for (wchunk *x = c; x && x->kind != W_FILE && n < IOV_MAX_BATCH; x = x->next) {
                iov[n++] = (struct iovec){(void *)x->p, x->len};
                want += x->len;
            }
            r = send_iov(s, iov, n);
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            drop_queue(s);
            csock__stream_fail(s, -errno);
            return 0;
        }
        advance(s, (size_t)r);
        if (s->h.closing) return 0; /* a release callback closed it */
        /* A short write: the socket buffer is full, wait for POLLOUT. Judge
         * by what this call was given, not by what is left: when a file
         * part is done and bytes follow (a multipart answer), go on to them.
         * (A ring stream has no POLLOUT to wait for: stopping there left
         * the rest of the queue unsent.) A file may be sent in several
         * calls: only one that took nothing means the socket is full. */
        if (file ? r == 0 : (size_t)r < want) break;
    }
    return 1;
}

/* ---- plaintext behind a filter (TLS) ---- */

/* On a filtered stream a file cannot go by sendfile: it waits as plaintext
 * behind the raw queue and is read and encrypted a piece at a time, only
 * while the raw queue holds less than FEED_AHEAD, so a 200 MB file costs a
 * few buffers, not 200 MB. Writes made while plaintext waits join it (no
 * record may overtake the file's). Waiting plaintext counts in wq_bytes, as
 * a plain stream's file does: backpressure sees it. */
#define FEED_AHEAD (64u * 1024)

static void plain_append(csock_stream *s, wchunk *c)
{
    chunk_append(s, &s->x->plain_head, &s->x->plain_tail, c);
    s->x->plain_bytes += c->len;
}

/* Put the next piece (at most `max` bytes) of chunk c through the filter.
 * Returns the plaintext bytes taken, or an error. */
static ssize_t feed_piece(csock_stream *s, wchunk *c, size_t max)
{
    if (c->kind != W_FILE) {
        int rc = s->filter->write(s, c->p, max);
        if (rc < 0) return rc;
        c->p += max;
        return (ssize_t)max;
    }
    char *b = csock__buf_get(s->h.loop);
    if (!b) return -ENOMEM;
    ssize_t r = pread(c->fd, b, max, c->off);
    if (r <= 0) r = r < 0 ? -errno : -EIO; /* EIO: the file shrank under us */
    int rc = r > 0 ? s->filter->write(s, b, (size_t)r) : 0;
    csock__buf_put(s->h.loop, b);
    if (rc < 0) return rc;
    if (r > 0) c->off += r;
    return r;
}

/* Encrypt waiting plaintext while the raw queue is short. Returns 0 when
 * the filter cannot take it yet (handshake), 1 when it can, or an error
 * for the stream. */
static int feed_filter(csock_stream *s)
{
    stream_ext *x = s->x;
    if (s->filter->ready && !s->filter->ready(s)) return 0;
    while (x->plain_head && s->wq_bytes - x->plain_bytes < FEED_AHEAD && !s->h.closing) {
        wchunk *c = x->plain_head;
        ssize_t n = feed_piece(s, c, c->len < CSOCK__BUF_SIZE ? c->len : CSOCK__BUF_SIZE);
        if (n < 0) return (int)n;
        c->len -= (size_t)n;
        x->plain_bytes -= (size_t)n;
        s->wq_bytes -= (size_t)n;
        if (c->len) continue;
        x->plain_head = c->next;
        if (!x->plain_head) x->plain_tail = NULL;
        chunk_free(s, c); /* a W_REF's release may close the stream */
    }
    return 1;
}

/* Send what the kernel takes now (feeding the filter as the raw queue
 * empties), then settle the stream's state. */
static void do_flush(csock_stream *s)
{
    if (s->flags & (F_IN_READ | F_CONNECTING | F_FAILED) || s->h.closing) return;
    int was_queued = queued(s);
    for (;;) {
        int can_feed = 0;
        if (plain_waits(s)) {
            can_feed = feed_filter(s);
            if (can_feed < 0) {
                drop_queue(s);
                return csock__stream_fail(s, can_feed);
            }
            if (s->h.closing) return;
        }
        if (!send_queue(s)) return;
        /* Go on while the kernel took it all and more plaintext can go. */
        if (s->wq_head || !plain_waits(s) || !can_feed) break;
    }
    update_events(s);
    after_drain(s, was_queued);
}

void csock__stream_flush(csock_stream *s) { do_flush(s); }

int csock__stream_queue_raw(csock_stream *s, const void *buf, size_t len)
{
    return queue_copy(s, buf, len);
}

static int check_writable(const csock_stream *s)
{
    if (s->h.closing || (s->flags & (F_SHUT_REQ | F_ENDING))) return -EPIPE;
    if (s->flags & F_FAILED) return s->err ? s->err : -EPIPE;
    return 0;
}

/* Plain sockets with nothing queued try the kernel first and copy only what
 * it did not take: the common small reply costs one syscall, no copy. */
static ssize_t write_direct(csock_stream *s, const struct iovec *iov, int iovcnt)
{
    if (s->wq_head || (s->flags & (F_IN_READ | F_CONNECTING | F_RING)) || iovcnt > IOV_MAX_BATCH)
        return 0;
    ssize_t r = send_iov(s, (struct iovec *)iov, iovcnt);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        int err = -errno;
        csock__stream_fail(s, err);
        return err;
    }
    touch(s);
    return r;
}

/* What every write does once its bytes are queued: send them unless
 * inside the read callback (held until it returns), then backpressure. */
static int after_queue(csock_stream *s)
{
    if (!(s->flags & F_IN_READ)) do_flush(s);
    if (s->h.closing) return 0;
    maybe_pause(s);
    update_events(s);
    return 0;
}

/* Through the filter now, or, while plaintext waits for it, behind that. */
static int filter_writev(csock_stream *s, const struct iovec *iov, int iovcnt, size_t total)
{
    int rc = 0;
    if (!plain_waits(s)) {
        for (int i = 0; i < iovcnt && rc == 0; i++)
            if (iov[i].iov_len) rc = s->filter->write(s, iov[i].iov_base, iov[i].iov_len);
        return rc;
    }
    wchunk *c = malloc(sizeof *c + total);
    if (!c) return -ENOMEM;
    memset(c, 0, sizeof *c);
    c->kind = W_MEM;
    c->p = c->data;
    c->len = c->cap = total;
    size_t off = 0;
    for (int i = 0; i < iovcnt; off += iov[i].iov_len, i++)
        memcpy(c->data + off, iov[i].iov_base, iov[i].iov_len);
    plain_append(s, c);
    return 0;
}

int csock_stream_writev(csock_stream *s, const struct iovec *iov, int iovcnt)
{
    int rc = check_writable(s);
    if (rc < 0) return rc;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    if (!total) return 0;
    if (s->filter) {
        rc = filter_writev(s, iov, iovcnt, total);
        if (rc < 0) return rc;
    } else {
        ssize_t sent = write_direct(s, iov, iovcnt);
        if (sent < 0) return (int)sent;
        size_t skip = (size_t)sent;
        for (int i = 0; i < iovcnt; i++) {
            size_t l = iov[i].iov_len;
            if (skip >= l) {
                skip -= l;
                continue;
            }
            rc = queue_copy(s, (const char *)iov[i].iov_base + skip, l - skip);
            skip = 0;
            if (rc < 0) return rc;
        }
        if (!s->wq_head) return 0;
    }
    return after_queue(s);
}

int csock_stream_write(csock_stream *s, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return csock_stream_writev(s, &iov, 1);
}

/* Queue chunk c (by reference or a file): onto the raw queue, or, on a
 * filtered stream, as plaintext for the filter. The chunk's own resource
 * (release, close_fd) is given back by chunk_free on failure. */
static int queue_chunk(csock_stream *s, wchunk *c)
{
    int rc = check_writable(s);
    if (rc == 0 && s->filter && !ext(s)) rc = -ENOMEM;
    if (rc < 0) {
        chunk_free(s, c);
        return rc;
    }
    if (s->filter)
        plain_append(s, c);
    else
        enqueue(s, c);
    return after_queue(s);
}

int csock_stream_write_ref(csock_stream *s, const void *buf, size_t len,
                           void (*release)(void *ud), void *ud)
{
    if (s->filter && !plain_waits(s) && check_writable(s) == 0) {
        /* The filter copies what it needs: no chunk to keep. */
        struct iovec iov = {(void *)buf, len};
        int rc = len ? filter_writev(s, &iov, 1, len) : 0;
        if (release) release(ud);
        return rc < 0 ? rc : after_queue(s);
    }
    wchunk *c = calloc(1, sizeof *c);
    if (!c) {
        if (release) release(ud);
        return -ENOMEM;
    }
    c->kind = W_REF;
    c->p = buf;
    c->len = len;
    c->release = release;
    c->ud = ud;
    return queue_chunk(s, c);
}

int csock_stream_write_file(csock_stream *s, int fd, off_t offset, size_t len, int close_fd)
{
    wchunk *c = calloc(1, sizeof *c);
    if (!c) {
        if (close_fd) close(fd);
        return -ENOMEM;
    }
    c->kind = W_FILE;
    c->fd = fd;
    c->off = offset;
    c->len = len;
    c->close_fd = close_fd ? 1 : 0;
    return queue_chunk(s, c); /* file bytes count toward backpressure too */
}

/* ---- the watcher ----------------------------------------------------------------- */

static void connect_done(csock_stream *s);

static void on_io(csock_loop *loop, csock__watcher *w, unsigned events)
{
    csock_stream *s = csock__container_of(w, csock_stream, w);
    if (s->flags & F_CONNECTING) {
        connect_done(s);
        return;
    }
    if (events & CSOCK_WRITABLE) do_flush(s);
    if ((events & CSOCK_READABLE) && !s->h.closing && wants_read(s)) on_readable(s);
}

/* ---- timers: connect timeout, idle/read/write timeouts, linger, drain ---------- */

static void on_timer(csock_timer *t);

static stream_ext *ext(csock_stream *s)
{
    if (!s->x) {
        s->x = calloc(1, sizeof *s->x);
        if (s->x) s->x->s = s;
    }
    return s->x;
}

static int arm_timer(csock_stream *s, int mode, uint64_t ms)
{
    stream_ext *x = ext(s);
    if (!x) return -ENOMEM;
    if (!x->timer) {
        if (csock_timer_new(s->h.loop, &x->timer) < 0) return -ENOMEM;
        csock_timer_set_data(x->timer, s);
    }
    s->timer_mode = (unsigned char)mode;
    x->due = (uint32_t)(s->h.loop->now + ms);
    return csock_timer_start(x->timer, on_timer, ms, 0);
}

/* Input waits for the application to make progress: it holds a partial
 * message and is not paused by our own backpressure. */
static int read_waiting(const csock_stream *s)
{
    return s->rlen && (s->flags & (F_READING | F_PAUSED | F_EOF | F_FAILED | F_ENDING)) == F_READING;
}

/* We are reading and the peer may still send: its silence counts. */
static int receiving(const csock_stream *s)
{
    return (s->flags & (F_READING | F_PAUSED | F_EOF | F_FAILED | F_ENDING | F_CONNECTING)) ==
           F_READING;
}

/* Milliseconds until the first of the idle, read, write and receive
 * deadlines (0: one has passed), or UINT32_MAX when none is running. */
static uint32_t next_deadline(const csock_stream *s, uint32_t now)
{
    const stream_ext *tm = s->x;
    uint64_t left = UINT64_MAX;
    uint32_t since[4] = {s->last_io, tm->read_since, tm->write_since, tm->recv_since};
    uint32_t limit[4] = {tm->idle_ms, read_waiting(s) ? tm->read_ms : 0,
                         queued(s) && !(s->flags & F_CONNECTING) ? tm->write_ms : 0,
                         receiving(s) ? tm->recv_ms : 0};
    for (int i = 0; i < 4; i++) {
        if (!limit[i]) continue;
        uint32_t gone = now - since[i];
        uint64_t l = gone >= limit[i] ? 0 : limit[i] - gone;
        if (l < left) left = l;
    }
    return left == UINT64_MAX ? UINT32_MAX : (uint32_t)left;
}

/* Make sure the timer fires by the earliest running deadline. Deadlines
 * only move later as I/O goes on, so the timer is left where it is then
 * and re-armed when it fires (no timer-heap work per read or write); it is
 * moved only when a deadline starts earlier than it. */
static void watch(csock_stream *s)
{
    stream_ext *tm = s->x;
    if (s->h.closing || (s->timer_mode != T_NONE && s->timer_mode != T_WATCH)) return;
    uint32_t now = (uint32_t)s->h.loop->now;
    uint32_t left = next_deadline(s, now);
    if (left == UINT32_MAX) return;
    if (s->timer_mode == T_WATCH && (int32_t)(tm->due - now) <= (int32_t)left) return;
    if (arm_timer(s, T_WATCH, left) < 0) csock__stream_fail(s, -ENOMEM);
}

/* Cheap enough for every I/O event: one load and a branch when the stream
 * has no read, write or receive timeout (those start and stop with the
 * stream's state; the idle one runs always). */
static void watch_io(csock_stream *s)
{
    if (s->x && (s->x->read_ms | s->x->write_ms | s->x->recv_ms)) watch(s);
}

static void on_timer(csock_timer *t)
{
    csock_stream *s = csock_timer_data(t);
    int mode = s->timer_mode;
    s->timer_mode = T_NONE;
    switch (mode) {
    case T_CONNECT:
        s->flags &= ~F_CONNECTING;
        if (s->x->connect_cb) {
            csock_stream_cb cb = s->x->connect_cb;
            s->x->connect_cb = NULL;
            cb(s, -ETIMEDOUT);
        }
        csock_stream_close(s, NULL);
        break;
    case T_WATCH:
        if (next_deadline(s, (uint32_t)s->h.loop->now) != 0) {
            watch(s); /* I/O moved the deadlines on: wait for the next one */
            return;
        }
        if (s->read_cb && !(s->flags & F_FAILED)) {
            s->flags |= F_FAILED;
            s->err = -ETIMEDOUT;
            s->read_cb(s, -ETIMEDOUT, s->rbuf ? s->rbuf + s->roff : "", s->rlen);
        }
        if (!s->h.closing) csock_stream_close(s, s->close_cb);
        break;
    case T_DRAIN:
        drain_check(s);
        if (!s->h.closing) watch(s);
        break;
    case T_LINGER:
        if (queued(s) && !(s->flags & F_FAILED)) {
            /* Still sending: wait on while the peer takes our bytes. */
            uint32_t quiet = (uint32_t)s->h.loop->now - s->x->write_since;
            if (quiet < LINGER_MS && arm_timer(s, T_LINGER, LINGER_MS - quiet) == 0) break;
        }
        csock_stream_close(s, s->close_cb);
        break;
    }
}

static int set_timeout(csock_stream *s, int which, uint64_t ms)
{
    if (!ms && !s->x) return 0;
    stream_ext *tm = ext(s);
    if (!tm) return -ENOMEM;
    uint32_t v = ms > INT32_MAX ? INT32_MAX : (uint32_t)ms;
    uint32_t now = (uint32_t)s->h.loop->now;
    if (which == 0) {
        tm->idle_ms = v;
        s->last_io = now; /* the idle clock starts now */
    } else if (which == 1) {
        tm->read_ms = v;
        tm->read_since = now;
    } else if (which == 2) {
        tm->write_ms = v;
        tm->write_since = now;
    } else {
        tm->recv_ms = v;
        tm->recv_since = now;
    }
    if (s->timer_mode == T_WATCH) { /* a shorter or no timeout: start over */
        if (tm->timer) csock_timer_stop(tm->timer);
        s->timer_mode = T_NONE;
    }
    watch(s);
    return 0;
}

int csock_stream_set_idle_timeout(csock_stream *s, uint64_t ms) { return set_timeout(s, 0, ms); }
int csock_stream_set_read_timeout(csock_stream *s, uint64_t ms) { return set_timeout(s, 1, ms); }
int csock_stream_set_write_timeout(csock_stream *s, uint64_t ms) { return set_timeout(s, 2, ms); }
int csock_stream_set_recv_timeout(csock_stream *s, uint64_t ms) { return set_timeout(s, 3, ms); }

/* ---- connecting (the socket part lives in connect.c) ----------------------------- */

int csock__stream_connecting(csock_stream *s, csock_stream_cb cb, uint64_t timeout_ms)
{
    if (!ext(s)) return -ENOMEM;
    s->flags |= F_CONNECTING;
    s->x->connect_cb = cb;
    update_events(s);
    if (timeout_ms) return arm_timer(s, T_CONNECT, timeout_ms);
    return 0;
}

/* A connect that failed at once (connect.c) still reports from the loop,
 * unless the application closed the stream first. */
static void connect_failed_early(csock_stream *s)
{
    csock_stream_cb cb = s->x->connect_cb;
    s->x->connect_cb = NULL;
    if (cb) cb(s, s->err);
    csock_stream_close(s, NULL);
}

int csock__stream_connect_failed(csock_stream *s, csock_stream_cb cb, int err)
{
    if (!ext(s)) return -ENOMEM;
    s->x->connect_cb = cb;
    s->err = err;
    stream_defer(s, D_CONNECT);
    return 0;
}

static void connect_done(csock_stream *s)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->w.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    s->flags &= ~F_CONNECTING;
    if (s->timer_mode == T_CONNECT) {
        csock_timer_stop(s->x->timer);
        s->timer_mode = T_NONE;
    }
    update_events(s);
    csock_stream_cb cb = s->x->connect_cb;
    s->x->connect_cb = NULL;
    touch(s);
    if (cb) cb(s, -err);
    if (err) {
        csock_stream_close(s, NULL);
        return;
    }
    if (!s->h.closing && s->x) watch(s);
    if (!s->h.closing) do_flush(s); /* writes and a shutdown made while connecting */
}

/* ---- shutdown and close ---------------------------------------------------------- */

int csock_stream_shutdown(csock_stream *s, csock_stream_cb cb)
{
    if (s->h.closing || (s->flags & (F_SHUT_REQ | F_ENDING))) return -EPIPE;
    if (cb && !ext(s)) return -ENOMEM;
    s->flags |= F_SHUT_REQ;
    if (cb) s->x->shutdown_cb = cb;
    do_flush(s); /* held while connecting or inside the read callback */
    return 0;
}

static void finish_now(csock_stream *s)
{
    if (s->w.fd >= 0) close(s->w.fd); /* kept while requests were in flight */
    s->w.fd = -1;
    drop_queue(s); /* W_REF releases come before the close callback */
    free(s->x);
    s->x = NULL;
    if (s->close_cb) s->close_cb(s);
    if (s->deferred) {
        s->deferred = D_FREE; /* the queued task still holds s: it frees it */
        return;
    }
    free(s);
}

static void run_task(csock__task *t)
{
    csock_stream *s = csock__container_of(t, csock_stream, task);
    unsigned what = s->deferred;
    s->deferred = 0; /* from here on a new request queues the task again */
    if (what & D_FREE) {
        free(s);
        return;
    }
    if (s->h.closing) return;
    if (what & D_CONNECT) return connect_failed_early(s);
    if (what & D_PROCESS) deferred_process(s);
    if ((what & D_ERROR) && !s->h.closing) deliver_error(s);
}

static void stream_finish(csock__handle *h)
{
    csock_stream *s = csock__container_of(h, csock_stream, h);
    stream_ext *x = s->x;
    if (x && (x->rreq.busy || x->wreq.busy)) {
        /* The kernel still holds a request on s (cancelled at close): finish
         * when it completes, and keep the loop running until then. */
        x->zombie = 1;
        csock__loop_hold(s->h.loop, 1);
        return;
    }
    finish_now(s);
}

/* A completion for a closed stream: the last one finishes it. */
static void ring_closed_done(csock_stream *s)
{
    stream_ext *x = s->x;
    if (!x->zombie || x->rreq.busy || x->wreq.busy) return;
    csock__loop_hold(s->h.loop, -1);
    finish_now(s);
}

void csock_stream_close(csock_stream *s, csock_stream_close_cb cb)
{
    if (s->h.closing) return;
    csock__watcher_set(s->h.loop, &s->w, 0);
    if (s->filter && s->filter->free) s->filter->free(s);
    s->filter = NULL;
    stream_ext *x = s->x;
    /* The kernel may still be reading the chunk being sent: the queue is
     * dropped once that send completes (finish_now). */
    if (!x || !x->wreq.busy) drop_queue(s);
    release_rbuf(s);
    if (x) {
        if (x->timer) csock_timer_close(x->timer, NULL);
        x->timer = NULL;
        csock__io_cancel(s->h.loop, &x->rreq);
        csock__io_cancel(s->h.loop, &x->wreq);
    }
    /* With requests in flight the fd stays open until they complete
     * (finish_now): a request not yet submitted, or one retried after
     * -ENOBUFS, would otherwise name whatever socket reuses the number. */
    if (s->w.fd >= 0 && !(x && (x->rreq.busy || x->wreq.busy))) {
        close(s->w.fd);
        s->w.fd = -1;
    }
    if (s->group) {
        csock__conn_group *g = s->group;
        if (s->gprev) s->gprev->gnext = s->gnext;
        else g->head = s->gnext;
        if (s->gnext) s->gnext->gprev = s->gprev;
        g->conns--;
        if (g->shared) atomic_fetch_sub(g->shared, 1);
        csock__group_release(g);
        s->group = NULL;
    }
    if (cb) s->close_cb = cb;
    csock__handle_close(&s->h, stream_finish);
}

void csock_stream_on_close(csock_stream *s, csock_stream_close_cb cb) { s->close_cb = cb; }
int csock_stream_draining(const csock_stream *s) { return (s->flags & F_DRAIN) != 0; }

/* Bytes the peer sent that the kernel holds and we have not read yet: a
 * request already in flight when the drain began. Ending the stream now
 * would discard it (csock_stream_end reads and drops input), so its reply
 * would be lost. Only asked while draining: no cost on the hot path. */
static int input_pending(const csock_stream *s)
{
    if (!(s->flags & F_READING) || (s->flags & (F_EOF | F_FAILED))) return 0;
    int n = 0;
    return ioctl(s->w.fd, FIONREAD, &n) == 0 && n > 0;
}

/* A draining stream ends once it is idle: no unconsumed input (buffered or
 * still in the kernel), nothing queued, not inside its read callback, and no
 * I/O for DRAIN_QUIET_MS. A peer that never stops sending is closed by the
 * server's drain timeout. */
static void drain_check(csock_stream *s)
{
    if ((s->flags & (F_DRAIN | F_ENDING | F_IN_READ)) != F_DRAIN || s->h.closing) return;
    if (s->rlen || queued(s) || (s->flags & F_CONNECTING)) return;
    if (input_pending(s)) return; /* on_readable() reads it and checks again */
    uint32_t quiet = (uint32_t)s->h.loop->now - s->last_io;
    if (quiet < DRAIN_QUIET_MS) {
        arm_timer(s, T_DRAIN, DRAIN_QUIET_MS - quiet); /* I/O before then: checked again */
        return;
    }
    if ((s->flags & F_RING) && s->x->rreq.busy) {
        /* A recv in flight may hold a request whose completion is not read
         * yet (FIONREAD no longer sees it): cancel it, and decide when it
         * completes, with its bytes or without (on_recv_done). */
        s->x->drain_cancel = 1;
        csock__io_cancel(s->h.loop, &s->x->rreq);
        return;
    }
    csock_stream_end(s, NULL);
}

void csock__group_drain(csock__conn_group *g)
{
    g->draining = 1;
    for (csock_stream *s = g->head, *next; s; s = next) {
        next = s->gnext; /* drain_check may close s */
        s->flags |= F_DRAIN;
        drain_check(s);
    }
}

void csock__group_close_all(csock__conn_group *g)
{
    while (g->head) csock_stream_close(g->head, NULL);
}

void csock_stream_end(csock_stream *s, csock_stream_close_cb cb)
{
    if (s->h.closing || (s->flags & F_ENDING)) return;
    if (cb) s->close_cb = cb;
    if (s->flags & (F_FAILED | F_CONNECTING)) {
        csock_stream_close(s, cb);
        return;
    }
    s->flags |= F_ENDING | F_SHUT_REQ;
    s->flags &= ~(F_READING | F_PAUSED);
    release_rbuf(s);
    linger(s);
    if (s->h.closing) return;
    do_flush(s); /* from inside the read callback, when it returns */
    if (!s->h.closing) update_events(s);
}

/* ---- framing over a stream ------------------------------------------------------- */

/* A framed stream's one final status: EOF, a framing error or a stream
 * error (reset, timeout). A framing error leaves the stream writable: the
 * replies to the messages before it are flushed when the read callback
 * returns, so csock_stream_end() from msg_cb still delivers them. */
static size_t framed_end(csock_stream *s, int status, size_t len)
{
    s->flags |= F_MSG_END;
    if (status != CSOCK_EOF && !(s->flags & F_FAILED)) {
        s->flags &= ~F_READING; /* nothing can follow the bad message */
        update_events(s);
        if (s->wq_head && (s->flags & F_IN_READ) && !(s->flags & F_CONNECTING)) {
            /* The replies held for the messages before it leave now: an
             * application that closes on the error would drop them. */
            s->flags &= ~F_IN_READ;
            int ok = send_queue(s);
            s->flags |= F_IN_READ;
            if (!ok && s->h.closing) return len;
        }
    }
    s->msg_cb(s, status, NULL, 0);
    return len;
}

static int framed_may_deliver(const csock_stream *s)
{
    return (s->flags & F_READING) && !(s->flags & F_PAUSED) && !s->h.closing;
}

/* The read callback of a framed stream: cut messages for msg_cb. Errors
 * reach it from the stream with F_FAILED already set (deliver_error, the
 * timer): they are its final status like any other. */
static size_t framed_read(csock_stream *s, int status, const char *buf, size_t len)
{
    if (s->flags & F_MSG_END) return len;
    const csock_framing f = {.kind = (csock_frame_kind)s->fkind, .max = s->fmax,
                             .keep_delimiter = s->fkeep};
    size_t used = 0;
    while (used < len && framed_may_deliver(s)) {
        const char *msg;
        size_t mlen;
        ssize_t n = csock_frame_next(&f, buf + used, len - used, &msg, &mlen);
        if (n == 0) break;
        if (n < 0) return framed_end(s, (int)n, len);
        used += (size_t)n;
        s->msg_cb(s, 0, msg, mlen);
    }
    if (status == 0 || s->h.closing) return used;
    if (status == CSOCK_EOF && used < len) {
        /* Messages still wait (msg_cb stopped or paused reading): the rest
         * and the EOF are offered again on resume. */
        if (!framed_may_deliver(s)) return used;
        if (f.kind != CSOCK_FRAME_LINE) return framed_end(s, -EPROTO, len); /* truncated */
        s->msg_cb(s, 0, buf + used, len - used); /* a final unterminated line */
        if (s->h.closing) return len;
    }
    return framed_end(s, status, len);
}

int csock_stream_read_framed(csock_stream *s, const csock_framing *f, csock_msg_cb cb)
{
    if (!f || !cb || (f->kind != CSOCK_FRAME_LINE && f->kind != CSOCK_FRAME_LP32)) return -EINVAL;
    if (f->max > UINT32_MAX - 4) return -EINVAL;
    s->fkind = (unsigned char)f->kind;
    s->fkeep = f->keep_delimiter ? 1 : 0;
    s->fmax = (uint32_t)f->max;
    s->msg_cb = cb;
    s->flags |= F_FRAMED;
    size_t need = f->max + 4; /* a whole message plus its delimiter or header */
    if (need > s->max_read) {
        int rc = csock_stream_set_max_read(s, need);
        if (rc < 0) return rc;
    }
    return csock_stream_read_start(s, framed_read);
}

int csock_stream_write_msg(csock_stream *s, const csock_framing *f, const void *msg, size_t len)
{
    /* Checked first: f->max is a size_t, and a longer body would wrap its
     * 32-bit header into a frame that lies about its length. */
    if (f->kind == CSOCK_FRAME_LP32 && len > UINT32_MAX) return -EMSGSIZE;
    if (len > f->max) return CSOCK_ETOOBIG;
    struct iovec iov[2];
    unsigned char hdr[4];
    if (f->kind == CSOCK_FRAME_LP32) {
        hdr[0] = (unsigned char)(len >> 24);
        hdr[1] = (unsigned char)(len >> 16);
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        iov[0] = (struct iovec){hdr, 4};
        iov[1] = (struct iovec){(void *)msg, len};
    } else {
        iov[0] = (struct iovec){(void *)msg, len};
        iov[1] = (struct iovec){"\n", 1};
    }
    return csock_stream_writev(s, iov, 2);
}

/* ---- filters (TLS) ----------------------------------------------------------------- */

void csock__stream_set_filter(csock_stream *s, const csock__filter *f, void *state)
{
    s->filter = f;
    s->filter_state = state;
}

void *csock__stream_filter_state(const csock_stream *s) { return s->filter_state; }
