/* The loop: run phases, handle bookkeeping, deferred and cross-thread posts. */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "loop/loop_int.h"

#define POOL_MAX 64 /* buffers kept per loop; beyond that they go back to malloc */
#define SPOOL_MAX 512 /* small buffers: a busy io_uring loop has hundreds of sends in flight */

static void pool_fini(csock__pool *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->items[i]);
    free(p->items);
}

/* The backend when none is named (opts, $CSOCK_BACKEND): "auto", io_uring
 * where the kernel allows it, else epoll, silently (containers often
 * forbid io_uring). On the host measured for issue 16 (BENCHMARKS.md,
 * "io_uring against epoll on this host") csock on io_uring used at most
 * csock-on-epoll's CPU per message at every load (0.93-0.99x, medians of
 * 15-24 rounds); where system calls cost more (page-table isolation) it
 * gained more. */
#define DEFAULT_BACKEND "auto"

static const csock__backend *pick_backend(const char *name)
{
    if (!name || !*name) name = getenv("CSOCK_BACKEND");
    if (!name || !*name) name = DEFAULT_BACKEND;
    if (!strcmp(name, "epoll")) return &csock__backend_epoll;
    if (!strcmp(name, "poll")) return &csock__backend_poll;
    if (!strcmp(name, "uring") || !strcmp(name, "auto")) return &csock__backend_uring;
    return NULL;
}

static int is_auto(const char *name)
{
    if (!name || !*name) name = getenv("CSOCK_BACKEND");
    if (!name || !*name) name = DEFAULT_BACKEND;
    return !strcmp(name, "auto");
}

void csock_loop_update_time(csock_loop *loop)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    loop->now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t csock_loop_now(const csock_loop *loop) { return loop->now; }
const char *csock_loop_backend(const csock_loop *loop) { return loop->backend->name; }
unsigned csock_loop_handles(const csock_loop *loop) { return loop->nhandles; }
void csock_loop_set_data(csock_loop *loop, void *data) { loop->data = data; }
void *csock_loop_data(const csock_loop *loop) { return loop->data; }

static void run_posts(csock_loop *loop);

/* The eventfd only wakes the wait; the posts themselves run in run_posts(). */
static void wake_cb(csock_loop *loop, csock__watcher *w, unsigned events)
{
    uint64_t n;
    while (read(w->fd, &n, sizeof n) == sizeof n) {}
}

int csock_loop_new(const csock_loop_opts *opts, csock_loop **out)
{
    const csock__backend *be = pick_backend(opts ? opts->backend : NULL);
    if (!be) return -EINVAL;
    csock_loop *loop = calloc(1, sizeof *loop);
    if (!loop) return -ENOMEM;
    loop->backend = be;
    loop->sig_fd = -1;
    sigemptyset(&loop->sig_blocked_by_us);
    pthread_mutex_init(&loop->post_lock, NULL);
    csock_loop_update_time(loop);
    int rc = be->init(loop);
    if (rc < 0 && is_auto(opts ? opts->backend : NULL)) {
        /* "auto": io_uring refused (an old kernel, a container's seccomp
         * profile, io_uring_disabled): epoll, silently. */
        loop->backend = be = &csock__backend_epoll;
        rc = be->init(loop);
    }
    if (rc < 0) goto fail;
    const char *io = getenv("CSOCK_URING_IO");
    loop->io_ok = loop->io_ok && be->recv && !(io && !strcmp(io, "0")); /* init set it */
    loop->io_mshot = loop->io_mshot && loop->io_ok;
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0) {
        rc = -errno;
        be->fini(loop);
        goto fail;
    }
    csock__watcher_init(&loop->wake_w, loop->wake_fd, wake_cb);
    loop->wake_w.ref = 0; /* the wake-up channel alone never keeps the loop alive */
    rc = csock__watcher_set(loop, &loop->wake_w, CSOCK_READABLE);
    if (rc < 0) {
        close(loop->wake_fd);
        be->fini(loop);
        goto fail;
    }
    *out = loop;
    return 0;
fail:
    pthread_mutex_destroy(&loop->post_lock);
    free(loop);
    return rc;
}

int csock_loop_free(csock_loop *loop)
{
    if (!loop) return 0;
    if (loop->nhandles || loop->closing || loop->defer_head || loop->post_head) return -EBUSY;
    csock__watcher_set(loop, &loop->wake_w, 0);
    close(loop->wake_fd);
    csock__signals_fini(loop);
    csock__timers_fini(loop);
    loop->backend->fini(loop);
    pool_fini(&loop->pool);
    pool_fini(&loop->spool);
    free(loop->always);
    pthread_mutex_destroy(&loop->post_lock);
    free(loop);
    return 0;
}

