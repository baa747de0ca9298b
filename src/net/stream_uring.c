/* A stream's completion I/O (io_uring): one recv and one send request in
 * flight, and a closed stream finishing once its requests complete. A TCP
 * stream's recv is multishot where the kernel has it: it stays armed while
 * the stream reads, ends when the stream has been sent its room's worth, and
 * is cancelled when the stream stops reading (csock__stream_update_events). */

#include <sys/socket.h>

#include "net/stream_detach.h"

static void on_recv_done(csock_stream *s, int res, char *buf);
static void on_send_done(csock_stream *s, int res);

/* A closed stream whose fd only a recv still holds (a multishot recv is
 * armed for as long as the stream reads, and its cancel lands a wait
 * later): the peer gets our FIN now, as the close of a readiness stream
 * sends it, and not a reset at the fd's close for bytes it sent meanwhile
 * (test_tls.test_truncation). Not while a send is in flight: its bytes
 * go first. */
void csock__stream_ring_fin(csock_stream *s)
{
    if (s->w.fd < 0 || !s->rreq.busy || !s->rreq.mshot || s->wreq.busy) return;
    /* An abortive close (SO_LINGER 0: the write timeout's, or the
     * application's own) is meant to reset: leave it to the close. */
    struct linger lg = {0};
    socklen_t len = sizeof lg;
    if (getsockopt(s->w.fd, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff && !lg.l_linger)
        return;
    shutdown(s->w.fd, SHUT_WR);
}

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

/* A send request is made when the loop enters the kernel (csock__io_send):
 * then it takes the head chunk as it is by then, with the writes of the
 * whole iteration that joined it. */
static int fill_send(csock_loop *loop, csock__ioreq *r, struct iovec *iov, int max)
{
    (void)loop;
    csock_stream *s = csock__container_of(r, csock_stream, wreq);
    int n = 0;
    size_t room = INT32_MAX;
    /* The queued chunks up to a file part (sent by sendfile, not here);
     * none: dropped since (a failure). */
    for (wchunk *c = s->wq_head; c && c->kind != W_FILE && n < max && room; c = c->next) {
        if (!c->len) continue;
        size_t len = c->len < room ? c->len : room;
        iov[n++] = (struct iovec){(void *)c->p, len};
        room -= len;
    }
    return n;
}

/* Streams on a loop that does completion I/O use it: reads and writes then
 * cost no syscall of their own. A pipe or tty keeps readiness (see
 * csock_stream_open). */
void csock__stream_ring_setup(csock_stream *s)
{
    if (!csock__io_ok(s->h.loop)) return;
    csock__io_set_cb(s->h.loop, on_io_done, fill_send);
    s->flags |= F_RING;
}

static void on_recv_done(csock_stream *s, int res, char *buf)
{
    if (s->h.closing) return ring_closed_done(s);
    if (s->flags & F_FAILED) return; /* nothing more is delivered */
    /* A drain's cancel is answered by the recv's end, not by an arrival
     * of a multishot recv still armed (s->rreq.busy). */
    int drain = !s->rreq.busy && (s->flags & F_DRAIN_CANCEL) != 0;
    if (!s->rreq.busy) s->flags &= ~(unsigned)F_DRAIN_CANCEL;
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
    /* Bytes that arrive after reading stopped (a recv already in flight,
     * or a multishot recv's arrivals before its cancel lands) wait in rbuf
     * like any unconsumed input: at most the room it was asked with plus
     * one recv (csock__stream_ring_recv). */
    csock__stream_got_bytes(s, buf, (size_t)res);
    /* Processing the bytes usually flushed and asked for the next recv
     * already (csock__stream_flush -> csock__stream_update_events); when it did not (paused, not
     * reading, EOF), settle the stream's state here. */
    if (!s->h.closing && !s->rreq.busy) csock__stream_update_events(s);
}

#define MSHOT_CAP 65536u

void csock__stream_ring_recv(csock_stream *s)
{
    size_t limit = csock__stream_read_limit(s);
    if (s->rlen >= limit) {
        if (s->deferred & D_PROCESS) return; /* not offered yet: it may take some */
        return csock__stream_fail(s, CSOCK_ETOOBIG); /* offered it all, took none */
    }
    /* Multishot for TCP only. On a Unix stream socket (6.18) an armed
     * multishot recv missed the peer's shutdown: the EOF never completed
     * it, in 9 of 30 runs of a 4 MiB echo both ways at once (none in 100
     * over TCP), and the connection hung. One getsockopt per stream, and
     * none while multishot is off. */
    int mshot = csock__io_mshot(s->h.loop);
    if (mshot && !(s->flags & F_MSHOT_SEEN)) {
        s->flags |= F_MSHOT_SEEN;
        int dom = 0;
        socklen_t len = sizeof dom;
        if (getsockopt(s->w.fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) == 0 &&
            (dom == AF_INET || dom == AF_INET6))
            s->flags |= F_MSHOT_OK;
    }
    /* The multishot recv's cap: the room left, and at most MSHOT_CAP. A
     * stream that consumes nothing more gets at most that plus one recv
     * (its buffer's slack), then this check again, as with single recvs.
     * The cap also bounds what arrives after the stream stops reading and
     * before the cancel lands: the kernel delivers what the socket holds,
     * 64 KiB at a time, up to 32 times a wake-up (a WebSocket stream,
     * with a 2 MiB room, took 512 KiB that way and failed ETOOBIG). A
     * re-arm per 64 KiB costs nothing next to the recvs it saves. */
    size_t room = limit - s->rlen;
    size_t cap = !mshot || !(s->flags & F_MSHOT_OK) ? 0 : room < MSHOT_CAP ? room : MSHOT_CAP;
    int rc = csock__io_recv(s->h.loop, &s->rreq, s->w.fd, cap);
    if (rc < 0) csock__stream_fail(s, rc);
}

static void on_send_done(csock_stream *s, int res)
{
    if (s->h.closing) {
        csock__stream_ring_fin(s);
        return ring_closed_done(s);
    }
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
 * The request is made when the loop next enters the kernel (fill_send),
 * and writes made meanwhile join the queue (and the tail chunk), so
 * replies pile up into few requests. */
int csock__stream_ring_send(csock_stream *s)
{
    if (s->wreq.busy) return 0;
    int rc = csock__io_send(s->h.loop, &s->wreq, s->w.fd);
    if (rc < 0) {
        csock__stream_drop_queue(s);
        csock__stream_fail(s, rc);
    }
    return rc;
}

/* Hand the kernel as much of the queue as it takes now. Returns 0 when
 * the stream failed or closed on the way, else 1. */
