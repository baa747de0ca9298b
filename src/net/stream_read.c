/* A stream's input: a pooled buffer the application consumes in place,
 * the EOF, and reading by readiness. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/stream_int.h"

void csock__stream_release_rbuf(csock_stream *s)
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
size_t csock__stream_read_limit(const csock_stream *s)
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
    size_t limit = csock__stream_read_limit(s) + slack;
    if (s->rlen >= limit) return 0;
    size_t cap = (size_t)s->rcap * 2;
    if (cap < s->rlen + want) cap = s->rlen + want;
    if (cap > limit) cap = limit;
    if (cap <= s->rcap) return (long)(s->rcap - s->rlen);
    char *nb = malloc(cap);
    if (!nb) return -ENOMEM;
    memcpy(nb, s->rbuf, s->rlen);
    uint32_t rlen = s->rlen;
    csock__stream_release_rbuf(s);
    s->rbuf = nb;
    s->rcap = (uint32_t)cap;
    s->rlen = rlen;
    return (long)(cap - rlen);
}

/* A filter decodes a whole raw read at once, which may carry a little more
 * than the room left: it may go past the maximum by FILTER_SLACK, and the
 * maximum is enforced before the next raw read instead (on_readable). */
#define FILTER_SLACK (4u * CSOCK__BUF_SIZE)
/* Appended input asks for room this much at a time, so a large piece
 * fills what the buffer has before it grows (by doubling, up to its
 * maximum). */
#define INPUT_STEP 4096u
/* A read by readiness wants at least this much room after the unconsumed
 * bytes: less, and a busy stream would make a syscall per few bytes; the
 * buffer slides or grows to make it. */
#define READ_MIN_ROOM 1024u

int csock__stream_input(csock_stream *s, const char *buf, size_t len)
{
    while (len) {
        long room = reserve(s, len < INPUT_STEP ? len : INPUT_STEP, FILTER_SLACK);
        if (room < 0) return (int)room;
        if (room == 0) return CSOCK_ETOOBIG;
        size_t n = len < (size_t)room ? len : (size_t)room;
        memcpy(s->rbuf + s->roff + s->rlen, buf, n);
        s->rlen += (uint32_t)n;
        if (sfilt(s)) s->bytes_in += n; /* plaintext: from the filter's input() */
        buf += n;
        len -= n;
    }
    return 0;
}

/* Hand `n` bytes to the read callback (writes it makes are held until it
 * returns); returns how many it consumed. The caller checks for a close. */
static size_t offer(csock_stream *s, const char *buf, size_t n)
{
    s->flags |= F_IN_READ;
    size_t used = csock__stream_read_cb(s, 0, buf, n);
    s->flags &= ~F_IN_READ;
    if (used > n) used = n;
    if (used) csock__stream_read_clock(s);
    return used;
}

/* Offer the buffered input to the application (or discard it when ending). */
static void process_input(csock_stream *s)
{
    if (s->h.closing || (s->flags & F_FAILED)) return;
    if (s->flags & F_ENDING) {
        csock__stream_release_rbuf(s);
        return;
    }
    if (!s->rlen || !(s->flags & F_READING) || (s->flags & F_PAUSED)) return;
    csock_read_cb cb = s->read_cb;
    size_t used = offer(s, s->rbuf + s->roff, s->rlen);
    if (s->h.closing) return;
    s->roff += (uint32_t)used;
    s->rlen -= (uint32_t)used;
    if (!s->rlen) csock__stream_release_rbuf(s); /* idle streams hold no buffer */
    else if (s->read_cb != cb) csock__stream_schedule_process(s); /* as in deliver_direct */
    csock__stream_flush(s);
    csock__stream_drain_check(s);
}

/* The EOF goes to the application with whatever input is still unconsumed.
 * If the application stops reading (or backpressure pauses it) before it has
 * consumed everything, the rest and the EOF are offered again on resume. */
static void deliver_eof(csock_stream *s)
{
    s->flags |= F_EOF;
    csock__stream_update_events(s);
    if (s->flags & F_ENDING) {
        if (!queued(s)) csock_stream_close(s, s->close_cb);
        return; /* else csock__stream_after_drain() closes once the reply is out */
    }
    if (!s->read_cb || (s->flags & (F_FAILED | F_EOF_DONE))) return;
    if (!(s->flags & F_READING) || (s->flags & F_PAUSED)) return;
    s->flags |= F_IN_READ;
    size_t used = csock__stream_read_cb(s, CSOCK_EOF, s->rbuf ? s->rbuf + s->roff : "", s->rlen);
    s->flags &= ~F_IN_READ;
    if (s->h.closing) return;
    if (used < s->rlen && (!(s->flags & F_READING) || (s->flags & F_PAUSED))) {
        s->roff += (uint32_t)used;
        s->rlen -= (uint32_t)used;
    } else {
        s->flags |= F_EOF_DONE;
        csock__stream_release_rbuf(s);
    }
    csock__stream_flush(s);
}

/* Offer bytes the backend received (completion I/O) straight from its
 * buffer: only what the application leaves unconsumed is copied. */
