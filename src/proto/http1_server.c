/* The HTTP/1.1 server: connections over csock streams, requests parsed in
 * place, answers written through the stream's write queue. See csock/http.h.
 *
 * A connection is a small state machine driven by the stream's read
 * callback: it parses every complete request in the buffer and answers each
 * before looking at the next, so pipelined answers queue up while the stream
 * holds writes (inside its read callback) and leave in one syscall. An
 * answer given later (an asynchronous handler, a streamed body) stops
 * reading until it completes; the rest of the buffer waits in the stream.
 *
 * Timeouts: each connection waiting for a head, a body or the next request
 * sits on one of three FIFO lists of the server. Every entry of one list has
 * the same duration, so the lists are sorted by deadline and a single
 * housekeeping timer per loop pops expired heads: no timer per connection,
 * and a client trickling one byte a second cannot extend its deadline. The
 * stream's write timeout (send_timeout) catches connections that stop
 * taking our answers; an answer that is slow to produce is not cut by it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "csock/csock.h"
#include "proto/http1_parse.h"

#define MAX_HEADERS 100
#define BATCH_MAX 64                 /* answers queued per read before waiting for the client */
#define QUEUE_MAX (256u * 1024)      /* ...or this many bytes queued */
#define SMALL_FILE 8192              /* files up to this go with the head in one write */
#define TICK_MS 250                  /* housekeeping resolution */

enum { TL_HEADER, TL_BODY, TL_KEEPALIVE, TL_COUNT, TL_NONE = TL_COUNT };

typedef struct conn conn;

struct csock_http_req {
    conn *c;
    csock_http_request p;           /* the parsed head; slices of the read buffer */
    csock_http_header hdrs[MAX_HEADERS];
    csock_http_str path, query, body;
    char *extra;                    /* fields added with csock_http_add_header */
    size_t elen, ecap;
    unsigned head : 1;              /* HEAD: no body bytes in the answer */
    unsigned started : 1;           /* the answer's head is written */
    unsigned streaming : 1;         /* between csock_http_start and csock_http_end */
    unsigned chunked_out : 1;       /* the streamed body goes as chunks */
    unsigned close : 1;             /* close the connection after this answer */
};

struct conn {
    csock_http_server *hs;          /* NULL once the server has let go of us */
    csock_stream *s;
    conn *next, *prev;              /* the server's connections */
    conn *tnext, *tprev;            /* the timeout list we are on */
    uint64_t deadline;
    unsigned char tl;               /* which list (TL_NONE: none) */
    unsigned busy : 1;              /* a request is being answered */
    unsigned in_read : 1;           /* inside on_read: it continues with the next request */
    unsigned closing : 1;           /* ending: no more requests */
    unsigned peer_eof : 1;          /* the client finished sending */
    unsigned sent_continue : 1;     /* 100 Continue sent for the current request */
    unsigned want_body : 1;         /* the last parse found a head waiting for its body */
    char *ob;                       /* answers made inside on_read, queued by reference */
    size_t olen, ocap;              /* when it returns (see out_write) */
    csock_http_req req;
};

struct csock_http_server {
    csock_loop *loop;
    csock_http_opts o;
    csock_http_route *routes;
    conn *conns;
    unsigned nconns;
    struct {
        conn *head, *tail;
    } tl[TL_COUNT];
    uint64_t tl_ms[TL_COUNT];
    csock_timer *timer;
    uint64_t date_next;             /* loop time at which the Date line goes stale */
    char date[48];                  /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    char server[80];                /* "Server: csock\r\n" */
    size_t server_len;
    csock_http_limits limits;
    size_t max_read;
};

/* ---- small helpers -------------------------------------------------------------- */

