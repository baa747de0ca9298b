/* The multi-core server (csock_server_*): echo on two loops over TCP and a
 * Unix socket, the connection count, a stop from another thread, max_conns
 * across loops, a graceful drain that delivers data in flight, the drain
 * timeout closing a client that never reads, a port another process holds
 * (refused unless sharing is asked for), and set-up failures that leave
 * nothing open.
 *
 * The server runs on its own thread (csock_server_run blocks); the test
 * thread is the client with plain blocking sockets, each bounded by
 * SO_RCVTIMEO so a bug fails the test instead of hanging it. The server's
 * callbacks report what happened (a connection counted or closed, a reply
 * queued that the client will not read, a loop draining) through a
 * condition variable the test thread waits on, with a deadline: no sleeps.
 * Built also under ThreadSanitizer (label tsan). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CHECK_OK(expr)                                                                   \
    do {                                                                                 \
        int rc_ = (expr);                                                                \
        if (rc_ < 0) fail_msg("%s: %s", #expr, csock_strerror(rc_));                    \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- events from the server's threads -------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned drained;  /* loops that began draining */
    unsigned stuck;    /* replies queued past the high watermark: reading paused */
} ev = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

#define HIGH_WATERMARK (256u << 10) /* the streams' default */

/* Called after the state a waiter looks at has changed. */
static void notify(void)
{
    pthread_mutex_lock(&ev.lock);
    pthread_cond_broadcast(&ev.cond);
    pthread_mutex_unlock(&ev.lock);
}

static void bump(unsigned *counter)
{
    pthread_mutex_lock(&ev.lock);
    (*counter)++;
    pthread_cond_broadcast(&ev.cond);
    pthread_mutex_unlock(&ev.lock);
}

/* Wait until cond(arg) holds, for at most 10 s. */
static void wait_until(int (*cond)(void *arg), void *arg, const char *what)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&ev.lock);
    int rc = 0;
    while (!cond(arg) && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&ev.cond, &ev.lock, &deadline);
    int ok = cond(arg);
    pthread_mutex_unlock(&ev.lock);
    if (!ok) fail_msg("timed out waiting for %s", what);
}

/* ---- the server side: echo ---------------------------------------------------- */

static size_t on_echo(csock_stream *s, int status, const char *buf, size_t len)
{
    if (status == CSOCK_EOF) {
        csock_stream_end(s, NULL);
        return len;
    }
    if (status < 0) {
        csock_stream_close(s, NULL);
        return len;
    }
    if (csock_stream_write(s, buf, len) < 0) csock_stream_close(s, NULL);
    else if (csock_stream_write_queue_size(s) > HIGH_WATERMARK) bump(&ev.stuck);
    return len;
}

static void on_conn_closed(csock_stream *s) { notify(); } /* the count went down */

/* A protocol with a goodbye (csock_stream_on_stop): on a stop the server
 * says "bye", waits for the client's "ok" however long it takes (within the
 * drain timeout), answers "done" and ends. */
static int goodbye_mode;
static unsigned stop_calls;

static size_t on_goodbye_answer(csock_stream *s, int status, const char *buf, size_t len)
{
    if (status < 0) {
        csock_stream_close(s, NULL);
        return len;
    }
    if (buf[0] == '.') return 1; /* "still here": taken, so the stream is idle again */
    if (len < 2) return 0;
    if (memcmp(buf, "ok", 2) == 0 && csock_stream_write(s, "done\n", 5) == 0)
        csock_stream_end(s, NULL);
    else
        csock_stream_close(s, NULL);
    return len;
}

static void on_stop(csock_stream *s, int status)
{
    bump(&stop_calls);
    if (status < 0 || csock_stream_write(s, "bye\n", 4) < 0 ||
        csock_stream_read_start(s, on_goodbye_answer) < 0)
        csock_stream_close(s, NULL);
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    if (status < 0) return; /* accept errors: the listener keeps going */
    csock_stream_on_close(s, on_conn_closed);
    if (goodbye_mode && csock_stream_on_stop(s, on_stop) < 0) {
        csock_stream_close(s, NULL);
        return;
    }
    notify(); /* counted already */
    if (csock_stream_read_start(s, on_echo) < 0) csock_stream_close(s, NULL);
}

static void on_loop_drain(csock_server *srv, csock_loop *loop, unsigned index) { bump(&ev.drained); }

