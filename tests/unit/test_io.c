/* fd watchers: a pipe's readiness, stop, regular files (always ready, which
 * the loop emulates where epoll refuses them), close. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"
#include "helpers.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    int calls;
    int events; /* union of all events seen */
    int last;
} io_seen;

static void seen_cb(csock_io *io, int events)
{
    io_seen *s = csock_io_data(io);
    s->calls++;
    s->events |= events;
    s->last = events;
}

static void make_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

static void pipe_readable_after_write(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    int fds[2];
    make_pipe(fds);
    io_seen seen = {0};
    csock_io *io;
    CHECK_OK(csock_io_new(loop, fds[0], seen_cb, &seen, &io));
    assert_int_equal(csock_io_fd(io), fds[0]);
    CHECK_OK(csock_io_start(io, CSOCK_READABLE));
    h_spin(loop, 3);
    assert_int_equal(seen.calls, 0); /* empty pipe: not readable */
    assert_int_equal(write(fds[1], "abc", 3), 3);
    assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.last, CSOCK_READABLE);
    /* Level-triggered: still readable until drained. */
    assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    assert_int_equal(seen.calls, 2);
    char buf[8];
    assert_int_equal(read(fds[0], buf, sizeof buf), 3);
    h_spin(loop, 3);
    assert_int_equal(seen.calls, 2);
    csock_io_close(io, NULL);
    h_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

static void pipe_writable_at_once(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    int fds[2];
    make_pipe(fds);
    io_seen seen = {0};
    csock_io *io;
    CHECK_OK(csock_io_new(loop, fds[1], seen_cb, &seen, &io));
    CHECK_OK(csock_io_start(io, CSOCK_WRITABLE));
    assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.last, CSOCK_WRITABLE);
    /* Fill the pipe: no longer writable. */
    char block[4096];
    memset(block, 'x', sizeof block);
    while (write(fds[1], block, sizeof block) > 0) {}
    int before = seen.calls;
    h_spin(loop, 3);
    assert_int_equal(seen.calls, before);
    csock_io_close(io, NULL);
    h_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

static void stop_stops_callbacks(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    int fds[2];
    make_pipe(fds);
    io_seen seen = {0};
    csock_io *io;
    CHECK_OK(csock_io_new(loop, fds[0], seen_cb, &seen, &io));
    CHECK_OK(csock_io_start(io, CSOCK_READABLE));
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    assert_int_equal(seen.calls, 1);
    CHECK_OK(csock_io_stop(io));
    h_spin(loop, 3);
    assert_int_equal(seen.calls, 1); /* still readable, but not watched */
    /* A stopped watcher does not keep the loop alive. */
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    CHECK_OK(csock_io_start(io, CSOCK_READABLE));
    assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    assert_int_equal(seen.calls, 2); /* and watching again resumes */
    CHECK_OK(csock_io_start(io, 0)); /* 0 is a stop too */
    h_spin(loop, 2);
    assert_int_equal(seen.calls, 2);
    csock_io_close(io, NULL);
    h_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

static void regular_file_always_ready(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    FILE *f = tmpfile();
    assert_non_null(f);
    int fd = fileno(f);
    io_seen seen = {0};
    csock_io *io;
    CHECK_OK(csock_io_new(loop, fd, seen_cb, &seen, &io));
    CHECK_OK(csock_io_start(io, CSOCK_READABLE | CSOCK_WRITABLE));
    assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.last, CSOCK_READABLE | CSOCK_WRITABLE);
    h_spin(loop, 2);
    assert_int_equal(seen.calls, 3); /* every iteration */
    /* A ready regular file must not make RUN_ONCE block. */
    assert_true(csock_loop_run(loop, CSOCK_RUN_ONCE) >= 0);
    assert_int_equal(seen.calls, 4);
    CHECK_OK(csock_io_start(io, CSOCK_READABLE)); /* change the mask */
    assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    assert_int_equal(seen.last, CSOCK_READABLE);
    CHECK_OK(csock_io_stop(io));
    h_spin(loop, 2);
    assert_int_equal(seen.calls, 5);
    CHECK_OK(csock_io_start(io, CSOCK_WRITABLE)); /* and start again */
    assert_true(csock_loop_run(loop, CSOCK_RUN_NOWAIT) >= 0);
    assert_int_equal(seen.calls, 6);
    assert_int_equal(seen.last, CSOCK_WRITABLE);
    csock_io_close(io, NULL);
    h_spin(loop, 2);
    assert_int_equal(seen.calls, 6);
    h_loop_free(loop);
    fclose(f);
}

static int io_closed;
static void io_close_cb(csock_io *io)
{
    assert_non_null(csock_io_data(io));
    io_closed++;
}

static void close_from_callback(csock_io *io, int events)
{
    io_seen *s = csock_io_data(io);
    s->calls++;
    csock_io_close(io, io_close_cb);
}

static void io_close(void **state)
{
    (void)state;
    csock_loop *loop = h_loop_new();
    int fds[2];
    make_pipe(fds);
    io_seen seen = {0};
    csock_io *io;
    CHECK_OK(csock_io_new(loop, fds[0], close_from_callback, &seen, &io));
    CHECK_OK(csock_io_start(io, CSOCK_READABLE));
    assert_int_equal(write(fds[1], "x", 1), 1);
    io_closed = 0;
    assert_int_equal(csock_loop_run(loop, CSOCK_RUN_DEFAULT), 0);
    assert_int_equal(seen.calls, 1); /* not called again after close */
    assert_int_equal(io_closed, 1);
    assert_int_equal(csock_loop_handles(loop), 0);
    /* csock never closes the caller's fd. */
    assert_true(fcntl(fds[0], F_GETFD) >= 0);
    assert_int_equal(csock_io_new(loop, -1, seen_cb, NULL, &io), -EINVAL);
    h_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pipe_readable_after_write),
        cmocka_unit_test(pipe_writable_at_once),
        cmocka_unit_test(stop_stops_callbacks),
        cmocka_unit_test(regular_file_always_ready),
        cmocka_unit_test(io_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
