/* The HTTP/1.1 server: connections over csock streams, requests parsed in
 * the stream's buffer and copied out whole before their handler runs (the
 * request's lifetime, see "requests" below), answers written through the
 * stream's write queue. See csock/http.h.
 *
 * A connection is a small state machine driven by the stream's read
 * callback: it parses every complete request in the buffer and answers each
 * before looking at the next, so pipelined answers queue up while the stream
 * holds writes (inside its read callback) and leave in one syscall. An
 * answer given later (an asynchronous handler, a streamed body) stops
 * reading until it completes; the rest of the buffer waits in the stream.
 * A connection that closes while its handler holds the request lives on,
 * detached, until that answer (finish() frees it).
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
    csock_http_request p;           /* the parsed head; slices of the connection's copy
                                       (conn.rq), or empty between requests */
    csock_http_header hdrs[MAX_HEADERS];
    csock_http_str path, query, body;
    char *extra;                    /* fields added with csock_http_add_header */
    size_t elen, ecap;
    int64_t left;                   /* body bytes still to come after csock_http_start_length
                                       (-1: not a fixed-length streamed body) */
    unsigned head : 1;              /* HEAD: no body bytes in the answer */
    unsigned started : 1;           /* the answer's head is written */
    unsigned streaming : 1;         /* between csock_http_start and csock_http_end */
    unsigned chunked_out : 1;       /* the streamed body goes as chunks */
    unsigned close : 1;             /* close the connection after this answer */
    unsigned oom : 1;               /* a field could not be added: the answer becomes a 500 */
    unsigned dropped : 1;           /* the streamed body is not sent (the answer became a 500) */
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
    unsigned orphan : 1;            /* closed while its answer was pending: freed by finish() */
    char *rq;                       /* the request's own copy of its head and body */
    size_t rqcap;
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
    case 412: return "Precondition Failed";
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

/* Part of an answer could not be queued (no memory): the client would wait
 * for bytes that never come, or take what follows for them. Close now. */
static void conn_abort(conn *c)
{
    if (c->closing || !c->hs) return;
    c->closing = 1;
    tl_remove(c);
    csock_stream_close(c->s, NULL);
}

static void out_flush(conn *c)
{
    if (!c->olen) return;
    char *ob = c->ob;
    size_t n = c->olen;
    c->ob = NULL;
    c->olen = c->ocap = 0;
    if (csock_stream_write_ref(c->s, ob, n, release_ob, ob) == -ENOMEM) conn_abort(c);
}