typedef struct fixture {
    csock_server *srv;
    pthread_t th;
    int run_rc;
    double run_returned; /* now_s() when csock_server_run returned */
    csock_addr tcp, unx;
    char dir[64];
    int has_unix;
} fixture;

static void *run_thread(void *arg)
{
    fixture *f = arg;
    f->run_rc = csock_server_run(f->srv);
    f->run_returned = now_s();
    return NULL;
}

static void start(fixture *f, unsigned threads, unsigned max_conns, uint64_t drain_ms, int with_unix)
{
    memset(f, 0, sizeof *f);
    ev.drained = 0;
    ev.stuck = 0;
    csock_server_opts o = {.threads = threads, .max_conns = max_conns, .drain_timeout_ms = drain_ms,
                           .loop_drain = on_loop_drain};
    CHECK_OK(csock_server_new(&o, &f->srv));
    assert_int_equal(csock_server_threads(f->srv), threads);
    csock_addr a;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", CSOCK_ADDR_NUMERIC, &a));
    CHECK_OK(csock_server_listen(f->srv, &a, on_accept, NULL));
    CHECK_OK(csock_server_addr(f->srv, 0, &f->tcp));
    assert_true(csock_addr_port(&f->tcp) > 0);
    if (with_unix) {
        strcpy(f->dir, "/tmp/csock-test-server-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        char text[128];
        snprintf(text, sizeof text, "unix:%s/sock", f->dir);
        CHECK_OK(csock_addr_parse(text, 0, &a));
        CHECK_OK(csock_server_listen(f->srv, &a, on_accept, NULL));
        CHECK_OK(csock_server_addr(f->srv, 1, &f->unx));
        f->has_unix = 1;
    }
    assert_int_equal(pthread_create(&f->th, NULL, run_thread, f), 0);
}

/* Join the server thread, which must return within `limit` seconds. */
static void join(fixture *f, double limit)
{
    double t0 = now_s();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)limit + 1;
    int rc = pthread_timedjoin_np(f->th, NULL, &ts);
    if (rc != 0) fail_msg("csock_server_run did not return within %.0f s", limit);
    assert_true(now_s() - t0 < limit + 1);
    CHECK_OK(f->run_rc);
    assert_int_equal(csock_server_conns(f->srv), 0); /* everything closed */
    csock_server_free(f->srv);
    if (f->has_unix) {
        char path[128];
        snprintf(path, sizeof path, "%s/sock", f->dir);
        assert_int_equal(access(path, F_OK), -1); /* the socket file is removed */
        rmdir(f->dir);
    }
}

/* ---- the client side: blocking sockets with timeouts ---------------------------- */

/* rcvbuf: 0, or a small receive buffer (set before connecting, so the
 * window stays small) for a client whose replies must pile up server-side. */
static int client_rcvbuf(const csock_addr *a, int rcvbuf)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    /* A blocking connect with a send timeout is not restarted after an
     * interruption (the io_uring task work of a ring this thread set up
     * can interrupt it): it goes on in the background, so wait for it. */
    if (connect(fd, (const struct sockaddr *)&a->sa, a->len) < 0) {
        int err = errno;
        if (err == EINTR) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof err;
            while (poll(&p, 1, 10000) < 0 && errno == EINTR) {}
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        }
        if (err) fail_msg("connect: %s", strerror(err));
    }
    return fd;
}

static int client(const csock_addr *a) { return client_rcvbuf(a, 0); }

