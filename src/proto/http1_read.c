/* Reading requests: the connection's read callback parses every complete
 * request in the stream's buffer, copies it out (see "the request's
 * lifetime" below), dispatches it to its route and goes on with the next
 * once the answer is complete. See http1_server.c for the whole picture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/http1_int.h"

/* The least storage kept for a request's copy: most heads are a few hundred
 * bytes, so one allocation serves a keep-alive connection's requests. */
#define RQ_FIRST_CAP 1024

/* ---- requests --------------------------------------------------------------------- */

/* The request's lifetime (csock/http.h): valid until its answer completes.
 * The stream's read buffer cannot give that: unconsumed input moves when
 * more arrives (reserve() slides or grows it), completion I/O hands bytes
 * from a ring buffer that is reused at once, and consumed input goes back
 * to the loop's buffer pool for the next connection's read. So every
 * complete request is copied (head and body, one memcpy) into storage the
 * connection owns before its handler runs: an answer given later, its log
 * line, and any pointer the handler took during its call stay valid, and
 * the stream stays free to do with its buffer what it likes. */

static csock_http_slice moved(csock_http_slice s, const char *from, const char *to)
{
    if (s.ptr) s.ptr = to + (s.ptr - from);
    return s;
}

/* No request: its strings read as absent. Between requests and after a
 * parse that found no complete head, so a 400 or a 408 never shows the log
 * a half-parsed or an earlier request. */
void csock__http_clear_request(csock_http_req *r)
{
    r->p = (csock_http_request){.headers = r->hdrs, .max_headers = r->hcap,
                                .minor_version = 1, .content_length = -1};
    r->path = r->query = (csock_http_str){NULL, 0};
    r->body = (csock_http_str){"", 0};
}

/* Copy the head buf[0..head), with room for `body` bytes after it, into the
 * connection's storage and point the parsed request there. */
static int keep_head(conn *c, const char *buf, size_t head, size_t body)
{
    csock_http_req *r = &c->req;
    size_t need = head + body;
    if (need > c->rqcap) {
        size_t cap = need < RQ_FIRST_CAP ? RQ_FIRST_CAP : need;
        char *p = malloc(cap); /* nothing in the old one is needed: not realloc */
        if (!p) return -ENOMEM;
        free(c->rq);
        c->rq = p;
        c->rqcap = cap;
    }
    memcpy(c->rq, buf, head);
    r->p.method = moved(r->p.method, buf, c->rq);
    r->p.target = moved(r->p.target, buf, c->rq);
    for (size_t i = 0; i < r->p.num_headers; i++) {
        r->hdrs[i].name = moved(r->hdrs[i].name, buf, c->rq);
        r->hdrs[i].value = moved(r->hdrs[i].value, buf, c->rq);
    }
    r->body = (csock_http_str){"", 0};
    return 0;
}

/* Storage grown for a large request goes once its answer is out: an idle
 * keep-alive connection holds no body. */
#define KEEP_STORAGE 16384

static void drop_big_request(conn *c)
{
    if (c->rqcap <= KEEP_STORAGE) return;
    csock__http_clear_request(&c->req);
    free(c->rq);
    c->rq = NULL;
    c->rqcap = 0;
}

static void dispatch(conn *c)
{
    csock_http_server *hs = c->hs;
    csock_http_req *r = &c->req;
    const char *t = r->p.target.ptr;
    size_t tl = r->p.target.len;
    const char *q = memchr(t, '?', tl);
    r->path = (csock_http_str){t, q ? (size_t)(q - t) : tl};
    r->query = q ? (csock_http_str){q + 1, tl - (size_t)(q - t) - 1} : (csock_http_str){NULL, 0};
    r->head = r->p.method.len == 4 && !memcmp(r->p.method.ptr, "HEAD", 4);
    r->started = r->streaming = r->chunked_out = r->oom = r->dropped = r->offers_upgrade = 0;
    r->left = -1;
    r->close = !r->p.keep_alive;
    c->busy = 1;
    c->sent_continue = 0;
    for (size_t i = 0; i < hs->o.nroutes; i++) {
        const csock_http_route *rt = &hs->routes[i];
        csock_http_str m = {r->p.method.ptr, r->p.method.len};
        if (rt->method && !csock__http_lower_eq(m, rt->method)) continue;
        size_t pl = rt->prefix ? strlen(rt->prefix) : 0;
        if (pl && (r->path.len < pl || memcmp(r->path.ptr, rt->prefix, pl))) continue;
        rt->handler(r, rt->data);
        return;
    }
    if (hs->o.handler)
        hs->o.handler(r, hs->o.data);
    else
        csock_http_send(r, 404, "404 Not Found\n", 14);
}

