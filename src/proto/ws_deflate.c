/* permessage-deflate (RFC 7692) through zlib: the extension's offer and
 * answer in both roles, and the compressor and decompressor of a
 * connection, with zlib's memory counted against a cap and the output of
 * decompression handed out in bounded chunks (the connection stops at
 * max_message, so a compression bomb costs a chunk, not its size).
 *
 * Memory. zlib's state is made when a message first needs it, and a
 * direction without context takeover frees it after each message (the
 * next one allocates afresh): an idle connection then holds only this
 * file's small struct. With context takeover the state must live as long
 * as the connection. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "proto/ws_int.h"

#define DEFAULT_MEMORY (512u * 1024)
#define DEFAULT_THRESHOLD 64
#define DEFAULT_LEVEL 6
#define DEFAULT_MEM_LEVEL 8
/* Decompressed bytes handed to the sink at a time. */
#define INFLATE_CHUNK 16384
/* zlib's allocations carry their size in front, 16 bytes to keep alignment. */
#define ZHEAD 16

static const char PMD[] = "permessage-deflate";

/* ---- parsing Sec-WebSocket-Extensions (RFC 7230 lists, RFC 6455 9.1) ------------------ */

static int tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static size_t skip_ows(const char *v, size_t n, size_t i)
{
    while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
    return i;
}

/* A token at v[i..) into [*s, *e); returns the index after it. */
static size_t token(const char *v, size_t n, size_t i, size_t *s)
{
    *s = i;
    while (i < n && tchar((unsigned char)v[i])) i++;
    return i;
}

/* A value, token or quoted-string, at v[i..) unquoted into val (its length
 * in *vl, SIZE_MAX when it does not fit: no valid value is that long).
 * Returns the index after it, or SIZE_MAX for a syntax error. */
static size_t value(const char *v, size_t n, size_t i, char *val, size_t size, size_t *vl)
{
    *vl = 0;
    if (i < n && v[i] == '"') {
        for (i++; i < n && v[i] != '"'; i++) {
            if (v[i] == '\\' && ++i >= n) break;
            if (*vl < size) val[*vl] = v[i];
            if (*vl != SIZE_MAX) (*vl)++;
        }
        if (i >= n) return SIZE_MAX;
        i++;
    } else {
        size_t s;
        i = token(v, n, i, &s);
        if (i == s) return SIZE_MAX;
        for (size_t k = s; k < i; k++) {
            if (*vl < size) val[*vl] = v[k];
            (*vl)++;
        }
    }
    if (*vl > size) *vl = SIZE_MAX;
    return i;
}

/* Window bits: a decimal 8..15 without leading zeros; 0 when not. */
static int window_bits(const char *val, size_t vl)
{
    if (vl == 1 && val[0] >= '8' && val[0] <= '9') return val[0] - '0';
    if (vl == 2 && val[0] == '1' && val[1] >= '0' && val[1] <= '5') return 10 + val[1] - '0';
    return 0;
}

static int name_is(const char *v, size_t s, size_t e, const char *name)
{
    return e - s == strlen(name) && !memcmp(v + s, name, e - s);
}

/* Apply one parameter to *p: 0, or -1 when permessage-deflate must refuse
 * it (unknown, repeated, a value missing or wrong). `val` NULL: none. */
static int pmd_param(csock__ws_pmd *p, const char *v, size_t s, size_t e, const char *val, size_t vl)
{
    unsigned char *flag = name_is(v, s, e, "server_no_context_takeover") ? &p->server_nct
                          : name_is(v, s, e, "client_no_context_takeover") ? &p->client_nct
                                                                            : NULL;
    if (flag) {
        if (*flag || val) return -1;
        *flag = 1;
        return 0;
    }
    unsigned char *bits = name_is(v, s, e, "server_max_window_bits") ? &p->server_bits
                          : name_is(v, s, e, "client_max_window_bits") ? &p->client_bits
                                                                        : NULL;
    if (!bits || *bits) return -1;
    if (!val) {
        if (bits == &p->server_bits) return -1; /* needs a value */
        *bits = 1;
        return 0;
    }
    int b = window_bits(val, vl);
    if (!b) return -1;
    *bits = (unsigned char)b;
    return 0;
}

