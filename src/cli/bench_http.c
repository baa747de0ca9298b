/* csock bench --http: see bench_http.h. The parser is for measuring a
 * server, not for browsing: it needs the status and where the response
 * ends, and nothing else of the head. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/bench_http.h"

enum { H_HEAD, H_BODY, H_CHUNK_LINE, H_CHUNK_DATA, H_TRAILER };

char *bench_http_request(const bench_http_req *rq, size_t *len)
{
    int own_host = 1;
    size_t n = strlen(rq->method) + strlen(rq->path) + strlen(rq->host) + 64 + rq->body_len;
    for (unsigned i = 0; i < rq->nheaders; i++) {
        n += strlen(rq->headers[i]) + 2;
        if (!strncasecmp(rq->headers[i], "host:", 5)) own_host = 0;
    }
    unsigned copies = rq->copies ? rq->copies : 1;
    char *req = malloc(n * copies);
    if (!req) return NULL;
    size_t m = (size_t)snprintf(req, n, "%s %s HTTP/1.1\r\n", rq->method, rq->path);
    if (own_host) m += (size_t)snprintf(req + m, n - m, "Host: %s\r\n", rq->host);
    for (unsigned i = 0; i < rq->nheaders; i++) m += (size_t)snprintf(req + m, n - m, "%s\r\n", rq->headers[i]);
    if (rq->body) m += (size_t)snprintf(req + m, n - m, "Content-Length: %zu\r\n", rq->body_len);
    memcpy(req + m, "\r\n", 2);
    m += 2;
    if (rq->body) memcpy(req + m, rq->body, rq->body_len);
    m += rq->body_len;
    for (unsigned i = 1; i < copies; i++) memcpy(req + i * m, req, m);
    *len = m;
    return req;
}

/* Does the field line [p, end) name `name` ("Content-Length")? Then the
 * value, leading blanks skipped. */
static const char *field(const char *p, const char *end, const char *name)
{
    size_t n = strlen(name);
    if ((size_t)(end - p) <= n || p[n] != ':' || strncasecmp(p, name, n)) return NULL;
    for (p += n + 1; p < end && (*p == ' ' || *p == '\t'); p++) {
    }
    return p;
}

static int has_token(const char *v, const char *end, const char *token)
{
    size_t n = strlen(token);
    for (; v + n <= end; v++)
        if (!strncasecmp(v, token, n)) return 1;
    return 0;
}

/* The head, once all of it is there: status, framing, Connection. */
static ssize_t parse_head(bench_http_resp *r, const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) return len > BENCH_HTTP_MAX_HEAD ? -EPROTO : 0;
    /* "HTTP/1.x NNN" */
    if (end - buf < 12 || memcmp(buf, "HTTP/1.", 7) || buf[8] != ' ') return -EPROTO;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') return -EPROTO;
        st = st * 10 + (buf[i] - '0');
    }
    r->status = st;
    r->close = buf[7] == '0';
    r->body_left = 0;
    int has_length = 0, chunked = 0;
    const char *p = memchr(buf, '\n', (size_t)(end - buf));
    for (p = p ? p + 1 : end + 2; p < end + 2;) {
        const char *eol = memchr(p, '\r', (size_t)(end + 2 - p));
        const char *v;
        if ((v = field(p, eol, "Content-Length"))) {
            char *e;
            r->body_left = strtoull(v, &e, 10);
            if (e == v) return -EPROTO;
            has_length = 1;
        } else if ((v = field(p, eol, "Transfer-Encoding"))) {
            chunked = has_token(v, eol, "chunked");
        } else if ((v = field(p, eol, "Connection"))) {
            if (has_token(v, eol, "close")) r->close = 1;
            if (has_token(v, eol, "keep-alive")) r->close = 0;
        }
        p = eol + 2;
    }
    /* No length: a body until the close, which a benchmark cannot use,
     * except where there is never a body. */
    if (r->head) r->body_left = 0, r->state = H_BODY; /* whatever the head says */
    else if (chunked) r->state = H_CHUNK_LINE;
    else if (has_length || st / 100 == 1 || st == 204 || st == 304) r->state = H_BODY;
    else return -EPROTO;
    return end + 4 - buf;
}

/* One line of a chunked body: a chunk's size ("SIZE[;ext]"), or a trailer
 * line (an empty one ends the response). */
static ssize_t parse_line(bench_http_resp *r, const char *buf, size_t len, int *end)
{
    const char *eol = memmem(buf, len, "\r\n", 2);
    if (!eol) return len > 4096 ? -EPROTO : 0;
    if (r->state == H_TRAILER) {
        *end = eol == buf;
        return eol + 2 - buf;
    }
    char *e;
    uint64_t n = strtoull(buf, &e, 16);
    if (e == buf) return -EPROTO;
    if (n == 0) {
        r->state = H_TRAILER;
    } else {
        r->state = H_CHUNK_DATA;
        r->body_left = n + 2; /* the data and its CRLF */
    }
    return eol + 2 - buf;
}

ssize_t bench_http_parse(bench_http_resp *r, const char *buf, size_t len, int *done)
{
    size_t used = 0;
    int end = 0;
    *done = 0;
    while (!end) {
        ssize_t n;
        switch (r->state) {
        case H_HEAD: n = parse_head(r, buf + used, len - used); break;
        case H_BODY:
        case H_CHUNK_DATA:
            n = (ssize_t)(len - used < r->body_left ? len - used : r->body_left);
            r->body_left -= (uint64_t)n;
            if (!r->body_left) {
                end = r->state == H_BODY;
                r->state = H_CHUNK_LINE;
            }
            break;
        default: n = parse_line(r, buf + used, len - used, &end); break;
        }
        if (n < 0) return n;
        used += (size_t)n;
        if (n == 0 && !end) return (ssize_t)used; /* more bytes needed */
    }
    *done = r->status;
    r->state = H_HEAD;
    return (ssize_t)used;
}
