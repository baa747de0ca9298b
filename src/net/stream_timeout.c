/* A stream's one timer: the connect timeout, the idle, read, write and
 * receive timeouts, the linger of csock_stream_end() and the drain's
 * quiet period. */
#include <linux/sockios.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "net/stream_int.h"

static void on_timer(csock_timer *t);

/* ---- the clocks the timeouts measure from ---- */

/* Record the time of a read or write for the idle timeout. The loop's
 * cached time is taken before it waits for I/O, so inside an I/O callback
 * it is as old as that wait was long: refresh it first (a vDSO
 * clock_gettime), or the idle timer fires early by the loop's idle time. */
void csock__stream_touch(csock_stream *s) { s->last_io = (uint32_t)s->h.loop->now; }

/* The read timeout's clock restarts whenever input starts to wait and
 * whenever the application consumes some: it measures how long a peer
 * leaves a message unfinished, so a fast upload is never cut. */
void csock__stream_read_clock(csock_stream *s)
{
    if (s->x) s->x->read_since = (uint32_t)s->h.loop->now;
}

/* The receive timeout's clock: restarted by every byte received, and when
 * reading starts or resumes (while we do not read, the peer is not silent
 * for all we know). Our own writes never restart it. */
void csock__stream_recv_clock(csock_stream *s)
{
    if (s->x) s->x->recv_since = (uint32_t)s->h.loop->now;
}

/* The write timeout's clock: restarted when output starts to wait and each
 * time the kernel takes some of it. */
void csock__stream_write_clock(csock_stream *s)
{
    if (s->x) s->x->write_since = (uint32_t)s->h.loop->now;
}

/* ---- the timer ---- */

int csock__stream_arm_timer(csock_stream *s, int mode, uint64_t ms)
{
    stream_ext *x = csock__stream_ext(s);
    if (!x) return -ENOMEM;
    if (!x->timer) {
        if (csock__timer_new_internal(s->h.loop, &x->timer) < 0) return -ENOMEM;
        csock_timer_set_data(x->timer, s);
    }
    s->timer_mode = (unsigned)mode & 7u;
    x->due = (uint32_t)(s->h.loop->now + ms);
    return csock_timer_start(x->timer, on_timer, ms, 0);
}

/* Input waits for the application to make progress: it holds a partial
 * message and is not paused by our own backpressure. */
static int read_waiting(const csock_stream *s)
{
    return s->rlen &&
           (s->flags & (F_READING | F_PAUSED | F_EOF | F_FAILED | F_ENDING)) == F_READING;
}

/* We are reading and the peer may still send: its silence counts. */
static int receiving(const csock_stream *s)
{
    return (s->flags & (F_READING | F_PAUSED | F_EOF | F_FAILED | F_ENDING | F_CONNECTING)) ==
           F_READING;
}

/* stream_ext.unsent before the first look (see csock__stream_note_unsent),
 * and when that look comes after the drain (at most half the timeout). */
#define UNSENT_UNKNOWN UINT32_MAX
#define UNSENT_LOOK_MS 100u

/* How long output may wait with none of it taken, measured from
 * write_since (0: no write deadline runs). Bytes only the kernel holds, not
 * looked at yet, get a first look soon. */
static uint32_t write_limit(const csock_stream *s)
{
    const stream_ext *tm = s->x;
    if (!tm->write_ms || (s->flags & F_CONNECTING)) return 0;
    if (queued(s)) return tm->write_ms;
    if (tm->unsent == UNSENT_UNKNOWN) {
        uint32_t half = tm->write_ms / 2 ? tm->write_ms / 2 : 1;
        return half < UNSENT_LOOK_MS ? half : UNSENT_LOOK_MS;
    }
    return tm->unsent ? tm->write_ms : 0;
}

/* The write deadline has passed: output (ours or the kernel's) waited
 * that long with none of it taken. */
static int write_expired(const csock_stream *s)
{
    uint32_t limit = write_limit(s);
    return limit && (uint32_t)s->h.loop->now - s->x->write_since >= limit;
}

/* Milliseconds until the first of the idle, read, write and receive
 * deadlines (0: one has passed), or UINT32_MAX when none is running. */
