/* permessage-deflate's pure parts (src/proto/ws_deflate.c): the
 * Sec-WebSocket-Extensions parser with good and bad offers, the server's
 * choice and answer, the client's check of an answer, compression round
 * trips with and without context takeover, messages in parts, the memory
 * cap, and a compression bomb whose output stops at the sink's limit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "proto/ws_int.h"

static int next(const char *v, size_t *pos, csock__ws_pmd *p) { return csock__ws_pmd_next(v, strlen(v), pos, p); }

static int one(const char *v, csock__ws_pmd *p)
{
    size_t pos = 0;
    return next(v, &pos, p);
}

static void parse_offers(void **state)
{
    (void)state;
    csock__ws_pmd p;
    assert_int_equal(one("permessage-deflate", &p), WS_PMD_OK);
    assert_int_equal(p.server_nct | p.client_nct | p.server_bits | p.client_bits, 0);
    assert_int_equal(one("permessage-deflate; client_max_window_bits", &p), WS_PMD_OK);
    assert_int_equal(p.client_bits, 1);
    assert_int_equal(one("permessage-deflate;server_no_context_takeover ; client_no_context_takeover;"
                         " server_max_window_bits=10; client_max_window_bits=\"12\"", &p),
                     WS_PMD_OK);
    assert_int_equal(p.server_nct, 1);
    assert_int_equal(p.client_nct, 1);
    assert_int_equal(p.server_bits, 10);
    assert_int_equal(p.client_bits, 12);
    assert_int_equal(one("permessage-deflate; server_max_window_bits=8", &p), WS_PMD_OK);
    assert_int_equal(p.server_bits, 8);
    /* Offers permessage-deflate must decline. */
    const char *bad[] = {
        "permessage-deflate; server_max_window_bits",      /* needs a value */
        "permessage-deflate; server_max_window_bits=7",    /* out of range */
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=010",  /* a leading zero */
        "permessage-deflate; client_max_window_bits=1x",
        "permessage-deflate; server_no_context_takeover=1", /* no value allowed */
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover", /* twice */
        "permessage-deflate; client_max_window_bits=10; client_max_window_bits=11",
        "permessage-deflate; x_unknown",
        "permessage-deflate; client_max_window_bits=\"123456789012\"", /* too long to be right */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(one(bad[i], &p), WS_PMD_BAD);
    }
    /* Lists that do not parse. */
    const char *syntax[] = {"permessage-deflate; =1", "permessage-deflate; a=\"open", "; x", "a b",
                            "permessage-deflate; a=", "permessage-deflate x"};
    for (size_t i = 0; i < sizeof syntax / sizeof syntax[0]; i++) {
        assert_int_equal(one(syntax[i], &p), WS_PMD_SYNTAX);
    }
    /* A list: other extensions are skipped, offers come in order. */
    size_t pos = 0;
    const char *list = "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=9,"
                       " foo; bar=\"a,b\" , permessage-deflate";
    assert_int_equal(next(list, &pos, &p), WS_PMD_OTHER);
    assert_int_equal(next(list, &pos, &p), WS_PMD_OK);
    assert_int_equal(p.server_bits, 9);
    assert_int_equal(next(list, &pos, &p), WS_PMD_OTHER); /* the comma inside quotes stays */
    assert_int_equal(next(list, &pos, &p), WS_PMD_OK);
    assert_int_equal(p.server_bits, 0);
    assert_int_equal(next(list, &pos, &p), WS_PMD_END);
    assert_int_equal(one("", &p), WS_PMD_END);
    assert_int_equal(one(" , ,", &p), WS_PMD_END);
}

/* The server's pick among offers in one or more field values. */
static int pick(const csock_ws_opts *o, const char *v, char *ans, csock__ws_z **z)
{
    const char *vals[1] = {v};
    size_t lens[1] = {strlen(v)};
    ans[0] = 0;
    return csock__ws_pmd_accept(o, vals, lens, 1, ans, 192, z);
}

