/* Internal contract of the loop layer: the handle base, fd watchers as the
 * backends see them, and the backend interface. Not installed. */
#ifndef CSOCK_LOOP_INT_H
#define CSOCK_LOOP_INT_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "csock/error.h"
#include "csock/loop.h"

#define csock__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- handles: what every loop object shares, for asynchronous close ---- */

/* Every handle struct starts with its csock__handle (offset 0), so the
 * handle's address is the public object's, which csock_loop_walk() passes. */
typedef struct csock__handle csock__handle;
struct csock__handle {
    csock_loop *loop;
    csock__handle *close_next;         /* on loop->closing while closing */
    void (*finish)(csock__handle *h);  /* runs the user's close cb, frees */
    csock__handle *next, *prev;        /* loop->handles: open, not closing (the walk) */
    unsigned closing : 1;              /* close requested: no more callbacks */
    unsigned internal : 1;             /* the library's own (a stream's timer): not walked */
    unsigned kind : 4;                 /* csock_handle_kind; 0: not told, not walked */
};

/* Count h as open and put it on the loop's list of handles, of `kind` (a
 * csock_handle_kind: what csock_loop_walk() reports). csock__handle_init()
 * gives no kind: such a handle counts as open but is not walked, because
 * the walk could not say what it is. */
void csock__handle_init_kind(csock_loop *loop, csock__handle *h, csock_handle_kind kind);
void csock__handle_init(csock_loop *loop, csock__handle *h);
/* Queue h for its finish() on this iteration's close phase. Idempotent. */
void csock__handle_close(csock__handle *h, void (*finish)(csock__handle *h));

/* csock_loop_walk() for the server's teardown: with `internal`, also the
 * library's own handles (a stream's timer, an HTTP server's), so that
 * nothing stays open on a loop about to be freed. */
void csock__loop_walk(csock_loop *loop, csock_walk_cb cb, void *data, int internal);

/* Run the loop until every handle closed so far has finished (with
 * io_uring, once the kernel has answered the cancels of its requests in
 * flight), without waiting for the handles still open. A server's loop
 * thread calls it before it ends: an io_uring loop can only be run by the
 * thread that first ran it. 0 or a backend error. */
int csock__loop_settle(csock_loop *loop);

/* A timer or signal watcher the library keeps for itself (inside a stream,
 * a listener, a TLS connection, an HTTP server, a csock_server): as
 * csock_timer_new() / csock_signal_new(), but csock_loop_walk() does not
 * show it to the application, which must not close it. */
int csock__timer_new_internal(csock_loop *loop, csock_timer **out);
int csock__signal_new_internal(csock_loop *loop, csock_signal **out);

/* ---- fd watchers --------------------------------------------------------- */

typedef struct csock__watcher csock__watcher;
typedef void (*csock__watcher_cb)(csock_loop *loop, csock__watcher *w, unsigned events);

struct csock__watcher {
    csock__watcher_cb cb;
    int fd;
    unsigned events;       /* what the owner wants: CSOCK_READABLE | CSOCK_WRITABLE */
    unsigned kevents;      /* what the backend has registered (0: nothing) */
    int index;             /* backend's slot for this watcher (poll), else -1 */
    unsigned ref : 1;      /* an active watcher keeps csock_loop_run() going */
    unsigned always : 1;   /* the backend refused the fd (a regular file): always ready */
};

void csock__watcher_init(csock__watcher *w, int fd, csock__watcher_cb cb);
/* Change what is watched (0 stops). Returns 0 or a backend error. */
int csock__watcher_set(csock_loop *loop, csock__watcher *w, unsigned events);

/* ---- completion I/O ------------------------------------------------------ */

/* A socket read or write handed to the kernel whole (io_uring): no
 * readiness step and no syscall of its own; requests made during an
 * iteration leave together with the next wait. A request completes exactly
 * once, cancelled or not, so its owner must outlive it. For a recv, `buf`
 * holds the `res` bytes received; it belongs to the backend and is valid
 * only during the callback. */
typedef struct csock__ioreq csock__ioreq;
typedef void (*csock__ioreq_cb)(csock_loop *loop, csock__ioreq *r, int res, char *buf);
/* 16 bytes, so that a stream can carry its two in its handle: no callback
 * pointer per request, the loop has one for all (csock__io_set_cb), which
 * tells a recv from a send by `op`. */
