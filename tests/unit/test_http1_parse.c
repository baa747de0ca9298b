/* The HTTP/1.1 request parser and chunked decoder (src/proto/http1_parse.c).
 *
 * Every input is parsed at every prefix length, each prefix copied to the very
 * end of its own allocation, so a read past `len` crashes under ASan. A valid
 * head must be INCOMPLETE at every shorter prefix; an invalid one may fail
 * early, but once it fails it must fail the same way for every longer prefix.
 */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http1_parse.h"

#define MAX_FIELDS 16

/* A copy of s[0..n) ending exactly at the end of a fresh allocation. */
static char *tail_copy(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    if (n) memcpy(p, s, n);
    return p;
}

static int parse_n(const char *s, size_t n, csock_http_request *req, csock_http_header *fields,
                   size_t max_fields, const csock_http_limits *lim)
{
    char *p = tail_copy(s, n);
    req->headers = fields;
    req->max_headers = max_fields;
    int r = csock_http_parse_request(p, n, req, lim);
    free(p);
    return r;
}

/* Parse every prefix of s[0..n); the whole must give `want`. Leaves *req from
 * a final parse of a copy that stays alive in *keep (free it after). */
static void expect_parse_n(const char *s, size_t n, int want, csock_http_request *req,
                           csock_http_header *fields, const csock_http_limits *lim, char **keep)
{
    csock_http_request tmp;
    csock_http_header tmp_fields[MAX_FIELDS];
    int first_final = CSOCK_HTTP_INCOMPLETE;

    for (size_t k = 0; k <= n; k++) {
        int r = parse_n(s, k, &tmp, tmp_fields, MAX_FIELDS, lim);
        if (want > 0 && k < (size_t)want && r != CSOCK_HTTP_INCOMPLETE)
            fail_msg("prefix %zu of %zu: got %d (%s), want INCOMPLETE", k, n, r,
                     csock_http_strerror(r));
        if (first_final != CSOCK_HTTP_INCOMPLETE && r != first_final)
            fail_msg("prefix %zu: got %d after %d at a shorter prefix", k, r, first_final);
        if (r != CSOCK_HTTP_INCOMPLETE) first_final = r;
    }
    *keep = tail_copy(s, n);
    req->headers = fields;
    req->max_headers = MAX_FIELDS;
    int r = csock_http_parse_request(*keep, n, req, lim);
    if (r != want)
        fail_msg("\"%.*s\": got %d (%s), want %d (%s)", (int)n, s, r, csock_http_strerror(r), want,
                 csock_http_strerror(want));
}

/* Parse s; it must fail with `want` (checked at every prefix too). */
static void expect_error(const char *s, int want)
{
    csock_http_request req;
    csock_http_header fields[MAX_FIELDS];
    char *keep;
    expect_parse_n(s, strlen(s), want, &req, fields, NULL, &keep);
    free(keep);
}

#define GOOD_PREFIX "GET / HTTP/1.1\r\nHost: a\r\n"

static void assert_slice(csock_http_slice s, const char *want)
{
    if (s.len != strlen(want) || memcmp(s.ptr, want, s.len) != 0)
        fail_msg("slice \"%.*s\", want \"%s\"", (int)s.len, s.ptr, want);
}

/* ---- valid heads -------------------------------------------------------------- */

static void test_simple_get(void **state)
{
    const char *s = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n"
                    "User-Agent: t/1\r\nAccept: */*\r\n\r\n";
    csock_http_request req;
    csock_http_header f[MAX_FIELDS];
    char *keep;
    expect_parse_n(s, strlen(s), (int)strlen(s), &req, f, NULL, &keep);
    assert_slice(req.method, "GET");
    assert_slice(req.target, "/index.html?q=1");
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.num_headers, 3);
    assert_slice(req.headers[0].name, "Host");
    assert_slice(req.headers[0].value, "example.com");
    assert_slice(req.headers[2].name, "Accept");
    assert_slice(req.headers[2].value, "*/*");
    assert_int_equal(req.content_length, -1);
    assert_false(req.chunked);
    assert_true(req.keep_alive);
    assert_true(req.has_host);
    assert_false(req.expect_continue);
    assert_false(req.upgrade);
    free(keep);
}

