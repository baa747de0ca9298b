/* A stream's output: a write queue that never loses or reorders a byte
 * (copies, references, file parts), sending it by readiness, plaintext
 * waiting for a filter (TLS), backpressure by watermarks, and what follows
 * a drained queue (half-close, a pending end). */
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/stream_int.h"

/* Chunks per sendmsg: well under IOV_MAX (1024), and more than a burst of
 * pipelined replies fills; the rest goes in the next call. */
#define IOV_MAX_BATCH 64

static void chunk_free(csock_stream *s, wchunk *c)
{
    if (c->kind != W_MEM && c->release) c->release(c->ud); /* a reference's or a file's */
    if (c->pooled == POOL_SMALL)
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

void csock__stream_drop_queue(csock_stream *s)
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

/* Append c to a list of output: the raw queue, or the plaintext waiting
 * for a filter (both count in wq_bytes). */
static void chunk_append(csock_stream *s, wchunk **head, wchunk **tail, wchunk *c)
{
    if (!queued(s)) csock__stream_write_clock(s);
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
        int pooled = POOL_NONE;
        if ((s->flags & F_RING) && len <= CSOCK__SBUF_SIZE - sizeof(wchunk)) {
            /* A chunk stays until its send request completes, and a busy
             * loop has hundreds in flight at once: a small pooled one (room
             * for a few more replies), not a 16 KiB one. */
            c = csock__sbuf_get(s->h.loop);
            cap = CSOCK__SBUF_SIZE - sizeof(wchunk);
            pooled = POOL_SMALL;
        } else if (len <= small) {
            c = csock__buf_get(s->h.loop);
            cap = small;
            pooled = POOL_BIG;
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

void csock__stream_maybe_pause(csock_stream *s)
{
    if (s->high && s->wq_bytes > s->high && !(s->flags & F_PAUSED)) {
        s->flags |= F_PAUSED;
        csock__stream_update_events(s);
    }
}

void csock__stream_maybe_resume(csock_stream *s)
{
    if ((s->flags & F_PAUSED) && (!s->high || s->wq_bytes <= s->low)) {
        s->flags &= ~F_PAUSED;
        csock__stream_read_clock(s); /* the wait was ours, not the peer's */
        csock__stream_recv_clock(s);
        /* Offer what waited before asking for more: a ring recv in flight
         * when the pause began may have filled the buffer to its limit,
         * and a full buffer that is not yet offered is not a message too
         * big (csock__stream_ring_recv tells the two apart by D_PROCESS). */
        csock__stream_schedule_process(s);
        csock__stream_update_events(s);
    }
}

/* What follows a flush: resume reading below the low watermark, then, once
 * the queue is empty, a requested half-close, a pending graceful close, or
 * the drain callback (only when there was something to drain). */
void csock__stream_after_drain(csock_stream *s, int was_queued)
{
    int shut_now = 0;
    csock__stream_maybe_resume(s);
    if (queued(s)) return;
    if (was_queued) {
        csock__stream_note_unsent(s);
        if (s->h.closing) return; /* its timer could not be made (ENOMEM) */
    }
    if ((s->flags & F_SHUT_REQ) && !(s->flags & F_SHUT_DONE)) {
        if (sfilt(s) && sfilt(s)->shutdown && !(s->flags & F_SHUT_FILTER)) {
            s->flags |= F_SHUT_FILTER;
            sfilt(s)->shutdown(s); /* may queue close_notify: send it first */
            if (s->wq_head) {
                csock__stream_flush(s);
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
            csock__stream_linger(s); /* the peer has LINGER_MS from now to finish */
        return;
    }
    if (was_queued && s->drain_cb && !(s->flags & F_IN_READ)) s->drain_cb(s, 0);
    if (!s->h.closing) csock__stream_drain_check(s);
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
        if (r == 0 && c->len) { /* the file ended early (a full socket says EAGAIN) */
            errno = EIO;
            return -1;
        }
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
void csock__stream_advance(csock_stream *s, size_t n)
{
    csock__stream_touch(s);
    csock__stream_write_clock(s);
    if (!sfilt(s)) s->bytes_out += n; /* a filter's raw bytes are not the app's */
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

int csock__stream_send_queue(csock_stream *s)
{
    while (s->wq_head) {
        ssize_t r;
        wchunk *c = s->wq_head;
        if ((s->flags & F_RING) && c->kind != W_FILE) {
            if (!c->len) { /* an empty chunk: drop it and go on */
                csock__stream_advance(s, 0);
                continue;
            }
            if (csock__stream_ring_send(s) < 0) return 0;
            break; /* its completion goes on */
        }
        int file = c->kind == W_FILE;
        size_t want = 0;
        if (file) {
            r = send_file(s, c);
        } else {
            struct iovec iov[IOV_MAX_BATCH];
            int n = 0;
            /* (MSG_MORE on the head before a file part, so the head leaves
             * in the file's first segment, was tried: 100 KB answers took
             * 1.13x the server CPU, BENCHMARKS.md "HTTP".) */
            for (wchunk *x = c; x && x->kind != W_FILE && n < IOV_MAX_BATCH; x = x->next) {
                iov[n++] = (struct iovec){(void *)x->p, x->len};
                want += x->len;
            }
            r = send_iov(s, iov, n);
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            csock__stream_drop_queue(s);
            csock__stream_fail(s, -errno);
            return 0;
        }
        csock__stream_advance(s, (size_t)r);
        if (s->h.closing) return 0; /* a release callback closed it */
        /* A short write: the socket buffer is full, wait for POLLOUT. Judge
         * by what this call was given, not by what is left: when a file
         * part is done and bytes follow (a multipart answer), go on to them.
         * (A ring stream has no POLLOUT to wait for: stopping there left
         * the rest of the queue unsent.) A file may be sent in several
         * calls: only one that took nothing means the socket is full. (A
         * sendfile cut short is usually a full socket too, and the call
         * after it often says EAGAIN; waiting for writability instead
         * took 1.10x the CPU per 100 KB answer on io_uring: the ACKs that
         * free room come in between. BENCHMARKS.md, session 30.) */
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
/* Plaintext into the filter, counted as sent: the filter owns it now. */
static int filter_write(csock_stream *s, const void *buf, size_t len)
{
    int rc = sfilt(s)->write(s, buf, len);
    if (rc >= 0) s->bytes_out += len;
    return rc;
}

static ssize_t feed_piece(csock_stream *s, wchunk *c, size_t max)
{
    if (c->kind != W_FILE) {
        int rc = filter_write(s, c->p, max);
        if (rc < 0) return rc;
        c->p += max;
        return (ssize_t)max;
    }
    char *b = csock__buf_get(s->h.loop);
    if (!b) return -ENOMEM;
    ssize_t r = pread(c->fd, b, max, c->off);
    if (r <= 0) r = r < 0 ? -errno : -EIO; /* EIO: the file shrank under us */
    int rc = r > 0 ? filter_write(s, b, (size_t)r) : 0;
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
    if (sfilt(s)->ready && !sfilt(s)->ready(s)) return 0;
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
void csock__stream_flush(csock_stream *s)
{
    if (s->flags & (F_IN_READ | F_CONNECTING | F_FAILED) || s->h.closing) return;
    int was_queued = queued(s);
    for (;;) {
        int can_feed = 0;
        if (plain_waits(s)) {
            can_feed = feed_filter(s);
            if (can_feed < 0) {
                csock__stream_drop_queue(s);
                return csock__stream_fail(s, can_feed);
            }
            if (s->h.closing) return;
        }
        if (!csock__stream_send_queue(s)) return;
        /* Go on while the kernel took it all and more plaintext can go. */
        if (s->wq_head || !plain_waits(s) || !can_feed) break;
    }
    csock__stream_update_events(s);
    csock__stream_after_drain(s, was_queued);
}

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
    csock__stream_touch(s);
    s->bytes_out += (size_t)r;
    return r;
}

/* What every write does once its bytes are queued: send them unless
 * inside the read callback (held until it returns), then backpressure.
 * Inside the read callback only backpressure: the read's end flushes
 * (offer's callers in stream_read.c), and the flush settles the watcher
 * and the deadlines once for all the replies the callback made, so a
 * reply written there costs a copy and no pass over them (an HTTP server
 * writing a head and a body per answer made two such passes). */
static int after_queue(csock_stream *s)
{
    if (s->flags & F_IN_READ) {
        csock__stream_maybe_pause(s);
        return 0;
    }
    csock__stream_flush(s);
    if (s->h.closing) return 0;
    csock__stream_maybe_pause(s);
    csock__stream_update_events(s);
    return 0;
}

/* Through the filter now, or, while plaintext waits for it, behind that. */
static int filter_writev(csock_stream *s, const struct iovec *iov, int iovcnt, size_t total)
{
    int rc = 0;
    if (!plain_waits(s)) {
        for (int i = 0; i < iovcnt && rc == 0; i++)
            if (iov[i].iov_len) rc = filter_write(s, iov[i].iov_base, iov[i].iov_len);
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
    if (sfilt(s)) {
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
        if (!s->wq_head) {
            if (sent > 0) csock__stream_note_unsent(s); /* the kernel took it all */
            return 0;
        }
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
 * (its release) is given back by chunk_free on failure. */
static int queue_chunk(csock_stream *s, wchunk *c)
{
    int rc = check_writable(s);
    if (rc == 0 && sfilt(s) && !csock__stream_ext(s)) rc = -ENOMEM;
    if (rc < 0) {
        chunk_free(s, c);
        return rc;
    }
    if (sfilt(s))
        plain_append(s, c);
    else
        enqueue(s, c);
    return after_queue(s);
}

int csock_stream_write_ref(csock_stream *s, const void *buf, size_t len,
                           void (*release)(void *ud), void *ud)
{
    if (sfilt(s) && !plain_waits(s) && check_writable(s) == 0) {
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

int csock_stream_write_file_ref(csock_stream *s, int fd, off_t offset, size_t len,
                                void (*release)(void *ud), void *ud)
{
    wchunk *c = calloc(1, sizeof *c);
    if (!c) {
        if (release) release(ud);
        return -ENOMEM;
    }
    c->kind = W_FILE;
    c->fd = fd;
    c->off = offset;
    c->len = len;
    c->release = release;
    c->ud = ud;
    return queue_chunk(s, c); /* file bytes count toward backpressure too */
}

static void close_release(void *ud) { close((int)(intptr_t)ud); }

int csock_stream_write_file(csock_stream *s, int fd, off_t offset, size_t len, int close_fd)
{
    return csock_stream_write_file_ref(s, fd, offset, len, close_fd ? close_release : NULL,
                                       (void *)(intptr_t)fd);
}