struct csock__ioreq {
    csock__ioreq *next; /* the backend's list of requests waiting for a buffer */
    int fd;
    unsigned busy : 2;      /* in flight: the callback is still to come */
    unsigned op : 2;        /* CSOCK__IO_RECV or CSOCK__IO_SEND */
    unsigned cancelled : 2; /* the backend's: a cancel was asked for */
    unsigned mshot : 1;     /* the backend's: a multishot recv, armed until it ends */
    unsigned sends : 8;     /* the backend's: sends its owner made, counted up to a few */
};
_Static_assert(sizeof(csock__ioreq) <= 16, "a stream carries two: memory per connection");
enum { CSOCK__IO_RECV = 1, CSOCK__IO_SEND = 2 };

/* What a send request is to send, asked when the backend makes the request
 * (see csock__io_send): up to `max` pieces in iov[], in order, their sum
 * at most INT32_MAX (the result is an int); returns how many. 0: nothing
 * any more (the request then completes with -ECANCELED). */
typedef int (*csock__ioreq_fill)(csock_loop *loop, csock__ioreq *r, struct iovec *iov, int max);

/* The completion handler of every request on the loop, and the fill of
 * every send (the stream layer's: the only user of completion I/O). */
void csock__io_set_cb(csock_loop *loop, csock__ioreq_cb cb, csock__ioreq_fill fill);

/* 1 when the loop's backend does completion I/O (and CSOCK_URING_IO is not
 * "0", which keeps the io_uring backend readiness-only, for comparison). */
int csock__io_ok(const csock_loop *loop);
/* 1 while a recv may be multishot (cap > 0 in csock__io_recv): the backend
 * has it, it is switched on, and the kernel has not refused one yet. */
int csock__io_mshot(const csock_loop *loop);
/* Start a recv of up to one pooled buffer / a send of [buf, buf+len) (which
 * must stay valid until the callback). 0 or -errno.
 * A recv with cap > 0 may stay armed after its first bytes (multishot,
 * where the backend and kernel have it): the callback then runs once per
 * arrival with r->busy still set, until one comes with r->busy clear (the
 * end: cap bytes or more delivered, EOF, an error, a cancel). The kernel
 * ends it after the arrival that reaches `cap` bytes, so it delivers at
 * most cap - 1 + one recv's size (64 KiB): the caller's bound on input it
 * did not ask for. */
int csock__io_recv(csock_loop *loop, csock__ioreq *r, int fd, size_t cap);
/* A send is made when the loop next enters the kernel, not at the call:
 * the fill callback says then what to send (and must keep those bytes
 * valid until the completion), so writes made in the meantime leave in the
 * same request. Until then the request is busy as one in flight, and a
 * cancel makes it first, then cancels it. */
int csock__io_send(csock_loop *loop, csock__ioreq *r, int fd);
/* Ask for a busy request to end early (its callback gets -ECANCELED, or its
 * result if it was already done). */
void csock__io_cancel(csock_loop *loop, csock__ioreq *r);
/* Before an fd that requests used closes or leaves its owner, with none of
 * them in flight: the backend lets go of it (its file table, io_uring). */
void csock__io_forget(csock_loop *loop, int fd);
/* 1 when the kernel of uname release `release` ("6.18.44-...") may have
 * sockets in an io_uring's file table: 6.13 and later (backend_uring.c
 * says why). */
int csock__uring_files_ok(const char *release);

/* ---- backends: one file each ------------------------------------------- */

typedef struct csock__backend {
    const char *name;
    int (*init)(csock_loop *loop);
    void (*fini)(csock_loop *loop);
    /* Make the kernel watch w->events (old: what it watched before; 0 = add,
     * new 0 = remove). -EPERM means "this fd cannot be watched" (epoll and a
     * regular file); the loop then treats it as always ready. */
    int (*update)(csock_loop *loop, csock__watcher *w, unsigned old_ev, unsigned new_ev);
    /* Wait up to timeout_ms (-1: forever), update the loop time (the wait
     * may have been long, and callbacks start timers from `now`), then call
     * csock__watcher_dispatch() for each ready watcher. */
    int (*wait)(csock_loop *loop, int timeout_ms);
    /* Completion-based socket I/O, optional (NULL: readiness only; see
     * csock__io_* below). */
    int (*recv)(csock_loop *loop, csock__ioreq *r, int fd, size_t cap);
    int (*send)(csock_loop *loop, csock__ioreq *r, int fd);
    void (*cancel)(csock_loop *loop, csock__ioreq *r);
    void (*forget)(csock_loop *loop, int fd);
} csock__backend;

extern const csock__backend csock__backend_epoll;
extern const csock__backend csock__backend_poll;
extern const csock__backend csock__backend_uring;

