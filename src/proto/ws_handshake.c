/* The WebSocket opening handshake (RFC 6455 section 4): the server's
 * answer to an upgrade request (through csock_http_upgrade), the client's
 * request and its check of the answer, and the SHA-1 and base64 the
 * Sec-WebSocket-Accept field is made of. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "proto/ws_int.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* The client's answer head must fit here (servers send a few hundred
 * bytes). */
#define ANSWER_MAX 8192
/* A refusal's answer head kept for CLOSED: its status line and the first
 * fields (a Location, a WWW-Authenticate) are what a user needs. */
#define ANSWER_KEEP 1024
#define DEFAULT_HANDSHAKE_MS 10000

/* ---- SHA-1 (FIPS 180-4) and base64 ------------------------------------------------ */

static uint32_t rol(uint32_t x, int n) { return x << n | x >> (32 - n); }

static void sha1_block(uint32_t h[5], const unsigned char *b)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (bb & c) | (~bb & d), k = 0x5a827999;
        else if (i < 40) f = bb ^ c ^ d, k = 0x6ed9eba1;
        else if (i < 60) f = (bb & c) | (bb & d) | (c & d), k = 0x8f1bbcdc;
        else f = bb ^ c ^ d, k = 0xca62c1d6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(bb, 30);
        bb = a;
        a = t;
    }
    h[0] += a, h[1] += bb, h[2] += c, h[3] += d, h[4] += e;
}

void csock__sha1(const void *data, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    const unsigned char *p = data;
    size_t left = len;
    for (; left >= 64; left -= 64, p += 64) sha1_block(h, p);
    unsigned char b[128] = {0};
    memcpy(b, p, left);
    b[left] = 0x80;
    size_t n = left < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) b[n - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha1_block(h, b);
    if (n == 128) sha1_block(h, b + 64);
    for (int i = 0; i < 20; i++) out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void csock__base64(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        *out++ = B64[v >> 18 & 63];
        *out++ = B64[v >> 12 & 63];
        *out++ = i + 1 < n ? B64[v >> 6 & 63] : '=';
        *out++ = i + 2 < n ? B64[v & 63] : '=';
    }
    *out = 0;
}

void csock__ws_accept_key(const char *key, size_t len, char out[29])
{
    char buf[128];
    unsigned char d[20];
    if (len > sizeof buf - sizeof WS_GUID) len = sizeof buf - sizeof WS_GUID;
    memcpy(buf, key, len);
    memcpy(buf + len, WS_GUID, sizeof WS_GUID - 1);
    csock__sha1(buf, len + sizeof WS_GUID - 1, d);
    csock__base64(d, 20, out);
}

/* ---- field values ------------------------------------------------------------------ */

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c | 0x20 : c; }

static int eq_nocase(const char *a, size_t n, const char *b)
{
    if (strlen(b) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
    return 1;
}

/* Does the comma-separated list v[0..n) hold `token` (case-insensitive when
 * `nocase`)? */
static int list_has(const char *v, size_t n, const char *token, int nocase)
{
    size_t i = 0, tl = strlen(token);
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t s = i;
        while (i < n && v[i] != ',') i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e - s == tl && (nocase ? eq_nocase(v + s, tl, token) : !memcmp(v + s, token, tl))) return 1;
    }
    return 0;
}

/* Does any field `name` of the request list `token`? */
static int req_has(const csock_http_req *r, const char *name, const char *token, int nocase)
{
    csock_http_str fn, fv;
    for (size_t i = 0; csock_http_header_at(r, i, &fn, &fv) == 0; i++)
        if (eq_nocase(fn.ptr, fn.len, name) && list_has(fv.ptr, fv.len, token, nocase)) return 1;
    return 0;
}

/* ---- the server ---------------------------------------------------------------------- */

int csock_ws_is_upgrade(const csock_http_req *r) { return req_has(r, "Upgrade", "websocket", 1); }

