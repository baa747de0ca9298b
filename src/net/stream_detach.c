/* csock_stream_detach(): a plain stream's socket handed over with the
 * input read but not consumed.
 *
 * The hand-over waits until nothing of the stream's is in flight: its
 * queued output is sent, and on io_uring its recv (cancelled here) has
 * completed, because a cancel is asynchronous and the recv may still take
 * bytes, which then join the buffered input rather than go missing. The
 * check runs from a task of its own on the loop, asked for again by every
 * event that may end the wait: the stream's drain, a completion
 * (stream_uring.c), an error. The stream's data points at that state
 * meanwhile: the stream is no longer the application's. */
#include <stdlib.h>

#include "net/stream_detach.h"

typedef struct detach {
    csock__task task;         /* the check, from the loop */
    csock_stream *s;          /* NULL once the stream is closed */
    csock_stream_detach_cb cb;
    void *data;
    unsigned char queued;     /* task is queued */
    unsigned char done;       /* cb has run */
} detach;

static void check(csock__task *t);

static void kick(detach *d)
{
    if (d->queued) return;
    d->queued = 1;
    d->task.fn = check;
    csock__defer(d->s->h.loop, &d->task);
}

void csock__stream_detach_kick(csock_stream *s)
{
    if ((s->flags & F_DETACH) && !s->h.closing) kick(s->data);
}

/* The last word: the application gets the socket (status 0) or the error,
 * with the unconsumed input, then the stream closes without its fd. */
static void hand_over(detach *d, int status)
{
    csock_stream *s = d->s;
    int fd = -1;
    d->done = 1;
    if (status == 0) {
        /* Watching nothing already (not reading, nothing queued): the fd
         * leaves the stream, which then closes without closing it. */
        csock__watcher *w = (s->flags & F_RING) ? csock__stream_ring_watcher(s, 0) : &s->w;
        if (w) csock__watcher_set(s->h.loop, w, 0);
        /* A ring stream's requests share the watcher's place (stream_int.h):
         * its fd is rreq.fd, at the same offset, and wreq holds it too. */
        fd = s->w.fd;
        s->w.fd = -1;
        if (s->flags & F_RING) {
            csock__io_forget(s->h.loop, fd); /* the table would hold the socket open */
            s->wreq.fd = -1;
        }
    }
    d->cb(s, status, fd, s->rbuf ? s->rbuf + s->roff : "", s->rlen, d->data);
    csock_stream_close(s, NULL);
}

static void check(csock__task *t)
{
    detach *d = csock__container_of(t, detach, task);
    d->queued = 0;
    csock_stream *s = d->s;
    if (!s) { /* closed meanwhile: the close callback has reported it */
        free(d);
        return;
    }
    if (s->h.closing) return; /* closed by someone else: on_closed reports it */
    if (s->flags & F_FAILED) return hand_over(d, s->err ? s->err : -EPIPE);
    if (s->rreq.busy || s->wreq.busy || queued(s)) return; /* a completion or the drain kicks */
    hand_over(d, 0);
}

/* The stream closed: by hand_over, or by someone else before it (a server's
 * drain, a walk closing every handle), which cancels the hand-over. */
static void on_closed(csock_stream *s)
{
    detach *d = s->data;
    d->s = NULL;
    if (!d->done) {
        d->done = 1;
        d->cb(s, -ECANCELED, -1, "", 0, d->data);
    }
    if (!d->queued) free(d);
}

/* Errors come to the read callback (reading has stopped: nothing else
 * does); the end of the output comes to the drain callback. */
static size_t on_read(csock_stream *s, int status, const char *buf, size_t len)
{
    (void)status, (void)buf, (void)len;
    csock__stream_detach_kick(s);
    return 0;
}

static void on_drain(csock_stream *s, int status)
{
    (void)status;
    csock__stream_detach_kick(s);
}

int csock_stream_detach(csock_stream *s, csock_stream_detach_cb cb, void *data)
{
    if (!cb || s->h.closing || (s->flags & (F_ENDING | F_CONNECTING | F_DETACH))) return -EINVAL;
    if (sfilt(s)) return -ENOTSUP; /* its bytes on the socket are records, not the stream's */
    if (s->flags & F_FAILED) return s->err ? s->err : -EPIPE;
    detach *d = calloc(1, sizeof *d);
    if (!d) return -ENOMEM;
    *d = (detach){.s = s, .cb = cb, .data = data};
    s->flags |= F_DETACH;
    s->flags &= ~(unsigned)F_READING;
    s->data = d;
    s->read_cb = on_read;
    s->drain_cb = on_drain;
    s->close_cb = on_closed;
    if (s->x) s->x->shutdown_cb = s->x->stop_cb = NULL;
    if (s->flags & F_RING) csock__io_cancel(s->h.loop, &s->rreq);
    csock__stream_update_events(s);
    kick(d);
    return 0;
}
