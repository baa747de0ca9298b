/* poll(2) backend: the portable fallback, same behaviour as epoll. Watchers
 * live in a dense pollfd array; a watcher removed while a batch is being
 * dispatched leaves a hole (fd -1) that is compacted before the next wait,
 * so the dispatch loop never skips or repeats an entry. */
#include <poll.h>
#include <stdlib.h>

#include "loop/loop_int.h"

typedef struct {
    struct pollfd *fds;
    csock__watcher **ws;
    size_t n, cap;
    int holes; /* entries with fd -1 waiting for compaction */
} poll_state;

static int pl_init(csock_loop *loop)
{
    poll_state *st = calloc(1, sizeof *st);
    if (!st) return -ENOMEM;
    loop->bstate = st;
    return 0;
}

static void pl_fini(csock_loop *loop)
{
    poll_state *st = loop->bstate;
    free(st->fds);
    free(st->ws);
    free(st);
}

static short to_poll(unsigned ev)
{
    return (short)(((ev & CSOCK_READABLE) ? POLLIN : 0) | ((ev & CSOCK_WRITABLE) ? POLLOUT : 0));
}

static int grow(poll_state *st)
{
    size_t cap = st->cap ? st->cap * 2 : 64;
    struct pollfd *fds = realloc(st->fds, cap * sizeof *fds);
    if (!fds) return -ENOMEM;
    st->fds = fds;
    csock__watcher **ws = realloc(st->ws, cap * sizeof *ws);
    if (!ws) return -ENOMEM;
    st->ws = ws;
    st->cap = cap;
    return 0;
}

static int pl_update(csock_loop *loop, csock__watcher *w, unsigned old_ev, unsigned new_ev)
{
    poll_state *st = loop->bstate;
    if (!old_ev) {
        if (st->n == st->cap && grow(st) < 0) return -ENOMEM;
        w->index = (int)st->n;
        st->fds[st->n] = (struct pollfd){.fd = w->fd, .events = to_poll(new_ev)};
        st->ws[st->n++] = w;
    } else if (!new_ev) {
        st->fds[w->index].fd = -1; /* poll ignores negative fds */
        st->ws[w->index] = NULL;
        st->holes++;
        w->index = -1;
    } else {
        st->fds[w->index].events = to_poll(new_ev);
    }
    return 0;
}

static void compact(poll_state *st)
{
    size_t j = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (!st->ws[i]) continue;
        st->fds[j] = st->fds[i];
        st->ws[j] = st->ws[i];
        st->ws[j]->index = (int)j;
        j++;
    }
    st->n = j;
    st->holes = 0;
}

static int pl_wait(csock_loop *loop, int timeout_ms)
{
    poll_state *st = loop->bstate;
    if (st->holes) compact(st);
    int n = poll(st->fds, st->n, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    csock_loop_update_time(loop);
    /* Entries appended during dispatch were not polled: stop at the old end. */
    size_t end = st->n;
    for (size_t i = 0; i < end && n > 0; i++) {
        short re = st->fds[i].revents;
        if (!re || !st->ws[i]) continue;
        n--;
        st->fds[i].revents = 0;
        unsigned rev = 0;
        if (re & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) rev |= CSOCK_READABLE;
        if (re & (POLLOUT | POLLHUP | POLLERR | POLLNVAL)) rev |= CSOCK_WRITABLE;
        csock__watcher_dispatch(loop, st->ws[i], rev);
    }
    return 0;
}

const csock__backend csock__backend_poll = {
    .name = "poll", .init = pl_init, .fini = pl_fini, .update = pl_update, .wait = pl_wait,
};
