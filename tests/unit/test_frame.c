/* csock_frame_next(): lines (LF, CRLF, keep_delimiter) and LP32 frames.
 *
 * Every input is copied to the very end of its own malloc'ed block, so a
 * read at buf[len] lands outside the allocation and ASan stops the test.
 * Streams of messages are fed at every split point (and byte by byte) and
 * must cut into the same messages as when fed all at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A copy of in[0..len) ending exactly at the end of a heap block. */
static char *tail_copy(const void *in, size_t len, void **block)
{
    char *b = malloc(len ? len : 1);
    assert_non_null(b);
    *block = b;
    char *p = b + (len ? 0 : 1); /* len 0: one past the end, never read */
    if (len)
        memcpy(p, in, len);
    return p;
}

/* One call on a tail copy; the message is copied out to msg (if > 0). */
static ssize_t next1(const csock_framing *f, const void *in, size_t len, char *msg,
                     size_t *msg_len)
{
    void *block;
    const char *p = tail_copy(in, len, &block), *m = NULL;
    size_t ml = (size_t)-1;
    ssize_t r = csock_frame_next(f, p, len, &m, &ml);
    if (r > 0) {
        assert_true((size_t)r <= len);
        assert_true(m >= p && m + ml <= p + len); /* a slice of the input */
        memcpy(msg, m, ml);
        msg[ml] = '\0';
        *msg_len = ml;
    }
    free(block);
    return r;
}

/* ---- a stream reader, as the framed stream will be one ------------------- */

/* Messages as text: "<len>:<bytes>;" each, then "E<name>;" on an error. */
typedef struct {
    char text[4096];
    size_t used;
    int failed;
} transcript;

static void note_msg(transcript *t, const char *m, size_t n)
{
    int k = snprintf(t->text + t->used, sizeof t->text - t->used, "%zu:", n);
    t->used += (size_t)k;
    assert_true(t->used + n + 2 < sizeof t->text);
    memcpy(t->text + t->used, m, n);
    t->used += n;
    t->text[t->used++] = ';';
    t->text[t->used] = '\0';
}

static void note_err(transcript *t, int err)
{
    int k = snprintf(t->text + t->used, sizeof t->text - t->used, "E%s;", csock_err_name(err));
    t->used += (size_t)k;
    t->failed = 1;
}

/* Input in[0..avail) has arrived, in[0..*start) is consumed: cut what we can,
 * with the pending bytes at the end of a fresh allocation each time. */
static void drain(const csock_framing *f, const char *in, size_t *start, size_t avail,
                  transcript *t)
{
    while (!t->failed) {
        void *block;
        size_t len = avail - *start;
        const char *p = tail_copy(in + *start, len, &block), *m;
        size_t ml;
        ssize_t r = csock_frame_next(f, p, len, &m, &ml);
        if (r > 0) {
            assert_true((size_t)r <= len);
            note_msg(t, m, ml);
            *start += (size_t)r;
        } else if (r < 0) {
            note_err(t, (int)r);
        }
        free(block);
        if (r == 0)
            break;
    }
}

/* Feed `in` in chunks ending at the cut points (ascending), then the rest. */
static void feed(const csock_framing *f, const char *in, size_t len, const size_t *cuts,
                 size_t ncuts, transcript *t)
{
    size_t start = 0;
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < ncuts; i++)
        drain(f, in, &start, cuts[i], t);
    drain(f, in, &start, len, t);
}

/* All at once, at every single split, at every pair of splits, byte by byte:
 * all must give `want`. */
static void check_stream(const csock_framing *f, const char *in, size_t len, const char *want)
{
    transcript t;
    size_t cuts[2];

    feed(f, in, len, NULL, 0, &t);
    assert_string_equal(t.text, want);
    for (size_t i = 0; i <= len; i++) {
        cuts[0] = i;
        feed(f, in, len, cuts, 1, &t);
        assert_string_equal(t.text, want);
        for (size_t j = i; j <= len; j++) {
            cuts[1] = j;
            feed(f, in, len, cuts, 2, &t);
            assert_string_equal(t.text, want);
        }
    }
    size_t *every = malloc((len + 1) * sizeof *every);
    assert_non_null(every);
    for (size_t i = 0; i <= len; i++)
        every[i] = i;
    feed(f, in, len, every, len + 1, &t);
    assert_string_equal(t.text, want);
    free(every);
}

