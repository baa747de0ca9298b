/* The HTTP server's promises to handlers (src/proto/http1_server.c), through
 * the public API: a request answered later (from a timer) still reads as
 * itself in the handler and in the access log, down to pointers the handler
 * took during its call, while other connections reuse the read buffers; a
 * request whose connection closed before the answer can still be answered
 * (-EPIPE) without touching freed memory; an answer's status must be
 * 100-999; a max_body near UINT64_MAX does not wrap the read limit.
 *
 * The clients are plain non-blocking sockets on the test's thread: connect()
 * completes through the listen backlog, the requests wait in the kernel, and
 * the loop runs until every answer is read back (RUN_UNTIL bounds it). */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* tcp_info with tcpi_data_segs_in (glibc's lacks it) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "csock/csock.h"
#include "helpers.h"

#define NCLIENTS 200

/* ---- a server on 127.0.0.1:0 ------------------------------------------------ */

typedef struct fixture {
    csock_loop *loop;
    csock_listener *l;
    csock_http_server *hs;
    int port;
} fixture;

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    if (status < 0) return;
    csock_http_server_accept(csock_listener_data(l), s);
}

static void start(fixture *f, const csock_http_opts *o)
{
    f->loop = h_loop_new();
    CHECK_OK(csock_http_server_new(f->loop, o, &f->hs));
    csock_addr a;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", CSOCK_ADDR_PASSIVE, &a));
    CHECK_OK(csock_listen(f->loop, &a, NULL, on_accept, f->hs, &f->l));
    csock_addr bound;
    CHECK_OK(csock_listener_addr(f->l, &bound));
    f->port = csock_addr_port(&bound);
}

static void stop(fixture *f)
{
    if (f->hs) csock_http_server_close(f->hs);
    csock_listener_close(f->l, NULL);
    h_loop_free(f->loop);
}

/* ---- clients --------------------------------------------------------------------- */

typedef struct client {
    int fd;
    char in[4096];
    size_t len;
    int closed; /* the server closed (or reset) without a whole answer */
} client;

static void client_open(client *c, int port, const char *req, size_t len)
{
    c->len = 0;
    c->closed = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    while (len) {
        ssize_t n = send(c->fd, req, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        req += n;
        len -= (size_t)n;
    }
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
}

/* The body of a complete response, or NULL while it is still coming. */
static const char *client_body(client *c, int *status)
{
    ssize_t n = 1; /* a full buffer reads nothing: not a close */
    while (c->len < sizeof c->in - 1 &&
           (n = recv(c->fd, c->in + c->len, sizeof c->in - 1 - c->len, 0)) > 0)
        c->len += (size_t)n;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) c->closed = 1;
    c->in[c->len] = 0;
    const char *end = strstr(c->in, "\r\n\r\n");
    const char *cl = strstr(c->in, "Content-Length: ");
    if (!end || !cl || cl > end) return NULL;
    size_t want = strtoul(cl + 16, NULL, 10);
    if (c->len - (size_t)(end + 4 - c->in) < want) return NULL;
    *status = atoi(c->in + 9);
    return end + 4;
}

/* Answered, or closed without an answer: nothing more will come. Tests
 * wait for this (the fault sweep makes the server close a connection it
 * has no memory for), then check that each answer did come. */
static int client_done(client *c)
{
    int st;
    return client_body(c, &st) != NULL || c->closed;
}

/* Every client answered or closed, or (since the handler below answers
 * only once all requests are in) any one closed: then no answer comes. */
static int all_answered(client *cs, int n)
{
    int done = 0;
    for (int i = 0; i < n; i++) {
        done += client_done(&cs[i]);
        if (cs[i].closed) return 1;
    }
    return done == n;
}

/* ---- answers from a timer ------------------------------------------------------- */

typedef struct pending {
    csock_http_req *req;
    char target[64], id[16], body[32];
    csock_http_str t, h, b;   /* taken during the handler call */
} pending;

static struct {
    pending p[NCLIENTS];
    int seen, answered, bad, log_bad, logged;
    csock_timer *timer;
} T;

static int str_is(csock_http_str s, const char *want)
{
    return s.len == strlen(want) && (!s.len || !memcmp(s.ptr, want, s.len));
}

