/* The event loop: fd watchers, timers, signals, cross-thread posts.
 *
 * Ownership: every handle is created by a *_new() call that allocates it and
 * is released by its *_close() call. Closing is asynchronous: the optional
 * close callback runs in the close phase of the current or next iteration,
 * after which the memory is gone. Until then the handle's callbacks never
 * run again, so no callback ever sees freed memory. Closing a closing handle
 * is a no-op (its first close callback stays). Every handle has a
 * `void *data` slot for the user.
 *
 * Environment (read by csock_loop_new()):
 *   CSOCK_BACKEND   "epoll", "poll", "uring" or "auto" (io_uring where the
 *                   kernel allows it, else epoll): the backend when
 *                   csock_loop_opts.backend is NULL or "" (default auto);
 *                   any other value makes csock_loop_new() fail (-EINVAL).
 *   CSOCK_URING_IO  "0": the uring backend waits for readiness only and
 *                   streams do their own reads and writes, as on epoll (for
 *                   comparing the two paths); unset or anything else: streams
 *                   on uring send and receive by completion.
 */
#ifndef CSOCK_LOOP_H
#define CSOCK_LOOP_H

#include "csock/api.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csock_loop csock_loop;
typedef struct csock_io csock_io;
typedef struct csock_timer csock_timer;
typedef struct csock_signal csock_signal;

/* Readiness bits for fd watchers. */
enum {
    CSOCK_READABLE = 1, /* data (or EOF, or an error) can be read */
    CSOCK_WRITABLE = 2, /* the fd can take a write */
};

/* How csock_loop_run() runs. */
typedef enum {
    CSOCK_RUN_DEFAULT = 0, /* until stopped or nothing is active */
    CSOCK_RUN_ONCE,        /* one iteration, waiting for at least one event */
    CSOCK_RUN_NOWAIT,      /* one iteration, never waiting */
} csock_run_mode;

/* Option structs are ABI: zero-initialize them (= {0}, or designated
 * initializers); zero means the default for every member. A later minor
 * version takes new members out of `reserved`, so sizeof and every offset
 * stay the same within a major version (the library's SOVERSION): leave
 * `reserved` zero. */
/* Options for csock_loop_new(); NULL means defaults. */
typedef struct csock_loop_opts {
    const char *backend; /* "epoll", "poll", "uring" or "auto"; NULL: $CSOCK_BACKEND, then auto */
    uint64_t reserved[4];
} csock_loop_opts;

/* Create a loop. The loop belongs to the thread that runs it. opts may be
 * NULL. Returns 0 and sets *out, or a negative error: -EINVAL for an unknown
 * backend name (in opts or $CSOCK_BACKEND), -ENOMEM, or the backend's or
 * eventfd(2)'s creation error (-EMFILE, -ENOSYS for io_uring on a kernel
 * without it, ...). *out is untouched on failure. */
CSOCK_API int csock_loop_new(const csock_loop_opts *opts, csock_loop **out);

/* Free a loop. Returns 0 (also for NULL), or -EBUSY, freeing nothing, while
 * any handle is still open, a close callback or deferred work is pending, or
 * a post has not run: close everything (csock_loop_walk() helps) and run the
 * loop until csock_loop_run() returns 0 first. Not thread-safe: no other
 * thread may post to the loop any more. */
CSOCK_API int csock_loop_free(csock_loop *loop);

/* Run the loop. Returns 1 when something was still active when it came back
 * (stopped, or after the one iteration of ONCE/NOWAIT), 0 when nothing was
 * left to run (no active referenced handle, pending close, deferred work or
 * post), or a negative error from the backend's wait. Each iteration: update
 * the clock, run due timers, run deferred callbacks and posts, wait for I/O
 * (not at all with NOWAIT) and dispatch it, then run close callbacks. Not
 * reentrant: never call it from one of the loop's callbacks. */
CSOCK_API int csock_loop_run(csock_loop *loop, csock_run_mode mode);

