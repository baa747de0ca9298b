/* Connection groups: the streams a listener (or a server's listeners on
 * every loop) accepted, counted for --max-conns style limits, and drained
 * or closed together when the server stops. */
#include <stdlib.h>
#include <sys/ioctl.h>

#include "net/stream_int.h"

/* A draining stream must also have been quiet this long before it ends:
 * empty queues and an empty receive queue can be a moment between two
 * segments of a peer that is still sending. */
#define DRAIN_QUIET_MS 250

csock__conn_group *csock__group_new(atomic_uint *shared)
{
    csock__conn_group *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->refs = 1; /* the caller's */
    g->shared = shared;
    return g;
}

void csock__group_ref(csock__conn_group *g) { g->refs++; }

void csock__group_release(csock__conn_group *g)
{
    if (g && --g->refs == 0) free(g);
}

int csock__group_reserve(csock__conn_group *g, unsigned max)
{
    if (!g->shared) return !max || g->conns < max;
    /* Loops accept at the same time: take the slot first, then check, so
     * two loops cannot both see max - 1 and go one over. */
    unsigned before = atomic_fetch_add(g->shared, 1);
    if (max && before >= max) {
        atomic_fetch_sub(g->shared, 1);
        return 0;
    }
    return 1;
}

void csock__group_unreserve(csock__conn_group *g)
{
    if (g->shared) atomic_fetch_sub(g->shared, 1);
}

/* The stream takes the slot reserved for it and a reference: the group
 * outlives its listener while the stream is open. */
void csock__group_add(csock__conn_group *g, csock_stream *s)
{
    s->group = g;
    g->loop = s->h.loop;
    g->conns++;
    g->refs++;
    if (g->draining) s->flags |= F_DRAIN; /* accepted during a drain */
}

void csock__group_remove(csock_stream *s)
{
    csock__conn_group *g = s->group;
    g->conns--;
    if (g->shared) atomic_fetch_sub(g->shared, 1); /* the slot reserved for it */
    s->group = NULL;
    csock__group_release(g);
}

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
void csock__stream_drain_check(csock_stream *s)
{
    if ((s->flags & (F_DRAIN | F_ENDING | F_IN_READ)) != F_DRAIN || s->h.closing) return;
    if (s->x && s->x->stop_cb) return; /* its owner ends it (csock_stream_on_stop) */
    if (s->rlen || queued(s) || (s->flags & F_CONNECTING)) return;
    if (input_pending(s)) return; /* read, then checked again */
    uint32_t quiet = (uint32_t)s->h.loop->now - s->last_io;
    if (quiet < DRAIN_QUIET_MS) {
        /* I/O before then: checked again */
        csock__stream_arm_timer(s, T_DRAIN, DRAIN_QUIET_MS - quiet);
        return;
    }
    if ((s->flags & F_RING) && s->rreq.busy) {
        /* A recv in flight may hold a request whose completion is not read
         * yet (FIONREAD no longer sees it): cancel it, and decide when it
         * completes, with its bytes or without (on_recv_done). */
        s->flags |= F_DRAIN_CANCEL;
        csock__io_cancel(s->h.loop, &s->rreq);
        return;
    }
    csock_stream_end(s, NULL);
}

/* Call fn on each open stream of g, from the loop's list of handles (a
 * closed handle is off that list; one fn closes keeps its `next`, so the
 * walk goes on: see csock__loop_walk). */
_Static_assert(offsetof(csock_stream, h) == 0, "a stream's handle is its address");

static void each_stream(csock__conn_group *g, void (*fn)(csock_stream *s))
{
    if (!g->conns) return;
    for (csock__handle *h = g->loop->handles, *next; h; h = next) {
        next = h->next; /* fn may close the stream */
        if (h->closing || h->kind != CSOCK_HANDLE_STREAM) continue;
        csock_stream *s = (csock_stream *)h;
        if (s->group == g) fn(s);
    }
}

static void drain_one(csock_stream *s)
{
    s->flags |= F_DRAIN;
    if (s->x && s->x->stop_cb)
        csock__stream_defer(s, D_STOP); /* from the loop: the callback may close others */
    else
        csock__stream_drain_check(s);
}

void csock__group_drain(csock__conn_group *g)
{
    g->draining = 1;
    each_stream(g, drain_one);
}

static void close_one(csock_stream *s) { csock_stream_close(s, NULL); }

void csock__group_close_all(csock__conn_group *g) { each_stream(g, close_one); }
