/* csock listen --proxy-type http: plain forwarding of a request whose
 * target is an absolute URI (`GET http://host:port/path HTTP/1.1`), the
 * other half of an HTTP proxy beside CONNECT.
 *
 * One request per client connection: the request goes to the origin in
 * origin-form with `Connection: close`, the hop-by-hop fields dropped
 * (RFC 9110 7.6.1: Connection and those it names, Keep-Alive,
 * Proxy-Connection, Proxy-Authorization, TE, Upgrade) and Host set from the
 * URI. The body follows as the request frames it (Content-Length, or
 * chunked, passed on unchanged up to its last chunk); anything the client
 * sends after it is not a request we serve and is dropped. The answer
 * comes back with its head cleaned the same way and `Connection: close`,
 * its body relayed as it comes until the origin closes, and then the
 * client's connection ends. https:// URIs are refused: they go through
 * CONNECT. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/nc_pxs.h"

#define PXF_LINE_MAX 2048   /* method, URI or version: longer is refused */
#define PXF_CONN_MAX 512    /* the Connection field's tokens */

enum { PXF_CK_SIZE, PXF_CK_DATA, PXF_CK_DATA_END, PXF_CK_TRAILER_START, PXF_CK_TRAILER, PXF_CK_DONE };

void pxf_free(pxf *f)
{
    if (!f) return;
    free(f->head);
    free(f);
}

/* ---- header fields ---------------------------------------------------------------- */

static int token_in(const char *list, const char *name, size_t n)
{
    for (const char *t = list; *t;) {
        while (*t == ',' || *t == ' ' || *t == '\t') t++;
        size_t k = strcspn(t, ", \t");
        if (k == n && !strncasecmp(t, name, n)) return 1;
        t += k;
    }
    return 0;
}

/* Fields a proxy does not pass on: hop-by-hop ones and those Connection
 * names. Host is set anew from the URI. */
static int dropped(const char *name, size_t n, const char *conn)
{
    return token_in("connection keep-alive proxy-connection proxy-authorization "
                    "proxy-authenticate te upgrade host", name, n) ||
           token_in(conn, name, n);
}

/* Calls fn for each field line of a head (after its first line, before
 * the empty one); obs-fold continuation lines belong to the field before. */
typedef void (*field_fn)(void *arg, const char *line, size_t n, size_t name_len);

static void each_field(const char *head, size_t hlen, field_fn fn, void *arg)
{
    const char *end = head + hlen, *l = memchr(head, '\n', hlen);
    const char *start = NULL;
    size_t name_len = 0;
    for (l = l ? l + 1 : end; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        const char *next = nl ? nl + 1 : end;
        size_t n = (size_t)((nl ? nl : end) - l);
        if (n && l[n - 1] == '\r') n--;
        if (n && (l[0] == ' ' || l[0] == '\t') && start) { /* continuation */
            l = next;
            continue;
        }
        if (start) fn(arg, start, (size_t)(l - start), name_len);
        start = NULL;
        if (!n) break; /* the empty line */
        const char *colon = memchr(l, ':', n);
        start = l;
        name_len = colon ? (size_t)(colon - l) : n;
        l = next;
    }
    if (start) fn(arg, start, (size_t)(end - start), name_len);
}

/* What framing and hop-by-hop handling need from the fields. */
typedef struct scan {
    char conn[PXF_CONN_MAX];
    size_t conn_len;
    int chunked, te, bad;
    int has_cl;
    uint64_t cl;
} scan;

static void value_of(const char *line, size_t n, size_t name_len, const char **v, size_t *vn)
{
    const char *p = line + name_len + 1, *e = line + n;
    while (p < e && (*p == ' ' || *p == '\t')) p++;
    while (e > p && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) e--;
    *v = p;
    *vn = (size_t)(e - p);
}

static void scan_field(void *arg, const char *line, size_t n, size_t name_len)
{
    scan *sc = arg;
    const char *v;
    size_t vn;
    if (name_len >= n) return; /* no colon: not a field we act on */
    value_of(line, n, name_len, &v, &vn);
    if (name_len == 10 && !strncasecmp(line, "connection", 10)) {
        if (sc->conn_len + vn + 2 >= sizeof sc->conn) return;
        memcpy(sc->conn + sc->conn_len, v, vn);
        sc->conn_len += vn;
        sc->conn[sc->conn_len++] = ',';
        sc->conn[sc->conn_len] = '\0';
    } else if (name_len == 17 && !strncasecmp(line, "transfer-encoding", 17)) {
        sc->te = 1; /* the last coding must be chunked, else the length is unknown */
        sc->chunked = vn >= 7 && !strncasecmp(v + vn - 7, "chunked", 7);
    } else if (name_len == 14 && !strncasecmp(line, "content-length", 14)) {
        char *e;
        char num[24];
        if (vn == 0 || vn >= sizeof num) return (void)(sc->bad = 1);
        memcpy(num, v, vn);
        num[vn] = '\0';
        unsigned long long x = strtoull(num, &e, 10);
        if (*e || num[0] == '-' || (sc->has_cl && x != sc->cl)) sc->bad = 1;
        sc->has_cl = 1;
        sc->cl = x;
    }
}

