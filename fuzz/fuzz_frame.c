/* libFuzzer target for src/net/frame.c (csock_frame_next, LINE and LP32)
 * fed the way a stream feeds it: input arriving in random pieces,
 * consumed messages dropped from the front, the rest kept.
 *
 * Input: kind, keep_delimiter and max (3 bytes), the number of pieces to
 * cut the rest into and their sizes (from the following bytes), then the
 * byte stream.
 * Checks:
 *  - every message lies inside the buffer it was cut from, spans more
 *    than its length (the ending or the header) and at most max (+2 for a
 *    line); LP32's span is 4 + len, a line's message has no LF (unless
 *    kept, then it ends with one);
 *  - the messages and the final verdict (need more / too big) are the same
 *    whether the bytes come at once or in pieces: framing does not depend
 *    on how TCP cut the stream;
 *  - each piece lives in its own exact-size allocation, so a read past the
 *    buffer is caught by ASan.
 */
#include <string.h>
#include <sys/types.h>

#include "csock/csock.h"
#include "fuzz_common.h"

#define MAX_MSGS 4096

typedef struct result {
    size_t n;                 /* messages */
    uint64_t hash;            /* FNV-1a over (len, bytes) of each */
    ssize_t last;             /* the final csock_frame_next result (0 or error) */
    size_t left;              /* bytes never consumed */
} result;

static void absorb(result *r, const char *msg, size_t len)
{
    r->hash = (r->hash ^ len) * 1099511628211u;
    for (size_t i = 0; i < len; i++) r->hash = (r->hash ^ (unsigned char)msg[i]) * 1099511628211u;
    r->n++;
}

/* Cut messages out of buf[0..len); returns the bytes consumed. Stops at the
 * first "need more" or error, recorded in r->last. */
static size_t cut(const csock_framing *f, const char *buf, size_t len, result *r)
{
    size_t pos = 0;
    while (r->n < MAX_MSGS) {
        const char *msg = NULL;
        size_t mlen = 0;
        ssize_t span = csock_frame_next(f, buf + pos, len - pos, &msg, &mlen);
        r->last = span;
        if (span <= 0) break;
        CHECK((size_t)span <= len - pos);
        CHECK(msg >= buf + pos && msg + mlen <= buf + pos + span);
        if (f->kind == CSOCK_FRAME_LP32) {
            CHECK((size_t)span == 4 + mlen && msg == buf + pos + 4);
            CHECK(mlen <= f->max);
        } else {
            size_t content = mlen;
            if (f->keep_delimiter) content -= 1 + (mlen >= 2 && msg[mlen - 2] == '\r');
            CHECK(content <= f->max);
            CHECK(msg == buf + pos && buf[pos + span - 1] == '\n');
            CHECK(memchr(msg, '\n', mlen) == NULL ||
                  (f->keep_delimiter && memchr(msg, '\n', mlen) == msg + mlen - 1));
        }
        absorb(r, msg, mlen);
        pos += (size_t)span;
    }
    return pos;
}

static void whole(const csock_framing *f, const uint8_t *data, size_t len, result *r)
{
    char *buf = malloc(len ? len : 1);
    CHECK(buf != NULL);
    memcpy(buf, data, len);
    r->left = len - cut(f, buf, len, r);
    free(buf);
}

/* The same bytes in pieces: each time, pending + piece in a fresh
 * exact-size buffer, as a stream's read buffer would hold them. */
static void pieces(const csock_framing *f, const uint8_t *data, size_t len, const uint8_t *sizes,
                   size_t nsizes, result *r)
{
    char *pending = NULL;
    size_t plen = 0, pos = 0;
    for (size_t i = 0; pos < len && r->n < MAX_MSGS; i++) {
        size_t piece = nsizes ? 1 + sizes[i % nsizes] % 64 : len;
        if (i >= nsizes) piece = len - pos; /* the rest at once */
        if (piece > len - pos) piece = len - pos;
        char *buf = malloc(plen + piece);
        CHECK(buf != NULL);
        if (plen) memcpy(buf, pending, plen);
        memcpy(buf + plen, data + pos, piece);
        free(pending);
        pos += piece;
        size_t n = plen + piece;
        size_t used = cut(f, buf, n, r);
        if (r->last < 0) { /* an error is final, as a stream's is */
            free(buf);
            r->left = n - used + (len - pos);
            return;
        }
        pending = malloc(n - used ? n - used : 1);
        CHECK(pending != NULL);
        memcpy(pending, buf + used, n - used);
        plen = n - used;
        free(buf);
    }
    free(pending);
    r->left = plen + (len - pos);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    csock_framing f = {0};
    uint8_t k = fz_byte(&in);
    f.kind = (k & 1) ? CSOCK_FRAME_LP32 : CSOCK_FRAME_LINE;
    f.keep_delimiter = (k >> 1) & 1;
    uint32_t m = fz_byte(&in);
    /* small limits mostly (they are where the edges are), a huge one now and then */
    f.max = (k & 4) ? (size_t)-1 - m : m;
    size_t nsizes;
    const uint8_t *sizes = fz_take(&in, fz_byte(&in) % 32, &nsizes);

    result a = {0, 14695981039346656037u, 0, 0}, b = a;
    whole(&f, in.p, in.len, &a);
    pieces(&f, in.p, in.len, sizes, nsizes, &b);
    if (a.n == MAX_MSGS || b.n == MAX_MSGS) return 0; /* cut short: not comparable */
    CHECK(a.n == b.n && a.hash == b.hash);
    CHECK(a.last == b.last || (a.last == 0 && b.last == 0));
    CHECK(a.left == b.left);
    return 0;
}
