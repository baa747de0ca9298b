/* Writing answers: the status line and fields, fixed bodies, files and
 * streamed bodies (the csock_http_send family of csock/http.h), and the
 * errors the server answers on its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "proto/http1_fields.h"
#include "proto/http1_int.h"

/* The head's fixed part: the status line (up to 3 digits and the longest
 * reason phrase), Server (SERVER_NAME_MAX), Date, Content-Length or
 * Transfer-Encoding, Connection: under 250 bytes. The fields a handler
 * adds go in an iovec of their own, so they need no room here. */
#define HEAD_MAX 512
/* The first buffer for answers made inside on_read on a TLS stream: one
 * small answer (a head of about 250 bytes and a small file) fits, and an
 * allocation this small is served from malloc's per-thread cache. A
 * larger one (1 KiB and up) costs far more: each made glibc consolidate
 * its fast bins first (malloc and free were 1 % of a small request's
 * CPU, 8 % of its user time, with 16 KiB). */
#define OUT_SMALL_CAP (1024 - 16)
/* The next size, for pipelined answers or a larger body: 16 KiB with
 * malloc's header included (a size class, and one TLS record's worth of
 * plaintext), enough for dozens of small answers. */
#define OUT_BIG_CAP (16384 - 64)
/* Room for the first handler-added fields (a Content-Type, an ETag): a
 * few fields, doubled when more come. */
#define EXTRA_FIRST_CAP 256
/* A chunk-size line: a size_t in hex (at most 16 digits), CRLF, NUL. */
#define CHUNK_LINE_MAX 24

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
    case 426: return "Upgrade Required";
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
        memcpy(hs->date, "Date: ", DATE_PREFIX);
        csock_http_date(ts.tv_sec, hs->date + DATE_PREFIX);
        memcpy(hs->date + DATE_LINE_LEN - 2, "\r\n", 3);
        hs->date_next = now + 1000 - (uint64_t)(ts.tv_nsec / 1000000);
    }
    return hs->date;
}

/* ---- answers ------------------------------------------------------------------- */

/* Output. A plain stream holds what its read callback writes and sends it
 * when the callback returns, copied into its pooled chunks: pipelined
 * answers leave in one syscall, and an answer costs no allocation. A TLS
 * stream would seal each write as a record of its own, so there the
 * answers made inside on_read gather in the connection's buffer (ob),
 * which goes to the stream by reference once (out_flush): one record for
 * a pipelined batch. Outside on_read every answer goes straight to the
 * stream. */
static void release_ob(void *ob) { free(ob); }

/* Part of an answer could not be queued (no memory): the client would wait
 * for bytes that never come, or take what follows for them. Close now. */
static void conn_abort(conn *c)
{
    if (c->closing || !c->hs) return;
    c->closing = 1;
    csock__http_tl_remove(c);
    csock_stream_close(c->s, NULL);
}