static int lower_eq(csock_http_str s, const char *name)
{
    size_t n = strlen(name);
    if (s.len != n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s.ptr[i], b = (unsigned char)name[i];
        if (a >= 'A' && a <= 'Z') a |= 0x20;
        if (b >= 'A' && b <= 'Z') b |= 0x20;
        if (a != b) return 0;
    }
    return 1;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do tmp[n++] = (char)('0' + v % 10);
    while (v /= 10);
    while (n) *p++ = tmp[--n];
    return p;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUTS(p, lit) put((p), (lit), sizeof(lit) - 1)

const char *csock_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

void csock_http_date(int64_t t, char *buf)
{
    static const char wd[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char mo[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday % 7],
             tm.tm_mday, mo[tm.tm_mon % 12], (tm.tm_year + 1900) % 10000, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    memcpy(buf, tmp, 30); /* 29 characters and the NUL */
}

/* The Date line is rebuilt at most once per second: at the loop time when
 * the wall clock's second next changes. */
static const char *date_line(csock_http_server *hs)
{
    uint64_t now = csock_loop_now(hs->loop);
    if (now >= hs->date_next) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        memcpy(hs->date, "Date: ", 6);
        csock_http_date(ts.tv_sec, hs->date + 6);
        memcpy(hs->date + 35, "\r\n", 3);
        hs->date_next = now + 1000 - (uint64_t)(ts.tv_nsec / 1000000);
    }
    return hs->date;
}

/* ---- timeout lists --------------------------------------------------------------- */

static void tl_remove(conn *c)
{
    if (c->tl == TL_NONE || !c->hs) return;
    csock_http_server *hs = c->hs;
    if (c->tprev) c->tprev->tnext = c->tnext;
    else hs->tl[c->tl].head = c->tnext;
    if (c->tnext) c->tnext->tprev = c->tprev;
    else hs->tl[c->tl].tail = c->tprev;
    c->tnext = c->tprev = NULL;
    c->tl = TL_NONE;
}

/* Put c on list `which`; staying on the same list keeps the deadline (so a
 * head's clock starts at its first byte and trickling does not reset it),
 * except for keep-alive, which restarts after every answer. */
static void tl_set(conn *c, int which)
{
    csock_http_server *hs = c->hs;
    if (!hs || (c->tl == which && which != TL_KEEPALIVE)) return;
    tl_remove(c);
    c->tl = (unsigned char)which;
    c->deadline = csock_loop_now(hs->loop) + hs->tl_ms[which];
    c->tprev = hs->tl[which].tail;
    if (c->tprev) c->tprev->tnext = c;
    else hs->tl[which].head = c;
    hs->tl[which].tail = c;
}

static void send_error(conn *c, int status);

static void on_tick(csock_timer *t)
{
    csock_http_server *hs = csock_timer_data(t);
    uint64_t now = csock_loop_now(hs->loop);
    for (int i = 0; i < TL_COUNT; i++) {
        conn *c;
        while ((c = hs->tl[i].head) && c->deadline <= now) {
            tl_remove(c);
            if (i == TL_KEEPALIVE) {
                c->closing = 1;
                csock_stream_close(c->s, NULL); /* idle: nothing to say */
            } else {
                send_error(c, 408); /* ends the connection */
            }
        }
    }
}

/* ---- answers ------------------------------------------------------------------- */

static void conn_next(conn *c);
static size_t on_read(csock_stream *s, int status, const char *buf, size_t len);

/* Output. Inside on_read, answers are appended to the connection's own
 * buffer and queued by reference once when it returns: all pipelined answers
 * leave in one chunk, and a write queued that way does not make the stream
 * register for writability first (csock_stream_write does, costing two
 * epoll_ctl calls per answer). Elsewhere they go straight to the stream. */
static void release_ob(void *ob) { free(ob); }

static void out_flush(conn *c)
{
    if (!c->olen) return;
    char *ob = c->ob;
    size_t n = c->olen;
    c->ob = NULL;
    c->olen = c->ocap = 0;
    csock_stream_write_ref(c->s, ob, n, release_ob, ob);
}

static int out_write(conn *c, const struct iovec *iov, int n)
{
    if (!c->in_read) return csock_stream_writev(c->s, iov, n);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    if (c->olen + total > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 16384 - 64;
        while (cap < c->olen + total) cap *= 2;
        char *ob = realloc(c->ob, cap);
        if (!ob) return -ENOMEM;
        c->ob = ob;
        c->ocap = cap;
    }
    for (int i = 0; i < n; i++) {
        memcpy(c->ob + c->olen, iov[i].iov_base, iov[i].iov_len);
        c->olen += iov[i].iov_len;
    }
    return 0;
}

static int out_bytes(conn *c, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return out_write(c, &iov, 1);
}

/* Write the status line and fields. `clen` is the body length, -1 for a
 * streamed body; `body` is appended in the same write. */
static int write_head(csock_http_req *r, int status, int64_t clen, const void *body, size_t blen)
{
    conn *c = r->c;
    csock_http_server *hs = c->hs;
    if (!hs) return -EPIPE;
    if (r->started) return -EALREADY;
    r->started = 1;
    if (csock_stream_draining(c->s) || c->peer_eof) r->close = 1;
    char h[512], *p = h;
    const char *reason = csock_http_reason(status);
    p = PUTS(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)(status % 1000));
    *p++ = ' ';
    p = put(p, reason, strlen(reason));
    p = PUTS(p, "\r\n");
    p = put(p, hs->server, hs->server_len);
    p = put(p, date_line(hs), 37);
    int nobody = status < 200 || status == 204 || status == 304;
    if (clen >= 0 && !nobody) {
        p = PUTS(p, "Content-Length: ");
        p = put_u64(p, (uint64_t)clen);
        p = PUTS(p, "\r\n");
    } else if (clen < 0 && !nobody) {
        if (r->p.minor_version >= 1) {
            r->chunked_out = 1;
            p = PUTS(p, "Transfer-Encoding: chunked\r\n");
        } else {
            r->close = 1; /* HTTP/1.0: the body ends with the connection */
        }
    }
    if (r->close)
        p = PUTS(p, "Connection: close\r\n");
    else if (r->p.minor_version == 0)
        p = PUTS(p, "Connection: keep-alive\r\n");
    if (hs->o.log) hs->o.log(r, status, nobody ? 0 : clen, hs->o.log_data);
    struct iovec iov[3];
    int n = 0;
    if (r->elen) {
        iov[n++] = (struct iovec){h, (size_t)(p - h)};
        iov[n++] = (struct iovec){r->extra, r->elen};
        p = h + sizeof h - 2; /* the final CRLF goes in the spare tail of h */
        memcpy(p, "\r\n", 2);
        iov[n++] = (struct iovec){p, 2};
        int rc = out_write(c, iov, n);
        if (rc < 0 || !blen || r->head || nobody) return rc;
        return out_bytes(c, body, blen);
    }
    p = PUTS(p, "\r\n");
    iov[n++] = (struct iovec){h, (size_t)(p - h)};
    if (blen && !r->head && !nobody) iov[n++] = (struct iovec){(void *)body, blen};
    return out_write(c, iov, n);
}

