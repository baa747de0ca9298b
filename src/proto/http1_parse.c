/* HTTP/1.1 request heads and chunked bodies (RFC 9112), parsed without I/O or
 * allocation. See http1_parse.h for the contract.
 *
 * The head parser works a whole line at a time: it finds a line's LF before
 * looking at the line, so a prefix of a valid head can only ever be
 * INCOMPLETE, never an error, and every error is final (more bytes cannot
 * make it valid). Like picohttpparser it rescans from the start on each call;
 * heads are small and bounded by max_head, so that is cheap and stateless.
 *
 * Strictness is deliberate: anything two HTTP implementations could read two
 * ways (the request smuggling cases of RFC 9112 sections 6.1, 6.3 and 11.2)
 * is answered 400, not guessed at.
 */
#include "proto/http1_parse.h"

#include <limits.h>
#include <string.h>

/* ---- character classes ---------------------------------------------------- */

/* The character classes, one table lookup per byte: the head's bytes are
 * each checked once, and a lookup is a third of the compares (and the
 * strchr of tchar's symbols) it replaces. The table is built by the
 * compiler from the rules below, written as the RFCs state them. */
enum { CL_TCHAR = 1, CL_FIELD = 2, CL_TARGET = 4 };

/* tchar (RFC 9110 5.6.2): methods and field names. */
#define TCHAR(c)                                                                              \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') || ((c) >= '0' && (c) <= '9') || \
     (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\'' ||       \
     (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||         \
     (c) == '`' || (c) == '|' || (c) == '~')
/* field-vchar / SP / HTAB / obs-text: anything but controls (CR, LF, NUL, DEL). */
#define FIELD(c) ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f))
/* Visible ASCII: the request-target has no spaces, controls or raw non-ASCII
 * (URIs percent-encode those; accepting them only widens what proxies disagree on). */
#define TARGET(c) ((c) > 0x20 && (c) < 0x7f)
#define CL(c)                                                                   \
    (unsigned char)((TCHAR(c) ? CL_TCHAR : 0) | (FIELD(c) ? CL_FIELD : 0) | \
                    (TARGET(c) ? CL_TARGET : 0))
#define CL4(c) CL(c), CL((c) + 1), CL((c) + 2), CL((c) + 3)
#define CL16(c) CL4(c), CL4((c) + 4), CL4((c) + 8), CL4((c) + 12)
#define CL64(c) CL16(c), CL16((c) + 16), CL16((c) + 32), CL16((c) + 48)
static const unsigned char char_class[256] = {CL64(0), CL64(64), CL64(128), CL64(192)};

static bool is_tchar(unsigned char c) { return char_class[c] & CL_TCHAR; }
static bool is_field_char(unsigned char c) { return char_class[c] & CL_FIELD; }
static bool is_target_char(unsigned char c) { return char_class[c] & CL_TARGET; }

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* ---- slices ----------------------------------------------------------------- */

static csock_http_slice slice_trim(const char *p, size_t n)
{
    while (n > 0 && is_ows((unsigned char)p[0]))
        p++, n--;
    while (n > 0 && is_ows((unsigned char)p[n - 1]))
        n--;
    return (csock_http_slice){p, n};
}

/* ASCII case-insensitive comparison with a lower-case literal; independent of
 * the C locale, unlike strncasecmp(). */
static bool slice_is(csock_http_slice s, const char *lower)
{
    size_t n = strlen(lower);
    if (s.len != n) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c >= 'A' && c <= 'Z') c |= 0x20;
        if (c != (unsigned char)lower[i]) return false;
    }
    return true;
}

/* Cut the next comma-separated element (OWS trimmed, possibly empty) from
 * *list into *el. Returns false once the list is used up. */
static bool list_next(csock_http_slice *list, csock_http_slice *el)
{
    if (list->ptr == NULL) return false;
    const char *comma = memchr(list->ptr, ',', list->len);
    size_t n = comma ? (size_t)(comma - list->ptr) : list->len;
    *el = slice_trim(list->ptr, n);
    if (comma) {
        list->ptr = comma + 1;
        list->len -= n + 1;
    } else {
        list->ptr = NULL;
    }
    return true;
}

/* 1*DIGIT into an int64_t: no sign, no spaces, no overflow. */
static bool parse_decimal(csock_http_slice s, int64_t *out)
{
    int64_t v = 0;
    if (s.len == 0) return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c < '0' || c > '9' || v > (INT64_MAX - (c - '0')) / 10) return false;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

/* ---- lines ------------------------------------------------------------------ */