/* ---- handles ------------------------------------------------------------- */

void csock__handle_init_kind(csock_loop *loop, csock__handle *h, csock_handle_kind kind)
{
    memset(h, 0, sizeof *h);
    h->loop = loop;
    h->kind = (unsigned)kind & 15u;
    h->next = loop->handles;
    if (loop->handles) loop->handles->prev = h;
    loop->handles = h;
    loop->nhandles++;
}

void csock__handle_init(csock_loop *loop, csock__handle *h) { csock__handle_init_kind(loop, h, 0); }

/* Off the walk's list. h->next is kept: a walk standing on h (its callback
 * closed it, or the next handle) goes on from there, and every handle it
 * leads to is still allocated until the close phase. */
static void handle_unlink(csock_loop *loop, csock__handle *h)
{
    if (h->prev) h->prev->next = h->next;
    else loop->handles = h->next;
    if (h->next) h->next->prev = h->prev;
}

void csock__loop_walk(csock_loop *loop, csock_walk_cb cb, void *data, int internal)
{
    csock__handle *h = loop->handles;
    while (h) {
        csock__handle *next = h->next; /* read first: cb may close h */
        if (!h->closing && h->kind && (internal || !h->internal))
            cb((csock_handle_kind)h->kind, h, data);
        /* A handle cb closed was unlinked with its next intact; when cb
         * closed our next, that one's next leads on (skipping the closed). */
        h = next;
    }
}

void csock_loop_walk(csock_loop *loop, csock_walk_cb cb, void *data)
{
    csock__loop_walk(loop, cb, data, 0);
}

void csock__handle_close(csock__handle *h, void (*finish)(csock__handle *h))
{
    if (h->closing) return;
    csock_loop *loop = h->loop;
    handle_unlink(loop, h);
    h->closing = 1;
    h->finish = finish;
    h->close_next = NULL;
    if (loop->closing_tail)
        loop->closing_tail->close_next = h;
    else
        loop->closing = h;
    loop->closing_tail = h;
}

/* Close callbacks run last in an iteration, after every I/O callback that
 * might still hold a pointer to the handle has returned. */
static void run_closing(csock_loop *loop)
{
    while (loop->closing) {
        csock__handle *h = loop->closing;
        loop->closing = h->close_next;
        if (!loop->closing) loop->closing_tail = NULL;
        loop->nhandles--;
        h->finish(h);
    }
}

/* ---- fd watchers ----------------------------------------------------------- */

void csock__watcher_init(csock__watcher *w, int fd, csock__watcher_cb cb)
{
    memset(w, 0, sizeof *w);
    w->fd = fd;
    w->cb = cb;
    w->index = -1;
    w->ref = 1;
}

static void always_remove(csock_loop *loop, csock__watcher *w)
{
    for (size_t i = 0; i < loop->nalways; i++)
        if (loop->always[i] == w) {
            loop->always[i] = loop->always[--loop->nalways];
            return;
        }
}

static int always_add(csock_loop *loop, csock__watcher *w)
{
    if (loop->nalways == loop->always_cap) {
        size_t cap = loop->always_cap ? loop->always_cap * 2 : 4;
        void *p = realloc(loop->always, cap * sizeof *loop->always);
        if (!p) return -ENOMEM;
        loop->always = p;
        loop->always_cap = cap;
    }
    loop->always[loop->nalways++] = w;
    return 0;
}

int csock__watcher_set(csock_loop *loop, csock__watcher *w, unsigned events)
{
    unsigned old = w->events;
    if (old == events) return 0;
    if (w->always) {
        if (!events) always_remove(loop, w);
        if (!old && events && always_add(loop, w) < 0) return -ENOMEM;
    } else {
        int rc = loop->backend->update(loop, w, w->kevents, events);
        if (rc == -EPERM && !old && events) {
            w->always = 1;
            if (always_add(loop, w) < 0) return -ENOMEM;
        } else if (rc < 0) {
            return rc;
        } else {
            w->kevents = events;
        }
    }
    w->events = events;
    if (w->ref) loop->active += (events != 0) - (old != 0);
    return 0;
}

void csock__watcher_dispatch(csock_loop *loop, csock__watcher *w, unsigned revents)
{
    /* An event fetched in the same batch as the watcher's stop is stale. */
    revents &= w->events;
    if (revents) w->cb(loop, w, revents);
}