/* The answer is complete: close if asked, else go on with the next request. */
static void finish(csock_http_req *r)
{
    conn *c = r->c;
    r->elen = 0;
    c->busy = 0;
    if (!c->hs) return;
    if (r->close || c->peer_eof) {
        c->closing = 1;
        tl_remove(c);
        out_flush(c);
        csock_stream_end(c->s, NULL);
        return;
    }
    if (!c->in_read) conn_next(c); /* answered later: read on */
}

int csock_http_send(csock_http_req *r, int status, const void *body, size_t len)
{
    if (!r->c->busy) return -EALREADY;
    int rc = write_head(r, status, (int64_t)len, body, len);
    if (rc == -EALREADY) return rc;
    finish(r);
    return rc;
}

int csock_http_send_file(csock_http_req *r, int status, int fd, off_t offset, size_t len,
                         int close_fd)
{
    if (!r->c->busy) {
        if (close_fd) close(fd);
        return -EALREADY;
    }
    int rc;
    if (len <= SMALL_FILE && !r->head) {
        char b[SMALL_FILE];
        ssize_t got = len ? pread(fd, b, len, offset) : 0;
        if (close_fd) close(fd);
        if (got != (ssize_t)len) {
            rc = got < 0 ? -errno : -EIO;
            r->close = 1;
            write_head(r, 500, 0, NULL, 0);
        } else {
            rc = write_head(r, status, (int64_t)len, b, len);
        }
    } else {
        rc = write_head(r, status, (int64_t)len, NULL, 0);
        if (rc == 0 && !r->head && len) {
            out_flush(r->c); /* the head goes before the file */
            rc = csock_stream_write_file(r->c->s, fd, offset, len, close_fd);
        }
        else if (close_fd)
            close(fd);
    }
    finish(r);
    return rc;
}

int csock_http_start(csock_http_req *r, int status)
{
    if (!r->c->busy) return -EALREADY;
    int rc = write_head(r, status, -1, NULL, 0);
    if (rc == 0 || rc == -EPIPE) r->streaming = 1;
    return rc;
}

int csock_http_write(csock_http_req *r, const void *buf, size_t len)
{
    if (!r->streaming) return -EINVAL;
    if (!r->c->hs) return -EPIPE;
    if (!len || r->head) return 0;
    if (!r->chunked_out) return out_bytes(r->c, buf, len);
    char sz[24];
    int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
    struct iovec iov[3] = {{sz, (size_t)n}, {(void *)buf, len}, {"\r\n", 2}};
    return out_write(r->c, iov, 3);
}