static int refuse(csock_http_req *r, int status, int rc)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, csock_http_reason(status));
    csock_http_add_header(r, "Content-Type", "text/plain");
    int sr = csock_http_send(r, status, body, (size_t)n);
    return sr == -EPIPE || sr == -ENOMEM ? sr : rc;
}

/* A key is 16 bytes in base64: 22 characters and "==". */
static int key_ok(csock_http_str k)
{
    if (k.len != 24 || k.ptr[22] != '=' || k.ptr[23] != '=') return 0;
    for (size_t i = 0; i < 22; i++)
        if (!memchr(B64, k.ptr[i], 64)) return 0;
    return 1;
}

static int origin_ok(const csock_http_req *r, const csock_ws_opts *o)
{
    if (!o->origins) return 1;
    csock_http_str v = csock_http_get_header(r, "Origin");
    if (!v.ptr) return 1; /* not a browser: Origin guards browsers' users only */
    for (size_t i = 0; i < o->norigins; i++)
        if (eq_nocase(v.ptr, v.len, o->origins[i])) return 1;
    return 0;
}

static const char *pick_subprotocol(const csock_http_req *r, const csock_ws_opts *o)
{
    for (size_t i = 0; i < o->nsubprotocols; i++)
        if (req_has(r, "Sec-WebSocket-Protocol", o->subprotocols[i], 0)) return o->subprotocols[i];
    return NULL;
}

/* The extension to answer with, when opts->deflate and the client offered
 * one we can honour: 1 and ws->z (ans filled), 0 none, -ENOMEM. */
#define EXT_FIELDS_MAX 8
static int pick_extension(const csock_http_req *r, const csock_ws_opts *o, csock_ws *ws, char *ans,
                          size_t size)
{
    if (!o->deflate) return 0;
    const char *vals[EXT_FIELDS_MAX];
    size_t lens[EXT_FIELDS_MAX], n = 0;
    csock_http_str fn, fv;
    for (size_t i = 0; n < EXT_FIELDS_MAX && csock_http_header_at(r, i, &fn, &fv) == 0; i++)
        if (eq_nocase(fn.ptr, fn.len, "Sec-WebSocket-Extensions")) {
            vals[n] = fv.ptr;
            lens[n++] = fv.len;
        }
    return csock__ws_pmd_accept(o, vals, lens, n, ans, size, &ws->z);
}

int csock_ws_accept(csock_http_req *r, const csock_ws_opts *opts, csock_ws_cb cb, void *data,
                    csock_ws **out)
{
    csock_ws_opts none = {0};
    if (!opts) opts = &none;
    if (!cb) return -EINVAL;
    csock_http_str m = csock_http_method(r);
    if (m.len != 3 || memcmp(m.ptr, "GET", 3)) {
        csock_http_add_header(r, "Allow", "GET");
        return refuse(r, 405, -EPROTO);
    }
    if (csock_http_minor(r) < 1 || !csock_ws_is_upgrade(r) || !req_has(r, "Connection", "upgrade", 1))
        return refuse(r, 400, -EPROTO);
    csock_http_str v = csock_http_get_header(r, "Sec-WebSocket-Version");
    if (v.len != 2 || memcmp(v.ptr, "13", 2)) {
        csock_http_add_header(r, "Sec-WebSocket-Version", "13");
        return refuse(r, 426, -EPROTO);
    }
    csock_http_str key = csock_http_get_header(r, "Sec-WebSocket-Key");
    if (!key_ok(key)) return refuse(r, 400, -EPROTO);
    if (!origin_ok(r, opts)) return refuse(r, 403, -EACCES);
    const char *proto = pick_subprotocol(r, opts);
    csock_stream *s = csock_http_stream(r);
    csock_ws *ws = NULL;
    int rc = csock__ws_new(s ? csock_stream_loop(s) : NULL, opts, 0, cb, data, &ws);
    if (rc == 0 && proto && !(ws->subprotocol = strdup(proto))) rc = -ENOMEM;
    char ext[192];
    int has_ext = rc == 0 ? pick_extension(r, opts, ws, ext, sizeof ext) : 0;
    if (has_ext < 0) rc = has_ext;
    if (rc < 0) {
        if (ws) csock__ws_free(ws);
        csock_http_close_after(r);
        refuse(r, 500, rc);
        return -ENOMEM;
    }
    char acc[29];
    csock__ws_accept_key(key.ptr, key.len, acc);
    csock_http_add_header(r, "Upgrade", "websocket");
    csock_http_add_header(r, "Sec-WebSocket-Accept", acc);
    if (proto) csock_http_add_header(r, "Sec-WebSocket-Protocol", proto);
    if (has_ext > 0) csock_http_add_header(r, "Sec-WebSocket-Extensions", ext);
    rc = csock_http_upgrade(r, csock__ws_on_read, ws, &s);
    if (rc < 0) {
        csock__ws_free(ws);
        return rc;
    }
    ws->loop = csock_stream_loop(s);
    csock__ws_attach(ws, s);
    *out = ws;
    return 0;
}

