/* A stream's completion I/O (io_uring): one recv and one send request in
 * flight, and a closed stream finishing once its requests complete. */

#include "net/stream_detach.h"

static void on_recv_done(csock_stream *s, int res, char *buf);
static void on_send_done(csock_stream *s, int res);

/* A completion for a closed stream: the last one finishes it. */
static void ring_closed_done(csock_stream *s)
{
    if (!(s->flags & F_ZOMBIE) || s->rreq.busy || s->wreq.busy) return;
    csock__loop_hold(s->h.loop, -1);
    csock__stream_finish_now(s);
}

/* The loop's one completion handler: the request says which stream, and
 * whether it was its recv or its send. */
static void on_io_done(csock_loop *loop, csock__ioreq *r, int res, char *buf)
{
    (void)loop;
    csock_stream *s = r->op == CSOCK__IO_RECV ? csock__container_of(r, csock_stream, rreq)
                                              : csock__container_of(r, csock_stream, wreq);
    /* A stream being detached waits for its requests to complete (the
     * recv's bytes are in rbuf then): this may be the last. (Read before:
     * a closed stream's last completion frees it.) */
    int detaching = (s->flags & F_DETACH) && !s->h.closing;
    if (r->op == CSOCK__IO_RECV)
        on_recv_done(s, res, buf);
    else
        on_send_done(s, res);
    if (detaching) csock__stream_detach_kick(s);
}

/* Streams on a loop that does completion I/O use it: reads and writes then
 * cost no syscall of their own. A pipe or tty keeps readiness (see
 * csock_stream_open). */
void csock__stream_ring_setup(csock_stream *s)
{
    if (!csock__io_ok(s->h.loop)) return;
    csock__io_set_cb(s->h.loop, on_io_done);
    s->flags |= F_RING;
}

static void on_recv_done(csock_stream *s, int res, char *buf)
{
    if (s->h.closing) return ring_closed_done(s);
    if (s->flags & F_FAILED) return; /* nothing more is delivered */
    int drain = (s->flags & F_DRAIN_CANCEL) != 0;
    s->flags &= ~(unsigned)F_DRAIN_CANCEL;
    if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
        if (drain) csock__stream_drain_check(s); /* nothing came: the drain may end it now */
        if (!s->h.closing) csock__stream_update_events(s); /* asks again if still reading */
        return;
    }
    if (res < 0) {
        if (!s->rlen) csock__stream_release_rbuf(s);
        return csock__stream_fail(s, res);
    }
    if (!s->rlen) csock__stream_read_clock(s);
    /* Bytes that arrive after reading stopped (a recv already in flight)
     * wait in rbuf like any unconsumed input: at most one buffer more. */
    csock__stream_got_bytes(s, buf, (size_t)res);
    /* Processing the bytes usually flushed and asked for the next recv
     * already (csock__stream_flush -> csock__stream_update_events); when it did not (paused, not
     * reading, EOF), settle the stream's state here. */
    if (!s->h.closing && !s->rreq.busy) csock__stream_update_events(s);
}

void csock__stream_ring_recv(csock_stream *s)
{
    if (s->rlen >= csock__stream_read_limit(s)) {
        if (s->deferred & D_PROCESS) return; /* not offered yet: it may take some */
        return csock__stream_fail(s, CSOCK_ETOOBIG); /* offered it all, took none */
    }
    int rc = csock__io_recv(s->h.loop, &s->rreq, s->w.fd);
    if (rc < 0) csock__stream_fail(s, rc);
}

static void on_send_done(csock_stream *s, int res)
{
    if (s->h.closing) return ring_closed_done(s);
    if (s->flags & F_FAILED) return;
    if (res < 0) {
        if (res == -EINTR || res == -EAGAIN) return csock__stream_flush(s); /* again */
        csock__stream_drop_queue(s);
        return csock__stream_fail(s, res == -ECANCELED ? -EPIPE : res);
    }
    csock__stream_advance(s, (size_t)res);
    if (s->h.closing) return; /* a release callback closed it */
    if (queued(s)) return csock__stream_flush(s); /* the rest, or a short send's remainder */
    csock__stream_update_events(s);
    csock__stream_after_drain(s, 1);
}

/* Send the head chunk by a send request; its completion sends the next.
 * Writes made meanwhile join the queue (and the tail chunk), so replies
 * pile up into few requests. */
int csock__stream_ring_send(csock_stream *s)
{
    if (s->wreq.busy) return 0;
    wchunk *c = s->wq_head;
    int rc = csock__io_send(s->h.loop, &s->wreq, s->w.fd, c->p, c->len);
    if (rc < 0) {
        csock__stream_drop_queue(s);
        csock__stream_fail(s, rc);
    }
    return rc;
}

/* Hand the kernel as much of the queue as it takes now. Returns 0 when
 * the stream failed or closed on the way, else 1. */