void csock__http_out_flush(conn *c)
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
    if (!c->in_read || !csock_tls_is_tls(c->s)) {
        int rc = csock_stream_writev(c->s, iov, n);
        if (rc == -ENOMEM) conn_abort(c);
        return rc;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    if (c->olen + total > c->ocap) {
        size_t cap = !c->ocap ? OUT_SMALL_CAP : c->ocap < OUT_BIG_CAP ? OUT_BIG_CAP : c->ocap;
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

int csock__http_out_bytes(conn *c, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return out_write(c, &iov, 1);
}

static int bodiless(int status) { return status < 200 || status == 204 || status == 304; }

/* Queue `len` bytes of file `fd` after everything buffered so far. Once the
 * head is out, a failure leaves the client waiting for bytes that never
 * come: close. (Corking the head so it leaves in the file's first packet,
 * TCP_CORK on and off around the two writes, was tried and measured worse
 * per 100 KB answer, not better: see BENCHMARKS.md, HTTP.) */
static int out_file(conn *c, int fd, off_t offset, size_t len, void (*release)(void *ud), void *ud)
{
    csock__http_out_flush(c);
    int rc = csock_stream_write_file_ref(c->s, fd, offset, len, release, ud);
    if (rc < 0 && rc != -EPIPE) conn_abort(c);
    return rc;
}

/* A file given with close_fd: closed when the stream is done with it. */
static void fd_close(void *ud) { close((int)(intptr_t)ud); }
#define CLOSER(close_fd, fd) (close_fd) ? fd_close : NULL, (void *)(intptr_t)(fd)

static void fd_release(void (*release)(void *ud), void *ud)
{
    if (release) release(ud);
}

/* Does the head about to go out (the iovecs `iov`) equal the one at the
 * start of pre's file? If not, copy it to pre->out (when it fits) for a
 * file to begin with next time. */
static int head_in_file(csock__http_prefix *pre, const struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    if (pre->head && total == pre->hlen) {
        size_t at = 0;
        int i = 0;
        for (; i < n && !memcmp(pre->head + at, iov[i].iov_base, iov[i].iov_len); i++)
            at += iov[i].iov_len;
        if (i == n) return 1;
    }
    if (total <= pre->cap) {
        pre->out_len = 0;
        for (int i = 0; i < n; i++) {
            memcpy(pre->out + pre->out_len, iov[i].iov_base, iov[i].iov_len);
            pre->out_len += iov[i].iov_len;
        }
    }
    return 0;
}

/* Write the status line and fields. `clen` is the body length, -1 for a
 * streamed body; `body` is appended in the same write. Returns 0, -EINVAL
 * (a status outside 100-999: nothing written), -EALREADY, -EPIPE (the
 * connection is gone), or -ENOMEM: a field the handler added is missing
 * (the answer became a bodiless 500 that closes the connection) or the
 * answer could not be queued (the connection was closed). With `pre` (a
 * file answer whose file may begin with its head: see csock__http_prefix),
 * a head that matches the file's is not written: pre->matched says the
 * file is to be sent from its start. */
static int write_head(csock_http_req *r, int status, int64_t clen, const void *body, size_t blen,
                      csock__http_prefix *pre)
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
    char h[HEAD_MAX], *p = h;
    const char *reason = csock_http_reason(status);
    p = PUTS(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)status);
    *p++ = ' ';
    p = put(p, reason, strlen(reason));
    p = PUTS(p, "\r\n");
    p = put(p, hs->server, hs->server_len);
    p = put(p, date_line(hs), DATE_LINE_LEN);
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
    if (r->upgrade)
        p = PUTS(p, "Connection: Upgrade\r\n");
    else if (r->close)
        p = r->offers_upgrade ? PUTS(p, "Connection: Upgrade, close\r\n") : PUTS(p, "Connection: close\r\n");
    else if (r->p.minor_version == 0)
        p = r->offers_upgrade ? PUTS(p, "Connection: Upgrade, keep-alive\r\n")
                              : PUTS(p, "Connection: keep-alive\r\n");
    else if (r->offers_upgrade)
        p = PUTS(p, "Connection: Upgrade\r\n");
    if (hs->o.log) hs->o.log(r, status, nobody ? 0 : clen, hs->o.log_data);
    struct iovec iov[3];
    int n = 0, rc;
    if (r->elen) {
        iov[n++] = (struct iovec){h, (size_t)(p - h)};
        iov[n++] = (struct iovec){r->extra, r->elen};
        p = h + sizeof h - 2; /* the final CRLF goes in the spare tail of h */
        memcpy(p, "\r\n", 2);
        iov[n++] = (struct iovec){p, 2};
    } else {
        p = PUTS(p, "\r\n");
        iov[n++] = (struct iovec){h, (size_t)(p - h)};
    }
    if (pre && !oom && !r->head && !nobody && clen >= 0 && head_in_file(pre, iov, n)) {
        pre->matched = 1;
        rc = 0;
    } else if (r->elen) {
        rc = out_write(c, iov, n);
        if (rc == 0 && blen && !r->head && !nobody) rc = csock__http_out_bytes(c, body, blen);
    } else {
        if (blen && !r->head && !nobody) iov[n++] = (struct iovec){(void *)body, blen};
        rc = out_write(c, iov, n);
    }
    return rc < 0 ? rc : oom ? -ENOMEM : 0;
}