/* ---- the client ------------------------------------------------------------------------ */

struct ws_client {
    char accept[29];    /* the Sec-WebSocket-Accept we expect */
    int http_status;    /* a refusal's status code (CLOSED's http_status) */
    char *offered;      /* the subprotocols we offered, "a, b" (NULL: none) */
    char *req;          /* the request, until it is written on the stream */
    size_t reqlen;
    csock_dial *dial;   /* csock_ws_connect's dial while it runs */
    csock_tls_ctx *own_tls; /* the default wss:// context, held until the dial
                           is over (the TLS stream then holds its own reference) */
    csock_ws_opts opts; /* what we offered for compression (its pointers unused) */
};

/* The dial is over, won or lost: what it needed goes. */
static void dial_done(struct ws_client *cl)
{
    if (cl->dial) csock_dial_cancel(cl->dial);
    cl->dial = NULL;
    csock_tls_ctx_free(cl->own_tls);
    cl->own_tls = NULL;
}

void csock__ws_client_free(csock_ws *ws)
{
    if (!ws->cl) return;
    dial_done(ws->cl);
    free(ws->cl->req);
    free(ws->cl->offered);
    free(ws->cl);
    ws->cl = NULL;
}

void csock__ws_client_cancel(csock_ws *ws)
{
    if (ws->cl) dial_done(ws->cl);
}

int csock__ws_http_status(const csock_ws *ws) { return ws->cl ? ws->cl->http_status : 0; }

/* A refused handshake: the answer's status code and its head go to CLOSED
 * (what a user needs to see why: 403, 404, a proxy's 502...). */
static void keep_refusal(csock_ws *ws, const char *h, size_t n)
{
    unsigned code = 0;
    if (n >= 13 && !memcmp(h, "HTTP/1.", 7) && h[8] == ' ')
        for (size_t i = 9; i < 12 && h[i] >= '0' && h[i] <= '9'; i++) code = code * 10 + (unsigned)(h[i] - '0');
    if (code < 100 || code > 999 || code == 101) return; /* not a status line, or a 101 that failed a check */
    ws->cl->http_status = (int)code;
    if (n > ANSWER_KEEP) n = ANSWER_KEEP;
    free(ws->peer_reason);
    if ((ws->peer_reason = malloc(n))) { /* without memory: the code alone */
        memcpy(ws->peer_reason, h, n);
        ws->peer_reason_len = n;
    }
}

void csock__ws_client_timeout(csock_ws *ws)
{
    if (!ws->s) return csock__ws_end_unattached(ws, -ETIMEDOUT); /* still dialling */
    ws->status = -ETIMEDOUT;
    ws->state = WS_ENDED;
    csock_stream_close(ws->s, NULL);
}

static void hs_fail(csock_ws *ws, int status)
{
    ws->status = status;
    ws->state = WS_ENDED;
    if (ws->timer) csock_timer_stop(ws->timer);
    csock_stream_close(ws->s, NULL);
}