static int out_write(conn *c, const struct iovec *iov, int n)
{
    if (!c->in_read) {
        int rc = csock_stream_writev(c->s, iov, n);
        if (rc == -ENOMEM) conn_abort(c);
        return rc;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    if (c->olen + total > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 16384 - 64;
        while (cap < c->olen + total) cap *= 2;
        char *ob = realloc(c->ob, cap);
        if (!ob) {
            conn_abort(c);
            return -ENOMEM;
        }
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

static int bodiless(int status) { return status < 200 || status == 204 || status == 304; }

/* Queue `len` bytes of file `fd` after everything buffered so far. Once the
 * head is out, a failure leaves the client waiting for bytes that never
 * come: close. */
static int out_file(conn *c, int fd, off_t offset, size_t len, int close_fd)
{
    out_flush(c);
    int rc = csock_stream_write_file(c->s, fd, offset, len, close_fd);
    if (rc < 0 && rc != -EPIPE) conn_abort(c);
    return rc;
}

/* Write the status line and fields. `clen` is the body length, -1 for a
 * streamed body; `body` is appended in the same write. Returns 0, -EINVAL
 * (a status outside 100-999: nothing written), -EALREADY, -EPIPE (the
 * connection is gone), or -ENOMEM: a field the handler added is missing
 * (the answer became a bodiless 500 that closes the connection) or the
 * answer could not be queued (the connection was closed). */
static int write_head(csock_http_req *r, int status, int64_t clen, const void *body, size_t blen)
{
    conn *c = r->c;
    csock_http_server *hs = c->hs;
    if (status < 100 || status > 999) return -EINVAL;
    if (!hs) return -EPIPE;
    if (r->started) return -EALREADY;
    r->started = 1;
    int oom = r->oom;
    if (oom) { /* never a partial answer (a 206 without its Content-Range) */
        status = 500;
        clen = 0;
        blen = 0;
        r->elen = 0;
        r->close = 1;
    }
    if (csock_stream_draining(c->s) || c->peer_eof) r->close = 1;
    char h[512], *p = h;
    const char *reason = csock_http_reason(status);
    p = PUTS(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)status);
    *p++ = ' ';
    p = put(p, reason, strlen(reason));
    p = PUTS(p, "\r\n");
    p = put(p, hs->server, hs->server_len);
    p = put(p, date_line(hs), 37);
    int nobody = bodiless(status);
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
    int n = 0, rc;
    if (r->elen) {
        iov[n++] = (struct iovec){h, (size_t)(p - h)};
        iov[n++] = (struct iovec){r->extra, r->elen};
        p = h + sizeof h - 2; /* the final CRLF goes in the spare tail of h */
        memcpy(p, "\r\n", 2);
        iov[n++] = (struct iovec){p, 2};
        rc = out_write(c, iov, n);
        if (rc == 0 && blen && !r->head && !nobody) rc = out_bytes(c, body, blen);
    } else {
        p = PUTS(p, "\r\n");
        iov[n++] = (struct iovec){h, (size_t)(p - h)};
        if (blen && !r->head && !nobody) iov[n++] = (struct iovec){(void *)body, blen};
        rc = out_write(c, iov, n);
    }
    return rc < 0 ? rc : oom ? -ENOMEM : 0;
}

static void conn_free(conn *c)
{
    free(c->req.extra);
    free(c->ob);
    free(c->rq);
    free(c);
}

/* The answer is complete: close if asked, else go on with the next request. */
static void finish(csock_http_req *r)
{
    conn *c = r->c;
    r->elen = 0;
    c->busy = 0;
    if (!c->hs) {
        if (c->orphan) conn_free(c); /* its connection closed while the handler held it */
        return;
    }
    if (c->closing) return;
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
    if (rc == -EALREADY || rc == -EINVAL) return rc;
    finish(r);
    return rc;
}

int csock_http_send_file(csock_http_req *r, int status, int fd, off_t offset, size_t len,
                         int close_fd)
{
    int rc = !r->c->busy || r->started ? -EALREADY : status < 100 || status > 999 ? -EINVAL : 0;
    if (rc < 0) {
        if (close_fd) close(fd);
        return rc;
    }
    if (len <= SMALL_FILE && !r->head) {
        char b[SMALL_FILE];
        ssize_t got = len ? pread(fd, b, len, offset) : 0;
        int err = got < 0 ? -errno : -EIO;
        if (close_fd) close(fd);
        if (got != (ssize_t)len) {
            rc = err;
            r->close = 1;
            write_head(r, 500, 0, NULL, 0);
        } else {
            rc = write_head(r, status, (int64_t)len, b, len);
        }
    } else {
        rc = write_head(r, status, (int64_t)len, NULL, 0);
        if (rc == 0 && !r->head && len && !bodiless(status))
            rc = out_file(r->c, fd, offset, len, close_fd); /* the head goes before the file */
        else if (close_fd)
            close(fd);
    }
    finish(r);
    return rc;
}

/* A streamed body: `len` is its length when known (sent as Content-Length),
 * -1 when not (chunks, or the connection's end for HTTP/1.0). */
static int start_answer(csock_http_req *r, int status, int64_t len)
{
    if (!r->c->busy) return -EALREADY;
    int rc = write_head(r, status, len, NULL, 0);
    if (rc == -EALREADY || rc == -EINVAL) return rc;
    /* Whatever happened, the handler goes on to write and end: the pieces
     * of a HEAD, a bodiless status or a failed answer are dropped. */
    r->streaming = 1;
    r->dropped = rc < 0 || r->head || bodiless(status);
    r->left = len;
    return rc;
}

int csock_http_start(csock_http_req *r, int status) { return start_answer(r, status, -1); }

int csock_http_start_length(csock_http_req *r, int status, uint64_t len)
{
    if (len > INT64_MAX) return -EINVAL;
    return start_answer(r, status, (int64_t)len);
}

/* Account for a body piece of `len` bytes: 1 to send it, 0 to drop it, or
 * an error. */
static int body_piece(csock_http_req *r, size_t len)
{
    if (!r->streaming) return -EINVAL;
    if (!r->c->hs) return -EPIPE;
    if (r->left >= 0) {
        if ((uint64_t)len > (uint64_t)r->left) return -EINVAL; /* past the Content-Length */
        r->left -= (int64_t)len;
    }
    return len && !r->dropped && !r->c->closing;
}

int csock_http_write(csock_http_req *r, const void *buf, size_t len)
{
    int rc = body_piece(r, len);
    if (rc <= 0) return rc;
    if (!r->chunked_out) return out_bytes(r->c, buf, len);
    char sz[24];
    int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
    struct iovec iov[3] = {{sz, (size_t)n}, {(void *)buf, len}, {"\r\n", 2}};
    return out_write(r->c, iov, 3);
}

int csock_http_write_file(csock_http_req *r, int fd, off_t offset, size_t len, int close_fd)
{
    int rc = body_piece(r, len);
    if (rc <= 0) {
        if (close_fd) close(fd);
        return rc;
    }
    if (!r->chunked_out) return out_file(r->c, fd, offset, len, close_fd);
    char sz[24];
    int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
    rc = out_bytes(r->c, sz, (size_t)n);
    if (rc < 0) {
        if (close_fd) close(fd);
        return rc;
    }
    rc = out_file(r->c, fd, offset, len, close_fd);
    return rc < 0 ? rc : out_bytes(r->c, "\r\n", 2);
}

int csock_http_end(csock_http_req *r)
{
    if (!r->streaming) return -EINVAL;
    r->streaming = 0;
    int rc = 0;
    if (r->c->hs && r->chunked_out && !r->dropped) rc = out_bytes(r->c, "0\r\n\r\n", 5);
    if (r->left > 0 && !r->dropped) {
        /* Short of its Content-Length: only the connection's end tells the
         * client that the body is cut. */
        r->close = 1;
        if (rc == 0) rc = -EINVAL;
    }
    r->chunked_out = 0;
    r->left = -1;
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
        if (!e) {
            r->oom = 1; /* remembered: the answer becomes a 500 (see write_head) */
            return -ENOMEM;
        }
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
        r->oom = 0;
        r->close = 1;
        r->p.minor_version = 1;
        c->busy = 1;
        csock_http_add_header(r, "Content-Type", "text/plain");
        r->oom = 0; /* without the field the answer is still right */
        write_head(r, status, n, body, (size_t)n);
    }
    c->busy = 0;
    if (c->closing) return; /* write_head could not queue it and closed */
    c->closing = 1;
    tl_remove(c);
    out_flush(c);
    csock_stream_end(c->s, NULL);
}

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
static void clear_request(csock_http_req *r)
{
    r->p = (csock_http_request){.headers = r->hdrs, .max_headers = MAX_HEADERS,
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
        size_t cap = need < 1024 ? 1024 : need;
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
    clear_request(&c->req);
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
    r->started = r->streaming = r->chunked_out = r->oom = r->dropped = 0;
    r->left = -1;
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
    clear_request(&c->req);
    send_error(c, 500);
    return -1;
}

/* The head buf[0..head) is complete but the request is refused: answer
 * `status` (the log sees the head) and end. */
static long refuse(conn *c, const char *buf, size_t head, int status)
{
    if (keep_head(c, buf, head, 0) < 0) return no_memory(c);
    send_error(c, status);
    return -1;
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
    if (rc < 0) {
        clear_request(r);
        if (rc == CSOCK_HTTP_INCOMPLETE) return 0;
        send_error(c, csock_http_status(rc));
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
    return c->closing ? -1 : (long)(head + enc);
need_body:
    if (keep_head(c, buf, head, 0) < 0) return no_memory(c);
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
    drop_big_request(c);
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
    /* While a handler holds the request, the answer is its own: just close. */
    if (status == CSOCK_ETOOBIG && !c->busy) return send_error(c, c->want_body ? 413 : 431);
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
    c->hs = NULL;
    c->s = NULL;
    if (c->busy) {
        /* The handler still holds the request (an answer given later): it
         * stays valid, its answer returns -EPIPE, and finish() frees it. */
        c->orphan = 1;
        return;
    }
    conn_free(c);
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
    clear_request(&c->req);
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

static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

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
    /* Room for a whole head and a whole body (chunk framing included),
     * saturated: a max_body near UINT64_MAX must not wrap to a small limit. */
    uint64_t mr = sat_add(sat_add(hs->limits.max_head, sat_add(hs->o.max_body, hs->o.max_body)), 4096);
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
csock_stream *csock_http_stream(const csock_http_req *r) { return r->c->s; /* NULL once closed */ }

csock_http_str csock_http_get_header(const csock_http_req *r, const char *name)
{
    for (size_t i = 0; i < r->p.num_headers; i++)
        if (lower_eq(str(r->p.headers[i].name), name)) return str(r->p.headers[i].value);
    return (csock_http_str){NULL, 0};
}

int csock_http_header_at(const csock_http_req *r, size_t i, csock_http_str *name,
                         csock_http_str *value)
{
    if (i >= r->p.num_headers) return -ENOENT;
    *name = str(r->p.headers[i].name);
    *value = str(r->p.headers[i].value);
    return 0;
}