typedef struct cursor {
    const char *buf;
    size_t len;
    size_t pos;      /* start of the next line */
    size_t line_max; /* request-line limit */
    size_t head_max; /* whole-head limit; also bounds the LF search */
} cursor;

/* Limits are clamped to INT_MAX because the head's length is returned as int. */
static size_t clamp_limit(size_t v, size_t dflt)
{
    if (v == 0) v = dflt;
    return v > INT_MAX ? INT_MAX : v;
}

/* The next line, without its terminator. CRLF ends a line and so, as RFC 9112
 * section 2.2 allows a recipient, does a bare LF: some clients and scripts
 * send one, and it cannot be read as anything else. A CR that does not
 * precede the LF stays in the line, where every field's grammar rejects it. */
static int next_line(cursor *c, csock_http_slice *line)
{
    size_t end = c->len < c->head_max ? c->len : c->head_max;
    const char *lf = NULL;
    if (c->pos < end) lf = memchr(c->buf + c->pos, '\n', end - c->pos);
    if (lf == NULL) return c->len >= c->head_max ? CSOCK_HTTP_EHDRTOOBIG : CSOCK_HTTP_INCOMPLETE;
    size_t n = (size_t)(lf - (c->buf + c->pos));
    line->ptr = c->buf + c->pos;
    line->len = (n > 0 && lf[-1] == '\r') ? n - 1 : n;
    c->pos += n + 1;
    return 0;
}

/* As next_line(), but a line longer than line_max is 414, decided as soon as
 * that many bytes (plus room for CRLF) have arrived without an LF. */
static int read_request_line(cursor *c, csock_http_slice *line)
{
    size_t start = c->pos;
    int r = next_line(c, line);
    if (r == 0) return line->len > c->line_max ? CSOCK_HTTP_EURITOOLONG : 0;
    if (c->len - start >= c->line_max + 2) return CSOCK_HTTP_EURITOOLONG;
    return r;
}

/* ---- request line ----------------------------------------------------------- */

/* HTTP-version = "HTTP/" DIGIT "." DIGIT. A well-formed version other than 1.x
 * is 505; a 1.x above 1.1 is read as 1.1 (RFC 9110 section 6.2). */
static int parse_version(const char *p, size_t n, int *minor)
{
    if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' ||
        p[7] < '0' || p[7] > '9')
        return CSOCK_HTTP_EBADREQ;
    if (p[5] != '1') return CSOCK_HTTP_EVERSION;
    *minor = p[7] == '0' ? 0 : 1;
    return 0;
}

/* method SP request-target SP HTTP-version, single spaces only. A line with no
 * version (HTTP/0.9's "GET /") has too few fields and is 400. */