int csock__ws_pmd_next(const char *v, size_t n, size_t *pos, csock__ws_pmd *p)
{
    size_t i = *pos, s;
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    if (i >= n) {
        *pos = n;
        return WS_PMD_END;
    }
    i = token(v, n, i, &s);
    if (i == s) goto syntax;
    int pmd = name_is(v, s, i, PMD), bad = 0;
    memset(p, 0, sizeof *p);
    for (;;) {
        i = skip_ows(v, n, i);
        if (i >= n || v[i] == ',') break;
        if (v[i] != ';') goto syntax;
        size_t ps, pe;
        pe = token(v, n, skip_ows(v, n, i + 1), &ps);
        if (pe == ps) goto syntax;
        i = skip_ows(v, n, pe);
        char val[8];
        size_t vl = 0;
        int has_val = i < n && v[i] == '=';
        if (has_val) {
            i = value(v, n, skip_ows(v, n, i + 1), val, sizeof val, &vl);
            if (i == SIZE_MAX) goto syntax;
        }
        if (pmd && pmd_param(p, v, ps, pe, has_val ? val : NULL, vl) < 0) bad = 1;
    }
    *pos = i;
    return !pmd ? WS_PMD_OTHER : bad ? WS_PMD_BAD : WS_PMD_OK;
syntax:
    *pos = n;
    return WS_PMD_SYNTAX;
}

/* ---- choosing the parameters --------------------------------------------------------- */

/* An option's window bits: 0 (unset) is 15, and zlib's compressor cannot
 * do 8 (it would use 9 and break a peer holding it to 8): 9 then. */
static int opt_bits(unsigned char b) { return !b || b > 15 ? 15 : b < 9 ? 9 : b; }

/* What zlib allocates (zlib.h's "memory usage", plus the state structs). */
static uint64_t deflate_cost(int bits, int mem_level)
{
    return (1ull << (bits + 2)) + (1ull << (mem_level + 9)) + 6 * 1024;
}
static uint64_t inflate_cost(int bits) { return (1ull << bits) + 8 * 1024; }

/* Shrink the compressor (memLevel to 4, then the window to 9, then
 * memLevel to 1) until both states fit the cap; -1 when they cannot. */
static int fit(csock__ws_z *z)
{
    int b = z->def_bits, ml = z->def_mem_level;
    uint64_t in = inflate_cost(z->inf_bits);
    while (deflate_cost(b, ml) + in > z->mem_max) {
        if (ml > 4) ml--;
        else if (b > 9) b--;
        else if (ml > 1) ml--;
        else return -1;
    }
    z->def_bits = (unsigned char)b;
    z->def_mem_level = (unsigned char)ml;
    return 0;
}

static csock__ws_z *z_new(const csock_ws_opts *o, int def_bits, int inf_bits)
{
    csock__ws_z *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    z->mem_max = o->deflate_memory ? o->deflate_memory : DEFAULT_MEMORY;
    z->threshold = o->deflate_threshold ? o->deflate_threshold : DEFAULT_THRESHOLD;
    z->level = (signed char)(o->deflate_level >= 1 && o->deflate_level <= 9 ? o->deflate_level : DEFAULT_LEVEL);
    z->def_bits = (unsigned char)def_bits;
    z->def_mem_level = DEFAULT_MEM_LEVEL;
    /* A peer that says 8 may well be zlib using 9: a larger window decodes
     * any smaller one. */
    z->inf_bits = (unsigned char)(inf_bits < 9 ? 9 : inf_bits);
    return z;
}

/* The server's view of one offer: 1 with *out and the answer, 0 declined. */
static int accept_offer(const csock_ws_opts *o, const csock__ws_pmd *p, char *ans, size_t size,
                        csock__ws_z **out)
{
    int sb = opt_bits(o->server_max_window_bits), cb = 15;
    if (p->server_bits == 8) return 0; /* we cannot hold to 8 */
    if (p->server_bits && p->server_bits < sb) sb = p->server_bits;
    if (p->client_bits) {
        int want = opt_bits(o->client_max_window_bits);
        cb = p->client_bits > 1 ? p->client_bits : 15;
        if (want < cb) cb = want;
    }
    csock__ws_z *z = z_new(o, sb, cb);
    if (!z) return -ENOMEM;
    if (fit(z) < 0 && p->client_bits && cb > 9) { /* ask the client for less */
        cb = 9;
        z->inf_bits = 9;
        z->def_bits = (unsigned char)sb;
        z->def_mem_level = DEFAULT_MEM_LEVEL;
    }
    if (fit(z) < 0) {
        free(z);
        return 0;
    }
    int snct = p->server_nct || o->server_no_context_takeover;
    int cnct = p->client_nct || o->client_no_context_takeover;
    z->def_reset = (unsigned char)snct;
    z->inf_reset = (unsigned char)cnct;
    int n = snprintf(ans, size, "%s%s%s", PMD, snct ? "; server_no_context_takeover" : "",
                     cnct ? "; client_no_context_takeover" : "");
    if (p->server_bits) n += snprintf(ans + n, size - (size_t)n, "; server_max_window_bits=%d", sb);
    if (p->client_bits && cb < 15) snprintf(ans + n, size - (size_t)n, "; client_max_window_bits=%d", cb);
    *out = z;
    return 1;
}