static void test_ows_trimmed(void **state)
{
    const char *s = "GET / HTTP/1.1\r\nHost:a\r\nX-A:  a b \t\r\nX-B:\r\nX-C: \t \r\n"
                    "X-D:\tv\xc3\xa9\r\n\r\n";
    csock_http_request req;
    csock_http_header f[MAX_FIELDS];
    char *keep;
    expect_parse_n(s, strlen(s), (int)strlen(s), &req, f, NULL, &keep);
    assert_int_equal(req.num_headers, 5);
    assert_slice(req.headers[0].value, "a");
    assert_slice(req.headers[1].value, "a b"); /* inner space kept */
    assert_slice(req.headers[2].value, "");
    assert_slice(req.headers[3].value, "");
    assert_slice(req.headers[4].value, "v\xc3\xa9"); /* obs-text is allowed in values */
    free(keep);
}

static void test_bare_lf_and_leading_empty_line(void **state)
{
    const char *cases[] = {
        "GET / HTTP/1.1\nHost: a\n\n",
        "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\nGET / HTTP/1.1\r\nHost: a\n\r\n",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        csock_http_request req;
        csock_http_header f[MAX_FIELDS];
        char *keep;
        const char *s = cases[i];
        expect_parse_n(s, strlen(s), (int)strlen(s), &req, f, NULL, &keep);
        assert_slice(req.method, "GET");
        assert_slice(req.headers[0].value, "a");
        free(keep);
    }
    expect_error("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", CSOCK_HTTP_EBADREQ);
    expect_error("\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", CSOCK_HTTP_EBADREQ);
}

/* Parse s fully and return the request (fields in f). */
static csock_http_request parse_ok(const char *s, csock_http_header *f)
{
    csock_http_request req;
    char *keep;
    expect_parse_n(s, strlen(s), (int)strlen(s), &req, f, NULL, &keep);
    free(keep); /* slices now dangle: callers only look at the derived facts */
    return req;
}

