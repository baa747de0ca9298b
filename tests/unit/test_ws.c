/* The WebSocket code's pure parts: frame headers (parse, build, the rules
 * of RFC 6455 section 5), masking, close codes, the UTF-8 validator
 * (Autobahn section 6's tricky inputs: overlong forms, surrogates, past
 * U+10FFFF, split anywhere) and the handshake's SHA-1 and accept key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ws_int.h"

static uint32_t utf8(const char *s, size_t n) { return csock__utf8_step(WS_UTF8_OK, (const unsigned char *)s, n); }
#define U8(lit) utf8((lit), sizeof(lit) - 1)

static void utf8_valid(void **state)
{
    (void)state;
    assert_int_equal(U8(""), WS_UTF8_OK);
    assert_int_equal(U8("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"), WS_UTF8_OK);
    assert_int_equal(U8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), WS_UTF8_OK); /* kosme */
    assert_int_equal(U8("\xf4\x8f\xbf\xbf"), WS_UTF8_OK);  /* U+10FFFF */
    assert_int_equal(U8("\xed\x9f\xbf"), WS_UTF8_OK);      /* U+D7FF */
    assert_int_equal(U8("\xee\x80\x80"), WS_UTF8_OK);      /* U+E000 */
    assert_int_equal(U8("\xef\xbf\xbd"), WS_UTF8_OK);      /* U+FFFD */
    assert_int_equal(U8("\xf0\x90\x80\x80"), WS_UTF8_OK);  /* U+10000 */
    assert_int_equal(U8("\xc2\x80\xdf\xbf\xe0\xa0\x80"), WS_UTF8_OK);
}

static void utf8_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\xc0\x80", "\xc1\xbf",             /* overlong 2-byte */
        "\xe0\x80\x80", "\xe0\x9f\xbf",     /* overlong 3-byte */
        "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", /* overlong 4-byte */
        "\xed\xa0\x80", "\xed\xbf\xbf",     /* surrogates */
        "\xed\xa0\x80\xed\xb0\x80",         /* a surrogate pair */
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf7\xbf\xbf\xbf", /* past U+10FFFF */
        "\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80", "\xfe", "\xff",
        "\x80", "\xbf", "a\x80" "b",           /* stray continuations */
        "\xc2\x41", "\xe1\x80\x41", "\xf1\x80\x80\x41", /* cut short by ASCII */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (utf8(bad[i], strlen(bad[i])) != WS_UTF8_BAD) fail_msg("accepted bad #%zu", i);
    }
    /* Incomplete at the end: not bad yet, but not a whole text either. */
    uint32_t st = U8("ab\xe2\x82");
    assert_int_not_equal(st, WS_UTF8_BAD);
    assert_int_not_equal(st, WS_UTF8_OK);
}

/* Split a text at every point: the validator carries its state across, as
 * it does across fragments and partial frames. */