static void run_always(csock_loop *loop)
{
    /* Iterate over a snapshot count: callbacks may remove entries. */
    for (size_t i = loop->nalways; i-- > 0;)
        if (i < loop->nalways) {
            csock__watcher *w = loop->always[i];
            csock__watcher_dispatch(loop, w, w->events);
        }
}

/* ---- deferred work and cross-thread posts ---------------------------------- */

void csock__defer(csock_loop *loop, csock__task *t)
{
    t->next = NULL;
    if (loop->defer_tail)
        loop->defer_tail->next = t;
    else
        loop->defer_head = t;
    loop->defer_tail = t;
}

static void run_deferred(csock_loop *loop)
{
    /* Only what was queued before this phase runs now: the list is taken
     * whole, so work deferred by these callbacks starts a new list for the
     * next iteration and a callback that re-defers cannot starve I/O. The
     * next task is read first: a task may re-queue or free its owner. */
    csock__task *t = loop->defer_head;
    loop->defer_head = loop->defer_tail = NULL;
    while (t) {
        csock__task *next = t->next;
        t->fn(t);
        t = next;
    }
}

static void wake(csock_loop *loop)
{
    uint64_t one = 1;
    ssize_t n = write(loop->wake_fd, &one, sizeof one);
    (void)n; /* EAGAIN means the counter is already non-zero: awake anyway */
}

static void post(csock_loop *loop, csock__post *p, int heap)
{
    p->next = NULL;
    p->heap = (unsigned char)heap;
    pthread_mutex_lock(&loop->post_lock);
    if (loop->post_tail)
        loop->post_tail->next = p;
    else
        loop->post_head = p;
    loop->post_tail = p;
    atomic_fetch_add(&loop->posts_pending, 1);
    pthread_mutex_unlock(&loop->post_lock);
    wake(loop);
}

int csock_loop_post(csock_loop *loop, void (*fn)(void *data), void *data)
{
    csock__post *p = malloc(sizeof *p);
    if (!p) return -ENOMEM;
    p->fn = fn;
    p->data = data;
    post(loop, p, 1);
    return 0;
}

void csock__loop_post_node(csock_loop *loop, csock__post *p) { post(loop, p, 0); }

static void run_posts(csock_loop *loop)
{
    if (!atomic_load(&loop->posts_pending)) return;
    pthread_mutex_lock(&loop->post_lock);
    csock__post *p = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_lock);
    while (p) {
        csock__post *next = p->next;
        int heap = p->heap; /* read first: fn may free a caller's node */
        p->fn(p->data);
        if (heap) free(p);
        atomic_fetch_sub(&loop->posts_pending, 1);
        p = next;
    }
}

void csock_loop_stop(csock_loop *loop)
{
    atomic_store(&loop->stop_flag, 1);
    wake(loop);
}

/* ---- buffer pool ------------------------------------------------------------ */

int csock__io_ok(const csock_loop *loop) { return loop->io_ok; }
int csock__io_mshot(const csock_loop *loop) { return loop->io_mshot; }
void csock__io_set_cb(csock_loop *loop, csock__ioreq_cb cb, csock__ioreq_fill fill)
{
    loop->io_cb = cb;
    loop->io_fill = fill;
}

void csock__loop_hold(csock_loop *loop, int delta)
{
    loop->nhandles += (unsigned)delta; /* its requests in flight keep the loop running */
}

int csock__io_recv(csock_loop *loop, csock__ioreq *r, int fd, size_t cap)
{
    if (!loop->io_ok) return -ENOTSUP;
    return loop->backend->recv(loop, r, fd, cap);
}

int csock__io_send(csock_loop *loop, csock__ioreq *r, int fd)
{
    if (!loop->io_ok) return -ENOTSUP;
    return loop->backend->send(loop, r, fd);
}

void csock__io_cancel(csock_loop *loop, csock__ioreq *r)
{
    if (r->busy) loop->backend->cancel(loop, r);
}

void csock__io_forget(csock_loop *loop, int fd)
{
    if (loop->io_ok && loop->backend->forget) loop->backend->forget(loop, fd);
}

static void *pool_get(csock__pool *p, size_t size)
{
    if (p->n) return p->items[--p->n];
    return malloc(size);
}

static void pool_put(csock__pool *p, void *buf, size_t max)
{
    if (!buf) return;
    if (p->n < max) {
        if (!p->items) p->items = malloc(max * sizeof *p->items);
        if (p->items) {
            p->items[p->n++] = buf;
            return;
        }
    }
    free(buf);
}