/* Ask csock_loop_run() to return after the current iteration. Safe from any
 * thread (it wakes a waiting loop). A stop asked for while the loop is not
 * running makes the next csock_loop_run() return at once, without an
 * iteration; each run clears the request when it returns. */
CSOCK_API void csock_loop_stop(csock_loop *loop);

/* Run fn(data) on the loop's thread, soon (in the next iteration's post
 * phase). Safe from any thread, including the loop's own. Functions run in
 * the order they were posted. Returns 0, or -ENOMEM (then fn never runs). A
 * post keeps the loop running until it has run, and csock_loop_free() fails
 * with -EBUSY until then. */
CSOCK_API int csock_loop_post(csock_loop *loop, void (*fn)(void *data), void *data);

/* The loop's cached monotonic time in milliseconds, updated once per
 * iteration (and by csock_loop_update_time()). */
CSOCK_API uint64_t csock_loop_now(const csock_loop *loop);
CSOCK_API void csock_loop_update_time(csock_loop *loop);

/* The name of the backend in use: "epoll", "poll" or "uring". */
CSOCK_API const char *csock_loop_backend(const csock_loop *loop);

/* The number of open handles: not yet fully closed (a closing one counts
 * until its close callback has run, and on io_uring until the kernel has
 * given back its requests). For leak checks. */
CSOCK_API unsigned csock_loop_handles(const csock_loop *loop);

/* User data slot of the loop itself. */
CSOCK_API void csock_loop_set_data(csock_loop *loop, void *data);
CSOCK_API void *csock_loop_data(const csock_loop *loop);

/* What csock_loop_walk() found: `handle` is a csock_io *, csock_timer *,
 * csock_signal *, csock_stream *, csock_listener * or csock_dgram *. */
typedef enum {
    CSOCK_HANDLE_IO = 1,
    CSOCK_HANDLE_TIMER,
    CSOCK_HANDLE_SIGNAL,
    CSOCK_HANDLE_STREAM,
    CSOCK_HANDLE_LISTENER,
    CSOCK_HANDLE_DGRAM,
} csock_handle_kind;

typedef void (*csock_walk_cb)(csock_handle_kind kind, void *handle, void *data);

/* Call cb for every open handle of the loop that is not closing yet, newest
 * first: e.g. to close everything before csock_loop_free(), or to list what
 * is still open. Handles the library keeps for itself (a stream's timer) are
 * not shown. cb may close the handle it is given and any other handle of
 * the loop (a closed one is not visited after); handles cb creates are not
 * visited. cb must not run or free the loop. Loop thread only. */
CSOCK_API void csock_loop_walk(csock_loop *loop, csock_walk_cb cb, void *data);

/* ---- fd watchers --------------------------------------------------------- */

/* Called when the fd is ready; `events` holds CSOCK_READABLE/CSOCK_WRITABLE
 * (an error or hang-up on the fd is reported as both what was asked for). */
typedef void (*csock_io_cb)(csock_io *io, int events);

/* Watch an fd the caller owns (csock never closes it). The watcher starts
 * stopped; see csock_io_start(). Regular files, which epoll refuses, are
 * reported always ready, as poll(2) would. Returns 0 and sets *out, -EINVAL
 * (fd < 0 or cb NULL) or -ENOMEM. */
CSOCK_API int csock_io_new(csock_loop *loop, int fd, csock_io_cb cb, void *data, csock_io **out);

/* Set the events to watch (0 stops watching; bits other than READABLE and
 * WRITABLE are ignored). Level-triggered: a ready fd is reported on every
 * iteration until it is no longer ready. Returns 0, -EBADF for a closing
 * watcher, or the backend's error (-EBADF for an fd that is not open,
 * -ENOMEM, ...). csock_io_stop() is csock_io_start(io, 0). csock_io_close()
 * stops watching; the fd stays open (it is the caller's). */