/* The value of field `name` in the head h[0..n) (lines after the status
 * line), or NULL; *vl its length. A repeated field is refused (-1 in *vl):
 * each the handshake looks at is allowed once. */
static const char *answer_field(const char *h, size_t n, const char *name, size_t *vl)
{
    const char *found = NULL, *p = memchr(h, '\n', n), *end = h + n;
    size_t nl = strlen(name);
    while (p && p + 1 < end) {
        const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) break;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon && (size_t)(colon - line) == nl && eq_nocase(line, nl, name)) {
            if (found) {
                *vl = (size_t)-1;
                return found;
            }
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            found = v;
            *vl = (size_t)(ve - v);
        }
        p = eol;
    }
    return found;
}

/* Check the server's answer head h[0..n): 0 or -EPROTO. */
static int check_answer(csock_ws *ws, const char *h, size_t n)
{
    if (n < 12 || memcmp(h, "HTTP/1.1 101", 12) || (n > 12 && h[12] != ' ' && h[12] != '\r'))
        return -EPROTO;
    size_t ul = 0, cl = 0, al = 0, el = 0, pl = 0;
    const char *u = answer_field(h, n, "Upgrade", &ul), *c = answer_field(h, n, "Connection", &cl);
    const char *a = answer_field(h, n, "Sec-WebSocket-Accept", &al);
    const char *e = answer_field(h, n, "Sec-WebSocket-Extensions", &el);
    const char *p = answer_field(h, n, "Sec-WebSocket-Protocol", &pl);
    if (!u || ul == (size_t)-1 || !list_has(u, ul, "websocket", 1)) return -EPROTO;
    if (!c || cl == (size_t)-1 || !list_has(c, cl, "upgrade", 1)) return -EPROTO;
    if (!a || al != 28 || memcmp(a, ws->cl->accept, 28)) return -EPROTO;
    if (e) { /* only what we offered: permessage-deflate, if we did */
        if (el == (size_t)-1 || !ws->cl->opts.deflate) return -EPROTO;
        int rc = csock__ws_pmd_answer(&ws->cl->opts, e, el, &ws->z);
        if (rc < 0) return rc;
    }
    if (p) {
        if (pl == (size_t)-1 || !pl || memchr(p, ',', pl) || !ws->cl->offered) return -EPROTO;
        char tok[256];
        if (pl >= sizeof tok) return -EPROTO;
        memcpy(tok, p, pl);
        tok[pl] = 0;
        if (!list_has(ws->cl->offered, strlen(ws->cl->offered), tok, 0)) return -EPROTO;
        if (!(ws->subprotocol = strdup(tok))) return -ENOMEM;
    }
    return 0;
}

static size_t on_answer(csock_stream *s, int status, const char *buf, size_t len)
{
    csock_ws *ws = csock_stream_data(s);
    if (ws->state == WS_ENDED) return len;
    if (status < 0 && status != CSOCK_EOF) {
        hs_fail(ws, status);
        return len;
    }
    const char *end = NULL;
    for (const char *p = buf; p + 3 < buf + len; p++)
        if (p[0] == '\r' && p[1] == '\n' && p[2] == '\r' && p[3] == '\n') {
            end = p + 4;
            break;
        }
    if (!end) {
        if (status == CSOCK_EOF) hs_fail(ws, CSOCK_EOF);
        else if (len > ANSWER_MAX) hs_fail(ws, -EPROTO);
        return 0;
    }
    size_t head = (size_t)(end - buf);
    int rc = check_answer(ws, buf, head);
    if (rc < 0) {
        if (rc == -EPROTO) keep_refusal(ws, buf, head);
        hs_fail(ws, rc);
        return len;
    }
    csock__ws_client_free(ws);
    csock__ws_attach(ws, s);
    csock_stream_read_start(s, csock__ws_on_read);
    if (ws->paused) csock_stream_read_stop(s); /* csock_ws_read_stop while connecting */
    csock__ws_opened(ws, buf, head);
    if (ws->state == WS_ENDED || (head == len && status == 0)) return head;
    return head + csock__ws_on_read(s, status, buf + head, len - head);
}