void *csock__buf_get(csock_loop *loop) { return pool_get(&loop->pool, CSOCK__BUF_SIZE); }
void csock__buf_put(csock_loop *loop, void *buf) { pool_put(&loop->pool, buf, POOL_MAX); }
void *csock__sbuf_get(csock_loop *loop) { return pool_get(&loop->spool, CSOCK__SBUF_SIZE); }
void csock__sbuf_put(csock_loop *loop, void *buf) { pool_put(&loop->spool, buf, SPOOL_MAX); }

/* ---- run ------------------------------------------------------------------------ */

static int loop_alive(const csock_loop *loop)
{
    return loop->active || loop->closing || loop->defer_head ||
           atomic_load(&loop->posts_pending);
}

static int poll_timeout(csock_loop *loop, csock_run_mode mode)
{
    if (mode == CSOCK_RUN_NOWAIT || atomic_load(&loop->stop_flag)) return 0;
    /* Nothing left to wait for (the phases before the wait may have run the
     * last timer or post): return at once instead of blocking forever. */
    if (!loop_alive(loop)) return 0;
    if (csock__loop_phases_due(loop)) return 0;
    return csock__timers_next(loop);
}

int csock__loop_phases_due(csock_loop *loop)
{
    return loop->defer_head || loop->closing || loop->nalways || atomic_load(&loop->posts_pending);
}

int csock_loop_run(csock_loop *loop, csock_run_mode mode)
{
    int alive = loop_alive(loop);
    if (!alive) csock_loop_update_time(loop);
    while (alive && !atomic_load(&loop->stop_flag)) {
        csock_loop_update_time(loop);
        csock__timers_run(loop);
        run_deferred(loop);
        run_posts(loop);
        int rc = loop->backend->wait(loop, poll_timeout(loop, mode));
        if (rc < 0) return rc;

        run_always(loop);
        run_closing(loop);
        if (mode == CSOCK_RUN_ONCE) {
            /* Timers that came due while we waited count as this iteration's. */
            csock_loop_update_time(loop);
            csock__timers_run(loop);
        }
        alive = loop_alive(loop);
        if (mode != CSOCK_RUN_DEFAULT) break;
    }
    atomic_store(&loop->stop_flag, 0);
    return alive;
}

int csock__loop_settle(csock_loop *loop)
{
    for (;;) {
        unsigned open = 0;
        for (csock__handle *h = loop->handles; h; h = h->next) open++;
        /* Every handle counted is on the list: none closing, none held. */
        if (loop->nhandles == open && !loop->closing) return 0;
        if (!loop_alive(loop)) return 0; /* nothing would come: the free's walk decides */
        int rc = csock_loop_run(loop, CSOCK_RUN_ONCE);
        if (rc < 0) return rc;
    }
}

/* ---- public fd watchers ---------------------------------------------------------- */

struct csock_io {
    csock__handle h; /* first: the walk passes its address */
    csock__watcher w;
    csock_io_cb cb;
    void *data;
    void (*close_cb)(csock_io *io);
};
_Static_assert(offsetof(csock_io, h) == 0, "the walk passes the handle's address");

static void io_cb(csock_loop *loop, csock__watcher *w, unsigned events)
{
    csock_io *io = csock__container_of(w, csock_io, w);
    io->cb(io, (int)events);
}

int csock_io_new(csock_loop *loop, int fd, csock_io_cb cb, void *data, csock_io **out)
{
    if (fd < 0 || !cb) return -EINVAL;
    csock_io *io = calloc(1, sizeof *io);
    if (!io) return -ENOMEM;
    csock__handle_init_kind(loop, &io->h, CSOCK_HANDLE_IO);
    csock__watcher_init(&io->w, fd, io_cb);
    io->cb = cb;
    io->data = data;
    *out = io;
    return 0;
}

int csock_io_start(csock_io *io, int events)
{
    if (io->h.closing) return -EBADF;
    return csock__watcher_set(io->h.loop, &io->w, (unsigned)events & 3u);
}

int csock_io_stop(csock_io *io) { return csock__watcher_set(io->h.loop, &io->w, 0); }
int csock_io_fd(const csock_io *io) { return io->w.fd; }
void *csock_io_data(const csock_io *io) { return io->data; }
void csock_io_set_data(csock_io *io, void *data) { io->data = data; }

static void io_finish(csock__handle *h)
{
    csock_io *io = csock__container_of(h, csock_io, h);
    if (io->close_cb) io->close_cb(io);
    free(io);
}

void csock_io_close(csock_io *io, void (*close_cb)(csock_io *io))
{
    if (io->h.closing) return;
    csock__watcher_set(io->h.loop, &io->w, 0);
    io->close_cb = close_cb;
    csock__handle_close(&io->h, io_finish);
}