static void send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail_msg("send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* Read exactly len bytes (fails on EOF, error or timeout). */
static void recv_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) fail_msg("recv: early EOF (%zu bytes missing)", len);
        if (n < 0) fail_msg("recv: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* 0: clean EOF; -errno: reset or timeout; 1: data arrived. */
static int recv_eof(int fd)
{
    char c;
    ssize_t n;
    while ((n = recv(fd, &c, 1, 0)) < 0 && errno == EINTR) {}
    return n == 0 ? 0 : n < 0 ? -errno : 1;
}

static void echo_once(int fd, unsigned tag)
{
    char out[64], in[64];
    int n = snprintf(out, sizeof out, "hello %u\n", tag);
    send_all(fd, out, (size_t)n);
    recv_all(fd, in, (size_t)n);
    assert_memory_equal(in, out, (size_t)n);
}

typedef struct {
    csock_server *srv;
    unsigned want;
} conns_wanted;

static int conns_reached(void *arg)
{
    conns_wanted *w = arg;
    return csock_server_conns(w->srv) == w->want;
}

/* Wait (bounded) for the server's connection count to reach `want`. */
static void wait_conns(csock_server *srv, unsigned want)
{
    conns_wanted w = {srv, want};
    char what[64];
    snprintf(what, sizeof what, "%u connection(s)", want);
    wait_until(conns_reached, &w, what);
}

static int all_draining(void *arg) { return ev.drained == csock_server_threads(arg); }

/* ---- tests ------------------------------------------------------------------------ */

#define NTCP 24
#define NUNIX 6

/* Echo over TCP and Unix on two loops; the count follows; a stop from this
 * thread closes the idle clients (they read EOF) and run returns. */
static void test_echo_two_loops(void **state)
{
    fixture f;
    start(&f, 2, 0, 5000, 1);
    int fds[NTCP + NUNIX];
    for (unsigned i = 0; i < NTCP + NUNIX; i++) {
        fds[i] = client(i < NTCP ? &f.tcp : &f.unx);
        echo_once(fds[i], i);
    }
    wait_conns(f.srv, NTCP + NUNIX);
    for (unsigned i = 0; i < NTCP + NUNIX; i++) echo_once(fds[i], 1000 + i); /* still served */
    /* Closing a few is counted down. */
    for (unsigned i = 0; i < 4; i++) close(fds[i]);
    wait_conns(f.srv, NTCP + NUNIX - 4);
    double t0 = now_s();
    csock_server_stop(f.srv);
    for (unsigned i = 4; i < NTCP + NUNIX; i++) {
        int r = recv_eof(fds[i]);
        if (r != 0) fail_msg("client %u after stop: %d (want EOF)", i, r);
        close(fds[i]);
    }
    join(&f, 5);
    /* Idle clients do not wait for the drain timeout (5 s). */
    assert_true(f.run_returned - t0 < 3.0);
}

/* Both loops of a two-thread server take connections (SO_REUSEPORT spreads
 * them): seen from the loops' own threads through per-loop counters. */
static void test_default_threads(void **state)
{
    csock_server *srv;
    csock_server_opts o = {0};
    CHECK_OK(csock_server_new(&o, &srv));
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(csock_server_threads(srv), cpus > 0 ? (unsigned)cpus : 1);
    for (unsigned i = 0; i < csock_server_threads(srv); i++) assert_non_null(csock_server_loop(srv, i));
    assert_null(csock_server_loop(srv, csock_server_threads(srv)));
    csock_server_free(srv); /* never ran */
}

#define MAXC 6

/* max_conns counts across loops: with MAXC held on two loops, more clients
 * are closed at once (EOF or reset, no echo), and a slot freed is usable. */
static void test_max_conns(void **state)
{
    fixture f;
    start(&f, 2, MAXC, 5000, 0);
    int held[MAXC];
    for (unsigned i = 0; i < MAXC; i++) {
        held[i] = client(&f.tcp);
        echo_once(held[i], i);
    }
    wait_conns(f.srv, MAXC);
    for (unsigned i = 0; i < 3 * MAXC; i++) {
        int fd = client(&f.tcp);
        double t0 = now_s();
        send(fd, "x\n", 2, MSG_NOSIGNAL); /* may fail: the server already closed */
        int r = recv_eof(fd);
        if (r != 0 && r != -ECONNRESET && r != -EPIPE) fail_msg("excess client %u: %d", i, r);
        assert_true(now_s() - t0 < 3.0);
        close(fd);
        assert_true(csock_server_conns(f.srv) <= MAXC);
    }
    for (unsigned i = 0; i < MAXC; i++) echo_once(held[i], 100 + i); /* untouched */
    close(held[0]);
    wait_conns(f.srv, MAXC - 1);
    held[0] = client(&f.tcp);
    echo_once(held[0], 200);
    wait_conns(f.srv, MAXC);
    for (unsigned i = 0; i < MAXC; i++) close(held[i]);
    wait_conns(f.srv, 0);
    csock_server_stop(f.srv);
    join(&f, 5);
}

#define INFLIGHT (1u << 20)

static char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len);
    assert_non_null(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (char)(x >> 16);
    }
    return p;
}