static void server_picks(void **state)
{
    (void)state;
    csock_ws_opts o = {.deflate = 1};
    char ans[192];
    csock__ws_z *z;
    assert_int_equal(pick(&o, "permessage-deflate; client_max_window_bits", ans, &z), 1);
    assert_string_equal(ans, "permessage-deflate");
    assert_int_equal(z->def_bits, 15);
    assert_int_equal(z->inf_bits, 15);
    assert_int_equal(z->def_reset | z->inf_reset, 0);
    csock__ws_z_free(z);
    /* The first offer that can be honoured wins: 8 cannot (zlib). */
    assert_int_equal(pick(&o, "permessage-deflate; server_max_window_bits=8, permessage-deflate; x,"
                              " permessage-deflate; server_max_window_bits=10; server_no_context_takeover",
                          ans, &z), 1);
    assert_string_equal(ans, "permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
    assert_int_equal(z->def_bits, 10);
    assert_int_equal(z->def_reset, 1);
    csock__ws_z_free(z);
    /* Our own limits are asked for where the offer allows. */
    csock_ws_opts lim = {.deflate = 1, .server_max_window_bits = 12, .client_max_window_bits = 8,
                         .client_no_context_takeover = 1};
    assert_int_equal(pick(&lim, "permessage-deflate; client_max_window_bits; server_max_window_bits=14", ans, &z),
                     1);
    assert_string_equal(ans, "permessage-deflate; client_no_context_takeover; server_max_window_bits=12;"
                             " client_max_window_bits=9");
    assert_int_equal(z->def_bits, 12);
    assert_int_equal(z->inf_bits, 9);
    assert_int_equal(z->inf_reset, 1);
    csock__ws_z_free(z);
    /* Nothing to pick. */
    assert_int_equal(pick(&o, "x-other", ans, &z), 0);
    assert_null(z);
    assert_int_equal(pick(&o, "permessage-deflate; server_max_window_bits=8", ans, &z), 0);
    assert_int_equal(pick(&o, "permessage-deflate; bogus", ans, &z), 0);
    assert_int_equal(pick(&o, "permessage-deflate; a=\"", ans, &z), 0);
    /* A memory cap the peer's window cannot fit beside ours: the client
     * window is asked down when it can be, else the offer declined. */
    csock_ws_opts small = {.deflate = 1, .deflate_memory = 24 * 1024};
    assert_int_equal(pick(&small, "permessage-deflate; client_max_window_bits", ans, &z), 1);
    assert_string_equal(ans, "permessage-deflate; client_max_window_bits=9");
    assert_true((1u << (z->def_bits + 2)) + (1u << (z->def_mem_level + 9)) + (1u << z->inf_bits) <= 24 * 1024);
    csock__ws_z_free(z);
    assert_int_equal(pick(&small, "permessage-deflate", ans, &z), 0);
}

static int answer(const csock_ws_opts *o, const char *v, csock__ws_z **z)
{
    return csock__ws_pmd_answer(o, v, strlen(v), z);
}

static void client_checks_the_answer(void **state)
{
    (void)state;
    char offer[192];
    csock_ws_opts o = {.deflate = 1};
    csock__ws_pmd_offer(&o, offer, sizeof offer);
    assert_string_equal(offer, "permessage-deflate; client_max_window_bits");
    csock_ws_opts all = {.deflate = 1, .client_max_window_bits = 11, .server_max_window_bits = 8,
                         .server_no_context_takeover = 1, .client_no_context_takeover = 1};
    csock__ws_pmd_offer(&all, offer, sizeof offer);
    assert_string_equal(offer, "permessage-deflate; client_max_window_bits=11; server_max_window_bits=9;"
                               " server_no_context_takeover; client_no_context_takeover");
    csock__ws_z *z;
    assert_int_equal(answer(&o, "permessage-deflate", &z), 0);
    assert_int_equal(z->def_bits, 15);
    csock__ws_z_free(z);
    assert_int_equal(answer(&o, "permessage-deflate; client_max_window_bits=10; server_no_context_takeover", &z),
                     0);
    assert_int_equal(z->def_bits, 10);
    assert_int_equal(z->inf_reset, 1);
    csock__ws_z_free(z);
    assert_int_equal(answer(&all, "permessage-deflate; server_max_window_bits=9; server_no_context_takeover", &z),
                     0);
    assert_int_equal(z->def_reset, 1); /* we said we would */
    csock__ws_z_free(z);
    const char *refused[] = {
        "permessage-deflate; client_max_window_bits",      /* an answer needs a value */
        "permessage-deflate; client_max_window_bits=8",    /* zlib cannot keep to 8 */
        "permessage-deflate, permessage-deflate",          /* two */
        "x-other",                                         /* not offered */
        "permessage-deflate, x-other",
        "permessage-deflate; bogus",
        "permessage-deflate; a=\"",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(answer(&o, refused[i], &z), -EPROTO);
        assert_null(z);
    }
    /* Answers that break what we asked for. */
    assert_int_equal(answer(&all, "permessage-deflate; server_no_context_takeover", &z), -EPROTO);
    assert_int_equal(answer(&all, "permessage-deflate; server_max_window_bits=10; server_no_context_takeover", &z),
                     -EPROTO);
    assert_int_equal(answer(&all, "permessage-deflate; server_max_window_bits=9", &z), -EPROTO);
    assert_int_equal(answer(&all, "permessage-deflate; server_max_window_bits=9; server_no_context_takeover;"
                                  " client_max_window_bits=12", &z), -EPROTO);
}

/* ---- compressing --------------------------------------------------------------------- */

typedef struct sinkbuf {
    unsigned char *b;
    size_t n, max, calls, biggest;
} sinkbuf;

static int sink(void *ctx, const unsigned char *p, size_t n)
{
    sinkbuf *s = ctx;
    s->calls++;
    if (n > s->biggest) s->biggest = n;
    if (n > s->max - s->n) return 1; /* past the limit: stop */
    memcpy(s->b + s->n, p, n);
    s->n += n;
    return 0;
}

static csock__ws_z *pair_z(int reset, csock__ws_z **peer)
{
    csock_ws_opts o = {.deflate = 1, .server_no_context_takeover = (unsigned char)reset,
                       .client_no_context_takeover = (unsigned char)reset};
    char ans[192];
    csock__ws_z *a;
    assert_int_equal(pick(&o, "permessage-deflate; client_max_window_bits", ans, &a), 1);
    assert_int_equal(answer(&o, ans, peer), 0);
    return a;
}

/* Compress msg with a (in `parts` parts), inflate with b, compare. */
static size_t roundtrip(csock__ws_z *a, csock__ws_z *b, const unsigned char *msg, size_t len, int parts)
{
    sinkbuf s = {.b = malloc(len + 1), .max = len};
    size_t total = 0, step = len / (size_t)parts + 1;
    for (size_t off = 0; parts > 0; parts--) {
        size_t k = parts == 1 ? len - off : (step < len - off ? step : len - off);
        unsigned char *out;
        size_t n;
        assert_int_equal(csock__ws_deflate(a, msg + off, k, parts == 1, 14, &out, &n), 0);
        assert_int_equal(csock__ws_inflate(b, out + 14, n, parts == 1, sink, &s), 0);
        total += n;
        off += k;
        free(out);
    }
    assert_int_equal(s.n, len);
    assert_memory_equal(s.b, msg, len);
    free(s.b);
    return total;
}

static void roundtrip_with_context(void **state)
{
    (void)state;
    csock__ws_z *b, *a = pair_z(0, &b);
    static const char text[] = "the same sentence again and again, for the window to find. ";
    size_t first = roundtrip(a, b, (const unsigned char *)text, sizeof text - 1, 1);
    size_t second = roundtrip(a, b, (const unsigned char *)text, sizeof text - 1, 1);
    assert_true(second < first / 2); /* the second refers back into the first */
    assert_non_null(a->def);         /* the state stays between messages */
    assert_non_null(b->inf);
    roundtrip(a, b, (const unsigned char *)"", 0, 1); /* an empty message */
    /* A compressed message that never left (its write failed): dropping
     * the state keeps the next one decodable by the peer. */
    unsigned char *lost;
    size_t lost_len;
    assert_int_equal(csock__ws_deflate(a, text, sizeof text - 1, 1, 0, &lost, &lost_len), 0);
    free(lost);
    csock__ws_deflate_drop(a);
    roundtrip(a, b, (const unsigned char *)text, sizeof text - 1, 1);
    size_t big = 3u << 20;
    unsigned char *m = malloc(big);
    for (size_t i = 0; i < big; i++) m[i] = (unsigned char)(i % 251 ^ i >> 13);
    roundtrip(a, b, m, big, 1);
    roundtrip(a, b, m, big, 7); /* in parts */
    for (size_t i = 0; i < big; i++) m[i] = (unsigned char)rand(); /* incompressible */
    size_t n = roundtrip(a, b, m, big, 3);
    assert_true(n < big + big / 64);
    free(m);
    assert_true(a->mem <= a->mem_max);
    csock__ws_z_free(a);
    csock__ws_z_free(b);
}

static void roundtrip_without_context(void **state)
{
    (void)state;
    csock__ws_z *b, *a = pair_z(1, &b);
    assert_int_equal(a->def_reset, 1);
    assert_int_equal(b->inf_reset, 1);
    static const char text[] = "the same sentence again and again, for the window to find. ";
    size_t first = roundtrip(a, b, (const unsigned char *)text, sizeof text - 1, 1);
    assert_null(a->def); /* freed after each message: nothing held between them */
    assert_null(b->inf);
    assert_int_equal(a->mem, 0);
    assert_int_equal(b->mem, 0);
    size_t second = roundtrip(a, b, (const unsigned char *)text, sizeof text - 1, 1);
    assert_int_equal(second, first); /* no reference into the message before */
    roundtrip(a, b, (const unsigned char *)text, sizeof text - 1, 3);
    csock__ws_z_free(a);
    csock__ws_z_free(b);
}

/* What a peer makes of zlib's own raw deflate of data (with a final block,
 * as some compressors send): decoded, and the stream starts anew after. */
static void final_block_and_garbage(void **state)
{
    (void)state;
    csock__ws_z *b, *a = pair_z(0, &b);
    unsigned char out[256];
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)"final block";
    zs.avail_in = 11;
    zs.next_out = out;
    zs.avail_out = sizeof out;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t n = sizeof out - zs.avail_out;
    deflateEnd(&zs);
    unsigned char got[64];
    sinkbuf s = {.b = got, .max = sizeof got};
    assert_int_equal(csock__ws_inflate(b, out, n, 1, sink, &s), 0);
    assert_int_equal(s.n, 11);
    assert_memory_equal(got, "final block", 11);
    roundtrip(a, b, (const unsigned char *)"after it", 8, 1);
    /* Data zlib refuses: -EPROTO. */
    static const unsigned char junk[] = {0xff, 0xff, 0xff, 0xff, 0x00};
    s.n = 0;
    assert_int_equal(csock__ws_inflate(b, junk, sizeof junk, 1, sink, &s), -EPROTO);
    csock__ws_z_free(a);
    csock__ws_z_free(b);
}