#define LINE(max_, keep_) ((csock_framing){.kind = CSOCK_FRAME_LINE, .max = (max_), .keep_delimiter = (keep_)})
#define LP32(max_) ((csock_framing){.kind = CSOCK_FRAME_LP32, .max = (max_)})
#define S(lit) (lit), (sizeof(lit) - 1)

/* ---- lines -------------------------------------------------------------------- */

static void line_basic(void **state)
{
    (void)state;
    csock_framing f = LINE(64, 0);
    char m[256];
    size_t ml;
    assert_int_equal(next1(&f, S("hello\n"), m, &ml), 6);
    assert_string_equal(m, "hello");
    assert_int_equal(next1(&f, S("hello\r\n"), m, &ml), 7);
    assert_string_equal(m, "hello");
    assert_int_equal(next1(&f, S("\n"), m, &ml), 1);
    assert_int_equal(ml, 0);
    assert_int_equal(next1(&f, S("\r\n"), m, &ml), 2);
    assert_int_equal(ml, 0);
    /* Only the CR right before the LF is part of the ending. */
    assert_int_equal(next1(&f, S("a\rb\r\r\n"), m, &ml), 6);
    assert_string_equal(m, "a\rb\r");
    /* The first line only; the rest stays. */
    assert_int_equal(next1(&f, S("one\ntwo\n"), m, &ml), 4);
    assert_string_equal(m, "one");
    /* Incomplete. */
    assert_int_equal(next1(&f, "", 0, m, &ml), 0);
    assert_int_equal(next1(&f, S("hello"), m, &ml), 0);
    assert_int_equal(next1(&f, S("hello\r"), m, &ml), 0);
    assert_int_equal(next1(&f, S("\r"), m, &ml), 0);
}

static void line_keep_delimiter(void **state)
{
    (void)state;
    csock_framing f = LINE(5, 1);
    char m[256];
    size_t ml;
    assert_int_equal(next1(&f, S("hello\r\nx"), m, &ml), 7);
    assert_int_equal(ml, 7);
    assert_string_equal(m, "hello\r\n");
    assert_int_equal(next1(&f, S("hello\n"), m, &ml), 6);
    assert_string_equal(m, "hello\n");
    assert_int_equal(next1(&f, S("\n"), m, &ml), 1);
    assert_string_equal(m, "\n");
    /* max still counts the content only. */
    assert_int_equal(next1(&f, S("hello!\n"), m, &ml), CSOCK_ETOOBIG);
    assert_int_equal(next1(&f, S("hello!\r\n"), m, &ml), CSOCK_ETOOBIG);
}

/* max = 5: "hello" is the longest legal content. */
static void line_max_boundaries(void **state)
{
    (void)state;
    char m[256];
    size_t ml;
    for (int keep = 0; keep <= 1; keep++) {
        csock_framing f = LINE(5, keep);
        /* Exactly max, with LF and with CRLF: accepted. */
        assert_int_equal(next1(&f, S("hello\n"), m, &ml), 6);
        assert_int_equal(next1(&f, S("hello\r\n"), m, &ml), 7);
        assert_int_equal(ml, keep ? 7 : 5);
        /* CR as the last content byte before CRLF ("hell\r" + CRLF) is max. */
        assert_int_equal(next1(&f, S("hell\r\r\n"), m, &ml), 7);
        /* max + 1: refused, with either ending. */
        assert_int_equal(next1(&f, S("hello!\n"), m, &ml), CSOCK_ETOOBIG);
        assert_int_equal(next1(&f, S("hello!\r\n"), m, &ml), CSOCK_ETOOBIG);
        /* No LF yet: max bytes, or max bytes + CR, may still become a line. */
        assert_int_equal(next1(&f, S("hello"), m, &ml), 0);
        assert_int_equal(next1(&f, S("hello\r"), m, &ml), 0);
        /* ... but max + 1 content bytes can not: refused before any LF. */
        assert_int_equal(next1(&f, S("hello!"), m, &ml), CSOCK_ETOOBIG);
        /* max + 2 bytes without LF can never be legal whatever they are. */
        assert_int_equal(next1(&f, S("hello\r\r"), m, &ml), CSOCK_ETOOBIG);
        assert_int_equal(next1(&f, S("hello\r\r\n"), m, &ml), CSOCK_ETOOBIG);
        assert_int_equal(next1(&f, S("hello!!!!!!!!!!!"), m, &ml), CSOCK_ETOOBIG);
        /* A long line after a good one is refused only when it is reached. */
        assert_int_equal(next1(&f, S("ok\nhello!!!!!!!"), m, &ml), 3);
    }
}