static void utf8_split_everywhere(void **state)
{
    (void)state;
    static const char ok[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf";
    static const char bad[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited";
    size_t n = sizeof ok - 1, nb = sizeof bad - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        uint32_t st = csock__utf8_step(WS_UTF8_OK, (const unsigned char *)ok, cut);
        st = csock__utf8_step(st, (const unsigned char *)ok + cut, n - cut);
        assert_int_equal(st, WS_UTF8_OK);
    }
    for (size_t cut = 0; cut <= nb; cut++) {
        uint32_t st = csock__utf8_step(WS_UTF8_OK, (const unsigned char *)bad, cut);
        st = csock__utf8_step(st, (const unsigned char *)bad + cut, nb - cut);
        assert_int_equal(st, WS_UTF8_BAD);
    }
    /* Failing fast: the bad byte fails the piece it is in, whatever follows. */
    assert_int_equal(U8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90"), WS_UTF8_BAD);
}

/* The word-at-a-time ASCII path finds a non-ASCII byte at any offset. */
static void utf8_fast_path(void **state)
{
    (void)state;
    char buf[64];
    for (size_t at = 0; at < sizeof buf; at++) {
        memset(buf, 'a', sizeof buf);
        buf[at] = (char)0x80;
        assert_int_equal(utf8(buf, sizeof buf), WS_UTF8_BAD);
        buf[at] = (char)0xc3;
        if (at + 1 < sizeof buf) {
            buf[at + 1] = (char)0xa9;
            assert_int_equal(utf8(buf, sizeof buf), WS_UTF8_OK);
        } else {
            assert_int_not_equal(utf8(buf, sizeof buf), WS_UTF8_OK);
        }
    }
}

static void frame_parse(void **state)
{
    (void)state;
    csock__ws_frame f;
    const unsigned char small[] = {0x81, 0x85, 1, 2, 3, 4};
    assert_int_equal(csock__ws_parse_head(small, 1, &f), 0);
    for (size_t n = 2; n < sizeof small; n++) assert_int_equal(csock__ws_parse_head(small, n, &f), 0);
    assert_int_equal(csock__ws_parse_head(small, sizeof small, &f), 6);
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.op, WS_OP_TEXT);
    assert_int_equal(f.masked, 1);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.key, small + 2, 4);
    const unsigned char mid[] = {0x02, 0x7e, 0x01, 0x00};
    assert_int_equal(csock__ws_parse_head(mid, 3, &f), 0);
    assert_int_equal(csock__ws_parse_head(mid, 4, &f), 4);
    assert_int_equal(f.fin, 0);
    assert_int_equal(f.len, 256);
    const unsigned char big[] = {0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0};
    assert_int_equal(csock__ws_parse_head(big, 9, &f), 0);
    assert_int_equal(csock__ws_parse_head(big, 10, &f), 10);
    assert_true(f.len == (1ull << 32));
    /* 2^63: the top bit of a 64-bit length must be 0. */
    const unsigned char huge[] = {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(csock__ws_parse_head(huge, sizeof huge, &f), -1);
    const unsigned char rsv[] = {0xf1, 0x00};
    assert_int_equal(csock__ws_parse_head(rsv, 2, &f), 2);
    assert_int_equal(f.rsv, 7);
}

static csock__ws_frame hdr(int fin, int rsv, int op, int masked, uint64_t len)
{
    csock__ws_frame f = {.fin = (unsigned char)fin, .rsv = (unsigned char)rsv, .op = (unsigned char)op,
                         .masked = (unsigned char)masked, .len = len};
    return f;
}

static void frame_rules(void **state)
{
    (void)state;
    csock__ws_frame f;
    f = hdr(1, 0, WS_OP_TEXT, 1, 5);
    assert_int_equal(csock__ws_check(&f, 1, 0, 0), 0);
    assert_int_equal(csock__ws_check(&f, 0, 0, 0), 1002);  /* masked to a client */
    f = hdr(1, 0, WS_OP_TEXT, 0, 5);
    assert_int_equal(csock__ws_check(&f, 1, 0, 0), 1002);  /* unmasked from a client */
    assert_int_equal(csock__ws_check(&f, 0, 0, 0), 0);
    for (int r = 1; r < 8; r++) {
        f = hdr(1, r, WS_OP_BINARY, 1, 0);
        assert_int_equal(csock__ws_check(&f, 1, 0, 0), 1002); /* reserved bits */
    }
    int unknown[] = {3, 4, 5, 6, 7, 11, 12, 13, 14, 15};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        f = hdr(1, 0, unknown[i], 1, 0);
        assert_int_equal(csock__ws_check(&f, 1, 0, 0), 1002);
    }
    int ctl[] = {WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    for (size_t i = 0; i < 3; i++) {
        f = hdr(1, 0, ctl[i], 1, 125);
        assert_int_equal(csock__ws_check(&f, 1, 1, 0), 0); /* between fragments: fine */
        f = hdr(1, 0, ctl[i], 1, 126);
        assert_int_equal(csock__ws_check(&f, 1, 0, 0), 1002);
        f = hdr(0, 0, ctl[i], 1, 1);
        assert_int_equal(csock__ws_check(&f, 1, 0, 0), 1002); /* fragmented control */
    }
    f = hdr(1, 0, WS_OP_CONT, 1, 1);
    assert_int_equal(csock__ws_check(&f, 1, 0, 0), 1002);  /* nothing to continue */
    assert_int_equal(csock__ws_check(&f, 1, 1, 0), 0);
    f = hdr(0, 0, WS_OP_TEXT, 1, 1);
    assert_int_equal(csock__ws_check(&f, 1, 1, 0), 1002);  /* a new message inside one */
    /* permessage-deflate: RSV1 on a message's first frame, nowhere else */
    f = hdr(0, 4, WS_OP_TEXT, 1, 1);
    assert_int_equal(csock__ws_check(&f, 1, 0, 1), 0);
    assert_int_equal(csock__ws_check(&f, 1, 0, 0), 1002);  /* not negotiated */
    f = hdr(1, 4, WS_OP_BINARY, 1, 1);
    assert_int_equal(csock__ws_check(&f, 1, 0, 1), 0);
    f = hdr(1, 2, WS_OP_BINARY, 1, 1);
    assert_int_equal(csock__ws_check(&f, 1, 0, 1), 1002);  /* RSV2: still not ours */
    f = hdr(1, 4, WS_OP_CONT, 1, 1);
    assert_int_equal(csock__ws_check(&f, 1, 1, 1), 1002);  /* on a continuation */
    for (size_t i = 0; i < 3; i++) {
        f = hdr(1, 4, ctl[i], 1, 1);
        assert_int_equal(csock__ws_check(&f, 1, 0, 1), 1002); /* a compressed control frame */
    }
    unsigned char h[WS_HEAD_MAX];
    csock__ws_build_head(h, WS_OP_TEXT | WS_RSV1, 1, 5, NULL);
    assert_int_equal(h[0], 0xc1);
}

static void frame_build_roundtrip(void **state)
{
    (void)state;
    uint64_t lens[] = {0, 1, 125, 126, 65535, 65536, 1ull << 32, (1ull << 63) - 1};
    unsigned char key[4] = {9, 8, 7, 6};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (int m = 0; m < 2; m++) {
            unsigned char h[WS_HEAD_MAX];
            unsigned n = csock__ws_build_head(h, WS_OP_BINARY, i & 1, lens[i], m ? key : NULL);
            csock__ws_frame f;
            assert_int_equal(csock__ws_parse_head(h, n, &f), (int)n);
            assert_true(f.len == lens[i]);
            assert_int_equal(f.fin, (int)(i & 1));
            assert_int_equal(f.masked, m);
            assert_int_equal(f.op, WS_OP_BINARY);
            if (m) assert_memory_equal(f.key, key, 4);
        }
    }
}