int csock_http_end(csock_http_req *r)
{
    if (!r->streaming) return -EINVAL;
    r->streaming = 0;
    int rc = 0;
    if (r->c->hs && r->chunked_out && !r->head) rc = out_bytes(r->c, "0\r\n\r\n", 5);
    r->chunked_out = 0;
    finish(r);
    return rc;
}

int csock_http_add_header(csock_http_req *r, const char *name, const char *value)
{
    if (r->started) return -EALREADY;
    size_t nl = strlen(name), vl = strlen(value);
    if (!nl || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return -EINVAL;
    size_t need = r->elen + nl + vl + 4;
    if (need > r->ecap) {
        size_t cap = r->ecap ? r->ecap * 2 : 256;
        while (cap < need) cap *= 2;
        char *e = realloc(r->extra, cap);
        if (!e) return -ENOMEM;
        r->extra = e;
        r->ecap = cap;
    }
    char *p = r->extra + r->elen;
    p = put(p, name, nl);
    p = PUTS(p, ": ");
    p = put(p, value, vl);
    p = PUTS(p, "\r\n");
    r->elen = (size_t)(p - r->extra);
    return 0;
}

void csock_http_close_after(csock_http_req *r) { r->close = 1; }

/* An error the connection cannot survive: answer it and end. */
static void send_error(conn *c, int status)
{
    csock_http_req *r = &c->req;
    if (!c->hs || c->closing) return;
    if (!r->started || !c->busy) {
        const char *reason = csock_http_reason(status);
        char body[64];
        int n = snprintf(body, sizeof body, "%d %s\n", status, reason);
        r->started = 0;
        r->elen = 0;
        r->head = 0;
        r->close = 1;
        r->p.minor_version = 1;
        c->busy = 1;
        csock_http_add_header(r, "Content-Type", "text/plain");
        write_head(r, status, n, body, (size_t)n);
    }
    c->busy = 0;
    c->closing = 1;
    tl_remove(c);
    out_flush(c);
    csock_stream_end(c->s, NULL);
}

/* ---- requests --------------------------------------------------------------------- */

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
    r->started = r->streaming = r->chunked_out = 0;
    r->close = !r->p.keep_alive;
    c->busy = 1;
    c->sent_continue = 0;
    for (size_t i = 0; i < hs->o.nroutes; i++) {
        const csock_http_route *rt = &hs->routes[i];
        csock_http_str m = {r->p.method.ptr, r->p.method.len};
        if (rt->method && !lower_eq(m, rt->method)) continue;
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

/* The chunked body starting at buf: complete? Then de-chunk it in place (the
 * buffer is ours during the read callback; decoded bytes never overtake the
 * framing they come from) and return the encoded length; 0 when more input
 * is needed; an http error code. */
static long dechunk(conn *c, char *buf, size_t len, csock_http_str *body)
{
    csock_http_chunked st;
    size_t pos = 0, used;
    csock_http_slice d;
    int rc;
    csock_http_chunked_init(&st, c->hs->o.max_body);
    while ((rc = csock_http_chunked_decode(&st, buf + pos, len - pos, &used, &d)) ==
           CSOCK_HTTP_CHUNK_DATA)
        pos += used;
    if (rc == CSOCK_HTTP_INCOMPLETE) return 0;
    if (rc < 0) return rc;
    pos += used;
    size_t end = pos, w = 0;
    pos = 0;
    csock_http_chunked_init(&st, c->hs->o.max_body);
    while (csock_http_chunked_decode(&st, buf + pos, end - pos, &used, &d) == CSOCK_HTTP_CHUNK_DATA) {
        memmove(buf + w, d.ptr, d.len);
        w += d.len;
        pos += used;
    }
    *body = (csock_http_str){buf, w};
    return (long)end;
}

/* Handle the request at the start of buf. Returns the bytes it took (> 0),
 * 0 when more input is needed, or -1 when the connection is ending. */
static long handle_one(conn *c, char *buf, size_t len)
{
    csock_http_server *hs = c->hs;
    csock_http_req *r = &c->req;
    r->p.headers = r->hdrs;
    r->p.max_headers = MAX_HEADERS;
    c->want_body = 0;
    int rc = csock_http_parse_request(buf, len, &r->p, &hs->limits);
    if (rc == CSOCK_HTTP_INCOMPLETE) return 0;
    if (rc < 0) {
        send_error(c, csock_http_status(rc));
        return -1;
    }
    size_t head = (size_t)rc, total = head;
    r->body = (csock_http_str){"", 0};
    if (r->p.chunked) {
        long n = dechunk(c, buf + head, len - head, &r->body);
        if (n < 0) {
            send_error(c, csock_http_status((int)n));
            return -1;
        }
        if (n == 0) goto need_body;
        total += (size_t)n;
    } else if (r->p.content_length > 0) {
        if ((uint64_t)r->p.content_length > hs->o.max_body) {
            send_error(c, 413);
            return -1;
        }
        if (len - head < (uint64_t)r->p.content_length) goto need_body;
        r->body = (csock_http_str){buf + head, (size_t)r->p.content_length};
        total += (size_t)r->p.content_length;
    }
    dispatch(c);
    return c->closing ? -1 : (long)total;
need_body:
    c->want_body = 1;
    if (r->p.expect_continue && !c->sent_continue) {
        c->sent_continue = 1;
        out_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
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
        tl_set(c, TL_KEEPALIVE);
}

static void keepalive(conn *c)
{
    if (csock_stream_write_queue_size(c->s)) {
        tl_remove(c);
        csock_stream_on_drain(c->s, on_answer_sent);
        return;
    }
    tl_set(c, TL_KEEPALIVE);
}

static void on_drained(csock_stream *s, int status)
{
    conn *c = csock_stream_data(s);
    csock_stream_on_drain(s, NULL);
    if (status == 0 && c->hs && !c->closing) conn_next(c);
}

/* Read on: buffered input is offered again by the stream. */
static void conn_next(conn *c)
{
    if (c->peer_eof) {
        c->closing = 1;
        tl_remove(c);
        csock_stream_end(c->s, NULL);
        return;
    }
    keepalive(c);
    csock_stream_read_start(c->s, on_read);
}

static void conn_fail(conn *c, int status)
{
    if (status == CSOCK_ETOOBIG) return send_error(c, c->want_body ? 413 : 431);
    c->closing = 1;
    tl_remove(c);
    csock_stream_close(c->s, NULL);
}

static size_t on_read(csock_stream *s, int status, const char *buf, size_t len)
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
        if (++batch >= BATCH_MAX || csock_stream_write_queue_size(s) > QUEUE_MAX) {
            /* Enough answers queued: take more requests once they are out. */
            if (used < len && !c->busy && !c->closing) {
                csock_stream_read_stop(s);
                csock_stream_on_drain(s, on_drained);
                tl_remove(c);
                c->in_read = 0;
                out_flush(c);
                return used;
            }
            break;
        }
    }
    c->in_read = 0;
    out_flush(c);
    if (c->closing || !c->hs) return len;
    if (status == CSOCK_EOF) {
        c->peer_eof = 1;
        if (!c->busy) {
            c->closing = 1;
            tl_remove(c);
            csock_stream_end(s, NULL);
        }
        return len;
    }
    if (c->busy) {
        tl_remove(c);
        csock_stream_read_stop(s); /* answered later: the rest waits */
    } else if (used < len) {
        tl_set(c, c->want_body ? TL_BODY : TL_HEADER);
    } else {
        keepalive(c);
    }
    return used;
}

/* ---- connections and the server --------------------------------------------------- */

static void on_conn_closed(csock_stream *s)
{
    conn *c = csock_stream_data(s);
    if (!c) return;
    csock_http_server *hs = c->hs;
    if (hs) {
        tl_remove(c);
        if (c->prev) c->prev->next = c->next;
        else hs->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        hs->nconns--;
    }
    free(c->req.extra);
    free(c->ob);
    free(c);
}

int csock_http_server_accept(csock_http_server *hs, csock_stream *s)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        csock_stream_close(s, NULL);
        return -ENOMEM;
    }
    c->hs = hs;
    c->s = s;
    c->tl = TL_NONE;
    c->req.c = c;
    c->next = hs->conns;
    if (hs->conns) hs->conns->prev = c;
    hs->conns = c;
    hs->nconns++;
    csock_stream_set_data(s, c);
    csock_stream_on_close(s, on_conn_closed);
    csock_stream_set_max_read(s, hs->max_read);
    csock_stream_set_write_timeout(s, hs->o.send_timeout_ms);
    tl_set(c, TL_HEADER);
    int rc = csock_stream_read_start(s, on_read);
    if (rc < 0) {
        c->closing = 1;
        csock_stream_close(s, NULL);
    }
    return rc;
}