/* A bomb: 1 GiB of zeros deflates to about 1 MiB (DEFLATE's best is
 * ~1032:1). Inflating it stops at the sink's limit after a few chunks of
 * at most 16 KiB each: the input past that point is never inflated. */
static void compression_bomb_stops_at_the_limit(void **state)
{
    (void)state;
    csock__ws_z *b, *a = pair_z(0, &b);
    size_t chunk = 1u << 20, total = 0;
    unsigned char *zeros = calloc(1, chunk), *bomb = NULL;
    size_t blen = 0;
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    bomb = malloc(2u << 20);
    zs.next_out = bomb;
    zs.avail_out = 2u << 20;
    for (int i = 0; i < 1024; i++, total += chunk) {
        zs.next_in = zeros;
        zs.avail_in = (uInt)chunk;
        assert_int_equal(deflate(&zs, i == 1023 ? Z_SYNC_FLUSH : Z_NO_FLUSH), Z_OK);
    }
    blen = (2u << 20) - zs.avail_out - 4; /* the tail goes, as the RFC says */
    deflateEnd(&zs);
    assert_true(blen < (11u << 17)); /* ~1 MiB for 1 GiB */
    sinkbuf s = {.b = malloc(1u << 20), .max = 1u << 20};
    assert_int_equal(csock__ws_inflate(b, bomb, blen, 1, sink, &s), 1); /* the sink's stop */
    assert_true(s.n <= s.max);
    assert_true(s.biggest <= 16384);
    assert_true(s.calls <= (1u << 20) / 16384 + 1);
    assert_true(b->mem <= b->mem_max);
    free(s.b);
    free(bomb);
    free(zeros);
    csock__ws_z_free(a);
    csock__ws_z_free(b);
}