static void line_max_zero_and_huge(void **state)
{
    (void)state;
    char m[256];
    size_t ml;
    csock_framing z = LINE(0, 0);
    assert_int_equal(next1(&z, S("\n"), m, &ml), 1);
    assert_int_equal(next1(&z, S("\r\n"), m, &ml), 2);
    assert_int_equal(next1(&z, S("\r"), m, &ml), 0);
    assert_int_equal(next1(&z, S("a"), m, &ml), CSOCK_ETOOBIG);
    assert_int_equal(next1(&z, S("a\n"), m, &ml), CSOCK_ETOOBIG);
    assert_int_equal(next1(&z, S("\r\r"), m, &ml), CSOCK_ETOOBIG);
    /* max + 2 must not wrap. */
    csock_framing h = LINE(SIZE_MAX, 0);
    assert_int_equal(next1(&h, S("abc"), m, &ml), 0);
    assert_int_equal(next1(&h, S("abc\r\n"), m, &ml), 5);
    csock_framing h1 = LINE(SIZE_MAX - 1, 0);
    assert_int_equal(next1(&h1, S("abc"), m, &ml), 0);
}

/* A line of exactly max bytes at every prefix: 0 until the LF, then whole. */
static void line_every_prefix(void **state)
{
    (void)state;
    enum { MAX = 100 };
    char in[MAX + 2], m[MAX + 3];
    size_t ml;
    csock_framing f = LINE(MAX, 0);
    for (size_t i = 0; i < MAX; i++)
        in[i] = (char)('a' + i % 26);
    in[MAX] = '\r';
    in[MAX + 1] = '\n';
    for (size_t n = 0; n < sizeof in; n++)
        assert_int_equal(next1(&f, in, n, m, &ml), 0);
    assert_int_equal(next1(&f, in, sizeof in, m, &ml), MAX + 2);
    assert_int_equal(ml, MAX);
    assert_memory_equal(m, in, MAX);

    /* One byte longer: 0 while it could still fit, ETOOBIG from max + 1. */
    char big[MAX + 3];
    memset(big, 'x', MAX + 1);
    big[MAX + 1] = '\r';
    big[MAX + 2] = '\n';
    for (size_t n = 0; n <= sizeof big; n++)
        assert_int_equal(next1(&f, big, n, m, &ml), n <= MAX ? 0 : CSOCK_ETOOBIG);
}

static void line_streams(void **state)
{
    (void)state;
    csock_framing f = LINE(5, 0);
    check_stream(&f, S("one\r\ntwo\n\nthree\r\n\r\nfour\nhello\r\nx\ny"),
                 "3:one;3:two;0:;5:three;0:;4:four;5:hello;1:x;");
    check_stream(&f, S("ok\r\nhello!\r\nlater\n"), "2:ok;EETOOBIG;");
    check_stream(&f, S("ok\nhello\r\r\n"), "2:ok;EETOOBIG;");
    check_stream(&f, S("a\rb\r\n\r\r\n"), "3:a\rb;1:\r;");
    csock_framing k = LINE(5, 1);
    check_stream(&k, S("one\r\ntwo\n\n\r\nhello\r\n"), "5:one\r\n;4:two\n;1:\n;2:\r\n;7:hello\r\n;");
}

/* ---- LP32 ------------------------------------------------------------------------ */