int csock__ws_pmd_accept(const csock_ws_opts *o, const char *const *vals, const size_t *lens, size_t nvals,
                         char *ans, size_t anssize, csock__ws_z **out)
{
    *out = NULL;
    for (size_t k = 0; k < nvals; k++) {
        size_t pos = 0;
        csock__ws_pmd p;
        int r;
        while ((r = csock__ws_pmd_next(vals[k], lens[k], &pos, &p)) != WS_PMD_END) {
            if (r != WS_PMD_OK) continue; /* another extension, or an offer we must decline */
            int rc = accept_offer(o, &p, ans, anssize, out);
            if (rc) return rc;
        }
    }
    return 0;
}

void csock__ws_pmd_offer(const csock_ws_opts *o, char *buf, size_t size)
{
    int cb = opt_bits(o->client_max_window_bits), sb = opt_bits(o->server_max_window_bits);
    /* client_max_window_bits without a value lets the server ask for less. */
    int n = snprintf(buf, size, "%s; client_max_window_bits", PMD);
    if (cb < 15) n += snprintf(buf + n, size - (size_t)n, "=%d", cb);
    if (sb < 15) n += snprintf(buf + n, size - (size_t)n, "; server_max_window_bits=%d", sb);
    if (o->server_no_context_takeover) n += snprintf(buf + n, size - (size_t)n, "; server_no_context_takeover");
    if (o->client_no_context_takeover) snprintf(buf + n, size - (size_t)n, "; client_no_context_takeover");
}

int csock__ws_pmd_answer(const csock_ws_opts *o, const char *v, size_t n, csock__ws_z **out)
{
    size_t pos = 0;
    csock__ws_pmd p, extra;
    *out = NULL;
    if (csock__ws_pmd_next(v, n, &pos, &p) != WS_PMD_OK || csock__ws_pmd_next(v, n, &pos, &extra) != WS_PMD_END)
        return -EPROTO; /* one permessage-deflate, as offered, and nothing else */
    int cb = opt_bits(o->client_max_window_bits), sb = opt_bits(o->server_max_window_bits);
    if (p.client_bits) {
        /* The answer must give a value we can keep to: zlib cannot do 8. */
        if (p.client_bits == 1 || p.client_bits == 8 || p.client_bits > cb) return -EPROTO;
        cb = p.client_bits;
    }
    if (sb < 15 && (!p.server_bits || p.server_bits > sb)) return -EPROTO;
    if (o->server_no_context_takeover && !p.server_nct) return -EPROTO;
    csock__ws_z *z = z_new(o, cb, p.server_bits ? p.server_bits : 15);
    if (!z) return -ENOMEM;
    if (fit(z) < 0) {
        free(z);
        return -EPROTO;
    }
    z->def_reset = (unsigned char)(p.client_nct || o->client_no_context_takeover);
    z->inf_reset = p.server_nct;
    *out = z;
    return 0;
}

/* ---- zlib with counted memory -------------------------------------------------------- */

static void *zalloc(void *opaque, unsigned items, unsigned size)
{
    csock__ws_z *z = opaque;
    size_t n = (size_t)items * size;
    if (z->mem + n > z->mem_max) return Z_NULL;
    unsigned char *b = malloc(n + ZHEAD);
    if (!b) return Z_NULL;
    memcpy(b, &n, sizeof n);
    z->mem += n;
    return b + ZHEAD;
}

static void zfree(void *opaque, void *ptr)
{
    csock__ws_z *z = opaque;
    unsigned char *b = (unsigned char *)ptr - ZHEAD;
    size_t n;
    memcpy(&n, b, sizeof n);
    z->mem -= n;
    free(b);
}

static z_stream *stream_new(csock__ws_z *z)
{
    z_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->zalloc = zalloc;
    s->zfree = zfree;
    s->opaque = z;
    return s;
}

static void deflate_free(csock__ws_z *z)
{
    if (!z->def) return;
    deflateEnd(z->def);
    free(z->def);
    z->def = NULL;
}

static void inflate_free(csock__ws_z *z)
{
    if (!z->inf) return;
    inflateEnd(z->inf);
    free(z->inf);
    z->inf = NULL;
    z->inf_ended = 0;
}

void csock__ws_z_free(csock__ws_z *z)
{
    if (!z) return;
    deflate_free(z);
    inflate_free(z);
    free(z);
}

void csock__ws_deflate_drop(csock__ws_z *z) { deflate_free(z); }

static int deflate_start(csock__ws_z *z)
{
    if (z->def) return 0;
    if (!(z->def = stream_new(z))) return -ENOMEM;
    /* Negative window bits: a raw deflate stream, no zlib header. */
    if (deflateInit2(z->def, z->level, Z_DEFLATED, -z->def_bits, z->def_mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z->def); /* a failed init leaves nothing allocated */
        z->def = NULL;
        return -ENOMEM;
    }
    return 0;
}