/* The chunked body starting at buf: complete? Then its encoded length, and
 * its decoded one in *decoded; 0 when more input is needed; an http error
 * code. */
static long chunked_extent(conn *c, const char *buf, size_t len, size_t *decoded)
{
    csock_http_chunked st;
    size_t pos = 0, used, sum = 0;
    csock_http_slice d;
    int rc;
    csock_http_chunked_init(&st, c->hs->o.max_body);
    while ((rc = csock_http_chunked_decode(&st, buf + pos, len - pos, &used, &d)) ==
           CSOCK_HTTP_CHUNK_DATA) {
        pos += used;
        sum += d.len;
    }
    if (rc == CSOCK_HTTP_INCOMPLETE) return 0;
    if (rc < 0) return rc;
    *decoded = sum;
    return (long)(pos + used);
}

/* Copy the data of the complete chunked body buf[0..len) to dst. */
static void dechunk(const char *buf, size_t len, char *dst)
{
    csock_http_chunked st;
    size_t pos = 0, used;
    csock_http_slice d;
    csock_http_chunked_init(&st, UINT64_MAX); /* checked by chunked_extent */
    while (csock_http_chunked_decode(&st, buf + pos, len - pos, &used, &d) == CSOCK_HTTP_CHUNK_DATA) {
        memcpy(dst, d.ptr, d.len);
        dst += d.len;
        pos += used;
    }
}

/* No room for the request's copy: 500, and end. */
static long no_memory(conn *c)
{
    csock__http_clear_request(&c->req);
    csock__http_send_error(c, 500);
    return -1;
}

/* The head buf[0..head) is complete but the request is refused: answer
 * `status` (the log sees the head) and end. */
static long refuse(conn *c, const char *buf, size_t head, int status)
{
    if (keep_head(c, buf, head, 0) < 0) return no_memory(c);
    csock__http_send_error(c, status);
    return -1;
}

/* Handle the request at the start of buf. Returns the bytes it took (> 0),
 * 0 when more input is needed, or -1 when the connection is ending. */