/* zlib's allocations are counted: a cap too small for the state fails
 * the allocation (-ENOMEM) instead of passing it. */
static void memory_cap_is_enforced(void **state)
{
    (void)state;
    csock_ws_opts o = {.deflate = 1};
    char ans[192];
    csock__ws_z *z;
    assert_int_equal(pick(&o, "permessage-deflate", ans, &z), 1);
    z->mem_max = 4096; /* below anything zlib can work in */
    unsigned char *out;
    size_t n;
    assert_int_equal(csock__ws_deflate(z, "hello hello hello", 17, 1, 0, &out, &n), -ENOMEM);
    sinkbuf s = {.b = malloc(16), .max = 16};
    assert_int_equal(csock__ws_inflate(z, (const unsigned char *)"\x00", 1, 1, sink, &s), -ENOMEM);
    assert_int_equal(z->mem, 0);
    free(s.b);
    csock__ws_z_free(z);
    /* At the default cap both states fit, and the count is what zlib holds. */
    csock__ws_z *b, *a = pair_z(0, &b);
    roundtrip(a, b, (const unsigned char *)"hello hello hello", 17, 1);
    assert_true(a->mem > 200 * 1024 && a->mem <= a->mem_max);
    assert_true(b->mem > 32 * 1024 && b->mem < 48 * 1024);
    print_message("zlib state: deflate %zu bytes, inflate %zu bytes, struct %zu bytes\n", (size_t)a->mem,
                  (size_t)b->mem, sizeof *a);
    csock__ws_z_free(a);
    csock__ws_z_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_offers),
        cmocka_unit_test(server_picks),
        cmocka_unit_test(client_checks_the_answer),
        cmocka_unit_test(roundtrip_with_context),
        cmocka_unit_test(roundtrip_without_context),
        cmocka_unit_test(final_block_and_garbage),
        cmocka_unit_test(compression_bomb_stops_at_the_limit),
        cmocka_unit_test(memory_cap_is_enforced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