typedef struct out {
    char *buf;
    size_t len;
    const scan *sc;
} out;

static void put(out *o, const char *s, size_t n)
{
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

/* Copies the fields that go on (with their continuation lines). */
static void keep_field(void *arg, const char *line, size_t n, size_t name_len)
{
    out *o = arg;
    if (dropped(line, name_len, o->sc->conn)) return;
    /* With chunked framing a Content-Length must not go on (RFC 9112 6.3). */
    if (o->sc->chunked && name_len == 14 && !strncasecmp(line, "content-length", 14)) return;
    size_t k = n;
    while (k && (line[k - 1] == '\r' || line[k - 1] == '\n')) k--;
    put(o, line, k);
    put(o, "\r\n", 2);
}

/* The head `first` + the kept fields of `head` + extra + Connection: close. */
static char *rewrite(const char *first, size_t first_len, const char *extra, const char *head,
                     size_t hlen, const scan *sc, size_t *len)
{
    static const char closing[] = "Connection: close\r\n\r\n";
    size_t extra_len = strlen(extra);
    /* A field line ending in a bare LF grows by its CR: 2 * hlen bounds it. */
    out o = {malloc(first_len + extra_len + 2 * hlen + sizeof closing + 4), 0, sc};
    if (!o.buf) return NULL;
    put(&o, first, first_len);
    put(&o, "\r\n", 2);
    put(&o, extra, extra_len);
    each_field(head, hlen, keep_field, &o);
    put(&o, closing, sizeof closing - 1);
    *len = o.len;
    return o.buf;
}

/* ---- the request ------------------------------------------------------------------ */

static size_t answer(pxc *p, const char *status, const char *why, size_t used)
{
    if (p->srv->o->verbose) cli_warn("proxy: request refused: %s", status);
    px_http_answer(p, status, NULL, why);
    csock_stream_end(p->cs, NULL);
    return used;
}

/* host[:port] or [v6][:port] of an http:// URI's authority (userinfo cut). */
static int authority(pxc *p, const char *a, size_t n)
{
    const char *at = memchr(a, '@', n);
    if (at) n -= (size_t)(at + 1 - a), a = at + 1;
    const char *h = a, *colon = NULL;
    size_t hn = n;
    if (n && a[0] == '[') {
        const char *rb = memchr(a, ']', n);
        if (!rb) return -1;
        h = a + 1, hn = (size_t)(rb - a - 1);
        if (rb + 1 < a + n) {
            if (rb[1] != ':') return -1;
            colon = rb + 1;
        }
    } else if ((colon = memchr(a, ':', n))) {
        hn = (size_t)(colon - a);
    }
    p->port = 80;
    if (colon) {
        char num[8];
        size_t k = (size_t)(a + n - colon - 1);
        if (!k || k >= sizeof num) return -1;
        memcpy(num, colon + 1, k);
        num[k] = '\0';
        char *e;
        long port = strtol(num, &e, 10);
        if (*e || port <= 0 || port > 65535) return -1;
        p->port = (int)port;
    }
    if (!hn || hn >= sizeof p->host) return -1;
    memcpy(p->host, h, hn);
    p->host[hn] = '\0';
    return 0;
}

size_t pxf_request(pxc *p, const char *b, size_t hlen)
{
    const char *eol = memchr(b, '\n', hlen);
    size_t n = (size_t)(eol - b);
    if (n && b[n - 1] == '\r') n--;
    const char *sp1 = memchr(b, ' ', n), *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(b + n - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || n > PXF_LINE_MAX || sp1 == b)
        return answer(p, "400 Bad Request", "csock proxy: a malformed request line\n", hlen);
    const char *uri = sp1 + 1, *ver = sp2 + 1;
    size_t un = (size_t)(sp2 - uri), vn = (size_t)(b + n - ver);
    if (un >= 8 && !strncasecmp(uri, "https://", 8))
        return answer(p, "501 Not Implemented",
                      "csock proxy: https:// URIs are not forwarded; ask with CONNECT\n", hlen);
    if (un < 7 || strncasecmp(uri, "http://", 7) || vn != 8 || strncmp(ver, "HTTP/1.", 7))
        return answer(p, "400 Bad Request",
                      "csock proxy: CONNECT, or an absolute http:// URI, please\n", hlen);
    const char *auth = uri + 7, *path = auth + strcspn(auth, "/? ");
    if (path > sp2) path = sp2;
    if (authority(p, auth, (size_t)(path - auth)) < 0)
        return answer(p, "400 Bad Request", "csock proxy: a bad host or port in the URI\n", hlen);
    if (p->srv->o->proxy_auth && !px_http_auth_ok(p, b, hlen)) {
        px_http_answer(p, "407 Proxy Authentication Required",
                       "Proxy-Authenticate: Basic realm=\"csock\"\r\n", NULL);
        if (p->srv->o->verbose) cli_warn("proxy: a client without the right credentials");
        csock_stream_end(p->cs, NULL);
        return hlen;
    }
    scan sc = {.conn = ""};
    each_field(b, hlen, scan_field, &sc);
    if (sc.bad || (sc.te && !sc.chunked))
        return answer(p, "400 Bad Request", "csock proxy: the body's length is unclear\n", hlen);
    const char *ha = memchr(auth, '@', (size_t)(path - auth)); /* userinfo: not for Host */
    ha = ha ? ha + 1 : auth;
    char first[PXF_LINE_MAX + 16], host[300];
    size_t path_len = (size_t)(sp2 - path);
    int k = snprintf(first, sizeof first, "%.*s %s%.*s %.*s", (int)(sp1 - b), b,
                     path_len && *path == '/' ? "" : "/", (int)path_len, path, (int)vn, ver);
    int hk = snprintf(host, sizeof host, "Host: %.*s\r\n", (int)(path - ha), ha);
    if (hk < 0 || (size_t)hk >= sizeof host)
        return answer(p, "400 Bad Request", "csock proxy: a bad host or port in the URI\n", hlen);
    pxf *f = calloc(1, sizeof *f);
    if (f) f->head = rewrite(first, (size_t)k, host, b, hlen, &sc, &f->head_len);
    if (!f || !f->head) {
        pxf_free(f);
        return answer(p, "500 Internal Server Error", NULL, hlen);
    }
    f->chunked = sc.chunked;
    f->left = sc.chunked ? 0 : sc.cl;
    f->body_done = !sc.chunked && !sc.cl;
    p->fwd = f;
    if (p->srv->o->verbose)
        cli_warn("proxy: %.*s to %s:%d", (int)(sp1 - b), b, p->host, p->port);
    px_resolve(p);
    return hlen;
}

/* ---- the body --------------------------------------------------------------------- */

/* How many of `len` bytes are still the request's body, as its framing says. */
static size_t body_bytes(pxf *f, const char *b, size_t len)
{
    if (!f->chunked) {
        size_t n = f->left < len ? (size_t)f->left : len;
        f->left -= n;
        f->body_done = f->left == 0;
        return n;
    }
    size_t i = 0;
    while (i < len && f->ck != PXF_CK_DONE) {
        char ch = b[i];
        switch (f->ck) {
        case PXF_CK_SIZE: { /* hex digits, then an extension up to LF */
            int d = ch >= '0' && ch <= '9' ? ch - '0'
                  : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10 : -1;
            if (d >= 0 && f->chunk < (UINT64_C(1) << 56)) f->chunk = f->chunk * 16 + (uint64_t)d;
            if (ch == '\n') f->ck = f->chunk ? PXF_CK_DATA : PXF_CK_TRAILER_START;
            i++;
            break;
        }
        case PXF_CK_DATA: {
            size_t n = f->chunk < len - i ? (size_t)f->chunk : len - i;
            f->chunk -= n;
            i += n;
            if (!f->chunk) f->ck = PXF_CK_DATA_END;
            break;
        }
        case PXF_CK_DATA_END: /* the CRLF after the data */
            if (ch == '\n') f->ck = PXF_CK_SIZE;
            i++;
            break;
        case PXF_CK_TRAILER_START: /* an empty line ends the body */
            if (ch == '\n') f->ck = PXF_CK_DONE;
            else if (ch != '\r') f->ck = PXF_CK_TRAILER;
            i++;
            break;
        case PXF_CK_TRAILER:
            if (ch == '\n') f->ck = PXF_CK_TRAILER_START;
            i++;
            break;
        }
    }
    f->body_done = f->ck == PXF_CK_DONE;
    return i;
}

static size_t on_fwd_client(csock_stream *s, int status, const char *buf, size_t len)
{
    pxc *p = csock_stream_data(s);
    pxf *f = p->fwd;
    if (status < 0 && status != CSOCK_EOF) return csock_stream_close(s, NULL), len;
    size_t body = f->body_done ? 0 : body_bytes(f, buf, len);
    if (body && csock_stream_write(p->ts, buf, body) < 0) return csock_stream_close(s, NULL), len;
    if (status == CSOCK_EOF) {
        p->eof_c = 1;
        if (!f->body_done) csock_stream_close(s, NULL); /* a cut body: no request */
    } else if (csock_stream_write_queue_size(p->ts) > PX_HIGH) {
        csock_stream_read_stop(s); /* px_relay_drain resumes it */
    }
    return len; /* after the body: not ours to serve, dropped */
}

/* ---- the answer ------------------------------------------------------------------- */

/* One head of the origin's answer at b (0: not all here yet). 1xx heads go
 * on as they are; the final one is cleaned and says Connection: close.
 * *bad: 1 not an answer, -1 the client's write failed (the pair ends). */
static size_t answer_head(pxc *p, const char *b, size_t len, int *bad)
{
    const char *end = NULL;
    for (size_t i = 0; i + 4 <= len && !end; i++)
        if (!memcmp(b + i, "\r\n\r\n", 4)) end = b + i + 4;
    if (!end) return 0;
    size_t hlen = (size_t)(end - b);
    const char *eol = memchr(b, '\r', hlen);
    size_t n = (size_t)(eol - b);
    if (n < 12 || strncmp(b, "HTTP/1.", 7) || n > PXF_LINE_MAX) return *bad = 1, hlen;
    int code = atoi(b + 9);
    if (code >= 100 && code < 200 && code != 101) {
        if (px_write(p, p->cs, b, hlen) < 0) *bad = -1;
        return hlen;
    }
    scan sc = {.conn = ""};
    each_field(b, hlen, scan_field, &sc);
    sc.chunked = 0; /* the answer's framing goes on untouched */
    size_t out_len;
    char *head = rewrite(b, n, "", b, hlen, &sc, &out_len);
    if (!head) return *bad = 1, hlen;
    if (px_write(p, p->cs, head, out_len) < 0) *bad = -1;
    free(head);
    p->fwd->answered = 1;
    return hlen;
}

/* Both sides are done: each ends once its queue is out, and neither's
 * close cuts the other (on_px_closed). */
static void fwd_end(pxc *p)
{
    p->eof_c = p->eof_t = 1;
    csock_stream_end(p->cs, NULL);
    csock_stream_end(p->ts, NULL);
}

static size_t on_fwd_origin(csock_stream *s, int status, const char *buf, size_t len)
{
    pxc *p = csock_stream_data(s);
    pxf *f = p->fwd;
    int bad = 0;
    size_t used = 0, n = 1;
    if (status < 0 && status != CSOCK_EOF) return csock_stream_close(s, NULL), len;
    while (!f->answered && !bad && used < len && (n = answer_head(p, buf + used, len - used, &bad)))
        used += n;
    if (bad < 0) return len; /* px_write ended the pair */
    if (bad || (!f->answered && (status == CSOCK_EOF || len - used > PX_HEAD_MAX))) {
        if (p->srv->o->verbose) cli_warn("proxy: %s:%d: no HTTP answer", p->host, p->port);
        px_http_answer(p, "502 Bad Gateway", NULL, "csock proxy: the origin gave no HTTP answer\n");
        p->eof_c = p->eof_t = 1;
        csock_stream_end(p->cs, NULL);
        csock_stream_close(s, NULL);
        return len;
    }
    if (!f->answered) return used; /* the rest of the head is on its way */
    if (used < len && csock_stream_write(p->cs, buf + used, len - used) < 0)
        return csock_stream_close(s, NULL), len;
    if (status == CSOCK_EOF) fwd_end(p);
    else if (csock_stream_write_queue_size(p->cs) > PX_HIGH) csock_stream_read_stop(s);
    return len;
}

csock_read_cb pxf_read_cb(const pxc *p, const csock_stream *s)
{
    return s == p->cs ? on_fwd_client : on_fwd_origin;
}

void pxf_start(pxc *p)
{
    pxf *f = p->fwd;
    p->state = PX_RELAY;
    int rc = px_write(p, p->ts, f->head, f->head_len);
    free(f->head);
    f->head = NULL;
    if (rc < 0) return; /* the pair is closing */
    csock_stream *both[2] = {p->cs, p->ts};
    for (int i = 0; i < 2; i++) {
        csock_stream_set_watermarks(both[i], 0, 0); /* our own flow control */
        csock_stream_on_drain(both[i], px_relay_drain);
        csock_stream_read_start(both[i], pxf_read_cb(p, both[i]));
    }
}