static void lp32_basic(void **state)
{
    (void)state;
    csock_framing f = LP32(8);
    char m[256];
    size_t ml;
    /* Zero-length message: the header alone. */
    assert_int_equal(next1(&f, S("\0\0\0\0"), m, &ml), 4);
    assert_int_equal(ml, 0);
    assert_int_equal(next1(&f, S("\0\0\0\3abcdef"), m, &ml), 7);
    assert_string_equal(m, "abc");
    /* max-size body exactly. */
    assert_int_equal(next1(&f, S("\0\0\0\x08" "12345678"), m, &ml), 12);
    assert_string_equal(m, "12345678");
    /* Oversize: refused as soon as the header is complete, body or not. */
    assert_int_equal(next1(&f, S("\0\0\0\x09"), m, &ml), CSOCK_ETOOBIG);
    assert_int_equal(next1(&f, S("\0\0\0\x09" "123456789"), m, &ml), CSOCK_ETOOBIG);
    assert_int_equal(next1(&f, S("\xff\xff\xff\xff"), m, &ml), CSOCK_ETOOBIG);
    assert_int_equal(next1(&f, S("\x01\0\0\0"), m, &ml), CSOCK_ETOOBIG);
    /* Incomplete header / body. */
    assert_int_equal(next1(&f, "", 0, m, &ml), 0);
    assert_int_equal(next1(&f, S("\xff"), m, &ml), 0);
    assert_int_equal(next1(&f, S("\xff\xff\xff"), m, &ml), 0);
    assert_int_equal(next1(&f, S("\0\0\0\x08" "1234567"), m, &ml), 0);
    /* max 0: only empty messages. */
    csock_framing z = LP32(0);
    assert_int_equal(next1(&z, S("\0\0\0\0"), m, &ml), 4);
    assert_int_equal(next1(&z, S("\0\0\0\1"), m, &ml), CSOCK_ETOOBIG);
    /* The largest header with no limit: waits for the body. */
    csock_framing h = LP32(SIZE_MAX);
    assert_int_equal(next1(&h, S("\xff\xff\xff\xff" "abc"), m, &ml), 0);
    /* Big-endian, every byte counts. */
    csock_framing b = LP32(0x01020304);
    assert_int_equal(next1(&b, S("\x01\x02\x03\x05"), m, &ml), CSOCK_ETOOBIG);
    assert_int_equal(next1(&b, S("\x01\x02\x03\x04"), m, &ml), 0);
}

static void lp32_every_prefix(void **state)
{
    (void)state;
    enum { MAX = 300 }; /* > 255: the length needs two bytes */
    char in[4 + MAX], m[MAX + 1];
    size_t ml;
    csock_framing f = LP32(MAX);
    in[0] = 0, in[1] = 0, in[2] = (char)(MAX >> 8), in[3] = (char)(MAX & 0xff);
    for (size_t i = 0; i < MAX; i++)
        in[4 + i] = (char)i;
    for (size_t n = 0; n < sizeof in; n++)
        assert_int_equal(next1(&f, in, n, m, &ml), 0);
    assert_int_equal(next1(&f, in, sizeof in, m, &ml), 4 + MAX);
    assert_int_equal(ml, MAX);
    assert_memory_equal(m, in + 4, MAX);
    /* MAX + 1 in the header: 0 for 0-3 bytes, ETOOBIG from the 4th. */
    in[3] = (char)((MAX + 1) & 0xff);
    for (size_t n = 0; n <= sizeof in; n++)
        assert_int_equal(next1(&f, in, n, m, &ml), n < 4 ? 0 : CSOCK_ETOOBIG);
}

static void lp32_streams(void **state)
{
    (void)state;
    csock_framing f = LP32(5);
    check_stream(&f, S("\0\0\0\0" "\0\0\0\1a" "\0\0\0\5hello" "\0\0\0\0" "\0\0\0\2\r\n" "\0\0"),
                 "0:;1:a;5:hello;0:;2:\r\n;");
    check_stream(&f, S("\0\0\0\2hi" "\0\0\0\6hello!" "\0\0\0\1x"), "2:hi;EETOOBIG;");
}

static void bad_arguments(void **state)
{
    (void)state;
    const char *m;
    size_t ml;
    csock_framing f = {.kind = (csock_frame_kind)99, .max = 10};
    assert_int_equal(csock_frame_next(&f, "a\n", 2, &m, &ml), -EINVAL);
    assert_int_equal(csock_frame_next(NULL, "a\n", 2, &m, &ml), -EINVAL);
    f.kind = CSOCK_FRAME_LINE;
    assert_int_equal(csock_frame_next(&f, NULL, 0, &m, &ml), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(line_basic),
        cmocka_unit_test(line_keep_delimiter),
        cmocka_unit_test(line_max_boundaries),
        cmocka_unit_test(line_max_zero_and_huge),
        cmocka_unit_test(line_every_prefix),
        cmocka_unit_test(line_streams),
        cmocka_unit_test(lp32_basic),
        cmocka_unit_test(lp32_every_prefix),
        cmocka_unit_test(lp32_streams),
        cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