static uint32_t next_deadline(const csock_stream *s, uint32_t now)
{
    const stream_ext *tm = s->x;
    uint64_t left = UINT64_MAX;
    uint32_t since[4] = {s->last_io, tm->read_since, tm->write_since, tm->recv_since};
    uint32_t limit[4] = {tm->idle_ms, read_waiting(s) ? tm->read_ms : 0,
                         write_limit(s),
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
void csock__stream_watch(csock_stream *s)
{
    stream_ext *tm = s->x;
    if (s->h.closing || (s->timer_mode != T_NONE && s->timer_mode != T_WATCH)) return;
    uint32_t now = (uint32_t)s->h.loop->now;
    uint32_t left = next_deadline(s, now);
    if (left == UINT32_MAX) return;
    if (s->timer_mode == T_WATCH && (int32_t)(tm->due - now) <= (int32_t)left) return;
    if (csock__stream_arm_timer(s, T_WATCH, left) < 0) csock__stream_fail(s, -ENOMEM);
}

/* Bytes of a TCP socket's send queue the kernel has not sent yet (0 for
 * other sockets, or when it cannot say). Only asked of sockets: a pipe or
 * tty never gets an unsent count (csock__stream_note_unsent). */
static uint32_t kernel_unsent(const csock_stream *s)
{
    int n = 0;
    if (ioctl(s->w.fd, SIOCOUTQNSD, &n) < 0 || n < 0) return 0;
    return (uint32_t)n;
}

/* The write timeout watches the kernel's unsent bytes as well as our
 * queue: a peer that stops reading fills its window, and what we handed
 * the kernel waits as long as what we still hold. Without this a stream
 * whose queue drained into the kernel just before the peer's window shut
 * was never cut (seen with a client that shrank SO_RCVBUF after connecting:
 * neither side could send, our queue was empty, the timer never ran).
 * A drain costs no system call (an HTTP server drains once per answer and
 * always has a send timeout): it marks the count unknown, and the count
 * is looked up 100 ms later (half the timeout if that is shorter;
 * unsent_progress), which restarts the clock if any is left, and again
 * when it runs out: such a peer is cut 100 ms after the timeout at most
 * (1.5 times it for a short one), never sooner. A busy connection pays a
 * timer move and one ioctl per 100 ms, not one per answer. */
void csock__stream_note_unsent(csock_stream *s)
{
    if (!s->x || !s->x->write_ms || (s->flags & F_NOT_SOCK)) return;
    s->x->unsent = UNSENT_UNKNOWN;
    csock__stream_watch(s);
}

/* Before a watch deadline is judged, with our queue empty: the kernel's
 * count now. None: nothing waits. The first look, or fewer than at the
 * last one: the kernel sent some (progress), the clock restarts. */
static void unsent_progress(csock_stream *s)
{
    stream_ext *tm = s->x;
    if (!tm->unsent || queued(s)) return;
    uint32_t now = kernel_unsent(s);
    if (now && (tm->unsent == UNSENT_UNKNOWN || now < tm->unsent)) csock__stream_write_clock(s);
    tm->unsent = now;
}

/* Cheap enough for every I/O event: one load and a branch when the stream
 * has no read, write or receive timeout (those start and stop with the
 * stream's state; the idle one runs always). */
void csock__stream_watch_io(csock_stream *s)
{
    if (s->x && (s->x->read_ms | s->x->write_ms | s->x->recv_ms)) csock__stream_watch(s);
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
        unsent_progress(s);
        if (next_deadline(s, (uint32_t)s->h.loop->now) != 0) {
            csock__stream_watch(s); /* I/O moved the deadlines on: wait for the next one */
            return;
        }
        if (write_expired(s)) {
            /* The peer takes nothing: reset, so the kernel drops what it
             * holds for it now instead of retrying it after our close
             * (and the peer learns at once; it may be blocked sending). */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            if (!(s->flags & F_NOT_SOCK)) setsockopt(s->w.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        if (s->read_cb && !(s->flags & F_FAILED)) {
            s->flags |= F_FAILED;
            s->err = -ETIMEDOUT;
            csock__stream_read_cb(s, -ETIMEDOUT, s->rbuf ? s->rbuf + s->roff : "", s->rlen);
        }
        if (!s->h.closing) csock_stream_close(s, s->close_cb);
        break;
    case T_DRAIN:
        csock__stream_drain_check(s);
        if (!s->h.closing) csock__stream_watch(s);
        break;
    case T_LINGER:
        if (queued(s) && !(s->flags & F_FAILED)) {
            /* Still sending: wait on while the peer takes our bytes. */
            uint32_t quiet = (uint32_t)s->h.loop->now - s->x->write_since;
            if (quiet < LINGER_MS && csock__stream_arm_timer(s, T_LINGER, LINGER_MS - quiet) == 0)
                break;
        }
        csock_stream_close(s, s->close_cb);
        break;
    }
}

/* The last timeout was turned off: give the timer and the extension back
 * when nothing else needs them, so a long idle connection keeps only its
 * handle (an upgraded HTTP connection drops the server's send timeout). */
static void ext_trim(csock_stream *s)
{
    stream_ext *x = s->x;
    if (!x || x->idle_ms || x->read_ms || x->write_ms || x->recv_ms || s->timer_mode != T_NONE)
        return;
    if (x->timer) csock_timer_close(x->timer, NULL);
    x->timer = NULL;
    if (x->plain_head || x->shutdown_cb || x->connect_cb ||
        x->stop_cb || x->peer || x->filter || x->rw)
        return; /* still needed: TLS's queue, callbacks, a PROXY header's peer, a watcher */
    free(x);
    s->x = NULL;
}

static int set_timeout(csock_stream *s, int which, uint64_t ms)
{
    if (!ms && !s->x) return 0;
    stream_ext *tm = csock__stream_ext(s);
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
    csock__stream_watch(s);
    if (!ms) ext_trim(s);
    return 0;
}

int csock_stream_set_idle_timeout(csock_stream *s, uint64_t ms) { return set_timeout(s, 0, ms); }
int csock_stream_set_read_timeout(csock_stream *s, uint64_t ms) { return set_timeout(s, 1, ms); }
int csock_stream_set_write_timeout(csock_stream *s, uint64_t ms) { return set_timeout(s, 2, ms); }
int csock_stream_set_recv_timeout(csock_stream *s, uint64_t ms) { return set_timeout(s, 3, ms); }

/* Bound an ending stream's life: without a timer it could stay open
 * forever, so a timer that cannot be made closes it at once. */
void csock__stream_linger(csock_stream *s)
{
    if (csock__stream_arm_timer(s, T_LINGER, LINGER_MS) < 0) csock_stream_close(s, s->close_cb);
}