static void test_connection_semantics(void **state)
{
    csock_http_header f[MAX_FIELDS];
    assert_false(parse_ok("GET / HTTP/1.0\r\n\r\n", f).keep_alive);
    assert_false(parse_ok("GET / HTTP/1.0\r\n\r\n", f).has_host);
    assert_true(parse_ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", f).keep_alive);
    assert_false(parse_ok("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", f).keep_alive);
    assert_true(parse_ok(GOOD_PREFIX "\r\n", f).keep_alive);
    assert_false(parse_ok(GOOD_PREFIX "Connection: foo, Close\r\n\r\n", f).keep_alive);
    assert_false(
        parse_ok(GOOD_PREFIX "Connection: foo\r\nConnection: close\r\n\r\n", f).keep_alive);
    assert_true(parse_ok(GOOD_PREFIX "Connection: closed\r\n\r\n", f).keep_alive);
    /* HTTP/1.2 is read as 1.1 (RFC 9110 6.2). */
    assert_int_equal(parse_ok("GET / HTTP/1.2\r\nHost: a\r\n\r\n", f).minor_version, 1);
}

static void test_expect_and_upgrade(void **state)
{
    csock_http_header f[MAX_FIELDS];
    assert_true(parse_ok(GOOD_PREFIX "Expect: 100-Continue\r\n\r\n", f).expect_continue);
    assert_false(parse_ok(GOOD_PREFIX "Expect: 200-ok\r\n\r\n", f).expect_continue);
    assert_false(parse_ok("GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", f).expect_continue);
    assert_true(parse_ok(GOOD_PREFIX "Connection: keep-alive, Upgrade\r\n"
                                     "Upgrade: websocket\r\n\r\n",
                         f)
                    .upgrade);
    assert_false(parse_ok(GOOD_PREFIX "Upgrade: websocket\r\n\r\n", f).upgrade);
    assert_false(parse_ok(GOOD_PREFIX "Connection: upgrade\r\n\r\n", f).upgrade);
    assert_false(
        parse_ok("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", f).upgrade);
}

static void test_content_length(void **state)
{
    csock_http_header f[MAX_FIELDS];
    assert_int_equal(parse_ok(GOOD_PREFIX "Content-Length: 5\r\n\r\n", f).content_length, 5);
    assert_int_equal(parse_ok(GOOD_PREFIX "Content-Length: 0\r\n\r\n", f).content_length, 0);
    assert_int_equal(parse_ok(GOOD_PREFIX "Content-Length: 007\r\n\r\n", f).content_length, 7);
    /* Our choice: identical repeats (separate fields or a list) are one value. */
    assert_int_equal(parse_ok(GOOD_PREFIX "Content-Length: 5, 5\r\n\r\n", f).content_length, 5);
    assert_int_equal(
        parse_ok(GOOD_PREFIX "Content-Length: 5\r\ncontent-length: 05\r\n\r\n", f).content_length,
        5);
    assert_int_equal(
        parse_ok(GOOD_PREFIX "Content-Length: 9223372036854775807\r\n\r\n", f).content_length,
        INT64_MAX);
    const char *bad[] = {"5, 6",
                         "-5",
                         "+5",
                         "0x5",
                         "5a",
                         "",
                         " ",
                         "5 5",
                         "5,",
                         ",5",
                         "5;q",
                         "9223372036854775808",
                         "99999999999999999999999",
                         "1e3",
                         "5.0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char s[256];
        snprintf(s, sizeof s, GOOD_PREFIX "Content-Length: %s\r\n\r\n", bad[i]);
        expect_error(s, CSOCK_HTTP_EBADREQ);
    }
    expect_error(GOOD_PREFIX "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", CSOCK_HTTP_EBADREQ);
}

static void test_transfer_encoding(void **state)
{
    csock_http_header f[MAX_FIELDS];
    csock_http_request req = parse_ok(GOOD_PREFIX "Transfer-Encoding: chunked\r\n\r\n", f);
    assert_true(req.chunked);
    assert_int_equal(req.content_length, -1);
    assert_true(parse_ok(GOOD_PREFIX "Transfer-Encoding: ,Chunked , \r\n\r\n", f).chunked);

    expect_error(GOOD_PREFIX "Transfer-Encoding: gzip, chunked\r\n\r\n", CSOCK_HTTP_ENOTIMPL);
    expect_error(GOOD_PREFIX "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                 CSOCK_HTTP_ENOTIMPL);
}

/* ---- request smuggling and malformed heads (RFC 9112) -------------------------- */

static void test_smuggling_framing(void **state)
{
    const char *bad[] = {
        /* both Content-Length and Transfer-Encoding, in either order */
        GOOD_PREFIX "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        GOOD_PREFIX "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        /* chunked repeated, or not final, or absent */
        GOOD_PREFIX "Transfer-Encoding: chunked, chunked\r\n\r\n",
        GOOD_PREFIX "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        GOOD_PREFIX "Transfer-Encoding: chunked, gzip\r\n\r\n",
        GOOD_PREFIX "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        GOOD_PREFIX "Transfer-Encoding: gzip\r\n\r\n",
        GOOD_PREFIX "Transfer-Encoding: \r\n\r\n",
        GOOD_PREFIX "Transfer-Encoding: xchunked\r\n\r\n",
        GOOD_PREFIX "Transfer-Encoding: chunked;a=b\r\n\r\n",
        /* Transfer-Encoding in HTTP/1.0 */
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        /* differing Content-Length */
        GOOD_PREFIX "Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
        /* Host missing in 1.1, or repeated, or with spaces inside */
        "GET / HTTP/1.1\r\n\r\n",
        GOOD_PREFIX "Host: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(bad[i], CSOCK_HTTP_EBADREQ);
}

static void test_smuggling_syntax(void **state)
{
    const char *bad[] = {
        /* bare CR anywhere in the head */
        "GET / HTTP/1.1\rHost: a\r\n\r\n",
        "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
        GOOD_PREFIX "\r\r\n",
        "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        /* obs-fold, and whitespace between the request line and the first field */
        GOOD_PREFIX "X: a\r\n b\r\n\r\n",
        GOOD_PREFIX "X: a\r\n\tb\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        /* whitespace between field name and colon */
        GOOD_PREFIX "Content-Length : 5\r\n\r\n",
        GOOD_PREFIX "Transfer-Encoding\t: chunked\r\n\r\n",
        /* invalid token characters in method and field names, empty names, no colon */
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GE\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",
        " GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        GOOD_PREFIX "X@Y: b\r\n\r\n",
        GOOD_PREFIX "X\xc3\xa9: b\r\n\r\n",
        GOOD_PREFIX ": b\r\n\r\n",
        GOOD_PREFIX "NoColon\r\n\r\n",
        /* control characters in target or values */
        "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
        GOOD_PREFIX "X: a\x01 b\r\n\r\n",
        GOOD_PREFIX "X: a\x7f\r\n\r\n",
        GOOD_PREFIX "X: \x1b[31m\r\n\r\n",
        /* request line shape */
        "GET /\r\n\r\n",
        "GET / \r\nHost: a\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / http/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.10\r\nHost: a\r\n\r\n",
        "GET / HTTP/1\r\nHost: a\r\n\r\n",
        "GET / HTTP/x.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/2\r\nHost: a\r\n\r\n",
        "/ HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(bad[i], CSOCK_HTTP_EBADREQ);

    expect_error("GET / HTTP/2.0\r\nHost: a\r\n\r\n", CSOCK_HTTP_EVERSION);
    expect_error("GET / HTTP/0.9\r\n\r\n", CSOCK_HTTP_EVERSION);
    expect_error("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", CSOCK_HTTP_EVERSION);
}

/* NUL bytes cannot sit in a C string literal's strlen(): check them apart. */
static void test_nul_bytes(void **state)
{
    static const char in_value[] = GOOD_PREFIX "X: a\0b\r\n\r\n";
    static const char in_target[] = "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char in_name[] = GOOD_PREFIX "X\0: b\r\n\r\n";
    const struct {
        const char *s;
        size_t n;
    } cases[] = {
        {in_value, sizeof in_value - 1},
        {in_target, sizeof in_target - 1},
        {in_name, sizeof in_name - 1},
    };
    for (size_t i = 0; i < 3; i++) {
        csock_http_request req;
        csock_http_header f[MAX_FIELDS];
        char *keep;
        expect_parse_n(cases[i].s, cases[i].n, CSOCK_HTTP_EBADREQ, &req, f, NULL, &keep);
        free(keep);
    }
}

/* ---- pipelining ------------------------------------------------------------------ */

/* Every byte in each place a character class rules (the parser's table of
 * classes against the RFCs' rules, written here independently): accepted
 * exactly where its class allows it, refused everywhere else. '\n' ends a
 * line wherever it is, so it is left out. */
static bool rfc_tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int parse_with_byte(const char *fmt_a, int b, const char *fmt_b)
{
    char buf[128];
    size_t la = strlen(fmt_a), lb = strlen(fmt_b);
    memcpy(buf, fmt_a, la);
    buf[la] = (char)b;
    memcpy(buf + la + 1, fmt_b, lb);
    csock_http_request req;
    csock_http_header fields[MAX_FIELDS];
    return parse_n(buf, la + 1 + lb, &req, fields, MAX_FIELDS, NULL);
}

static void test_every_byte_class(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        if (b == '\n') continue;
        int method = parse_with_byte("G", b, "T / HTTP/1.1\r\nHost: a\r\n\r\n");
        int name = parse_with_byte(GOOD_PREFIX, b, "X: v\r\n\r\n");
        int value = parse_with_byte(GOOD_PREFIX "X: a", b, "b\r\n\r\n");
        int target = parse_with_byte("GET /a", b, "b HTTP/1.1\r\nHost: a\r\n\r\n");
        bool field = b == '\t' || (b >= 0x20 && b != 0x7f);
        bool visible = b > 0x20 && b < 0x7f;
        if ((method > 0) != rfc_tchar(b)) fail_msg("byte 0x%02x in a method: %d", b, method);
        if ((name > 0) != rfc_tchar(b)) fail_msg("byte 0x%02x in a field name: %d", b, name);
        if ((value > 0) != field) fail_msg("byte 0x%02x in a field value: %d", b, value);
        if ((target > 0) != visible) fail_msg("byte 0x%02x in a target: %d", b, target);
    }
}

static void test_pipelined(void **state)
{
    const char *s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                    "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                    "GET /3 HTTP/1.0\r\n\r\n"
                    "GET /4 HTTP/1.1\r\n";
    size_t n = strlen(s);
    char *buf = tail_copy(s, n);
    csock_http_request req;
    csock_http_header f[MAX_FIELDS];
    size_t pos = 0;
    const char *targets[] = {"/1", "/2", "/3"};

    for (int i = 0; i < 3; i++) {
        req.headers = f;
        req.max_headers = MAX_FIELDS;
        int r = csock_http_parse_request(buf + pos, n - pos, &req, NULL);
        assert_true(r > 0);
        assert_slice(req.target, targets[i]);
        pos += (size_t)r + (size_t)(req.content_length > 0 ? req.content_length : 0);
    }
    assert_int_equal(req.minor_version, 0);
    /* the fourth is cut short: incomplete, whatever follows it */
    req.headers = f;
    req.max_headers = MAX_FIELDS;
    assert_int_equal(csock_http_parse_request(buf + pos, n - pos, &req, NULL),
                     CSOCK_HTTP_INCOMPLETE);
    free(buf);
}

/* ---- limits --------------------------------------------------------------------- */

static void test_long_request_line(void **state)
{
    size_t n = CSOCK_HTTP_MAX_REQUEST_LINE + 100;
    char *s = malloc(n + 64);
    assert_non_null(s);
    memcpy(s, "GET /", 5);
    memset(s + 5, 'a', n - 5);
    strcpy(s + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_error(s, CSOCK_HTTP_EURITOOLONG);

    /* Decided as soon as the limit is passed, before any LF arrives. */
    csock_http_request req;
    csock_http_header f[MAX_FIELDS];
    assert_int_equal(parse_n(s, CSOCK_HTTP_MAX_REQUEST_LINE + 1, &req, f, MAX_FIELDS, NULL),
                     CSOCK_HTTP_INCOMPLETE);
    assert_int_equal(parse_n(s, CSOCK_HTTP_MAX_REQUEST_LINE + 2, &req, f, MAX_FIELDS, NULL),
                     CSOCK_HTTP_EURITOOLONG);
    free(s);

    /* A line of exactly the limit passes; one byte more is 414. */
    csock_http_limits lim = {.max_request_line = 16};
    char *keep;
    const char *ok = "GET /abc HTTP/1.1\r\nHost: a\r\n\r\n"; /* 17 bytes: too long */
    expect_parse_n(ok, strlen(ok), CSOCK_HTTP_EURITOOLONG, &req, f, &lim, &keep);
    free(keep);
    ok = "GET /ab HTTP/1.1\r\nHost: a\r\n\r\n"; /* 16 bytes */
    expect_parse_n(ok, strlen(ok), (int)strlen(ok), &req, f, &lim, &keep);
    free(keep);
    ok = "GET /ab HTTP/1.1\nHost: a\r\n\r\n"; /* bare LF at the same limit */
    expect_parse_n(ok, strlen(ok), (int)strlen(ok), &req, f, &lim, &keep);
    free(keep);
}

static void test_large_head(void **state)
{
    /* The default limit, checked whole and where it is first decided (every
     * prefix of 32 KiB would be slow, so the prefix walk uses a small limit). */
    size_t n = CSOCK_HTTP_MAX_HEAD + 100;
    char *s = malloc(n + 64);
    assert_non_null(s);
    strcpy(s, GOOD_PREFIX "X: ");
    size_t pre = strlen(s);
    memset(s + pre, 'v', n - pre);
    strcpy(s + n, "\r\n\r\n");
    csock_http_request req;
    csock_http_header f[MAX_FIELDS];
    assert_int_equal(parse_n(s, strlen(s), &req, f, MAX_FIELDS, NULL), CSOCK_HTTP_EHDRTOOBIG);
    assert_int_equal(parse_n(s, CSOCK_HTTP_MAX_HEAD - 1, &req, f, MAX_FIELDS, NULL),
                     CSOCK_HTTP_INCOMPLETE);
    assert_int_equal(parse_n(s, CSOCK_HTTP_MAX_HEAD, &req, f, MAX_FIELDS, NULL),
                     CSOCK_HTTP_EHDRTOOBIG);
    free(s);

    /* Many small fields count as much as one big one. */
    csock_http_limits lim = {.max_head = 200};
    char *keep;
    const char *many = GOOD_PREFIX "A: 0123456789012345678901234567890123456789\r\n"
                                   "B: 0123456789012345678901234567890123456789\r\n"
                                   "C: 0123456789012345678901234567890123456789\r\n"
                                   "D: 0123456789012345678901234567890123456789\r\n\r\n";
    expect_parse_n(many, strlen(many), CSOCK_HTTP_EHDRTOOBIG, &req, f, &lim, &keep);
    free(keep);

    /* The head may be exactly max_head bytes long. */
    const char *h = GOOD_PREFIX "X: y\r\n\r\n";
    lim.max_head = strlen(h);
    expect_parse_n(h, strlen(h), (int)strlen(h), &req, f, &lim, &keep);
    free(keep);
    lim.max_head--;
    expect_parse_n(h, strlen(h), CSOCK_HTTP_EHDRTOOBIG, &req, f, &lim, &keep);
    free(keep);
}

static void test_too_many_fields(void **state)
{
    const char *s = GOOD_PREFIX "A: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    csock_http_request req;
    csock_http_header f[4];
    assert_int_equal(parse_n(s, strlen(s), &req, f, 4, NULL), (int)strlen(s));
    assert_int_equal(req.num_headers, 4);
    assert_int_equal(parse_n(s, strlen(s), &req, f, 3, NULL), CSOCK_HTTP_EHDRTOOBIG);
    assert_int_equal(parse_n(s, strlen(s), &req, f, 0, NULL), CSOCK_HTTP_EHDRTOOBIG);
}

static void test_status_map(void **state)
{
    assert_int_equal(csock_http_status(CSOCK_HTTP_EBADREQ), 400);
    assert_int_equal(csock_http_status(CSOCK_HTTP_ETOOLARGE), 413);
    assert_int_equal(csock_http_status(CSOCK_HTTP_EURITOOLONG), 414);
    assert_int_equal(csock_http_status(CSOCK_HTTP_EHDRTOOBIG), 431);
    assert_int_equal(csock_http_status(CSOCK_HTTP_ENOTIMPL), 501);
    assert_int_equal(csock_http_status(CSOCK_HTTP_EVERSION), 505);
    assert_int_equal(csock_http_status(CSOCK_HTTP_INCOMPLETE), 0);
    assert_int_equal(csock_http_status(-EINVAL), 0);
    assert_int_equal(csock_http_status(CSOCK_EHTTP), 0);
}

/* ---- chunked ----------------------------------------------------------------- */

typedef struct decoded {
    int status;      /* DONE, INCOMPLETE or the error */
    size_t consumed; /* bytes used in total */
    char body[512];
    size_t body_len;
} decoded;

/* Feed one piece until it is used up, the body ends or an error comes. */
static bool feed(csock_http_chunked *st, const char *p, size_t n, decoded *d)
{
    size_t pos = 0;
    for (;;) {
        size_t used;
        csock_http_slice data;
        int r = csock_http_chunked_decode(st, p + pos, n - pos, &used, &data);
        assert_true(used <= n - pos);
        pos += used;
        d->consumed += used;
        d->status = r;
        if (r == CSOCK_HTTP_CHUNK_DATA) {
            assert_true(data.len > 0 && data.ptr >= p && data.ptr + data.len <= p + n);
            assert_true(d->body_len + data.len <= sizeof d->body);
            memcpy(d->body + d->body_len, data.ptr, data.len);
            d->body_len += data.len;
            continue;
        }
        if (r == CSOCK_HTTP_INCOMPLETE) assert_int_equal(pos, n);
        return r == CSOCK_HTTP_INCOMPLETE;
    }
}

/* Decode s cut into pieces at the given offsets, each piece in its own
 * exact-size allocation. */
static decoded decode_split(const char *s, size_t n, const size_t *cuts, size_t ncuts,
                            uint64_t max_body)
{
    csock_http_chunked st;
    decoded d = {.status = CSOCK_HTTP_INCOMPLETE};
    size_t start = 0;
    csock_http_chunked_init(&st, max_body);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        char *p = tail_copy(s + start, end - start);
        bool more = feed(&st, p, end - start, &d);
        free(p);
        if (!more) break;
        start = end;
    }
    return d;
}

/* Decoding s must give the same result whole, cut at every byte boundary,
 * and one byte at a time. Returns the whole-input result. */
static decoded decode_every_way(const char *s, size_t n, uint64_t max_body)
{
    decoded whole = decode_split(s, n, NULL, 0, max_body);
    for (size_t k = 0; k <= n; k++) {
        decoded d = decode_split(s, n, &k, 1, max_body);
        assert_int_equal(d.status, whole.status);
        assert_int_equal(d.consumed, whole.consumed);
        assert_int_equal(d.body_len, whole.body_len);
        assert_memory_equal(d.body, whole.body, whole.body_len);
    }
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t k = 0; k < n; k++)
        cuts[k] = k + 1;
    decoded d = decode_split(s, n, cuts, n, max_body);
    free(cuts);
    assert_int_equal(d.status, whole.status);
    assert_int_equal(d.consumed, whole.consumed);
    assert_int_equal(d.body_len, whole.body_len);
    return whole;
}

static void test_chunked_valid(void **state)
{
    const char *s = "5\r\nhello\r\n"
                    "6;name=value;q=\"a b\"\r\n world\r\n"
                    "A \t; x\r\n0123456789\r\n"
                    "000\r\n"
                    "Trailer-One: x\r\nT2:\r\n\r\n"
                    "GET / HTTP/1.1\r\n";
    decoded d = decode_every_way(s, strlen(s), 1000);
    assert_int_equal(d.status, CSOCK_HTTP_CHUNK_DONE);
    assert_int_equal(d.body_len, 21);
    assert_memory_equal(d.body, "hello world0123456789", 21);
    assert_string_equal(s + d.consumed, "GET / HTTP/1.1\r\n");

    d = decode_every_way("0\r\n\r\n", 5, 0);
    assert_int_equal(d.status, CSOCK_HTTP_CHUNK_DONE);
    assert_int_equal(d.consumed, 5);
    assert_int_equal(d.body_len, 0);

    /* Upper-case hex, and a prefix is simply incomplete. */
    d = decode_every_way("1F\r\n0123456789012345678901234567890\r\n0\r\n", 40, 1000);
    assert_int_equal(d.status, CSOCK_HTTP_INCOMPLETE);
    assert_int_equal(d.body_len, 31);
}

static void test_chunked_done_is_sticky(void **state)
{
    csock_http_chunked st;
    size_t used;
    csock_http_slice data;
    csock_http_chunked_init(&st, 10);
    assert_int_equal(csock_http_chunked_decode(&st, "0\r\n\r\nX", 6, &used, &data),
                     CSOCK_HTTP_CHUNK_DONE);
    assert_int_equal(used, 5);
    assert_int_equal(csock_http_chunked_decode(&st, "X", 1, &used, &data), CSOCK_HTTP_CHUNK_DONE);
    assert_int_equal(used, 0);

    csock_http_chunked_init(&st, 10);
    assert_int_equal(csock_http_chunked_decode(&st, "Z", 1, &used, &data), CSOCK_HTTP_EBADREQ);
    assert_int_equal(csock_http_chunked_decode(&st, "0\r\n\r\n", 5, &used, &data),
                     CSOCK_HTTP_EBADREQ);
}

static void expect_chunked_error(const char *s, uint64_t max_body, int want)
{
    decoded d = decode_every_way(s, strlen(s), max_body);
    if (d.status != want) fail_msg("chunked \"%s\": got %d, want %d", s, d.status, want);
}

static void test_chunked_errors(void **state)
{
    const char *bad[] = {
        "\r\n",                          /* no size */
        "x\r\n",                         /* not hex */
        "-1\r\n",                        /* signed */
        "0x5\r\nhello\r\n0\r\n\r\n",     /* C-style hex */
        "5\nhello\r\n0\r\n\r\n",         /* bare LF after size */
        "5\rhello\r\n0\r\n\r\n",         /* bare CR after size */
        "5 \r\nhello\r\n0\r\n\r\n",      /* BWS not followed by ';' */
        "5;a\x01\r\nhello\r\n0\r\n\r\n", /* control char in extension */
        "5;a\nhello\r\n0\r\n\r\n",       /* bare LF ends an extension */
        "5\r\nhelloX\r\n0\r\n\r\n",      /* data longer than announced */
        "5\r\nhello\n0\r\n\r\n",         /* bare LF after data */
        "5\r\nhello\r0\r\n\r\n",         /* bare CR after data */
        "0\r\nX: y\n\r\n",               /* bare LF in trailer */
        "0\r\n\n",                       /* bare LF at the end */
        "0\r\nX: y\r\n z\r\n\r\n",       /* obs-fold in trailer */
        "0\r\nX y: z\r\n\r\n",           /* space in trailer name */
        "0\r\n: z\r\n\r\n",              /* empty trailer name */
        "0\r\nX: a\x7f\r\n\r\n",         /* control char in trailer value */
        "0\r\n\r\r",                     /* bare CR at the end */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_chunked_error(bad[i], 1000, CSOCK_HTTP_EBADREQ);
    /* more than 64 bits of size, with no body limit to stop it first */
    expect_chunked_error("10000000000000000\r\n", UINT64_MAX, CSOCK_HTTP_EBADREQ);

    /* Extensions are bounded. */
    char s[CSOCK_HTTP_MAX_CHUNK_EXT + 64];
    strcpy(s, "1 ;");
    memset(s + 3, 'e', CSOCK_HTTP_MAX_CHUNK_EXT);
    strcpy(s + 1 + CSOCK_HTTP_MAX_CHUNK_EXT, "\r\nx\r\n0\r\n\r\n"); /* exactly the limit */
    expect_chunked_error(s, 1000, CSOCK_HTTP_CHUNK_DONE);
    strcpy(s + 2 + CSOCK_HTTP_MAX_CHUNK_EXT, "\r\nx\r\n0\r\n\r\n");
    expect_chunked_error(s, 1000, CSOCK_HTTP_EBADREQ);
}

static void test_chunked_limits(void **state)
{
    /* The body limit counts across chunks; exactly the limit is fine. */
    const char *s = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    expect_chunked_error(s, 11, CSOCK_HTTP_CHUNK_DONE);
    expect_chunked_error(s, 10, CSOCK_HTTP_ETOOLARGE);
    expect_chunked_error("ffffffffffffffff\r\n", UINT64_MAX - 1, CSOCK_HTTP_ETOOLARGE);
    expect_chunked_error("0000000000000000000000000001\r\nx\r\n0\r\n\r\n", 1,
                         CSOCK_HTTP_CHUNK_DONE); /* leading zeros do not overflow */

    /* The trailer section is bounded. */
    size_t n = CSOCK_HTTP_MAX_TRAILER + 64;
    char *t = malloc(n + 16);
    assert_non_null(t);
    strcpy(t, "0\r\nX: ");
    memset(t + 6, 'v', n - 6);
    strcpy(t + n, "\r\n\r\n");
    expect_chunked_error(t, 1000, CSOCK_HTTP_EHDRTOOBIG);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_ows_trimmed),
        cmocka_unit_test(test_bare_lf_and_leading_empty_line),
        cmocka_unit_test(test_connection_semantics),
        cmocka_unit_test(test_expect_and_upgrade),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_smuggling_framing),
        cmocka_unit_test(test_smuggling_syntax),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_every_byte_class),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_long_request_line),
        cmocka_unit_test(test_large_head),
        cmocka_unit_test(test_too_many_fields),
        cmocka_unit_test(test_status_map),
        cmocka_unit_test(test_chunked_valid),
        cmocka_unit_test(test_chunked_done_is_sticky),
        cmocka_unit_test(test_chunked_errors),
        cmocka_unit_test(test_chunked_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