/* A big socket send buffer (4 MiB asked; a stock kernel gives 416 KiB,
 * twice net.core.wmem_max), so more of a request is sent without reading. */
static void big_sndbuf(int fd)
{
    int sz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
}

static int stuck_seen(void)
{
    pthread_mutex_lock(&ev.lock);
    int stuck = ev.stuck != 0;
    pthread_mutex_unlock(&ev.lock);
    return stuck;
}

/* A client that sends up to 4 MiB and never reads: once the server's reply
 * queue passes the high watermark it stops reading, and nothing moves
 * again. The kernel may take less than 4 MiB by then: a stock kernel caps
 * SO_SNDBUF at twice net.core.wmem_max (212992 on Debian 12; the send of
 * the whole 4 MiB blocked there until its 10 s timeout). So it sends
 * without blocking, and stops when the server is stuck. */
static int stuck_client(fixture *f)
{
    int fd = client_rcvbuf(&f->tcp, 4096);
    big_sndbuf(fd);
    echo_once(fd, 1);
    size_t len = 4u << 20, off = 0;
    char *out = pattern(len, 7);
    double t0 = now_s();
    while (!stuck_seen()) {
        if (now_s() - t0 > 10)
            fail_msg("timed out waiting for a reply queue past the high watermark (%zu bytes sent)", off);
        ssize_t n = off < len ? send(fd, out + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            fail_msg("send: %s", strerror(errno));
        struct pollfd p = {.fd = fd, .events = off < len ? POLLOUT : 0};
        poll(&p, 1, 20);
    }
    free(out);
    return fd;
}

/* Drain: clients that sent 1 MiB and have not read the echo yet get every
 * byte back, then EOF, after the stop; then run returns (before the 20 s
 * drain timeout). */
static void test_drain_delivers_inflight(void **state)
{
    fixture f;
    start(&f, 2, 0, 20000, 0);
    enum { N = 4 };
    int fds[N];
    char *out[N], *in = malloc(INFLIGHT);
    assert_non_null(in);
    for (unsigned i = 0; i < N; i++) {
        fds[i] = client(&f.tcp);
        big_sndbuf(fds[i]);
        echo_once(fds[i], i);
        out[i] = pattern(INFLIGHT, i);
        send_all(fds[i], out[i], INFLIGHT);
    }
    wait_conns(f.srv, N);
    double t0 = now_s();
    csock_server_stop(f.srv);
    wait_until(all_draining, f.srv, "every loop draining"); /* while the echoes wait */
    for (unsigned i = 0; i < N; i++) {
        memset(in, 0, INFLIGHT);
        recv_all(fds[i], in, INFLIGHT);
        assert_memory_equal(in, out[i], INFLIGHT);
        int r = recv_eof(fds[i]);
        if (r != 0) fail_msg("client %u after its echo: %d (want EOF)", i, r);
        close(fds[i]);
        free(out[i]);
    }
    free(in);
    join(&f, 15);
    assert_true(f.run_returned - t0 < 15.0);
}

/* Drain timeout: a client that never reads keeps its reply queued; the
 * server closes it at the drain timeout (2 s) and run returns. The timeout
 * is long enough that "the idle client is closed at once" (well before it)
 * holds on a loaded machine: at 0.5 s a starved loop thread once took
 * longer than the 0.45 s this allowed. */
static void test_drain_timeout_closes_stuck(void **state)
{
    fixture f;
    start(&f, 2, 0, 2000, 0);
    int idle = client(&f.tcp);
    echo_once(idle, 2);
    int fd = stuck_client(&f); /* never read: the echo cannot drain */
    wait_conns(f.srv, 2);
    double t0 = now_s();
    csock_server_stop(f.srv);
    assert_int_equal(recv_eof(idle), 0); /* idle: closed at once */
    assert_true(now_s() - t0 < 1.9);
    join(&f, 8);
    double took = f.run_returned - t0;
    printf("drain timeout 2 s: run returned after %.3f s\n", took);
    assert_true(took >= 1.95);
    assert_true(took < 2.0 + 3.0); /* tolerance: a noisy shared machine */
    close(idle);
    close(fd);
}

/* A stream with a stop callback hears of the stop and is not ended for being
 * quiet (250 ms): its owner's goodbye takes as long as it needs. */
static void test_stop_callback_owns_goodbye(void **state)
{
    fixture f;
    goodbye_mode = 1;
    stop_calls = 0;
    start(&f, 1, 0, 20000, 0);
    int fd = client(&f.tcp);
    echo_once(fd, 1);
    wait_conns(f.srv, 1);
    csock_server_stop(f.srv);
    char buf[8];
    recv_all(fd, buf, 4);
    assert_memory_equal(buf, "bye\n", 4);
    /* Input taken, then quiet past the drain's 250 ms: a stream without a
     * stop callback is ended then; this one stays open for the goodbye. */
    send_all(fd, ".", 1);
    usleep(600 * 1000);
    send_all(fd, "ok", 2);
    recv_all(fd, buf, 5);
    assert_memory_equal(buf, "done\n", 5);
    assert_int_equal(recv_eof(fd), 0);
    join(&f, 5);
    assert_int_equal(stop_calls, 1);
    goodbye_mode = 0;
    close(fd);
}

/* A second stop closes everything at once, without waiting for the drain. */
static void test_second_stop_is_immediate(void **state)
{
    fixture f;
    start(&f, 2, 0, 20000, 0);
    int fd = stuck_client(&f);
    double t0 = now_s();
    csock_server_stop(f.srv);
    wait_until(all_draining, f.srv, "every loop draining");
    csock_server_stop(f.srv);
    join(&f, 5);
    assert_true(f.run_returned - t0 < 3.0);
    close(fd);
}

/* Open descriptors, without opening one (the limit may be lowered). */
static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 65536; fd++) n += fcntl(fd, F_GETFD) != -1;
    return n;
}