static int inflate_start(csock__ws_z *z)
{
    if (z->inf) return 0;
    if (!(z->inf = stream_new(z))) return -ENOMEM;
    if (inflateInit2(z->inf, -z->inf_bits) != Z_OK) {
        free(z->inf);
        z->inf = NULL;
        return -ENOMEM;
    }
    return 0;
}

static int grow(unsigned char **b, size_t *cap)
{
    unsigned char *nb = realloc(*b, *cap * 2);
    if (!nb) return -ENOMEM;
    *b = nb;
    *cap *= 2;
    return 0;
}

int csock__ws_deflate(csock__ws_z *z, const void *buf, size_t len, int fin, size_t headroom,
                      unsigned char **out, size_t *outlen)
{
    if (deflate_start(z) < 0) return -ENOMEM;
    z_stream *s = z->def;
    size_t cap = headroom + deflateBound(s, len) + 16, used = headroom, left = len;
    const unsigned char *p = buf;
    unsigned char *b = malloc(cap);
    if (!b) return -ENOMEM;
    for (;;) {
        if (cap - used < 64 && grow(&b, &cap) < 0) {
            free(b);
            csock__ws_deflate_drop(z); /* it took input the peer will never see */
            return -ENOMEM;
        }
        if (!s->avail_in && left) {
            size_t k = left < UINT_MAX ? left : UINT_MAX;
            s->next_in = (Bytef *)p;
            s->avail_in = (uInt)k;
            p += k;
            left -= k;
        }
        size_t room = cap - used < UINT_MAX ? cap - used : UINT_MAX;
        s->next_out = b + used;
        s->avail_out = (uInt)room;
        /* A sync flush ends every part on a byte boundary with an empty
         * stored block: the peer can inflate all we sent so far. */
        int rc = deflate(s, left ? Z_NO_FLUSH : Z_SYNC_FLUSH);
        used += room - s->avail_out;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            free(b);
            csock__ws_deflate_drop(z);
            return -ENOMEM; /* zlib's only failure here is a broken state */
        }
        if (!left && !s->avail_in && s->avail_out) break;
    }
    /* The last part loses the flush's 0x00 0x00 0xff 0xff (RFC 7692 7.2.1);
     * earlier parts keep it: an empty stored block inside the stream. */
    if (fin && used - headroom >= 4) {
        used -= 4;
    } else if (fin) {
        /* Nothing to flush (an empty message right after another: zlib
         * has no new block to make): an empty stored block's first byte,
         * which the peer's appended tail completes (RFC 7692 7.2.3.6). */
        b[used++] = 0x00;
    }
    if (fin && z->def_reset) deflate_free(z); /* next message: a fresh state */
    *out = b;
    *outlen = used - headroom;
    return 0;
}

/* Inflate in[0..n), the output to the sink a chunk at a time. */
static int inflate_run(csock__ws_z *z, const unsigned char *in, size_t n, csock__ws_sink sink, void *ctx)
{
    unsigned char out[INFLATE_CHUNK];
    z_stream *s = z->inf;
    while (n && !z->inf_ended) {
        size_t k = n < UINT_MAX ? n : UINT_MAX;
        s->next_in = (Bytef *)in;
        s->avail_in = (uInt)k;
        in += k;
        n -= k;
        for (;;) {
            s->next_out = out;
            s->avail_out = sizeof out;
            int rc = inflate(s, Z_SYNC_FLUSH);
            size_t got = sizeof out - s->avail_out;
            if (got) {
                int e = sink(ctx, out, got);
                if (e) return e;
            }
            if (rc == Z_STREAM_END) { /* a final block: what follows in this message is ignored */
                z->inf_ended = 1;
                return 0;
            }
            if (rc == Z_MEM_ERROR) return -ENOMEM;
            if (rc != Z_OK && rc != Z_BUF_ERROR) return -EPROTO;
            if (rc == Z_BUF_ERROR || (!s->avail_in && s->avail_out)) break;
        }
    }
    return 0;
}

int csock__ws_inflate(csock__ws_z *z, const unsigned char *in, size_t n, int last, csock__ws_sink sink,
                      void *ctx)
{
    static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (inflate_start(z) < 0) return -ENOMEM;
    int rc = inflate_run(z, in, n, sink, ctx);
    if (rc == 0 && last) rc = inflate_run(z, tail, sizeof tail, sink, ctx);
    if (rc == 0 && last) {
        if (z->inf_reset) {
            inflate_free(z);
        } else if (z->inf_ended) { /* the peer began anew after its final block */
            inflateReset(z->inf);
            z->inf_ended = 0;
        }
    }
    return rc;
}