static int parse_request_line(csock_http_slice line, csock_http_request *req)
{
    const unsigned char *p = (const unsigned char *)line.ptr;
    size_t n = line.len, i = 0;

    while (i < n && is_tchar(p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ' ') return CSOCK_HTTP_EBADREQ;
    req->method = (csock_http_slice){line.ptr, i};

    size_t t = ++i;
    while (i < n && is_target_char(p[i]))
        i++;
    if (i == t || i == n || p[i] != ' ') return CSOCK_HTTP_EBADREQ;
    req->target = (csock_http_slice){line.ptr + t, i - t};

    i++;
    return parse_version(line.ptr + i, n - i, &req->minor_version);
}

/* ---- header fields ---------------------------------------------------------- */

/* What the framing fields said, gathered while the fields go by and judged
 * once the head is complete (a later field can change the verdict). */
typedef struct head_facts {
    int64_t content_length; /* -1 when absent */
    unsigned host_count;
    bool has_te;          /* a Transfer-Encoding field was present */
    bool te_chunked;      /* chunked appeared in it */
    bool te_chunked_last; /* ...as the final coding */
    bool te_other;        /* some coding other than chunked appeared */
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool has_upgrade; /* an Upgrade field was present */
    bool expect_continue;
} head_facts;

/* Repeated fields and the "5, 5" list form are accepted when every value is
 * the same number (RFC 9110 section 8.6 permits this); any difference is 400. */
static int note_content_length(head_facts *f, csock_http_slice value)
{
    csock_http_slice list = value, el;
    while (list_next(&list, &el)) {
        int64_t v;
        if (!parse_decimal(el, &v)) return CSOCK_HTTP_EBADREQ;
        if (f->content_length >= 0 && f->content_length != v) return CSOCK_HTTP_EBADREQ;
        f->content_length = v;
    }
    return 0;
}

/* Codings accumulate across repeated fields, in order. chunked twice is 400
 * now; "not final" and "unknown coding" wait for the end of the head. */
static int note_transfer_encoding(head_facts *f, csock_http_slice value)
{
    csock_http_slice list = value, el;
    f->has_te = true;
    while (list_next(&list, &el)) {
        if (el.len == 0) continue; /* empty list elements are allowed (RFC 9110 5.6.1) */
        if (slice_is(el, "chunked")) {
            if (f->te_chunked) return CSOCK_HTTP_EBADREQ;
            f->te_chunked = f->te_chunked_last = true;
        } else {
            f->te_other = true;
            f->te_chunked_last = false;
        }
    }
    return 0;
}

static void note_connection(head_facts *f, csock_http_slice value)
{
    csock_http_slice list = value, el;
    while (list_next(&list, &el)) {
        if (slice_is(el, "close"))
            f->conn_close = true;
        else if (slice_is(el, "keep-alive"))
            f->conn_keep_alive = true;
        else if (slice_is(el, "upgrade"))
            f->conn_upgrade = true;
    }
}

/* Host must appear at most once and hold no spaces or non-ASCII (RFC 9112
 * section 3.2: otherwise 400, since proxies may route on a different reading). */
static int note_host(head_facts *f, csock_http_slice value)
{
    if (++f->host_count > 1) return CSOCK_HTTP_EBADREQ;
    for (size_t i = 0; i < value.len; i++)
        if (!is_target_char((unsigned char)value.ptr[i])) return CSOCK_HTTP_EBADREQ;
    return 0;
}

static int note_field(head_facts *f, const csock_http_header *h)
{
    if (slice_is(h->name, "content-length")) return note_content_length(f, h->value);
    if (slice_is(h->name, "transfer-encoding")) return note_transfer_encoding(f, h->value);
    if (slice_is(h->name, "host")) return note_host(f, h->value);
    if (slice_is(h->name, "connection"))
        note_connection(f, h->value);
    else if (slice_is(h->name, "upgrade"))
        f->has_upgrade = true;
    else if (slice_is(h->name, "expect") && slice_is(h->value, "100-continue"))
        f->expect_continue = true;
    return 0;
}

/* field-name ":" OWS field-value OWS. A line starting with SP/HTAB is obs-fold
 * (or whitespace after the request line): 400, as RFC 9112 5.2 and 2.2 allow,
 * because folding is read differently by different hops. So is whitespace
 * before the colon (RFC 9112 5.1: MUST be 400). */
static int parse_field_line(csock_http_slice line, csock_http_request *req, head_facts *f)
{
    const unsigned char *p = (const unsigned char *)line.ptr;
    size_t n = line.len, i = 0;

    while (i < n && is_tchar(p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ':') return CSOCK_HTTP_EBADREQ;
    csock_http_header h = {{line.ptr, i}, slice_trim(line.ptr + i + 1, n - i - 1)};
    for (size_t k = 0; k < h.value.len; k++)
        if (!is_field_char((unsigned char)h.value.ptr[k])) return CSOCK_HTTP_EBADREQ;

    if (req->num_headers == req->max_headers) return CSOCK_HTTP_EHDRTOOBIG;
    req->headers[req->num_headers++] = h;
    return note_field(f, &h);
}

/* Judge the framing once every field is known, then publish the facts. */
static int finish_head(csock_http_request *req, const head_facts *f)
{
    bool v11 = req->minor_version == 1;
    if (f->has_te) {
        /* RFC 9112 6.1/6.3: TE with CL, TE in HTTP/1.0, or chunked not final
         * leave the body length unknowable: 400. Other codings we lack: 501. */
        if (f->content_length >= 0 || !v11 || !f->te_chunked_last) return CSOCK_HTTP_EBADREQ;
        if (f->te_other) return CSOCK_HTTP_ENOTIMPL;
    }
    if (v11 && f->host_count == 0) return CSOCK_HTTP_EBADREQ; /* RFC 9112 3.2: MUST be 400 */

    req->content_length = f->content_length;
    req->chunked = f->has_te;
    req->keep_alive = !f->conn_close && (v11 || f->conn_keep_alive);
    /* HTTP/1.0 requests' Expect and Upgrade MUST be ignored (RFC 9110 10.1.1, 7.8). */
    req->expect_continue = v11 && f->expect_continue;
    req->upgrade = v11 && f->conn_upgrade && f->has_upgrade;
    req->has_host = f->host_count == 1;
    return 0;
}

static void reset_request(csock_http_request *req)
{
    req->method = req->target = (csock_http_slice){NULL, 0};
    req->minor_version = 0;
    req->num_headers = 0;
    req->content_length = -1;
    req->chunked = req->keep_alive = req->expect_continue = false;
    req->has_host = req->upgrade = false;
}

int csock_http_parse_request(const char *buf, size_t len, csock_http_request *req,
                             const csock_http_limits *limits)
{
    cursor c = {buf, len, 0, CSOCK_HTTP_MAX_REQUEST_LINE, CSOCK_HTTP_MAX_HEAD};
    head_facts f = {.content_length = -1};
    csock_http_slice line;
    int r;

    c.line_max = clamp_limit(limits ? limits->max_request_line : 0, CSOCK_HTTP_MAX_REQUEST_LINE);
    c.head_max = clamp_limit(limits ? limits->max_head : 0, CSOCK_HTTP_MAX_HEAD);
    reset_request(req);

    if ((r = read_request_line(&c, &line)) != 0) return r;
    /* One empty line before the request line is ignored (RFC 9112 2.2): some
     * clients send CRLF after a POST body. A second one is 400. */
    if (line.len == 0 && (r = read_request_line(&c, &line)) != 0) return r;
    if ((r = parse_request_line(line, req)) != 0) return r;
    for (;;) {
        if ((r = next_line(&c, &line)) != 0) return r;
        if (line.len == 0) break;
        if ((r = parse_field_line(line, req, &f)) != 0) return r;
    }
    if ((r = finish_head(req, &f)) != 0) return r;
    return (int)c.pos;
}

int csock_http_status(int err)
{
    switch (err) {
    case CSOCK_HTTP_EBADREQ:
        return 400;
    case CSOCK_HTTP_ETOOLARGE:
        return 413;
    case CSOCK_HTTP_EURITOOLONG:
        return 414;
    case CSOCK_HTTP_EHDRTOOBIG:
        return 431;
    case CSOCK_HTTP_ENOTIMPL:
        return 501;
    case CSOCK_HTTP_EVERSION:
        return 505;
    default:
        return 0;
    }
}

const char *csock_http_strerror(int err)
{
    switch (err) {
    case CSOCK_HTTP_INCOMPLETE:
        return "incomplete HTTP message";
    case CSOCK_HTTP_EBADREQ:
        return "bad request";
    case CSOCK_HTTP_ETOOLARGE:
        return "content too large";
    case CSOCK_HTTP_EURITOOLONG:
        return "request line too long";
    case CSOCK_HTTP_EHDRTOOBIG:
        return "request header fields too large";
    case CSOCK_HTTP_ENOTIMPL:
        return "transfer coding not implemented";
    case CSOCK_HTTP_EVERSION:
        return "HTTP version not supported";
    default:
        return "not an HTTP parser code";
    }
}

/* ---- chunked ---------------------------------------------------------------- */

/* chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 7.1).
 * Chunk lines and trailers must end in CRLF: unlike the head, a bare LF is not
 * tolerated here, because lenient chunk parsing is a known smuggling vector. */
enum chunk_state {
    CH_SIZE,     /* hex digits of chunk-size */
    CH_SIZE_BWS, /* whitespace after the size; only ";" may follow */
    CH_EXT,      /* chunk-ext, skipped (bounded by max_ext) */
    CH_SIZE_LF,  /* CR seen after size/ext */
    CH_DATA,     /* chunk-data: `remaining` bytes */
    CH_DATA_CR,  /* CRLF after chunk-data */
    CH_DATA_LF,
    CH_TRAILER_START, /* a trailer field line, or the final CRLF */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF, /* CR of the final CRLF seen */
    CH_DONE,
    CH_ERROR, /* an error was returned; later calls fail (EBADREQ) */
};

void csock_http_chunked_init(csock_http_chunked *st, uint64_t max_body)
{
    memset(st, 0, sizeof *st);
    st->max_body = max_body;
    st->max_ext = CSOCK_HTTP_MAX_CHUNK_EXT;
    st->max_trailer = CSOCK_HTTP_MAX_TRAILER;
    st->state = CH_SIZE;
}

static int chunk_size_digit(csock_http_chunked *st, int hex)
{
    if (st->remaining > (UINT64_MAX >> 4))
        return CSOCK_HTTP_EBADREQ; /* more than 64 bits of size */
    st->remaining = st->remaining << 4 | (uint64_t)hex;
    st->digits = 1;
    /* Check as digits arrive: a size only grows, so refusing early is safe. */
    return st->remaining > st->max_body - st->total ? CSOCK_HTTP_ETOOLARGE : 0;
}

/* The chunk-size line: 1*HEXDIG [ BWS ";" chunk-ext ] CRLF. */
static int step_size_line(csock_http_chunked *st, unsigned char c)
{
    int hex = hex_value(c);
    switch (st->state) {
    case CH_SIZE:
        if (hex >= 0) return chunk_size_digit(st, hex);
        if (!st->digits) return CSOCK_HTTP_EBADREQ;
        st->count = 1; /* extension bytes so far, counted from here */
        if (c == ';')
            st->state = CH_EXT;
        else if (is_ows(c))
            st->state = CH_SIZE_BWS;
        else if (c == '\r')
            st->state = CH_SIZE_LF;
        else
            return CSOCK_HTTP_EBADREQ; /* includes a bare LF */
        return 0;
    case CH_SIZE_BWS:
        if (c == ';')
            st->state = CH_EXT;
        else if (!is_ows(c))
            return CSOCK_HTTP_EBADREQ;
        return ++st->count > st->max_ext ? CSOCK_HTTP_EBADREQ : 0;
    case CH_EXT:
        if (c == '\r') {
            st->state = CH_SIZE_LF;
            return 0;
        }
        if (!is_field_char(c)) return CSOCK_HTTP_EBADREQ;
        return ++st->count > st->max_ext ? CSOCK_HTTP_EBADREQ : 0;
    default: /* CH_SIZE_LF */
        if (c != '\n') return CSOCK_HTTP_EBADREQ;
        st->digits = 0;
        st->count = 0;
        st->state = st->remaining ? CH_DATA : CH_TRAILER_START;
        return 0;
    }
}

/* trailer-section = *( field-line CRLF ) CRLF, checked like head fields
 * (token name, colon, no controls, no obs-fold) and bounded by max_trailer.
 * Trailer fields are dropped: nothing in them may change the framing. */
static int step_trailer(csock_http_chunked *st, unsigned char c)
{
    if (++st->count > st->max_trailer) return CSOCK_HTTP_EHDRTOOBIG;
    switch (st->state) {
    case CH_TRAILER_START:
        if (c == '\r')
            st->state = CH_END_LF;
        else if (is_tchar(c))
            st->state = CH_TRAILER_NAME;
        else
            return CSOCK_HTTP_EBADREQ;
        return 0;
    case CH_TRAILER_NAME:
        if (c == ':')
            st->state = CH_TRAILER_VALUE;
        else if (!is_tchar(c))
            return CSOCK_HTTP_EBADREQ;
        return 0;
    case CH_TRAILER_VALUE:
        if (c == '\r')
            st->state = CH_TRAILER_LF;
        else if (!is_field_char(c))
            return CSOCK_HTTP_EBADREQ;
        return 0;
    case CH_TRAILER_LF:
        st->state = CH_TRAILER_START;
        return c == '\n' ? 0 : CSOCK_HTTP_EBADREQ;
    default: /* CH_END_LF */
        st->state = CH_DONE;
        return c == '\n' ? 0 : CSOCK_HTTP_EBADREQ;
    }
}

/* One framing byte. CH_DATA is handled in bulk by the caller. */
static int chunk_step(csock_http_chunked *st, unsigned char c)
{
    switch (st->state) {
    case CH_SIZE:
    case CH_SIZE_BWS:
    case CH_EXT:
    case CH_SIZE_LF:
        return step_size_line(st, c);
    case CH_DATA_CR:
        st->state = CH_DATA_LF;
        return c == '\r' ? 0 : CSOCK_HTTP_EBADREQ;
    case CH_DATA_LF:
        st->state = CH_SIZE;
        st->remaining = 0;
        return c == '\n' ? 0 : CSOCK_HTTP_EBADREQ;
    default:
        return step_trailer(st, c);
    }
}

int csock_http_chunked_decode(csock_http_chunked *st, const char *buf, size_t len, size_t *consumed,
                              csock_http_slice *data)
{
    size_t pos = 0;
    *data = (csock_http_slice){buf, 0};
    *consumed = 0;
    if (st->state == CH_ERROR) return CSOCK_HTTP_EBADREQ;
    while (st->state != CH_DONE) {
        if (st->state == CH_DATA && pos < len) {
            size_t n = len - pos < st->remaining ? len - pos : (size_t)st->remaining;
            *data = (csock_http_slice){buf + pos, n};
            st->remaining -= n;
            st->total += n;
            if (st->remaining == 0) st->state = CH_DATA_CR;
            *consumed = pos + n;
            return CSOCK_HTTP_CHUNK_DATA;
        }
        if (pos == len) {
            *consumed = len;
            return CSOCK_HTTP_INCOMPLETE;
        }
        int r = chunk_step(st, (unsigned char)buf[pos]);
        if (r < 0) {
            st->state = CH_ERROR;
            *consumed = pos;
            return r;
        }
        pos++;
    }
    *consumed = pos;
    return CSOCK_HTTP_CHUNK_DONE;
}