/* Backends call this for each ready watcher (it filters stale events). */
void csock__watcher_dispatch(csock_loop *loop, csock__watcher *w, unsigned revents);

/* ---- timers (timer.c) ---------------------------------------------------- */

typedef struct csock__timer_heap {
    csock_timer **items;
    size_t n, cap;
    size_t live;   /* timers not yet freed: cap >= live, so a start never allocates */
    uint64_t seq;  /* start order, to break ties between equal due times */
} csock__timer_heap;

void csock__timers_run(csock_loop *loop);
/* Milliseconds until the next referenced timer is due, or -1 for none. */
int csock__timers_next(csock_loop *loop);
void csock__timers_fini(csock_loop *loop);

/* ---- signals (signal.c) -------------------------------------------------- */
void csock__signals_fini(csock_loop *loop);

/* ---- deferred callbacks on the loop thread (loop.c) ---------------------- */
typedef struct csock__post {
    struct csock__post *next;
    void (*fn)(void *data);
    void *data;
    unsigned char heap; /* made by csock_loop_post(): freed once it has run */
} csock__post;

/* csock_loop_post() with a node the caller owns: no allocation, so it
 * cannot fail (a server's stop must not). The node must not be queued
 * already and must stay valid until fn has started; fn may free it. Safe
 * from any thread. */
void csock__loop_post_node(csock_loop *loop, csock__post *p);

/* A deferred call lives in the object it is for (intrusive), so deferring
 * never allocates and cannot fail. */
typedef struct csock__task csock__task;
struct csock__task {
    csock__task *next;
    void (*fn)(csock__task *t);
};

/* Run t->fn(t) in the next pending phase (FIFO). `t` must not be queued
 * already: its owner keeps track (see the stream's `deferred` bits), and
 * must stay allocated until it has run. Loop thread only. */
void csock__defer(csock_loop *loop, csock__task *t);
/* Work for the loop's phases around its wait: a deferred call, a close,
 * an always-callback, a post from another thread. */
int csock__loop_phases_due(csock_loop *loop);

/* Count a closed handle as still open (delta 1) until the kernel is done
 * with it (delta -1): csock_loop_free() refuses meanwhile. (Requests in
 * flight count as active, so the loop runs on until they complete.) */
void csock__loop_hold(csock_loop *loop, int delta);

/* A per-loop pool of fixed-size buffers (read buffers, small write blocks),
 * so an idle connection holds none and a busy loop does not hit malloc. */
#define CSOCK__BUF_SIZE 16384
void *csock__buf_get(csock_loop *loop);
void csock__buf_put(csock_loop *loop, void *buf);
/* Small ones, for the write chunks of completion I/O: a chunk stays until
 * its send completes, and a busy loop has hundreds in flight at once. */
#define CSOCK__SBUF_SIZE 1024
void *csock__sbuf_get(csock_loop *loop);
void csock__sbuf_put(csock_loop *loop, void *buf);

typedef struct csock__pool {
    void **items;
    size_t n;
} csock__pool;

struct csock_loop {
    const csock__backend *backend;
    void *bstate;                 /* the backend's own state */
    uint64_t now;                 /* cached monotonic ms */
    unsigned active;              /* referenced active watchers/timers/signals */
    unsigned nhandles;            /* open handles (for csock_loop_free) */
    csock__handle *handles;       /* open, not closing: newest first (the walk) */
    csock__handle *closing;       /* handles whose close phase is due */
    csock__handle *closing_tail;
    csock__timer_heap timers;
    csock__task *defer_head, *defer_tail;
    csock__watcher **always;      /* watchers the backend refused: always ready */
    size_t nalways, always_cap;
    void *data;
    /* cross-thread posts */
    pthread_mutex_t post_lock;
    csock__post *post_head, *post_tail;
    atomic_uint posts_pending;
    atomic_int stop_flag;
    int wake_fd;                  /* eventfd: posts and stop wake the wait */
    csock__watcher wake_w;
    /* signals */
    int sig_fd;                   /* signalfd, -1 until a signal is watched */
    csock__watcher sig_w;
    csock_signal *signals;        /* list of signal handles */
    sigset_t sig_blocked_by_us;   /* blocked by csock (not by the application) */
    /* buffer pools */
    csock__pool pool, spool;
    int io_ok;                    /* csock__io_ok() */
    int io_mshot;                 /* csock__io_mshot() */
    csock__ioreq_cb io_cb;        /* csock__io_set_cb() */
    csock__ioreq_fill io_fill;    /* csock__io_set_cb() */
};

#endif