/* Split ws://HOST[:PORT][/PATH] (or wss://) into the address to dial
 * (tcp://HOST:PORT or tls://...), the Host field and the request target.
 * Returns 0 (ws), 1 (wss) or an error. Nothing is resolved here. */
static int parse_url(const char *url, char *text, size_t tsize, char *host, size_t hsize,
                     const char **target)
{
    int tls = !strncasecmp(url, "wss://", 6);
    if (!tls && strncasecmp(url, "ws://", 5)) return strstr(url, "://") ? CSOCK_ESCHEME : -EINVAL;
    const char *h = url + (tls ? 6 : 5);
    size_t hl = strcspn(h, "/?#");
    if (!hl || hl >= hsize - 8 || h[hl] == '#') return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    *target = h + hl;
    for (const unsigned char *t = (const unsigned char *)*target; *t; t++)
        if (*t <= ' ' || *t == 0x7f) return -EINVAL; /* no field smuggled into the request */
    const char *close = host[0] == '[' ? strchr(host, ']') : NULL;
    int has_port = close ? close[1] == ':' : strchr(host, ':') != NULL;
    snprintf(text, tsize, "%s://%s%s", tls ? "tls" : "tcp", host, has_port ? "" : tls ? ":443" : ":80");
    /* The syntax now, without DNS: a typo fails the call. */
    csock_addr addr;
    int rc = csock_addr_parse(text, CSOCK_ADDR_NUMERIC, &addr);
    return rc < 0 && rc != CSOCK_ENONAME ? rc : tls;
}

static int build_request(const char *host, const char *target, const csock_ws_opts *o, const char *key,
                         char **out, size_t *outlen, char **offered)
{
    size_t need = strlen(host) + strlen(target) + 256, off = 0;
    for (size_t i = 0; i < o->nsubprotocols; i++) off += strlen(o->subprotocols[i]) + 2;
    for (size_t i = 0; i < o->nheaders; i++) {
        const char *hd = o->headers[i];
        if (strpbrk(hd, "\r\n") || !strchr(hd, ':') || hd[0] == ':') return -EINVAL;
        need += strlen(hd) + 2;
    }
    need += off + 32;
    char ext[192] = "";
    if (o->deflate) {
        csock__ws_pmd_offer(o, ext, sizeof ext);
        need += strlen(ext) + 32;
    }
    char *b = malloc(need), *p = b;
    *offered = NULL;
    if (off && !(*offered = malloc(off + 1))) {
        free(b);
        return -ENOMEM;
    }
    if (!b) {
        free(*offered);
        return -ENOMEM;
    }
    if (*offered) {
        char *q = *offered;
        for (size_t i = 0; i < o->nsubprotocols; i++)
            q += sprintf(q, "%s%s", i ? ", " : "", o->subprotocols[i]);
    }
    p += sprintf(p, "GET %s%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
                 target[0] == '/' ? "" : "/", target, host, key);
    if (*offered) p += sprintf(p, "Sec-WebSocket-Protocol: %s\r\n", *offered);
    if (ext[0]) p += sprintf(p, "Sec-WebSocket-Extensions: %s\r\n", ext);
    for (size_t i = 0; i < o->nheaders; i++) p += sprintf(p, "%s\r\n", o->headers[i]);
    p += sprintf(p, "\r\n");
    *out = b;
    *outlen = (size_t)(p - b);
    return 0;
}

/* A client connection for `url` (not yet on a stream): the request made,
 * the handshake timer running. Returns 0 (ws), 1 (wss) or an error, with
 * the dial address in text. */
