/* Timers on a binary min-heap keyed by (due time, start order), so timers
 * due at the same millisecond fire in the order they were started. */
#include <stddef.h>
#include <stdlib.h>

#include "loop/loop_int.h"

struct csock_timer {
    csock__handle h;    /* first: the walk passes its address */
    csock_timer_cb cb;
    void *data;
    uint64_t due;       /* absolute ms on the loop clock */
    uint64_t repeat;    /* 0: one-shot */
    uint64_t seq;       /* start order, breaks ties */
    size_t index;       /* slot in the heap; SIZE_MAX when not running */
    unsigned ref : 1;   /* counts toward loop liveness */
    void (*close_cb)(csock_timer *t);
};

_Static_assert(offsetof(csock_timer, h) == 0, "the walk passes the handle's address");

static int less(const csock_timer *a, const csock_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void place(csock__timer_heap *hp, size_t i, csock_timer *t)
{
    hp->items[i] = t;
    t->index = i;
}

static void sift_up(csock__timer_heap *hp, size_t i)
{
    csock_timer *t = hp->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!less(t, hp->items[parent])) break;
        place(hp, i, hp->items[parent]);
        i = parent;
    }
    place(hp, i, t);
}

static void sift_down(csock__timer_heap *hp, size_t i)
{
    csock_timer *t = hp->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= hp->n) break;
        if (child + 1 < hp->n && less(hp->items[child + 1], hp->items[child])) child++;
        if (!less(hp->items[child], t)) break;
        place(hp, i, hp->items[child]);
        i = child;
    }
    place(hp, i, t);
}

static void heap_remove(csock__timer_heap *hp, csock_timer *t)
{
    size_t i = t->index;
    csock_timer *last = hp->items[--hp->n];
    t->index = SIZE_MAX;
    if (i == hp->n) return;
    place(hp, i, last);
    sift_up(hp, i);
    sift_down(hp, last->index);
}

/* Room for every live timer is made when the timer is created, so that
 * csock_timer_start() cannot fail: code that arms a timer on an error path
 * (a linger, a retry, a timeout) never has to handle ENOMEM there. */
static int heap_reserve(csock__timer_heap *hp, size_t want)
{
    if (want <= hp->cap) return 0;
    size_t cap = hp->cap ? hp->cap * 2 : 16;
    while (cap < want) cap *= 2;
    void *p = realloc(hp->items, cap * sizeof *hp->items);
    if (!p) return -ENOMEM;
    hp->items = p;
    hp->cap = cap;
    return 0;
}

static void heap_push(csock__timer_heap *hp, csock_timer *t)
{
    place(hp, hp->n++, t); /* n < cap: heap_reserve() made room at creation */
    sift_up(hp, t->index);
}

int csock_timer_new(csock_loop *loop, csock_timer **out)
{
    if (heap_reserve(&loop->timers, loop->timers.live + 1) < 0) return -ENOMEM;
    csock_timer *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    loop->timers.live++;
    csock__handle_init_kind(loop, &t->h, CSOCK_HANDLE_TIMER);
    t->index = SIZE_MAX;
    t->ref = 1;
    *out = t;
    return 0;
}

int csock__timer_new_internal(csock_loop *loop, csock_timer **out)
{
    int rc = csock_timer_new(loop, out);
    if (rc == 0) (*out)->h.internal = 1;
    return rc;
}

int csock_timer_active(const csock_timer *t) { return t->index != SIZE_MAX; }

int csock_timer_stop(csock_timer *t)
{
    if (t->index == SIZE_MAX) return 0;
    heap_remove(&t->h.loop->timers, t);
    if (t->ref) t->h.loop->active--;
    return 0;
}

int csock_timer_start(csock_timer *t, csock_timer_cb cb, uint64_t timeout_ms, uint64_t repeat_ms)
{
    if (t->h.closing || !cb) return -EINVAL;
    csock_loop *loop = t->h.loop;
    csock_timer_stop(t);
    t->cb = cb;
    t->due = loop->now + timeout_ms;
    if (t->due < loop->now) t->due = UINT64_MAX; /* saturate far-future timeouts */
    t->repeat = repeat_ms;
    t->seq = loop->timers.seq++;
    heap_push(&loop->timers, t);
    if (t->ref) loop->active++;
    return 0;
}

void csock_timer_unref(csock_timer *t)
{
    if (!t->ref) return;
    t->ref = 0;
    if (t->index != SIZE_MAX) t->h.loop->active--;
}

void *csock_timer_data(const csock_timer *t) { return t->data; }
void csock_timer_set_data(csock_timer *t, void *data) { t->data = data; }

void csock__timers_run(csock_loop *loop)
{
    csock__timer_heap *hp = &loop->timers;
    /* Timers (re)started during this pass wait for the next one, so a
     * callback that restarts itself with timeout 0 cannot starve I/O. */
    uint64_t seq_limit = hp->seq;
    while (hp->n && hp->items[0]->due <= loop->now && hp->items[0]->seq < seq_limit) {
        csock_timer *t = hp->items[0];
        csock_timer_stop(t);
        if (t->repeat) {
            /* Reschedule before the callback so it may stop or restart it. */
            csock_timer_start(t, t->cb, t->repeat, t->repeat);
        }
        t->cb(t);
    }
}

int csock__timers_next(csock_loop *loop)
{
    csock__timer_heap *hp = &loop->timers;
    if (!hp->n) return -1;
    uint64_t due = hp->items[0]->due;
    if (due <= loop->now) return 0;
    uint64_t d = due - loop->now;
    return d > 0x7fffffff ? 0x7fffffff : (int)d;
}

static void timer_finish(csock__handle *h)
{
    csock_timer *t = csock__container_of(h, csock_timer, h);
    t->h.loop->timers.live--;
    if (t->close_cb) t->close_cb(t);
    free(t);
}

void csock_timer_close(csock_timer *t, void (*close_cb)(csock_timer *t))
{
    if (t->h.closing) return;
    csock_timer_stop(t);
    t->close_cb = close_cb;
    csock__handle_close(&t->h, timer_finish);
}

void csock__timers_fini(csock_loop *loop)
{
    free(loop->timers.items);
    loop->timers.items = NULL;
    loop->timers.n = loop->timers.cap = 0;
}
