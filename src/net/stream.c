/* A connected byte stream, its lifecycle: making and opening one, the
 * accessors, the watcher's state, errors and the deferred call, connecting,
 * shutdown, close and end. Reading, writing, completion I/O, timeouts,
 * framing and groups live in the stream_*.c files and group.c. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "net/stream_int.h"

/* A stream's defaults. 64 KiB of unconsumed input: four pool buffers, room
 * for any ordinary request head or message; more is asked for with
 * csock_stream_set_max_read. Backpressure pauses reading at 256 KiB queued
 * (a few socket buffers' worth: the kernel is kept busy) and resumes at
 * 64 KiB (far enough below that a pause is not undone by one write). */
#define DEFAULT_MAX_READ (64u * 1024)
#define DEFAULT_HIGH (256u * 1024)
#define DEFAULT_LOW (64u * 1024)
/* The bounds of csock_stream_set_max_read: below one page a stream would
 * grow its buffer for every line; above 1 GiB the 32-bit offsets of the
 * read buffer (uint32_t roff, rlen, rcap) run short. */
#define MAX_READ_MIN 4096u
#define MAX_READ_MAX (1u << 30)

static void on_io(csock_loop *loop, csock__watcher *w, unsigned events);

/* s->w.fd names the socket of a ring stream too (see struct csock_stream). */
_Static_assert(offsetof(csock_stream, w.fd) == offsetof(csock_stream, rreq.fd),
               "the watcher's fd and the recv request's share their place");
_Static_assert(sizeof(csock__watcher) <= 2 * sizeof(csock__ioreq),
               "a watcher fits where a ring stream keeps its requests");

_Static_assert(CSOCK_EOF > INT16_MIN && CSOCK_EUNKSCHEME > INT16_MIN,
               "every error code fits the stream's 16-bit err");

/* An idle connection costs its handle and nothing else: 232 bytes is a
 * 240-byte malloc chunk (test_server_scale measures it). Growing it costs
 * 16 bytes per connection at the next step: move rare fields to stream_ext. */
_Static_assert(sizeof(csock_stream) <= 232, "struct csock_stream grew past a 240-byte chunk");

void csock__stream_serve_by(csock_stream *s, int fd, int ring)
{
    if (ring) {
        s->flags |= F_RING;
        memset(&s->rreq, 0, 2 * sizeof s->rreq);
        s->rreq.fd = s->wreq.fd = fd;
    } else {
        s->flags &= ~(unsigned)F_RING;
        csock__watcher_init(&s->w, fd, on_io);
    }
}

csock_stream *csock__stream_new(csock_loop *loop, int fd, csock__conn_group *group)
{
    csock_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    csock__handle_init_kind(loop, &s->h, CSOCK_HANDLE_STREAM);
    s->max_read = DEFAULT_MAX_READ;
    s->high = DEFAULT_HIGH;
    s->low = DEFAULT_LOW;
    if (group) csock__group_add(group, s);
    csock__stream_ring_setup(s); /* sets F_RING where the loop does completion I/O */
    csock__stream_serve_by(s, fd, (s->flags & F_RING) != 0);
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
    if (!sock || type != SOCK_STREAM) csock__stream_serve_by(s, fd, 0); /* readiness */
    *out = s;
    return 0;
}

int csock_stream_counts(const csock_stream *s, uint64_t *bytes_read, uint64_t *bytes_written)
{
    if (bytes_read) *bytes_read = s->bytes_in;
    if (bytes_written) *bytes_written = s->bytes_out;
    return 0;
}

void *csock_stream_data(const csock_stream *s) { return s->data; }
void csock_stream_set_data(csock_stream *s, void *data) { s->data = data; }
csock_loop *csock_stream_loop(const csock_stream *s) { return s->h.loop; }
int csock_stream_fd(const csock_stream *s) { return s->w.fd; }
size_t csock_stream_write_queue_size(const csock_stream *s) { return s->wq_bytes; }
void csock_stream_on_drain(csock_stream *s, csock_stream_cb cb) { s->drain_cb = cb; }

int csock_stream_on_stop(csock_stream *s, csock_stream_cb cb)
{
    if (!cb) {
        if (s->x) s->x->stop_cb = NULL;
        return 0;
    }
    if (!csock__stream_ext(s)) return -ENOMEM;
    s->x->stop_cb = cb;
    /* Set during a drain: the owner hears of it all the same (from the loop). */
    if (s->flags & F_DRAIN) csock__stream_defer(s, D_STOP);
    return 0;
}

