/* The event loop: fd watchers, timers, signals, cross-thread posts.
 *
 * Ownership: every handle is created by a *_new() call that allocates it and
 * is released by its *_close() call. Closing is asynchronous: the optional
 * close callback runs on a later loop iteration, after which the memory is
 * gone. Until then the handle's callbacks never run again, so no callback
 * ever sees freed memory. Every handle has a `void *data` slot for the user.
 */
#ifndef CSOCK_LOOP_H
#define CSOCK_LOOP_H

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

/* Options for csock_loop_new(); NULL means defaults. */
typedef struct csock_loop_opts {
    const char *backend; /* "epoll", "poll" or "uring"; NULL: $CSOCK_BACKEND, then the best */
} csock_loop_opts;

/* Create a loop. The loop belongs to the thread that runs it.
 * Returns 0 and sets *out, or a negative error (-EINVAL for an unknown
 * backend, -ENOMEM, or the backend's creation error). */
int csock_loop_new(const csock_loop_opts *opts, csock_loop **out);

/* Free a loop. Fails with -EBUSY (and frees nothing) while any handle is
 * still open or a close callback is still pending: run the loop until the
 * closes finish first. Not thread-safe. */
int csock_loop_free(csock_loop *loop);

/* Run the loop. Returns 1 when there were still active handles when it came
 * back (stopped, or ONCE/NOWAIT), 0 when nothing was left to run, or a
 * negative error from the backend. Each iteration: update the clock, run due
 * timers, run pending callbacks and posts, wait for I/O and dispatch it,
 * then run close callbacks. */
int csock_loop_run(csock_loop *loop, csock_run_mode mode);

/* Ask csock_loop_run() to return after the current iteration.
 * Safe from any thread and from signal-free callbacks. */
void csock_loop_stop(csock_loop *loop);

/* Run fn(data) on the loop's thread, soon. Safe from any thread, including
 * the loop's own. Functions run in the order they were posted. Returns 0, or
 * -ENOMEM. A post keeps the loop running until it has run. */
int csock_loop_post(csock_loop *loop, void (*fn)(void *data), void *data);

/* The loop's cached monotonic time in milliseconds, updated once per
 * iteration (and by csock_loop_update_time()). */
uint64_t csock_loop_now(const csock_loop *loop);
void csock_loop_update_time(csock_loop *loop);

/* The name of the backend in use: "epoll", "poll" or "uring". */
const char *csock_loop_backend(const csock_loop *loop);

/* The number of open handles (not yet fully closed). For leak checks. */
unsigned csock_loop_handles(const csock_loop *loop);

/* User data slot of the loop itself. */
void csock_loop_set_data(csock_loop *loop, void *data);
void *csock_loop_data(const csock_loop *loop);

/* ---- fd watchers --------------------------------------------------------- */

/* Called when the fd is ready; `events` holds CSOCK_READABLE/CSOCK_WRITABLE
 * (an error or hang-up on the fd is reported as both what was asked for). */
typedef void (*csock_io_cb)(csock_io *io, int events);

/* Watch an fd the caller owns (csock never closes it). The watcher starts
 * stopped; see csock_io_start(). Regular files, which epoll refuses, are
 * reported always ready, as poll(2) would. */
int csock_io_new(csock_loop *loop, int fd, csock_io_cb cb, void *data, csock_io **out);

/* Set the events to watch (0 stops watching). Level-triggered: a ready fd is
 * reported on every iteration until it is no longer ready. */
int csock_io_start(csock_io *io, int events);
int csock_io_stop(csock_io *io);
int csock_io_fd(const csock_io *io);
void csock_io_close(csock_io *io, void (*close_cb)(csock_io *io));
void *csock_io_data(const csock_io *io);
void csock_io_set_data(csock_io *io, void *data);

/* ---- timers ---------------------------------------------------------------- */

typedef void (*csock_timer_cb)(csock_timer *t);

int csock_timer_new(csock_loop *loop, csock_timer **out);

/* Fire cb after `timeout_ms`, then every `repeat_ms` if that is non-zero.
 * Restarting a running timer reschedules it. Timers due at the same time
 * fire in the order they were started. Times are on the monotonic clock.
 * Returns 0, or -EINVAL for a closing timer or a NULL cb: it never allocates
 * (csock_timer_new reserves the timer's place), so it cannot fail with
 * -ENOMEM, even on an error path. */
int csock_timer_start(csock_timer *t, csock_timer_cb cb, uint64_t timeout_ms, uint64_t repeat_ms);
int csock_timer_stop(csock_timer *t);
int csock_timer_active(const csock_timer *t);
void csock_timer_close(csock_timer *t, void (*close_cb)(csock_timer *t));
void *csock_timer_data(const csock_timer *t);
void csock_timer_set_data(csock_timer *t, void *data);

/* An active timer normally keeps csock_loop_run() running; an unreferenced
 * one (housekeeping, e.g. a cached clock) does not. */
void csock_timer_unref(csock_timer *t);

/* ---- signals --------------------------------------------------------------- */

typedef void (*csock_signal_cb)(csock_signal *s, int signum);

/* Deliver signal `signum` as a loop event. The signal is blocked in the
 * calling thread and read through a signalfd; threads created afterwards
 * inherit the block. Block it in threads you created before, or one of them
 * may take it. Several loops may watch the same signal: the kernel gives
 * each occurrence to one of them. */
int csock_signal_new(csock_loop *loop, csock_signal **out);
int csock_signal_start(csock_signal *s, csock_signal_cb cb, int signum);
int csock_signal_stop(csock_signal *s);
void csock_signal_close(csock_signal *s, void (*close_cb)(csock_signal *s));
void *csock_signal_data(const csock_signal *s);
void csock_signal_set_data(csock_signal *s, void *data);
/* An unreferenced signal watcher does not keep the loop running. */
void csock_signal_unref(csock_signal *s);

#ifdef __cplusplus
}
#endif
#endif