static void copy_str(char *dst, size_t cap, csock_http_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.ptr ? s.ptr : "", n);
    dst[n] = 0;
}

static pending *find(const csock_http_req *r)
{
    for (int i = 0; i < T.seen; i++)
        if (T.p[i].req == r) return &T.p[i];
    return NULL;
}

static void answer_all(csock_timer *t)
{
    /* Last first: the earliest requests have waited longest. */
    for (int i = T.seen - 1; i >= 0; i--) {
        pending *p = &T.p[i];
        if (!str_is(csock_http_target(p->req), p->target) ||
            !str_is(csock_http_get_header(p->req, "X-Id"), p->id) ||
            !str_is(csock_http_body(p->req), p->body) || !str_is(p->t, p->target) ||
            !str_is(p->h, p->id) || !str_is(p->b, p->body)) {
            if (T.bad++ < 3)
                print_error("request %d reads as %.*s\n", i, (int)csock_http_target(p->req).len,
                            csock_http_target(p->req).ptr);
        }
        if (csock_http_send(p->req, 200, p->target, strlen(p->target)) == 0) T.answered++;
    }
    csock_timer_close(t, NULL);
}

static void later(csock_http_req *r, void *data)
{
    (void)data;
    pending *p = &T.p[T.seen++];
    p->req = r;
    p->t = csock_http_target(r);
    p->h = csock_http_get_header(r, "X-Id");
    p->b = csock_http_body(r);
    copy_str(p->target, sizeof p->target, p->t);
    copy_str(p->id, sizeof p->id, p->h);
    copy_str(p->body, sizeof p->body, p->b);
    if (T.seen == NCLIENTS) {
        CHECK_OK(csock_timer_new(csock_stream_loop(csock_http_stream(r)), &T.timer));
        CHECK_OK(csock_timer_start(T.timer, answer_all, 1, 0));
    }
}

static void check_log(const csock_http_req *r, int status, int64_t body_len, void *data)
{
    (void)data;
    pending *p = find(r);
    T.logged++;
    if (!p || status != 200 || body_len != (int64_t)strlen(p->target) ||
        !str_is(csock_http_target(r), p->target) || !str_is(csock_http_method(r), p->b.len ? "POST" : "GET"))
        T.log_bad++;
}

/* Three shapes of request: a GET, a POST with a Content-Length body and a
 * chunked POST, each with its own target, field and body. */
static size_t make_request(char *buf, size_t cap, int i)
{
    switch (i % 3) {
    case 0:
        return (size_t)snprintf(buf, cap, "GET /c/%d?q=%d HTTP/1.1\r\nHost: t\r\nX-Id: %d\r\n\r\n",
                                i, i, i);
    case 1:
        return (size_t)snprintf(buf, cap,
                                "POST /c/%d HTTP/1.1\r\nHost: t\r\nX-Id: %d\r\n"
                                "Content-Length: %d\r\n\r\nbody-%04d",
                                i, i, 9, i);
    default:
        return (size_t)snprintf(buf, cap,
                                "POST /c/%d HTTP/1.1\r\nHost: t\r\nX-Id: %d\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n5\r\n-%04d\r\n0\r\n\r\n",
                                i, i, i);
    }
}

static void test_later_answer_reads_its_own_request(void **state)
{
    (void)state;
    memset(&T, 0, sizeof T);
    fixture f;
    csock_http_opts o = {.handler = later, .log = check_log};
    start(&f, &o);
    static client cs[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        char req[256];
        size_t n = make_request(req, sizeof req, i);
        client_open(&cs[i], f.port, req, n);
    }
    RUN_UNTIL(f.loop, all_answered(cs, NCLIENTS), 20000);
    int wrong = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        char want[64];
        int st = 0;
        snprintf(want, sizeof want, i % 3 ? "/c/%d" : "/c/%d?q=%d", i, i);
        const char *body = client_body(&cs[i], &st);
        if (!body || st != 200 || strcmp(body, want)) wrong++;
        close(cs[i].fd);
    }
    stop(&f);
    assert_int_equal(T.seen, NCLIENTS);
    assert_int_equal(T.answered, NCLIENTS);
    assert_int_equal(T.bad, 0);
    assert_int_equal(T.logged, NCLIENTS);
    assert_int_equal(T.log_bad, 0);
    assert_int_equal(wrong, 0);
}