static long handle_one(conn *c, char *buf, size_t len)
{
    csock_http_server *hs = c->hs;
    csock_http_req *r = &c->req;
    r->p.headers = r->hdrs;
    r->p.max_headers = r->hcap;
    c->want_body = 0;
    int rc = csock_http_parse_request(buf, len, &r->p, &hs->limits);
    if (rc == CSOCK_HTTP_EHDRTOOBIG && r->p.num_headers == r->hcap && r->hcap < MAX_HEADERS) {
        /* More fields than the connection holds in itself: room for all
         * that are allowed, and the head parsed again (rare, see
         * INLINE_HEADERS). */
        csock_http_header *h = malloc(MAX_HEADERS * sizeof *h);
        if (!h) return no_memory(c);
        r->hdrs = r->p.headers = h;
        r->hcap = r->p.max_headers = MAX_HEADERS;
        rc = csock_http_parse_request(buf, len, &r->p, &hs->limits);
    }
    if (rc < 0) {
        csock__http_clear_request(r);
        if (rc == CSOCK_HTTP_INCOMPLETE) return 0;
        csock__http_send_error(c, csock_http_status(rc));
        return -1;
    }
    size_t head = (size_t)rc, enc = 0, blen = 0;
    if (r->p.chunked) {
        long n = chunked_extent(c, buf + head, len - head, &blen);
        if (n < 0) return refuse(c, buf, head, csock_http_status((int)n));
        if (n == 0) goto need_body;
        enc = (size_t)n;
    } else if (r->p.content_length > 0) {
        if ((uint64_t)r->p.content_length > hs->o.max_body) return refuse(c, buf, head, 413);
        if (len - head < (uint64_t)r->p.content_length) goto need_body;
        enc = blen = (size_t)r->p.content_length;
    }
    if (keep_head(c, buf, head, blen) < 0) return no_memory(c);
    char *body = c->rq + head;
    if (r->p.chunked)
        dechunk(buf + head, enc, body);
    else if (blen)
        memcpy(body, buf + head, blen);
    r->body = (csock_http_str){body, blen};
    dispatch(c);
    if (c->upgraded) return (long)(head + enc); /* the rest is the new owner's */
    return c->closing ? -1 : (long)(head + enc);
need_body:
    if (keep_head(c, buf, head, 0) < 0) return no_memory(c);
    c->want_body = 1;
    if (r->p.expect_continue && !c->sent_continue) {
        c->sent_continue = 1;
        csock__http_out_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    return 0;
}

/* The keep-alive clock runs only once the answer is out: a large file to a
 * slow (but reading) client may take longer than the keep-alive timeout,
 * and cutting it would lose the rest of the answer. While bytes wait, the
 * stream's write timeout (send_timeout) is the one that applies. */
static void on_answer_sent(csock_stream *s, int status)
{
    conn *c = csock_stream_data(s);
    csock_stream_on_drain(s, NULL);
    if (status == 0 && c->hs && !c->closing && c->tl == TL_NONE && !c->busy)
        csock__http_tl_set(c, TL_KEEPALIVE);
}

static void keepalive(conn *c)
{
    drop_big_request(c);
    if (csock_stream_write_queue_size(c->s)) {
        csock__http_tl_remove(c);
        csock_stream_on_drain(c->s, on_answer_sent);
        return;
    }
    csock__http_tl_set(c, TL_KEEPALIVE);
}

static void on_drained(csock_stream *s, int status)
{
    conn *c = csock_stream_data(s);
    csock_stream_on_drain(s, NULL);
    if (status == 0 && c->hs && !c->closing) csock__http_conn_next(c);
}

/* Read on: buffered input is offered again by the stream. */
void csock__http_conn_next(conn *c)
{
    if (c->peer_eof) {
        c->closing = 1;
        csock__http_tl_remove(c);
        csock_stream_end(c->s, NULL);
        return;
    }
    keepalive(c);
    csock_stream_read_start(c->s, csock__http_on_read);
}

static void conn_fail(conn *c, int status)
{
    /* While a handler holds the request, the answer is its own: just close. */
    if (status == CSOCK_ETOOBIG && !c->busy) return csock__http_send_error(c, c->want_body ? 413 : 431);
    c->closing = 1;
    csock__http_tl_remove(c);
    csock_stream_close(c->s, NULL);
}

size_t csock__http_on_read(csock_stream *s, int status, const char *buf, size_t len)
{
    conn *c = csock_stream_data(s);
    if (!c->hs || c->closing) return len;
    if (status < 0 && status != CSOCK_EOF) {
        conn_fail(c, status);
        return len;
    }
    size_t used = 0;
    unsigned batch = 0;
    c->in_read = 1;
    while (used < len && !c->busy && !c->closing) {
        long n = handle_one(c, (char *)buf + used, len - used);
        if (n <= 0) break;
        used += (size_t)n;
        if (c->upgraded) break;
        if (++batch >= BATCH_MAX || csock_stream_write_queue_size(s) > QUEUE_MAX) {
            /* Enough answers queued: take more requests once they are out. */
            if (used < len && !c->busy && !c->closing) {
                csock_stream_read_stop(s);
                csock_stream_on_drain(s, on_drained);
                csock__http_tl_remove(c);
                c->in_read = 0;
                csock__http_out_flush(c);
                return used;
            }
            break;
        }
    }
    c->in_read = 0;
    if (c->upgraded) return csock__http_upgraded_rest(c, s, status, buf, used, len);
    csock__http_out_flush(c);
    if (c->closing || !c->hs) return len;
    if (status == CSOCK_EOF) {
        c->peer_eof = 1;
        if (!c->busy) {
            c->closing = 1;
            csock__http_tl_remove(c);
            csock_stream_end(s, NULL);
        }
        return len;
    }
    if (c->busy) {
        csock__http_tl_remove(c);
        csock_stream_read_stop(s); /* answered later: the rest waits */
    } else if (used < len) {
        csock__http_tl_set(c, c->want_body ? TL_BODY : TL_HEADER);
    } else {
        keepalive(c);
    }
    return used;
}

/* The request that upgraded the connection ended at buf[used]: what the
 * client sent after it is the new protocol's, offered to its reader in this
 * same call, together with an EOF that came with it (what the reader leaves
 * the stream offers it again). The connection is no longer needed. */
size_t csock__http_upgraded_rest(conn *c, csock_stream *s, int status, const char *buf, size_t used,
                                 size_t len)
{
    csock_read_cb cb = c->up_cb;
    csock__http_conn_free(c);
    if (used == len && status == 0) return len;
    return used + cb(s, status, buf + used, len - used);
}
