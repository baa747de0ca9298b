/* io_uring backend: readiness through one-shot IORING_OP_POLL_ADD requests,
 * re-armed after each completion, which gives the same level-triggered
 * behaviour as the epoll and poll backends (a multishot poll only fires on
 * new wake-ups, and a stream that reads once per event would stall).
 *
 * Removal is asynchronous in io_uring: a completion for a watcher may still
 * arrive after the watcher was stopped and even freed. Each request's
 * user_data therefore names a slot and a generation; a completion whose
 * generation is stale is dropped without touching the watcher. */
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>

#include "loop/loop_int.h"

#define RING_ENTRIES 1024
#define CANCEL_TAG UINT64_MAX /* user_data of removals: their completions are ignored */

typedef struct {
    csock__watcher *w; /* NULL: free slot */
    uint32_t gen;
    uint8_t armed;     /* a poll request is in flight for this generation */
} slot;

typedef struct {
    struct io_uring ring;
    slot *slots;
    uint32_t nslots, cap;
    uint32_t *free_list;
    uint32_t nfree;
} uring_state;

static uint64_t tag(uint32_t idx, uint32_t gen) { return ((uint64_t)gen << 32) | idx; }

static struct io_uring_sqe *get_sqe(uring_state *st)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
    if (!sqe) { /* the submission queue is full: hand it to the kernel first */
        io_uring_submit(&st->ring);
        sqe = io_uring_get_sqe(&st->ring);
    }
    return sqe;
}

static int ur_init(csock_loop *loop)
{
    uring_state *st = calloc(1, sizeof *st);
    if (!st) return -ENOMEM;
    int rc = io_uring_queue_init(RING_ENTRIES, &st->ring, 0);
    if (rc < 0) {
        free(st);
        return rc;
    }
    loop->bstate = st;
    return 0;
}

static void ur_fini(csock_loop *loop)
{
    uring_state *st = loop->bstate;
    io_uring_queue_exit(&st->ring);
    free(st->slots);
    free(st->free_list);
    free(st);
}

static short to_poll(unsigned ev)
{
    return (short)(((ev & CSOCK_READABLE) ? POLLIN : 0) | ((ev & CSOCK_WRITABLE) ? POLLOUT : 0));
}

static int arm(uring_state *st, uint32_t idx)
{
    slot *sl = &st->slots[idx];
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe) return -ENOMEM;
    io_uring_prep_poll_add(sqe, sl->w->fd, (unsigned)to_poll(sl->w->events ? sl->w->events : 0));
    io_uring_sqe_set_data64(sqe, tag(idx, sl->gen));
    sl->armed = 1;
    return 0;
}

static int disarm(uring_state *st, uint32_t idx)
{
    slot *sl = &st->slots[idx];
    if (sl->armed) {
        struct io_uring_sqe *sqe = get_sqe(st);
        if (!sqe) return -ENOMEM;
        io_uring_prep_poll_remove(sqe, tag(idx, sl->gen));
        io_uring_sqe_set_data64(sqe, CANCEL_TAG);
    }
    sl->armed = 0;
    sl->gen++; /* whatever completes for the old request is stale now */
    return 0;
}

static int alloc_slot(uring_state *st, csock__watcher *w)
{
    uint32_t idx;
    if (st->nfree) {
        idx = st->free_list[--st->nfree];
    } else {
        if (st->nslots == st->cap) {
            uint32_t cap = st->cap ? st->cap * 2 : 64;
            slot *s = realloc(st->slots, cap * sizeof *s);
            if (!s) return -ENOMEM;
            st->slots = s;
            uint32_t *fl = realloc(st->free_list, cap * sizeof *fl);
            if (!fl) return -ENOMEM;
            st->free_list = fl;
            st->cap = cap;
        }
        idx = st->nslots++;
        st->slots[idx].gen = 0;
    }
    st->slots[idx].w = w;
    st->slots[idx].armed = 0;
    w->index = (int)idx;
    return 0;
}

static int ur_update(csock_loop *loop, csock__watcher *w, unsigned old_ev, unsigned new_ev)
{
    uring_state *st = loop->bstate;
    int rc;
    if (!old_ev) {
        if ((rc = alloc_slot(st, w)) < 0) return rc;
        w->events = new_ev; /* arm() reads the mask from the watcher */
        return arm(st, (uint32_t)w->index);
    }
    uint32_t idx = (uint32_t)w->index;
    if ((rc = disarm(st, idx)) < 0) return rc;
    if (!new_ev) {
        st->slots[idx].w = NULL;
        st->free_list[st->nfree++] = idx;
        w->index = -1;
        return 0;
    }
    unsigned keep = w->events;
    w->events = new_ev;
    rc = arm(st, idx);
    w->events = keep; /* the loop core sets it once we return */
    return rc;
}

static unsigned from_poll(int res)
{
    unsigned rev = 0;
    if (res & (POLLIN | POLLHUP | POLLERR | POLLNVAL | POLLRDHUP)) rev |= CSOCK_READABLE;
    if (res & (POLLOUT | POLLHUP | POLLERR | POLLNVAL)) rev |= CSOCK_WRITABLE;
    return rev;
}

static int ur_wait(csock_loop *loop, int timeout_ms)
{
    uring_state *st = loop->bstate;
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    int rc = io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) return rc;
    csock_loop_update_time(loop);
    /* Collect first, dispatch after: callbacks queue new requests. */
    uint64_t done[256];
    int res[256];
    unsigned n = 0, head;
    io_uring_for_each_cqe(&st->ring, head, cqe)
    {
        if (n == 256) break;
        done[n] = cqe->user_data;
        res[n++] = cqe->res;
    }
    io_uring_cq_advance(&st->ring, n);
    for (unsigned i = 0; i < n; i++) {
        if (done[i] == CANCEL_TAG) continue;
        uint32_t idx = (uint32_t)done[i], gen = (uint32_t)(done[i] >> 32);
        if (idx >= st->nslots) continue;
        slot *sl = &st->slots[idx];
        if (!sl->w || sl->gen != gen) continue; /* stale: stopped or changed since */
        sl->armed = 0;
        csock__watcher *w = sl->w;
        if (res[i] >= 0) csock__watcher_dispatch(loop, w, from_poll(res[i]));
        else if (res[i] != -ECANCELED) csock__watcher_dispatch(loop, w, w->events);
        /* One-shot: re-arm if the watcher still wants events (level-triggered). */
        if (sl->w == w && sl->gen == gen && !sl->armed && w->events) arm(st, idx);
    }
    return (int)n;
}

const csock__backend csock__backend_uring = {
    .name = "uring", .init = ur_init, .fini = ur_fini, .update = ur_update, .wait = ur_wait,
};