void csock_stream_set_watermarks(csock_stream *s, size_t high, size_t low)
{
    s->high = high > UINT32_MAX ? UINT32_MAX : (uint32_t)high;
    s->low = low > s->high ? s->high : (uint32_t)low;
    /* A stream paused under the old marks must not wait for a drain that
     * the new ones no longer ask for (0 turns backpressure off). */
    csock__stream_maybe_resume(s);
    csock__stream_maybe_pause(s);
    csock__stream_update_events(s);
}

int csock_stream_set_max_read(csock_stream *s, size_t max)
{
    if (max < MAX_READ_MIN) max = MAX_READ_MIN;
    if (max > MAX_READ_MAX) return -EINVAL;
    s->max_read = (uint32_t)max;
    return 0;
}

int csock__stream_set_peer(csock_stream *s, const csock_addr *peer)
{
    stream_ext *x = csock__stream_ext(s);
    if (!x) return -ENOMEM;
    if (!x->peer && !(x->peer = malloc(sizeof *peer))) return -ENOMEM;
    *x->peer = *peer;
    return 0;
}

static int addr_of(const csock_stream *s, csock_addr *out, int peer)
{
    if (peer && s->x && s->x->peer) {
        *out = *s->x->peer;
        if (out->sa.ss_family != AF_UNIX && sfilt(s)) out->scheme = CSOCK_TLS;
        return 0;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = peer ? getpeername(s->w.fd, (struct sockaddr *)&ss, &len)
                  : getsockname(s->w.fd, (struct sockaddr *)&ss, &len);
    if (rc < 0) return -errno;
    csock_scheme sch = ss.ss_family == AF_UNIX ? CSOCK_UNIX : sfilt(s) ? CSOCK_TLS : CSOCK_TCP;
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

static void on_ring_io(csock_loop *loop, csock__watcher *w, unsigned events);

csock__watcher *csock__stream_ring_watcher(csock_stream *s, int make)
{
    if (s->x && s->x->rw) return &s->x->rw->w;
    if (!make || !csock__stream_ext(s)) return NULL;
    ring_watch *rw = malloc(sizeof *rw);
    if (!rw) return NULL;
    csock__watcher_init(&rw->w, s->w.fd, on_ring_io);
    rw->s = s;
    s->x->rw = rw;
    return &rw->w;
}

void csock__stream_update_events(csock_stream *s)
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
    csock__watcher *w = ring ? csock__stream_ring_watcher(s, ev != 0) : &s->w;
    int rc = w ? csock__watcher_set(s->h.loop, w, ev) : ev ? -ENOMEM : 0;
    if (rc < 0 && !(s->flags & F_FAILED)) csock__stream_fail(s, rc);
    /* Not from inside the read callback (a write it makes comes here):
     * the input it is offered still counts as unconsumed, and a full
     * buffer would look like a message too big (csock__stream_ring_recv).
     * The read's end flushes, which comes back here. */
    if (ring && !s->rreq.busy && wants_read(s) && !(s->flags & F_IN_READ))
        csock__stream_ring_recv(s);
    /* A multishot recv still armed for a stream that no longer reads
     * (paused by backpressure, stopped, failed, at EOF): end it, so the
     * peer meets the kernel's window again. */
    else if (ring && s->rreq.busy && s->rreq.mshot && !wants_read(s))
        csock__io_cancel(s->h.loop, &s->rreq);
    csock__stream_watch_io(s);
}

static void run_task(csock__task *t);

/* Ask for `what` on the next pending phase. A stream that closes meanwhile
 * (from an I/O callback: the close phase comes before the next pending
 * phase) is freed by the task instead (D_FREE), never under it. */
void csock__stream_defer(csock_stream *s, unsigned what)
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
        csock__stream_read_cb(s, s->err, s->rbuf ? s->rbuf + s->roff : "", s->rlen);
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
    s->err = (int16_t)err;
    csock__stream_update_events(s);
    if (s->flags & F_ENDING) {
        csock_stream_close(s, s->close_cb);
        return;
    }
    csock__stream_defer(s, D_ERROR);
}

/* ---- the watcher ----------------------------------------------------------------- */


static void stream_io(csock_stream *s, unsigned events)
{
    if (s->flags & F_CONNECTING) {
        csock__stream_connect_done(s);
        return;
    }
    if (events & CSOCK_WRITABLE) csock__stream_flush(s);
    if ((events & CSOCK_READABLE) && !s->h.closing && wants_read(s)) csock__stream_on_readable(s);
}

static void on_io(csock_loop *loop, csock__watcher *w, unsigned events)
{
    stream_io(csock__container_of(w, csock_stream, w), events);
}

static void on_ring_io(csock_loop *loop, csock__watcher *w, unsigned events)
{
    stream_io(csock__container_of(w, ring_watch, w)->s, events);
}