static int client_new(csock_loop *loop, const char *url, const csock_ws_opts *opts, csock_ws_cb cb,
                      void *data, char *text, size_t tsize, csock_ws **out)
{
    char host[264];
    const char *target;
    int tls = parse_url(url, text, tsize, host, sizeof host, &target);
    if (tls < 0) return tls;
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return -EAGAIN;
    char key[25];
    csock__base64(raw, sizeof raw, key);
    char *req, *offered;
    size_t reqlen;
    int rc = build_request(host, target, opts, key, &req, &reqlen, &offered);
    if (rc < 0) return rc;
    csock_ws *ws = NULL;
    rc = csock__ws_new(loop, opts, 1, cb, data, &ws);
    if (rc == 0 && !(ws->cl = calloc(1, sizeof *ws->cl))) rc = -ENOMEM;
    if (rc < 0) {
        free(offered);
        free(req);
        if (ws) csock__ws_free(ws);
        return rc;
    }
    ws->cl->offered = offered;
    ws->cl->req = req;
    ws->cl->reqlen = reqlen;
    ws->cl->opts = *opts;
    csock__ws_accept_key(key, 24, ws->cl->accept);
    rc = csock__ws_timer(ws, opts->handshake_timeout_ms ? opts->handshake_timeout_ms : DEFAULT_HANDSHAKE_MS);
    if (rc < 0) {
        csock__ws_free(ws);
        return rc;
    }
    *out = ws;
    return tls;
}

/* Put the connection on its connected stream: read the answer, send the
 * request. Returns 0, or an error with the stream untouched (still the
 * caller's). */
static int start_on(csock_ws *ws, csock_stream *s)
{
    csock_stream_set_data(s, ws);
    int rc = csock_stream_read_start(s, on_answer);
    if (rc == 0) rc = csock_stream_write(s, ws->cl->req, ws->cl->reqlen);
    if (rc < 0) {
        csock_stream_read_stop(s);
        csock_stream_set_data(s, NULL);
        return rc;
    }
    free(ws->cl->req);
    ws->cl->req = NULL;
    ws->s = s;
    csock_stream_on_close(s, csock__ws_on_closed);
    return 0;
}

static void on_dialed(csock_dial *d, int status, csock_stream *s)
{
    csock_ws *ws = csock_dial_data(d);
    ws->cl->dial = NULL; /* freed when this returns */
    dial_done(ws->cl);
    if (status == 0 && (status = start_on(ws, s)) < 0) csock_stream_close(s, NULL);
    if (status < 0) csock__ws_end_unattached(ws, status); /* from the loop: CLOSED now */
}

int csock_ws_connect(csock_loop *loop, const char *url, const csock_ws_opts *opts, csock_ws_cb cb,
                     void *data, csock_ws **out)
{
    csock_ws_opts none = {0};
    if (!opts) opts = &none;
    if (!loop || !url || !cb || !out) return -EINVAL;
    char text[300];
    csock_ws *ws;
    int tls = client_new(loop, url, opts, cb, data, text, sizeof text, &ws);
    if (tls < 0) return tls;
    csock_dial_opts dopts = {.tls = opts->tls};
    int rc = 0;
    if (tls && !dopts.tls) { /* a verifying context with the system's CAs */
        csock_tls_opts to = {0};
        rc = csock_tls_ctx_new(&to, &ws->cl->own_tls, NULL, 0);
        dopts.tls = ws->cl->own_tls;
    }
    if (rc == 0) rc = csock_dial_start(loop, text, &dopts, on_dialed, ws, &ws->cl->dial);
    if (rc < 0) {
        ws->cl->dial = NULL;
        csock__ws_free(ws);
        return rc;
    }
    *out = ws;
    return 0;
}

int csock_ws_connect_stream(csock_stream *s, const char *url, const csock_ws_opts *opts, csock_ws_cb cb,
                            void *data, csock_ws **out)
{
    csock_ws_opts none = {0};
    if (!opts) opts = &none;
    if (!s || !url || !cb || !out) return -EINVAL;
    char text[300];
    csock_ws *ws;
    int rc = client_new(csock_stream_loop(s), url, opts, cb, data, text, sizeof text, &ws);
    if (rc < 0) return rc;
    if ((rc = start_on(ws, s)) < 0) {
        csock__ws_free(ws);
        return rc;
    }
    *out = ws;
    return 0;
}