/* The answer is complete: close if asked, else go on with the next request. */
static void finish(csock_http_req *r)
{
    conn *c = r->c;
    r->elen = 0;
    c->busy = 0;
    if (!c->hs) {
        if (c->orphan) csock__http_conn_free(c); /* its connection closed while the handler held it */
        return;
    }
    if (c->closing) return;
    if (r->close || c->peer_eof) {
        c->closing = 1;
        csock__http_tl_remove(c);
        csock__http_out_flush(c);
        csock_stream_end(c->s, NULL);
        return;
    }
    if (!c->in_read) csock__http_conn_next(c); /* answered later: read on */
}

int csock_http_send(csock_http_req *r, int status, const void *body, size_t len)
{
    if (!r->c->busy) return -EALREADY;
    int rc = write_head(r, status, (int64_t)len, body, len, NULL);
    if (rc == -EALREADY || rc == -EINVAL) return rc;
    finish(r);
    return rc;
}

int csock_http_upgrade(csock_http_req *r, csock_read_cb cb, void *data, csock_stream **out)
{
    conn *c = r->c;
    if (!cb) return -EINVAL;
    if (!c->busy || r->started) return -EALREADY;
    if (!c->hs || c->peer_eof) { /* nobody to switch with: complete the request */
        finish(r);
        return -EPIPE;
    }
    r->upgrade = !r->oom; /* a 500 (see write_head) is no upgrade */
    int rc = write_head(r, 101, 0, NULL, 0, NULL);
    r->upgrade = 0;
    csock_stream *s = c->s;
    if (rc == 0) csock__http_out_flush(c); /* the 101 goes before the new owner's bytes */
    if (rc < 0 || c->closing) {
        r->close = 1;
        finish(r);
        return rc < 0 ? rc : -ENOMEM;
    }
    /* Reading with cb first: a stream that has failed refuses, and then it
     * is still ours (its error comes to our read callback). Outside
     * on_read this offers buffered input to cb from the loop. */
    rc = csock_stream_read_start(s, cb);
    if (rc < 0) {
        r->close = 1;
        finish(r);
        return rc;
    }
    r->elen = 0;
    c->busy = 0;
    csock__http_conn_detach(c);
    /* The server's send timeout is not the new protocol's: it sets its own
     * (and without timeouts the stream keeps no timer). */
    csock_stream_set_write_timeout(s, 0);
    csock_stream_set_data(s, data);
    csock_stream_on_close(s, NULL);
    csock_stream_on_drain(s, NULL);
    *out = s;
    if (c->in_read) {
        /* on_read goes on after the handler: it offers cb the rest of the
         * input and frees the connection (csock__http_upgraded_rest). */
        c->upgraded = 1;
        c->up_cb = cb;
        return 0;
    }
    csock__http_conn_free(c);
    return 0;
}

int csock__http_send_file_ref(csock_http_req *r, int status, int fd, off_t offset, size_t len,
                              void (*release)(void *ud), void *ud, csock__http_prefix *pre)
{
    int rc = !r->c->busy || r->started ? -EALREADY : status < 100 || status > 999 ? -EINVAL : 0;
    if (rc < 0) {
        fd_release(release, ud);
        return rc;
    }
    if (len <= SMALL_FILE && !r->head) {
        char b[SMALL_FILE];
        ssize_t got = len ? pread(fd, b, len, offset) : 0;
        int err = got < 0 ? -errno : -EIO;
        fd_release(release, ud);
        if (got != (ssize_t)len) {
            rc = err;
            r->close = 1;
            write_head(r, 500, 0, NULL, 0, NULL);
        } else {
            rc = write_head(r, status, (int64_t)len, b, len, NULL);
        }
    } else {
        if (pre) {
            pre->matched = 0;
            if (offset != (off_t)pre->hlen) pre->head = NULL; /* the body is not right after it */
        }
        rc = write_head(r, status, (int64_t)len, NULL, 0, pre);
        if (rc == 0 && pre && pre->matched) /* the head is in the file, just before the body */
            rc = out_file(r->c, fd, 0, pre->hlen + len, release, ud);
        else if (rc == 0 && !r->head && len && !bodiless(status))
            rc = out_file(r->c, fd, offset, len, release, ud); /* the head goes before the file */
        else
            fd_release(release, ud);
    }
    finish(r);
    return rc;
}