static uint64_t or_default(uint64_t v, uint64_t d) { return v ? v : d; }

int csock_http_server_new(csock_loop *loop, const csock_http_opts *opts, csock_http_server **out)
{
    csock_http_opts none = {0};
    if (!opts) opts = &none;
    csock_http_server *hs = calloc(1, sizeof *hs);
    if (!hs) return -ENOMEM;
    hs->loop = loop;
    hs->o = *opts;
    if (opts->nroutes) {
        hs->routes = malloc(opts->nroutes * sizeof *hs->routes);
        if (!hs->routes) {
            free(hs);
            return -ENOMEM;
        }
        memcpy(hs->routes, opts->routes, opts->nroutes * sizeof *hs->routes);
    }
    hs->o.max_body = or_default(opts->max_body, 1u << 20);
    hs->o.send_timeout_ms = or_default(opts->send_timeout_ms, 60000);
    hs->tl_ms[TL_HEADER] = or_default(opts->header_timeout_ms, 10000);
    hs->tl_ms[TL_BODY] = or_default(opts->body_timeout_ms, 30000);
    hs->tl_ms[TL_KEEPALIVE] = or_default(opts->keepalive_timeout_ms, 30000);
    hs->limits.max_request_line = opts->max_request_line;
    hs->limits.max_head = opts->max_head ? opts->max_head : CSOCK_HTTP_MAX_HEAD;
    /* Room for a whole head and a whole body (chunk framing included). */
    uint64_t mr = hs->limits.max_head + 2 * hs->o.max_body + 4096;
    hs->max_read = mr > (1u << 30) ? (1u << 30) : (size_t)mr;
    snprintf(hs->server, sizeof hs->server, "Server: %.60s\r\n",
             opts->server_name ? opts->server_name : "csock");
    hs->server_len = strlen(hs->server);
    int rc = csock_timer_new(loop, &hs->timer);
    if (rc == 0) {
        csock_timer_set_data(hs->timer, hs);
        csock_timer_unref(hs->timer); /* housekeeping never keeps the loop alive */
        rc = csock_timer_start(hs->timer, on_tick, TICK_MS, TICK_MS);
    }
    if (rc < 0) {
        if (hs->timer) csock_timer_close(hs->timer, NULL);
        free(hs->routes);
        free(hs);
        return rc;
    }
    *out = hs;
    return 0;
}

