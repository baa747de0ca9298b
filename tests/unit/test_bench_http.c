/* csock bench --http's response parser (src/cli/bench_http.c, compiled in):
 * Content-Length, chunked with extensions and trailers, bodiless statuses,
 * Connection: close, garbage; every stream is also fed split at every byte
 * and must give the same responses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cli/bench_http.c"

static const char stream[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    "3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n"
    "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
    "HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbad";
static const int want_status[] = {200, 404, 200, 304, 500};
static const int want_close[] = {0, 0, 0, 0, 1};

/* Feed stream[0..len) in pieces of at most `piece` bytes, keeping what the
 * parser leaves unconsumed (as the stream does); record the responses. */
static int feed(size_t piece, int *status, int *close)
{
    bench_http_resp r = {0};
    char buf[sizeof stream];
    size_t have = 0, next = 0, len = sizeof stream - 1;
    int n = 0;
    while (next < len || have) {
        size_t add = len - next < piece ? len - next : piece;
        memcpy(buf + have, stream + next, add);
        have += add, next += add;
        for (;;) {
            int st;
            ssize_t used = bench_http_parse(&r, buf, have, &st);
            assert_true(used >= 0);
            memmove(buf, buf + used, have - (size_t)used);
            have -= (size_t)used;
            if (st) {
                assert_true(n < 5);
                status[n] = st;
                close[n++] = r.close;
            } else if (!used) {
                break;
            }
            if (!have) break;
        }
        if (!add && have) fail_msg("stuck with %zu bytes", have);
    }
    return n;
}

static void test_every_split(void **state)
{
    (void)state;
    for (size_t piece = 1; piece < sizeof stream; piece++) {
        int status[5], close[5];
        assert_int_equal(feed(piece, status, close), 5);
        assert_memory_equal(status, want_status, sizeof status);
        assert_memory_equal(close, want_close, sizeof close);
    }
}

static void test_garbage_and_no_length(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n", /* a body until the close: unusable */
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bench_http_resp r = {0};
        int st;
        assert_int_equal(bench_http_parse(&r, bad[i], strlen(bad[i]), &st), -EPROTO);
    }
    /* A head that never ends is cut off. */
    static char big[BENCH_HTTP_MAX_HEAD + 10];
    memset(big, 'a', sizeof big);
    memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
    bench_http_resp r = {0};
    int st;
    assert_int_equal(bench_http_parse(&r, big, sizeof big, &st), -EPROTO);
    /* HTTP/1.0 closes unless it says keep-alive. */
    const char *h10 = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    memset(&r, 0, sizeof r);
    assert_int_equal(bench_http_parse(&r, h10, strlen(h10), &st), (ssize_t)strlen(h10));
    assert_int_equal(st, 200);
    assert_int_equal(r.close, 1);
}

static void test_request(void **state)
{
    (void)state;
    size_t len;
    bench_http_req rq = {.method = "GET", .path = "/a/b?c=1", .host = "127.0.0.1:8080"};
    char *req = bench_http_request(&rq, &len);
    assert_non_null(req);
    static const char want[] = "GET /a/b?c=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(req, want, len);
    free(req);
}

/* --method, --header (a Host one replaces ours), --body, --pipeline. */
static void test_request_options(void **state)
{
    (void)state;
    size_t len;
    const char *headers[] = {"X-A: 1", "host: example"};
    bench_http_req rq = {.method = "POST", .path = "/p", .host = "h:1", .headers = headers,
                         .nheaders = 2, .body = "abc", .body_len = 3, .copies = 3};
    char *req = bench_http_request(&rq, &len);
    assert_non_null(req);
    static const char want[] = "POST /p HTTP/1.1\r\nX-A: 1\r\nhost: example\r\nContent-Length: 3\r\n\r\nabc";
    assert_int_equal(len, sizeof want - 1);
    for (int i = 0; i < 3; i++) assert_memory_equal(req + i * len, want, len);
    free(req);
}

/* HEAD: a Content-Length but no body; the next response follows at once. */
static void test_head(void **state)
{
    (void)state;
    static const char two[] = "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
                              "HTTP/1.1 404 NF\r\nContent-Length: 7\r\n\r\n";
    bench_http_resp r = {.head = 1};
    int st;
    ssize_t n = bench_http_parse(&r, two, sizeof two - 1, &st);
    assert_int_equal(st, 200);
    n = bench_http_parse(&r, two + n, sizeof two - 1 - (size_t)n, &st);
    assert_int_equal(st, 404);
    assert_true(n > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_garbage_and_no_length),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_request_options),
        cmocka_unit_test(test_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