/* ---- a connection that goes away before its answer ------------------------------ */

static csock_http_req *held;

static void hold(csock_http_req *r, void *data)
{
    (void)data;
    held = r;
}

/* A server whose handler keeps the request of GET `target`, now held. */
static void start_held(fixture *f, client *c, const char *target)
{
    csock_http_opts o = {.handler = hold};
    start(f, &o);
    char req[128];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    held = NULL;
    client_open(c, f->port, req, (size_t)n);
    RUN_UNTIL(f->loop, held != NULL || client_done(c), 10000);
    assert_non_null(held); /* the server closed instead (no memory for it) */
}

static void test_answer_after_close(void **state)
{
    (void)state;
    fixture f;
    client c;
    start_held(&f, &c, "/x");
    /* The server closes every connection: the request stays the handler's. */
    csock_http_server_close(f.hs);
    f.hs = NULL;
    h_spin(f.loop, 5);
    assert_true(str_is(csock_http_target(held), "/x"));
    assert_int_equal(csock_http_add_header(held, "X-A", "b"), 0);
    assert_int_equal(csock_http_send(held, 200, "late", 4), -EPIPE);
    close(c.fd);
    stop(&f);
}

/* The peer resets while its answer is being made: the stream learns it
 * when the answer is written (reading had stopped), and the connection
 * goes without a crash or a leak. */
static void test_answer_after_reset(void **state)
{
    (void)state;
    fixture f;
    client c;
    start_held(&f, &c, "/y");
    struct linger lg = {1, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c.fd);
    h_spin(f.loop, 5);
    assert_true(str_is(csock_http_target(held), "/y"));
    int rc = csock_http_start(held, 200);
    assert_true(rc == 0 || rc == -EPIPE || rc == -ECONNRESET);
    for (int i = 0; i < 100; i++) csock_http_write(held, "0123456789abcdef", 16);
    csock_http_end(held);
    RUN_UNTIL(f.loop, csock_http_server_conns(f.hs) == 0, 10000);
    stop(&f);
}

/* ---- the status must be 100-999 ---------------------------------------------------- */

static int bad_rcs[4];

static void bad_status(csock_http_req *r, void *data)
{
    (void)data;
    bad_rcs[0] = csock_http_send(r, 1200, "x", 1);
    bad_rcs[1] = csock_http_send(r, 99, "x", 1);
    bad_rcs[2] = csock_http_start(r, -200);
    bad_rcs[3] = csock_http_send(r, 299, "ok", 2);
}

static void test_status_range(void **state)
{
    (void)state;
    fixture f;
    csock_http_opts o = {.handler = bad_status};
    start(&f, &o);
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    client c;
    int st = 0;
    client_open(&c, f.port, req, sizeof req - 1);
    RUN_UNTIL(f.loop, client_done(&c), 10000);
    assert_non_null(client_body(&c, &st));
    assert_int_equal(bad_rcs[0], -EINVAL);
    assert_int_equal(bad_rcs[1], -EINVAL);
    assert_int_equal(bad_rcs[2], -EINVAL);
    assert_int_equal(bad_rcs[3], 0);
    assert_int_equal(st, 299);
    {
        const char *body = client_body(&c, &st);
        assert_non_null(body); /* NULL when the server dropped us (an allocation sweep) */
        assert_string_equal(body, "ok");
    }
    close(c.fd);
    stop(&f);
}

/* ---- a streamed body of announced length ------------------------------------------ */

static int len_rcs[4];

static void short_body(csock_http_req *r, void *data)
{
    (void)data;
    len_rcs[0] = csock_http_start_length(r, 200, 10);
    len_rcs[1] = csock_http_write(r, "12345", 5);
    len_rcs[2] = csock_http_write(r, "123456", 6); /* past the length: refused */
    len_rcs[3] = csock_http_end(r);                /* 5 short: the connection closes */
}