static void server_freed(csock_timer *t)
{
    csock_http_server *hs = csock_timer_data(t);
    free(hs->routes);
    free(hs);
}

void csock_http_server_close(csock_http_server *hs)
{
    while (hs->conns) {
        conn *c = hs->conns;
        tl_remove(c);
        hs->conns = c->next;
        c->hs = NULL; /* its close callback frees it and nothing else */
        c->closing = 1;
        csock_stream_close(c->s, NULL);
    }
    hs->nconns = 0;
    csock_timer_close(hs->timer, server_freed);
}

unsigned csock_http_server_conns(const csock_http_server *hs) { return hs->nconns; }

/* ---- request accessors --------------------------------------------------------------- */

static csock_http_str str(csock_http_slice s) { return (csock_http_str){s.ptr, s.len}; }

csock_http_str csock_http_method(const csock_http_req *r) { return str(r->p.method); }
csock_http_str csock_http_target(const csock_http_req *r) { return str(r->p.target); }
csock_http_str csock_http_path(const csock_http_req *r) { return r->path; }
csock_http_str csock_http_query(const csock_http_req *r) { return r->query; }
int csock_http_minor(const csock_http_req *r) { return r->p.minor_version; }
int csock_http_is_head(const csock_http_req *r) { return r->head; }
csock_http_str csock_http_body(const csock_http_req *r) { return r->body; }
csock_stream *csock_http_stream(const csock_http_req *r) { return r->c->s; }

csock_http_str csock_http_get_header(const csock_http_req *r, const char *name)
{
    for (size_t i = 0; i < r->p.num_headers; i++)
        if (lower_eq(str(r->p.headers[i].name), name)) return str(r->p.headers[i].value);
    return (csock_http_str){NULL, 0};
}

int csock_http_header_at(const csock_http_req *r, size_t i, csock_http_str *name,
                         csock_http_str *value)
{
    if (i >= r->p.num_headers) return -1;
    *name = str(r->p.headers[i].name);
    *value = str(r->p.headers[i].value);
    return 0;
}