/* Stops that come after the run has returned post to loops whose threads
 * have ended; csock_server_free() on this thread runs those posts. An
 * io_uring loop belongs to the thread that ran it (SINGLE_ISSUER): this
 * thread must not enter its ring, and the free must still finish and free
 * every loop (it asserted on -EEXIST when it had closes of its own to
 * finish there; without the assert, the loops leaked). */
static void test_stop_after_run_then_free(void **state)
{
    int fds = count_fds();
    fixture f;
    start(&f, 2, 0, 20000, 0);
    int fd = client(&f.tcp);
    echo_once(fd, 1);
    csock_server_stop(f.srv); /* drains: the idle connection ends, the run returns */
    double t0 = now_s();
    int rc = pthread_join(f.th, NULL);
    assert_int_equal(rc, 0);
    assert_true(now_s() - t0 < 10);
    CHECK_OK(f.run_rc);
    csock_server_stop(f.srv); /* the second stop: posted to loops that no longer run */
    csock_server_free(f.srv);
    close(fd);
    assert_int_equal(count_fds(), fds); /* every loop freed (rings, eventfds) */
}

/* A plain listening socket with SO_REUSEPORT, as another server's loops
 * have: the "foreign holder" of a port. */
static int foreign_listener(csock_addr *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", CSOCK_ADDR_NUMERIC, a));
    csock_addr_set_port(a, ntohs(sin.sin_port));
    return fd;
}

/* A port another process listens on is refused (-EADDRINUSE, nothing left
 * open), whatever the number of loops; the loops' own SO_REUSEPORT used to
 * let every server of two or more loops join it silently. With `reuseport`
 * the server shares the port, on purpose. */
static void test_busy_port_refused_unless_shared(void **state)
{
    csock_addr a, bound;
    int holder = foreign_listener(&a);
    csock_server *srv;
    for (unsigned threads = 1; threads <= 3; threads++) {
        csock_server_opts o = {.threads = threads};
        CHECK_OK(csock_server_new(&o, &srv));
        int fds = count_fds();
        assert_int_equal(csock_server_listen(srv, &a, on_accept, NULL), -EADDRINUSE);
        assert_int_equal(count_fds(), fds);
        csock_server_free(srv);
    }
    csock_server_opts o = {.threads = 2, .reuseport = 1};
    CHECK_OK(csock_server_new(&o, &srv));
    CHECK_OK(csock_server_listen(srv, &a, on_accept, NULL));
    CHECK_OK(csock_server_addr(srv, 0, &bound));
    assert_int_equal(csock_addr_port(&bound), csock_addr_port(&a));
    csock_server_free(srv);
    close(holder);
}