static void test_start_length(void **state)
{
    (void)state;
    fixture f;
    csock_http_opts o = {.handler = short_body};
    start(&f, &o);
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    client c;
    client_open(&c, f.port, req, sizeof req - 1);
    char got[512];
    size_t n = 0;
    ssize_t k = 1;
    uint64_t deadline = h_now_ms() + 10000;
    while (k != 0 && h_now_ms() < deadline) { /* read to the server's close */
        k = recv(c.fd, got + n, sizeof got - 1 - n, 0);
        if (k > 0) n += (size_t)k;
        h_spin(f.loop, 1);
    }
    got[n] = 0;
    assert_int_equal(k, 0);
    assert_int_equal(len_rcs[0], 0);
    assert_int_equal(len_rcs[1], 0);
    assert_int_equal(len_rcs[2], -EINVAL);
    assert_int_equal(len_rcs[3], -EINVAL);
    assert_non_null(strstr(got, "Content-Length: 10\r\n"));
    assert_non_null(strstr(got, "\r\n\r\n12345"));
    assert_null(strstr(got, "Transfer-Encoding"));
    close(c.fd);
    stop(&f);
}

/* ---- 426: an offered upgrade is named in Connection (RFC 9110 7.8) ------------------ */

static void needs_upgrade(csock_http_req *r, void *data)
{
    (void)data;
    csock_http_add_header(r, "upgrade", "websocket");
    csock_http_send(r, 426, "ws only", 7);
}

static void test_upgrade_required(void **state)
{
    (void)state;
    fixture f;
    csock_http_opts o = {.handler = needs_upgrade};
    start(&f, &o);
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    client c;
    client_open(&c, f.port, req, sizeof req - 1);
    int st = 0;
    RUN_UNTIL(f.loop, (client_body(&c, &st), c.closed), 10000); /* both answers, then the close */
    assert_int_equal(st, 426);
    assert_non_null(strstr(c.in, "HTTP/1.1 426 Upgrade Required\r\n"));
    assert_non_null(strstr(c.in, "\r\nConnection: Upgrade\r\n"));   /* the first: kept alive */
    assert_non_null(strstr(c.in, "\r\nConnection: Upgrade, close\r\n")); /* the second */
    assert_non_null(strstr(c.in, "\r\nupgrade: websocket\r\n"));
    assert_string_equal(csock_http_reason(426), "Upgrade Required");
    close(c.fd);
    stop(&f);
}

/* ---- requests with more fields than a connection holds in itself ------------------- */

static void last_field(csock_http_req *r, void *data)
{
    (void)data;
    char body[64];
    size_t n = 0;
    csock_http_str name, value;
    while (csock_http_header_at(r, n, &name, &value) == 0) n++;
    csock_http_str v = csock_http_get_header(r, "X-98");
    int len = snprintf(body, sizeof body, "%zu %.*s", n, (int)v.len, v.ptr ? v.ptr : "");
    csock_http_send(r, 200, body, (size_t)len);
}