int csock_http_send_file(csock_http_req *r, int status, int fd, off_t offset, size_t len,
                         int close_fd)
{
    return csock__http_send_file_ref(r, status, fd, offset, len, CLOSER(close_fd, fd), NULL);
}

/* A streamed body: `len` is its length when known (sent as Content-Length),
 * -1 when not (chunks, or the connection's end for HTTP/1.0). */
static int start_answer(csock_http_req *r, int status, int64_t len)
{
    if (!r->c->busy) return -EALREADY;
    int rc = write_head(r, status, len, NULL, 0, NULL);
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
    if (!r->chunked_out) return csock__http_out_bytes(r->c, buf, len);
    char sz[CHUNK_LINE_MAX];
    int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
    struct iovec iov[3] = {{sz, (size_t)n}, {(void *)buf, len}, {"\r\n", 2}};
    return out_write(r->c, iov, 3);
}

int csock__http_write_file_ref(csock_http_req *r, int fd, off_t offset, size_t len,
                               void (*release)(void *ud), void *ud)
{
    int rc = body_piece(r, len);
    if (rc <= 0) {
        fd_release(release, ud);
        return rc;
    }
    if (!r->chunked_out) return out_file(r->c, fd, offset, len, release, ud);
    char sz[CHUNK_LINE_MAX];
    int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
    rc = csock__http_out_bytes(r->c, sz, (size_t)n);
    if (rc < 0) {
        fd_release(release, ud);
        return rc;
    }
    rc = out_file(r->c, fd, offset, len, release, ud);
    return rc < 0 ? rc : csock__http_out_bytes(r->c, "\r\n", 2);
}

int csock_http_write_file(csock_http_req *r, int fd, off_t offset, size_t len, int close_fd)
{
    return csock__http_write_file_ref(r, fd, offset, len, CLOSER(close_fd, fd));
}

int csock_http_end(csock_http_req *r)
{
    if (!r->streaming) return -EINVAL;
    r->streaming = 0;
    int rc = 0;
    if (r->c->hs && r->chunked_out && !r->dropped) rc = csock__http_out_bytes(r->c, "0\r\n\r\n", 5);
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

/* Room for `more` bytes of fields after those added so far. */
static int extra_room(csock_http_req *r, size_t more)
{
    size_t need = r->elen + more;
    if (need <= r->ecap) return 0;
    size_t cap = r->ecap ? r->ecap * 2 : EXTRA_FIRST_CAP;
    while (cap < need) cap *= 2;
    char *e = realloc(r->extra, cap);
    if (!e) {
        r->oom = 1; /* remembered: the answer becomes a 500 (see write_head) */
        return -ENOMEM;
    }
    r->extra = e;
    r->ecap = cap;
    return 0;
}

int csock_http_add_header(csock_http_req *r, const char *name, const char *value)
{
    if (r->started) return -EALREADY;
    size_t nl = strlen(name), vl = strlen(value);
    if (!nl || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return -EINVAL;
    if (extra_room(r, nl + vl + 4) < 0) return -ENOMEM;
    char *p = r->extra + r->elen;
    p = put(p, name, nl);
    p = PUTS(p, ": ");
    p = put(p, value, vl);
    p = PUTS(p, "\r\n");
    r->elen = (size_t)(p - r->extra);
    if (nl == 7 && !strncasecmp(name, "Upgrade", 7)) r->offers_upgrade = 1;
    return 0;
}

int csock__http_add_fields(csock_http_req *r, const char *fields, size_t len)
{
    if (r->started) return -EALREADY;
    if (extra_room(r, len) < 0) return -ENOMEM;
    memcpy(r->extra + r->elen, fields, len);
    r->elen += len;
    return 0;
}

void csock_http_close_after(csock_http_req *r) { r->close = 1; }

/* An error the connection cannot survive: answer it and end. */
void csock__http_send_error(conn *c, int status)
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
        write_head(r, status, n, body, (size_t)n, NULL);
    }
    c->busy = 0;
    if (c->closing) return; /* write_head could not queue it and closed */
    c->closing = 1;
    csock__http_tl_remove(c);
    csock__http_out_flush(c);
    csock_stream_end(c->s, NULL);
}