CSOCK_API int csock_io_start(csock_io *io, int events);
CSOCK_API int csock_io_stop(csock_io *io);
CSOCK_API int csock_io_fd(const csock_io *io);
CSOCK_API void csock_io_close(csock_io *io, void (*close_cb)(csock_io *io));
CSOCK_API void *csock_io_data(const csock_io *io);
CSOCK_API void csock_io_set_data(csock_io *io, void *data);

/* ---- timers ---------------------------------------------------------------- */

typedef void (*csock_timer_cb)(csock_timer *t);

/* Make a stopped timer. Returns 0 and sets *out, or -ENOMEM. */
CSOCK_API int csock_timer_new(csock_loop *loop, csock_timer **out);

/* Fire cb after `timeout_ms`, then every `repeat_ms` if that is non-zero.
 * Restarting a running timer reschedules it. Timers due at the same time
 * fire in the order they were started. Times are on the monotonic clock.
 * Returns 0, or -EINVAL for a closing timer or a NULL cb: it never allocates
 * (csock_timer_new reserves the timer's place), so it cannot fail with
 * -ENOMEM, even on an error path. */
CSOCK_API int csock_timer_start(csock_timer *t, csock_timer_cb cb, uint64_t timeout_ms, uint64_t repeat_ms);
/* Stop a running timer (nothing happens for a stopped one). Returns 0. A
 * repeating timer may be stopped from its own callback. */
CSOCK_API int csock_timer_stop(csock_timer *t);
/* 1 while the timer is started and has not fired its last time, else 0. */
CSOCK_API int csock_timer_active(const csock_timer *t);
CSOCK_API void csock_timer_close(csock_timer *t, void (*close_cb)(csock_timer *t));
CSOCK_API void *csock_timer_data(const csock_timer *t);
CSOCK_API void csock_timer_set_data(csock_timer *t, void *data);

/* An active timer normally keeps csock_loop_run() running; an unreferenced
 * one (housekeeping, e.g. a cached clock) does not. */
CSOCK_API void csock_timer_unref(csock_timer *t);

/* ---- signals --------------------------------------------------------------- */

typedef void (*csock_signal_cb)(csock_signal *s, int signum);

/* Deliver signal `signum` as a loop event. The signal is blocked in the
 * calling thread and read through a signalfd; threads created afterwards
 * inherit the block. Block it in threads you created before, or one of them
 * may take it. Several loops may watch the same signal: the kernel gives
 * each occurrence to one of them. */
CSOCK_API int csock_signal_new(csock_loop *loop, csock_signal **out); /* 0 or -ENOMEM */
/* Watch `signum` (restarting a started watcher moves it to the new signal).
 * Returns 0; -EINVAL for a closing watcher, a NULL cb, or a signal that
 * cannot be caught (SIGKILL, SIGSTOP, out of range); or signalfd(2)'s error.
 * Stopping the last watcher of a signal on the loop unblocks it again if
 * csock blocked it (a signal the application had blocked stays blocked):
 * one pending then, or sent later, gets its default action. A program that
 * stops on SIGTERM and closes its watchers before it exits (a teardown
 * that runs the loop once more) blocks the signal itself before starting
 * the watcher, or a second SIGTERM in that window kills it (the csock
 * command does so). csock_signal_stop() returns 0, or signalfd(2)'s error. */
CSOCK_API int csock_signal_start(csock_signal *s, csock_signal_cb cb, int signum);
CSOCK_API int csock_signal_stop(csock_signal *s);
CSOCK_API void csock_signal_close(csock_signal *s, void (*close_cb)(csock_signal *s));
CSOCK_API void *csock_signal_data(const csock_signal *s);
CSOCK_API void csock_signal_set_data(csock_signal *s, void *data);
/* An unreferenced signal watcher does not keep the loop running. */
CSOCK_API void csock_signal_unref(csock_signal *s);

#ifdef __cplusplus
}
#endif
#endif
