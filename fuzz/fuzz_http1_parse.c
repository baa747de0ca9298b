/* libFuzzer target for src/proto/http1_parse.c.
 *
 * Beyond "no crash, no sanitizer report" it checks the contract:
 *  - a result is a length in 1..len, INCOMPLETE, or an error with a status;
 *  - a parsed head's slices lie inside it and its facts are consistent;
 *  - the result does not depend on bytes after the head, and any shorter
 *    prefix of a parsed head is INCOMPLETE (errors never come from a prefix
 *    of something valid);
 *  - the chunked decoder gives the same body, end and status whether fed the
 *    whole input at once or one byte at a time (each byte in its own 1-byte
 *    allocation, so an over-read is caught by ASan).
 */
#include <string.h>

#include "fuzz_common.h"
#include "proto/http1_parse.h"

#define MAX_FIELDS 16

static bool inside(csock_http_slice s, const char *buf, size_t len)
{
    return s.len <= len && s.ptr >= buf && s.ptr + s.len <= buf + len;
}

static int parse(const char *buf, size_t len, csock_http_request *req, csock_http_header *f,
                 const csock_http_limits *lim)
{
    req->headers = f;
    req->max_headers = MAX_FIELDS;
    return csock_http_parse_request(buf, len, req, lim);
}

static void check_head(const char *buf, size_t len, const csock_http_limits *lim)
{
    csock_http_request req, again;
    csock_http_header f[MAX_FIELDS], g[MAX_FIELDS];
    int r = parse(buf, len, &req, f, lim);

    if (r == CSOCK_HTTP_INCOMPLETE) return;
    if (r < 0) {
        CHECK(csock_http_status(r) != 0);
        /* an error is final: a longer input could not have been valid either,
         * and a shorter prefix is incomplete or the same error */
        int h = parse(buf, len / 2, &again, g, lim);
        CHECK(h == CSOCK_HTTP_INCOMPLETE || h == r);
        return;
    }
    CHECK((size_t)r <= len);
    CHECK(inside(req.method, buf, (size_t)r) && req.method.len > 0);
    CHECK(inside(req.target, buf, (size_t)r) && req.target.len > 0);
    CHECK(req.minor_version == 0 || req.minor_version == 1);
    CHECK(req.num_headers <= MAX_FIELDS);
    for (size_t i = 0; i < req.num_headers; i++) {
        CHECK(inside(req.headers[i].name, buf, (size_t)r) && req.headers[i].name.len > 0);
        CHECK(inside(req.headers[i].value, buf, (size_t)r));
    }
    CHECK(!(req.chunked && req.content_length >= 0));
    CHECK(req.content_length >= -1);
    CHECK(req.minor_version == 0 || req.has_host);

    CHECK(parse(buf, (size_t)r, &again, g, lim) == r);
    CHECK(again.num_headers == req.num_headers && again.content_length == req.content_length);
    CHECK(parse(buf, (size_t)r - 1, &again, g, lim) == CSOCK_HTTP_INCOMPLETE);
}

typedef struct outcome {
    int status;
    size_t consumed;
    uint64_t body_len;
    uint64_t body_hash; /* FNV-1a of the decoded bytes */
} outcome;

static void absorb(outcome *o, const char *buf, size_t len, csock_http_slice data)
{
    CHECK(data.len > 0 && inside(data, buf, len));
    for (size_t i = 0; i < data.len; i++)
        o->body_hash = (o->body_hash ^ (unsigned char)data.ptr[i]) * 1099511628211u;
    o->body_len += data.len;
}

/* Feed one piece; false once the body ended or failed. */
static bool feed(csock_http_chunked *st, const char *buf, size_t len, outcome *o)
{
    size_t pos = 0;
    for (;;) {
        size_t used;
        csock_http_slice data;
        int r = csock_http_chunked_decode(st, buf + pos, len - pos, &used, &data);
        CHECK(used <= len - pos);
        pos += used;
        o->consumed += used;
        o->status = r;
        if (r == CSOCK_HTTP_CHUNK_DATA) {
            absorb(o, buf + pos - used, used, data);
            continue;
        }
        if (r == CSOCK_HTTP_INCOMPLETE)
            CHECK(pos == len);
        else
            CHECK(r == CSOCK_HTTP_CHUNK_DONE || csock_http_status(r) != 0);
        return r == CSOCK_HTTP_INCOMPLETE;
    }
}

static void check_chunked(const char *buf, size_t len, uint64_t max_body)
{
    csock_http_chunked st;
    outcome whole = {CSOCK_HTTP_INCOMPLETE, 0, 0, 14695981039346656037u};
    outcome bytes = whole;

    csock_http_chunked_init(&st, max_body);
    feed(&st, buf, len, &whole);

    csock_http_chunked_init(&st, max_body);
    char *one = malloc(1);
    CHECK(one != NULL);
    for (size_t i = 0; i < len; i++) {
        one[0] = buf[i];
        if (!feed(&st, one, 1, &bytes)) break;
    }
    free(one);
    CHECK(whole.status == bytes.status);
    CHECK(whole.consumed == bytes.consumed);
    CHECK(whole.body_len == bytes.body_len && whole.body_hash == bytes.body_hash);
    CHECK(whole.body_len <= max_body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    const csock_http_limits small = {.max_request_line = 64, .max_head = 256};
    csock_http_request req;
    csock_http_header f[MAX_FIELDS];

    check_head(buf, size, NULL);
    check_head(buf, size, &small);

    /* Decode whatever follows a parsed head (or the whole input) as chunked. */
    int r = parse(buf, size, &req, f, NULL);
    size_t off = r > 0 ? (size_t)r : 0;
    check_chunked(buf + off, size - off, 1u << 20);
    check_chunked(buf + off, size - off, 16);
    return 0;
}