stream_ext *csock__stream_ext(csock_stream *s)
{
    if (!s->x) s->x = calloc(1, sizeof *s->x);
    return s->x;
}

/* ---- shutdown and close ---------------------------------------------------------- */

int csock_stream_shutdown(csock_stream *s, csock_stream_cb cb)
{
    if (s->h.closing || (s->flags & (F_SHUT_REQ | F_ENDING))) return -EPIPE;
    if (cb && !csock__stream_ext(s)) return -ENOMEM;
    s->flags |= F_SHUT_REQ;
    if (cb) s->x->shutdown_cb = cb;
    csock__stream_flush(s); /* held while connecting or inside the read callback */
    return 0;
}

/* Close the stream's socket; a ring stream's backend lets go of it first. */
static void close_fd(csock_stream *s)
{
    if (s->flags & F_RING) csock__io_forget(s->h.loop, s->w.fd);
    close(s->w.fd);
    s->w.fd = -1;
}

void csock__stream_finish_now(csock_stream *s)
{
    if (s->w.fd >= 0) close_fd(s); /* kept while requests were in flight */
    csock__stream_drop_queue(s); /* W_REF releases come before the close callback */
    if (s->x) {
        free(s->x->peer);
        free(s->x->rw); /* off the backend since the close (never freed before: a
                         * stale event of this iteration may still name it) */
    }
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
    if (what & D_CONNECT) return csock__stream_connect_failed_early(s);
    if (what & D_PROCESS) csock__stream_deferred_process(s);
    if ((what & D_ERROR) && !s->h.closing) deliver_error(s);
    if ((what & D_STOP) && !s->h.closing && !(s->flags & F_FAILED) && s->x && s->x->stop_cb)
        s->x->stop_cb(s, 0);
}

static void stream_finish(csock__handle *h)
{
    csock_stream *s = csock__container_of(h, csock_stream, h);
    if (ring_busy(s)) {
        /* The kernel still holds a request on s (cancelled at close): finish
         * when it completes, and keep the loop running until then. */
        s->flags |= F_ZOMBIE;
        csock__loop_hold(s->h.loop, 1);
        return;
    }
    csock__stream_finish_now(s);
}


void csock_stream_close(csock_stream *s, csock_stream_close_cb cb)
{
    if (s->h.closing) return;
    csock__watcher *w = (s->flags & F_RING) ? csock__stream_ring_watcher(s, 0) : &s->w;
    if (w) csock__watcher_set(s->h.loop, w, 0);
    if (sfilt(s) && sfilt(s)->free) sfilt(s)->free(s);
    if (s->x) s->x->filter = NULL;
    stream_ext *x = s->x;
    /* The kernel may still be reading the chunk being sent: the queue is
     * dropped once that send completes (finish_now). */
    if (!(s->flags & F_RING) || !s->wreq.busy) csock__stream_drop_queue(s);
    csock__stream_release_rbuf(s);
    if (x) {
        if (x->timer) csock_timer_close(x->timer, NULL);
        x->timer = NULL;
    }
    if (s->flags & F_RING) {
        csock__io_cancel(s->h.loop, &s->rreq);
        csock__io_cancel(s->h.loop, &s->wreq);
    }
    /* With requests in flight the fd stays open until they complete
     * (finish_now): a request not yet submitted, or one retried after
     * -ENOBUFS, would otherwise name whatever socket reuses the number. */
    if (s->w.fd >= 0 && !ring_busy(s)) {
        close_fd(s);
    } else if (s->flags & F_RING) {
        csock__stream_ring_fin(s);
    }
    if (s->group) csock__group_remove(s);
    if (cb) s->close_cb = cb;
    csock__handle_close(&s->h, stream_finish);
}

void csock_stream_on_close(csock_stream *s, csock_stream_close_cb cb) { s->close_cb = cb; }
int csock_stream_draining(const csock_stream *s) { return (s->flags & F_DRAIN) != 0; }
int csock_stream_error(const csock_stream *s) { return s->flags & F_FAILED ? s->err : 0; }

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
    csock__stream_release_rbuf(s);
    csock__stream_linger(s);
    if (s->h.closing) return;
    csock__stream_flush(s); /* from inside the read callback, when it returns */
    if (!s->h.closing) csock__stream_update_events(s);
}

/* ---- filters (TLS) ----------------------------------------------------------------- */

int csock__stream_set_filter(csock_stream *s, const csock__filter *f, void *state)
{
    if (!f && !s->x) return 0;
    stream_ext *x = csock__stream_ext(s);
    if (!x) return -ENOMEM;
    x->filter = f;
    x->filter_state = state;
    return 0;
}

void *csock__stream_filter_state(const csock_stream *s) { return s->x ? s->x->filter_state : NULL; }