static void test_many_fields(void **state)
{
    (void)state;
    fixture f;
    csock_http_opts o = {.handler = last_field};
    start(&f, &o);
    /* 100 fields (the most allowed), then 3 on the same connection. */
    char req[4096];
    size_t n = (size_t)snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: t\r\n");
    for (int i = 1; i < 100; i++) n += (size_t)snprintf(req + n, sizeof req - n, "X-%d: v%d\r\n", i, i);
    n += (size_t)snprintf(req + n, sizeof req - n, "\r\n");
    client c;
    int st = 0;
    client_open(&c, f.port, req, n);
    RUN_UNTIL(f.loop, client_done(&c), 10000);
    {
        const char *body = client_body(&c, &st);
        assert_non_null(body); /* NULL when the server dropped us (an allocation sweep) */
        assert_string_equal(body, "100 v98");
    }
    assert_int_equal(st, 200);
    c.len = 0;
    static const char small[] = "GET / HTTP/1.1\r\nHost: t\r\nX-98: again\r\n\r\n";
    assert_int_equal(send(c.fd, small, sizeof small - 1, 0), (ssize_t)(sizeof small - 1));
    RUN_UNTIL(f.loop, client_done(&c), 10000);
    {
        const char *body = client_body(&c, &st);
        assert_non_null(body); /* NULL when the server dropped us (an allocation sweep) */
        assert_string_equal(body, "2 again");
    }
    close(c.fd);
    /* 101 fields: 431. */
    n = (size_t)snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: t\r\n");
    for (int i = 1; i <= 100; i++) n += (size_t)snprintf(req + n, sizeof req - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(req + n, sizeof req - n, "\r\n");
    client_open(&c, f.port, req, n);
    RUN_UNTIL(f.loop, client_done(&c), 10000);
    assert_non_null(client_body(&c, &st));
    assert_int_equal(st, 431);
    close(c.fd);
    stop(&f);
}

/* ---- max_body near UINT64_MAX ------------------------------------------------------ */

static size_t body_seen;

static void body_len(csock_http_req *r, void *data)
{
    (void)data;
    body_seen = csock_http_body(r).len;
    csock_http_send(r, 200, "ok", 2);
}

static void test_huge_max_body(void **state)
{
    (void)state;
    fixture f;
    /* 2 * max_body wrapped to a read limit below this body: it was 413. */
    csock_http_opts o = {.handler = body_len, .max_body = UINT64_MAX};
    start(&f, &o);
    size_t blen = 200 * 1024;
    char *req = malloc(blen + 128);
    assert_non_null(req);
    int h = snprintf(req, 128, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", blen);
    memset(req + h, 'b', blen);
    client c = {.fd = -1};
    int st = 0;
    body_seen = 0;
    /* Connect and send from here while the loop reads: the body is larger
     * than the socket buffers. */
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    connect(c.fd, (struct sockaddr *)&sa, sizeof sa);
    size_t off = 0, total = (size_t)h + blen;
    uint64_t deadline = h_now_ms() + 20000;
    while (!client_body(&c, &st) && h_now_ms() < deadline) {
        if (off < total) {
            ssize_t n = send(c.fd, req + off, total - off, MSG_NOSIGNAL);
            if (n > 0) off += (size_t)n;
        }
        h_spin(f.loop, 1);
    }
    free(req);
    assert_int_equal(st, 200);
    assert_int_equal(body_seen, blen);
    close(c.fd);
    stop(&f);
}

/* ---- pipelined answers leave together -------------------------------------------- */

#define PIPELINED 16

static void ok_with_fields(csock_http_req *r, void *data)
{
    (void)data;
    csock_http_add_header(r, "Content-Type", "text/plain"); /* the head goes in two writes */
    csock_http_send(r, 200, "pipelined!", 10);
}

/* Answers made from one read go to the kernel in one write: 16 requests
 * sent at once come back in one TCP segment (loopback's MSS is ~64 KiB),
 * not one each. The client's TCP_INFO counts the segments. */
static void test_pipelined_answers_leave_together(void **state)
{
    (void)state;
    fixture f;
    csock_http_opts o = {.handler = ok_with_fields};
    start(&f, &o);
    char req[PIPELINED * 64];
    size_t n = 0;
    for (int i = 0; i < PIPELINED; i++)
        n += (size_t)snprintf(req + n, sizeof req - n, "GET /p/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    client c;
    client_open(&c, f.port, req, n);
    int answers = 0;
    for (uint64_t deadline = h_now_ms() + 10000; h_now_ms() < deadline;) {
        int st;
        client_body(&c, &st); /* reads what came (st: the first answer's status) */
        answers = 0;
        for (const char *p = c.in; (p = strstr(p, "pipelined!")); p++) answers++;
        if (answers == PIPELINED || c.closed) break;
        h_spin(f.loop, 1);
    }
    struct tcp_info ti;
    socklen_t tl = sizeof ti;
    assert_int_equal(getsockopt(c.fd, IPPROTO_TCP, TCP_INFO, &ti, &tl), 0);
    close(c.fd);
    stop(&f);
    assert_int_equal(answers, PIPELINED);
    if (ti.tcpi_data_segs_in > 2)
        fail_msg("%d answers came in %u segments", PIPELINED, ti.tcpi_data_segs_in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_later_answer_reads_its_own_request),
        cmocka_unit_test(test_answer_after_close),
        cmocka_unit_test(test_answer_after_reset),
        cmocka_unit_test(test_status_range),
        cmocka_unit_test(test_start_length),
        cmocka_unit_test(test_upgrade_required),
        cmocka_unit_test(test_many_fields),
        cmocka_unit_test(test_huge_max_body),
        cmocka_unit_test(test_pipelined_answers_leave_together),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