/* Masking a word at a time equals the byte-by-byte definition at every
 * length, alignment and starting phase, and is its own inverse. */
static void mask_words(void **state)
{
    (void)state;
    unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    unsigned char buf[80], ref[80], orig[80];
    for (size_t i = 0; i < sizeof orig; i++) orig[i] = (unsigned char)(i * 13 + 1);
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= sizeof buf; len += 3)
            for (unsigned ph = 0; ph < 4; ph++) {
                memcpy(buf, orig, sizeof buf);
                memcpy(ref, orig, sizeof ref);
                for (size_t j = 0; j < len; j++) ref[off + j] ^= key[(ph + j) & 3];
                unsigned next = csock__ws_mask(buf + off, len, key, ph);
                assert_int_equal(next, (ph + len) & 3);
                assert_memory_equal(buf, ref, sizeof buf);
                csock__ws_mask(buf + off, len, key, ph);
                assert_memory_equal(buf, orig, sizeof buf);
            }
}

static void close_codes(void **state)
{
    (void)state;
    int ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    int bad[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) assert_true(csock__ws_code_ok((unsigned)ok[i]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_false(csock__ws_code_ok((unsigned)bad[i]));
}

static void sha1_and_accept_key(void **state)
{
    (void)state;
    unsigned char d[20];
    char hex[41];
    csock__sha1("abc", 3, d);
    for (int i = 0; i < 20; i++) sprintf(hex + 2 * i, "%02x", d[i]);
    assert_string_equal(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: two blocks of padding */
    csock__sha1(m, strlen(m), d);
    for (int i = 0; i < 20; i++) sprintf(hex + 2 * i, "%02x", d[i]);
    assert_string_equal(hex, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    char acc[29];
    csock__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, acc); /* RFC 6455 section 1.3 */
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    char b64[9];
    csock__base64((const unsigned char *)"ab", 2, b64);
    assert_string_equal(b64, "YWI=");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utf8_valid),
        cmocka_unit_test(utf8_invalid),
        cmocka_unit_test(utf8_split_everywhere),
        cmocka_unit_test(utf8_fast_path),
        cmocka_unit_test(frame_parse),
        cmocka_unit_test(frame_rules),
        cmocka_unit_test(frame_build_roundtrip),
        cmocka_unit_test(mask_words),
        cmocka_unit_test(close_codes),
        cmocka_unit_test(sha1_and_accept_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