/* Out of descriptors part way through an endpoint's set-up (three loops,
 * a socket each): every failed csock_server_listen leaves no listener and
 * no fd behind (they used to stay open, in the slot the next endpoint
 * takes), and the endpoint that finally works is endpoint 0 and serves. */
static void test_failed_listen_leaves_nothing(void **state)
{
    fixture f;
    memset(&f, 0, sizeof f);
    csock_server_opts o = {.threads = 3};
    CHECK_OK(csock_server_new(&o, &f.srv));
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", CSOCK_ADDR_NUMERIC, &f.tcp));
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int fds = count_fds(), rc = -EMFILE, refused = 0;
    /* New fds take the lowest free numbers below the limit: a limit just
     * past the k-th free number leaves room for exactly k. */
    for (int fd = 0; fd < 65536 && rc == -EMFILE; fd++) {
        if (fcntl(fd, F_GETFD) != -1) continue;
        lim = old;
        lim.rlim_cur = (rlim_t)fd; /* room for the free numbers below fd */
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
        rc = csock_server_listen(f.srv, &f.tcp, on_accept, NULL);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
        if (rc != -EMFILE) break;
        assert_int_equal(count_fds(), fds);
        refused++;
    }
    CHECK_OK(rc);
    printf("listen on 3 loops: refused at %d descriptor limits\n", refused);
    CHECK_OK(csock_server_addr(f.srv, 0, &f.tcp));
    assert_int_equal(pthread_create(&f.th, NULL, run_thread, &f), 0);
    for (unsigned i = 0; i < 6; i++) {
        int fd = client(&f.tcp);
        echo_once(fd, i);
        close(fd);
    }
    csock_server_stop(f.srv);
    join(&f, 5);
}

/* Handles the application left open on the server's loops (an unreferenced
 * repeating timer, a stopped fd watcher, a signal watcher) do not keep the
 * run going; csock_server_free() closes them (a walk) and frees every loop,
 * leaving no descriptor behind (it used to spin NOWAIT, then ignore
 * csock_loop_free's -EBUSY: each loop's epoll fd, eventfd and signalfd
 * leaked, and the signal stayed blocked). Loop 0 runs on this thread, so
 * its signal mask is this thread's. */
static int leftover_pipe[2];

static void leftover_io(csock_io *io, int events) {}
static void h_tick_server(csock_timer *t) {}
static void on_leftover_signal(csock_signal *s, int signum) {}

static void leave_handles_open(csock_server *srv, csock_loop *loop, unsigned index)
{
    csock_timer *t;
    csock_io *io;
    CHECK_OK(csock_timer_new(loop, &t));
    csock_timer_unref(t);
    CHECK_OK(csock_timer_start(t, h_tick_server, 1000, 1000));
    CHECK_OK(csock_io_new(loop, leftover_pipe[0], leftover_io, NULL, &io));
    if (index == 0) {
        csock_signal *sig;
        CHECK_OK(csock_signal_new(loop, &sig));
        CHECK_OK(csock_signal_start(sig, on_leftover_signal, SIGUSR2));
        csock_signal_unref(sig);
        csock_server_stop(srv); /* the run ends as soon as the loops have drained */
    }
}

static void test_free_closes_what_is_left(void **state)
{
    assert_int_equal(pipe(leftover_pipe), 0);
    int fds = count_fds();
    csock_server_opts o = {.threads = 2, .loop_start = leave_handles_open};
    csock_server *srv;
    CHECK_OK(csock_server_new(&o, &srv));
    CHECK_OK(csock_server_run(srv));
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    assert_true(sigismember(&mask, SIGUSR2)); /* watched until the free */
    csock_server_free(srv);
    assert_int_equal(count_fds(), fds);
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    assert_false(sigismember(&mask, SIGUSR2));
    close(leftover_pipe[0]);
    close(leftover_pipe[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_two_loops),
        cmocka_unit_test(test_default_threads),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_drain_delivers_inflight),
        cmocka_unit_test(test_drain_timeout_closes_stuck),
        cmocka_unit_test(test_stop_callback_owns_goodbye),
        cmocka_unit_test(test_second_stop_is_immediate),
        cmocka_unit_test(test_stop_after_run_then_free),
        cmocka_unit_test(test_busy_port_refused_unless_shared),
        cmocka_unit_test(test_failed_listen_leaves_nothing),
        cmocka_unit_test(test_free_closes_what_is_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
