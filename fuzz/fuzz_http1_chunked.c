/* libFuzzer target for the HTTP/1 chunked-body decoder
 * (csock_http_chunked_decode in src/proto/http1_parse.c) under random
 * chunkings and limits; fuzz_http1_parse covers it whole and byte by byte
 * after a request head, this one goes deeper into the decoder alone.
 *
 * Input: limits (max_body, max_ext, max_trailer: 3 bytes), the piece sizes
 * (a count byte, then the sizes), then the body bytes.
 * Checks:
 *  - consumed never exceeds what was given; DATA slices lie inside the
 *    piece and are never empty; INCOMPLETE means the whole piece was used;
 *  - an error is sticky (the next call says EBADREQ) and DONE is too (0
 *    bytes used);
 *  - the decoded body (length and hash), the bytes consumed and the final
 *    result are the same for the body at once and in the random pieces;
 *  - never more than max_body decoded bytes.
 */
#include <string.h>

#include "fuzz_common.h"
#include "proto/http1_parse.h"

typedef struct outcome {
    int status;
    size_t consumed;
    uint64_t body_len, body_hash;
} outcome;

static void limits(csock_http_chunked *st, const uint8_t lim[3])
{
    static const uint64_t bodies[] = {0, 1, 15, 16, 255, 4096, 1u << 20, UINT64_MAX};
    csock_http_chunked_init(st, bodies[lim[0] % 8]);
    if (lim[1] & 0x80) st->max_ext = lim[1] & 0x7f;
    if (lim[2] & 0x80) st->max_trailer = (uint32_t)(lim[2] & 0x7f) * 4;
}

/* Decode one piece; false once the body ended or failed. */
static bool feed(csock_http_chunked *st, const char *buf, size_t len, outcome *o)
{
    size_t pos = 0;
    for (;;) {
        size_t used = 0;
        csock_http_slice data = {0};
        int r = csock_http_chunked_decode(st, buf + pos, len - pos, &used, &data);
        CHECK(used <= len - pos);
        if (r == CSOCK_HTTP_CHUNK_DATA) {
            CHECK(data.len > 0 && data.ptr >= buf + pos && data.ptr + data.len <= buf + pos + used);
            for (size_t i = 0; i < data.len; i++)
                o->body_hash = (o->body_hash ^ (unsigned char)data.ptr[i]) * 1099511628211u;
            o->body_len += data.len;
        }
        pos += used;
        o->consumed += used;
        o->status = r;
        if (r == CSOCK_HTTP_CHUNK_DATA) continue;
        if (r == CSOCK_HTTP_INCOMPLETE) {
            CHECK(pos == len);
            return true;
        }
        /* final: and it stays final */
        int again = csock_http_chunked_decode(st, "0\r\n\r\n", 5, &used, &data);
        if (r == CSOCK_HTTP_CHUNK_DONE)
            CHECK(again == CSOCK_HTTP_CHUNK_DONE && used == 0);
        else
            CHECK(csock_http_status(r) != 0 && again == CSOCK_HTTP_EBADREQ);
        return false;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t lim[3] = {fz_byte(&in), fz_byte(&in), fz_byte(&in)};
    size_t nsizes;
    const uint8_t *sizes = fz_take(&in, fz_byte(&in) % 64, &nsizes);

    csock_http_chunked st;
    outcome whole = {CSOCK_HTTP_INCOMPLETE, 0, 0, 14695981039346656037u}, cut = whole;

    char *all = malloc(in.len ? in.len : 1);
    CHECK(all != NULL);
    memcpy(all, in.p, in.len);
    limits(&st, lim);
    feed(&st, all, in.len, &whole);
    free(all);

    limits(&st, lim);
    size_t pos = 0;
    for (size_t i = 0; pos < in.len; i++) {
        size_t piece = i < nsizes ? (size_t)sizes[i] % 48 : in.len - pos;
        if (piece > in.len - pos) piece = in.len - pos;
        char *p = malloc(piece ? piece : 1); /* exact size: over-reads show */
        CHECK(p != NULL);
        memcpy(p, in.p + pos, piece);
        bool more = feed(&st, p, piece, &cut);
        free(p);
        pos += piece;
        if (!more) break;
    }
    CHECK(whole.status == cut.status);
    CHECK(whole.consumed == cut.consumed);
    CHECK(whole.body_len == cut.body_len && whole.body_hash == cut.body_hash);
    CHECK(whole.body_len <= st.max_body);
    return 0;
}
