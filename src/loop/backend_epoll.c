/* epoll backend: level-triggered, the watcher pointer in the event's data. */
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop/loop_int.h"

#define MAX_EVENTS 256

typedef struct {
    int epfd;
    struct epoll_event events[MAX_EVENTS];
} epoll_state;

static int ep_init(csock_loop *loop)
{
    epoll_state *st = malloc(sizeof *st);
    if (!st) return -ENOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int err = -errno;
        free(st);
        return err;
    }
    loop->bstate = st;
    return 0;
}

static void ep_fini(csock_loop *loop)
{
    epoll_state *st = loop->bstate;
    close(st->epfd);
    free(st);
}

static uint32_t to_epoll(unsigned ev)
{
    return ((ev & CSOCK_READABLE) ? EPOLLIN : 0) | ((ev & CSOCK_WRITABLE) ? EPOLLOUT : 0);
}

static int ep_update(csock_loop *loop, csock__watcher *w, unsigned old_ev, unsigned new_ev)
{
    epoll_state *st = loop->bstate;
    struct epoll_event e = {.events = to_epoll(new_ev), .data.ptr = w};
    int op = !old_ev ? EPOLL_CTL_ADD : !new_ev ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(st->epfd, op, w->fd, &e) == 0) return 0;
    /* The fd was closed and reopened behind our back (or never removed):
     * trust what the caller wants rather than the kernel's bookkeeping. */
    if (errno == EEXIST && op == EPOLL_CTL_ADD) return epoll_ctl(st->epfd, EPOLL_CTL_MOD, w->fd, &e) ? -errno : 0;
    if (errno == ENOENT && op == EPOLL_CTL_MOD) return epoll_ctl(st->epfd, EPOLL_CTL_ADD, w->fd, &e) ? -errno : 0;
    if ((errno == ENOENT || errno == EBADF) && op == EPOLL_CTL_DEL) return 0;
    return -errno;
}

static int ep_wait(csock_loop *loop, int timeout_ms)
{
    epoll_state *st = loop->bstate;
    int n = epoll_wait(st->epfd, st->events, MAX_EVENTS, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    csock_loop_update_time(loop);
    for (int i = 0; i < n; i++) {
        uint32_t e = st->events[i].events;
        unsigned rev = 0;
        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) rev |= CSOCK_READABLE;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) rev |= CSOCK_WRITABLE;
        csock__watcher_dispatch(loop, st->events[i].data.ptr, rev);
    }
    return n;
}

const csock__backend csock__backend_epoll = {
    .name = "epoll", .init = ep_init, .fini = ep_fini, .update = ep_update, .wait = ep_wait,
};