static void deliver_direct(csock_stream *s, const char *buf, size_t n)
{
    csock_read_cb cb = s->read_cb;
    size_t used = offer(s, buf, n);
    if (s->h.closing) return;
    if (used < n) {
        int rc = csock__stream_input(s, buf + used, n - used);
        if (rc < 0) return csock__stream_fail(s, rc);
        /* A callback that handed the stream to another one (an upgrade: it
         * took its header, the rest is the new protocol's) left bytes the new
         * callback has not seen: offer them now, not at the next input,
         * which may never come. (The same callback taking part only waits
         * for more.) */
        if (s->read_cb != cb) csock__stream_schedule_process(s);
    }
    csock__stream_flush(s);
    csock__stream_drain_check(s);
}

/* `n` bytes arrived (0: the peer's EOF). They are in `raw` (a filter's raw
 * input, or a completion buffer to copy from), or already appended to rbuf
 * when `raw` is NULL. */
void csock__stream_got_bytes(csock_stream *s, const char *raw, size_t n)
{
    csock__stream_touch(s);
    csock__stream_recv_clock(s);
    if (n == 0) {
        int st = sfilt(s) ? sfilt(s)->eof(s) : CSOCK_EOF;
        if (st != CSOCK_EOF) return csock__stream_fail(s, st);
        return deliver_eof(s);
    }
    if (!sfilt(s)) s->bytes_in += n; /* a filter's plaintext: csock__stream_input */
    if (sfilt(s)) {
        int rc = sfilt(s)->input(s, raw, n);
        if (rc < 0 && rc != CSOCK_EOF) return csock__stream_fail(s, rc);
        if (s->h.closing) return;
        /* The plaintext is offered first, then what the filter queued
         * (handshake, alerts) goes out: a flush before the offer could ask
         * for the next recv (io_uring) while a full buffer of plaintext,
         * not yet offered, looked like a message too big. */
        process_input(s);
        if (s->h.closing) return;
        if (s->wq_head) csock__stream_flush(s);
        if (rc == CSOCK_EOF && !s->h.closing) deliver_eof(s); /* TLS close_notify */
        return;
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

void csock__stream_on_readable(csock_stream *s)
{
    if (!s->rlen) csock__stream_read_clock(s); /* whatever arrives starts to wait now */
    char tmp_raw = sfilt(s) != NULL;
    char *dst;
    size_t room;
    char *raw = NULL;
    if (tmp_raw) {
        if (s->rlen >= csock__stream_read_limit(s))
            return csock__stream_fail(s, CSOCK_ETOOBIG); /* as reserve() below */
        raw = csock__buf_get(s->h.loop);
        if (!raw) return csock__stream_fail(s, -ENOMEM);
        dst = raw;
        room = CSOCK__BUF_SIZE;
    } else {
        long r = reserve(s, READ_MIN_ROOM, 0);
        if (r < 0) return csock__stream_fail(s, (int)r);
        if (r == 0) {
            /* The application has not consumed a full buffer: the message is
             * larger than it allows. */
            return csock__stream_fail(s, CSOCK_ETOOBIG);
        }
        dst = s->rbuf + s->roff + s->rlen;
        room = (size_t)r;
    }
    /* recv(2) on a socket: read(2) goes through the file layer first
     * (vfs_read, fdget_pos: 2-3 % of a small HTTP request's CPU). */
    ssize_t n = (s->flags & F_NOT_SOCK) ? read(s->w.fd, dst, room) : recv(s->w.fd, dst, room, 0);
    if (n < 0) {
        int err = errno;
        if (raw) csock__buf_put(s->h.loop, raw);
        if (err == EAGAIN || err == EINTR) return;
        if (!s->rlen) csock__stream_release_rbuf(s);
        return csock__stream_fail(s, -err);
    }
    csock__stream_got_bytes(s, raw, (size_t)n);
    if (raw) csock__buf_put(s->h.loop, raw);
}

void csock__stream_deferred_process(csock_stream *s)
{
    if ((s->flags & F_EOF) && !(s->flags & F_EOF_DONE))
        deliver_eof(s);
    else
        process_input(s);
}

/* Input already buffered must be offered again when reading resumes: no
 * readiness event will come for bytes the kernel no longer holds. */
void csock__stream_schedule_process(csock_stream *s)
{
    if (!s->rlen && (!(s->flags & F_EOF) || (s->flags & F_EOF_DONE))) return;
    csock__stream_defer(s, D_PROCESS);
}

int csock_stream_read_start(csock_stream *s, csock_read_cb cb)
{
    if (s->h.closing || !cb) return -EINVAL;
    if (s->flags & F_FAILED) return s->err;
    s->read_cb = cb;
    s->flags &= ~(unsigned)F_FRAMED; /* csock_stream_read_framed sets it after this */
    if (!(s->flags & F_READING)) {
        s->flags |= F_READING;
        csock__stream_touch(s);
        csock__stream_read_clock(s);
        csock__stream_recv_clock(s);
        csock__stream_schedule_process(s);
    }
    csock__stream_update_events(s);
    return 0;
}

int csock_stream_read_stop(csock_stream *s)
{
    s->flags &= ~F_READING;
    /* A recv in flight would keep the loop running (as a watcher would if
     * it were not stopped): cancel it. Bytes it already took are kept. */
    if (s->flags & F_RING) csock__io_cancel(s->h.loop, &s->rreq);
    csock__stream_update_events(s);
    return 0;
}
